import Foundation
import Glibc

/// Raises /proc/sys/vm/nr_hugepages by `pages` (free 2 MiB pages for hugetlb
/// guest memory) and restores it. Reservations in one machine are taken one at
/// a time (an flock on a file in /tmp), because tests of two targets run in
/// parallel and each restores the value it read.
public final class HugePageReservation {
    static let control = "/proc/sys/vm/nr_hugepages"
    private let original: Int
    private let lock: Int32

    public init?(pages: Int) {
        lock = open("/tmp/migrate-agent-hugepages.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard lock >= 0, flock(lock, LOCK_EX) == 0 else { return nil }
        guard let text = try? String(contentsOfFile: Self.control, encoding: .utf8),
              let original = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            close(lock)
            return nil
        }
        self.original = original
        guard (try? "\(original + pages)\n".write(toFile: Self.control, atomically: false, encoding: .utf8)) != nil else {
            close(lock)
            return nil
        }
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let free = meminfo.split(separator: "\n").first { $0.hasPrefix("HugePages_Free:") }
            .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        guard free >= pages else {
            restore()
            return nil
        }
    }

    /// Puts the value back and lets the next reservation go. Idempotent.
    public func restore() {
        guard !restored else { return }
        restored = true
        try? "\(original)\n".write(toFile: Self.control, atomically: false, encoding: .utf8)
        close(lock)
    }

    private var restored = false
}
