import Glibc

/// A process's memory as `/proc/self/smaps_rollup` counts it, in bytes. *RSS*
/// counts a page once per mapping, so the destination's arena, a memfd mapped
/// twice (the guest's view and the io view), appears twice in it; *PSS*
/// divides each page by the number of mappings of it, so the arena counts once
/// and PSS minus the arena is the agent's own memory. Read by the destination
/// once every page is present, before it tears down (`DestinationReport.memory`).
/// A value type; reading it is a file read on the calling thread.
public struct ProcessMemory: Codable, Sendable, Equatable {
    public var rssBytes: Int
    public var pssBytes: Int
    /// PSS of anonymous memory (heaps, stacks, buffers), of shared memory (the memfd
    /// arena) and of files (the binary and libraries).
    public var pssAnonBytes: Int
    public var pssShmemBytes: Int
    public var pssFileBytes: Int

    public init(rssBytes: Int, pssBytes: Int, pssAnonBytes: Int, pssShmemBytes: Int, pssFileBytes: Int) {
        self.rssBytes = rssBytes
        self.pssBytes = pssBytes
        self.pssAnonBytes = pssAnonBytes
        self.pssShmemBytes = pssShmemBytes
        self.pssFileBytes = pssFileBytes
    }

    /// The calling process's figures, or nil where the kernel has no `smaps_rollup` (before 4.14).
    public static func current() -> ProcessMemory? {
        guard let file = fopen("/proc/self/smaps_rollup", "r") else { return nil }
        defer { fclose(file) }
        var text = ""
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            text += String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return parse(smapsRollup: text)
    }

    /// Parses the text of `smaps_rollup` (fields in kB); nil without `Rss` and `Pss`.
    public static func parse(smapsRollup text: String) -> ProcessMemory? {
        var kB: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0].hasSuffix(":"), let value = Int(parts[1]) else { continue }
            kB[String(parts[0].dropLast())] = value
        }
        guard let rss = kB["Rss"], let pss = kB["Pss"] else { return nil }
        return ProcessMemory(rssBytes: rss << 10, pssBytes: pss << 10, pssAnonBytes: (kB["Pss_Anon"] ?? 0) << 10,
                             pssShmemBytes: (kB["Pss_Shmem"] ?? 0) << 10, pssFileBytes: (kB["Pss_File"] ?? 0) << 10)
    }
}
