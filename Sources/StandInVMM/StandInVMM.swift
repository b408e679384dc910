import Foundation
import Glibc

/// A stand-in for Firecracker at snapshot load with a Uffd memory backend (no KVM needed): it sets
/// its guest memory up and hands it to a page-fault handler exactly as Firecracker does, then runs
/// a guest that checks every page against the memory image. See `Options.usage`.
/// A separate program on purpose: it links no part of the engine it tests.
@main
enum StandInVMM {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.contains("--help") || arguments.contains("-h") {
            emit(Options.usage, to: 1)
            exit(0)
        }
        do {
            let options: Options
            do { options = try Options.parse(arguments) } catch {
                throw Failure(2, "\(error.description)\n\(Options.usage)")
            }
            try run(options)
        } catch let failure as Failure {
            emit("stand-in-vmm: error: \(failure.message)", to: 2)
            exit(failure.status)
        } catch {
            emit("stand-in-vmm: error: \(error)", to: 2)
            exit(2)
        }
        exit(0)
    }

    static func run(_ options: Options) throws {
        let watchdog = Watchdog(seconds: options.deadlineSeconds)
        let (image, imageBytes) = try mapImage(options.imagePath)
        let memory = try GuestMemory(imageBytes: imageBytes, layout: options.layout, pageSize: options.pageSize)
        let guest = Guest(memory: memory, image: image, imageBytes: imageBytes)
        let lastRegionPages = memory.regions[memory.regions.count - 1].size / memory.pageSize
        guard options.balloonPages <= lastRegionPages else {
            throw Failure(2, "--balloon \(options.balloonPages): the last region has only \(lastRegionPages) pages")
        }

        watchdog.phase = "connecting to the handler"
        let connection = try sendHandover(socketPath: options.socketPath, text: memory.regionJSON(options.json),
                                          fd: memory.uffd, deadline: monotonicSeconds() + options.deadlineSeconds)
        emit("stand-in-vmm: pid \(getpid()), \(memory.regions.count) regions, connected", to: 1)
        if options.closeAfterSend { close(connection) }

        if options.kernelAccess {
            watchdog.phase = "kernel access (read(2) into, write(2) from absent guest pages)"
            guest.kernelAccess()
            if let problem = guest.error { throw Failure(1, problem) }
        }

        watchdog.phase = "guest threads reading and writing every page"
        let group = DispatchGroup()
        for index in 0..<options.threads {
            group.enter()
            let thread = Thread { guest.run(thread: index, of: options.threads); group.leave() }
            thread.name = "guest-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()  // the watchdog bounds it
        if let problem = guest.error { throw Failure(1, problem) }

        if options.balloonPages > 0 {
            watchdog.phase = "balloon: MADV_DONTNEED of \(options.balloonPages) pages, then reading them"
            guest.balloon(pages: options.balloonPages, atResidentPercent: options.balloonAtResidentPercent)
            if let problem = guest.error { throw Failure(1, problem) }
        }
        watchdog.disarm()

        var summary = "stand-in-vmm: all checks passed: \(guest.pageCount) pages of \(memory.pageSize) bytes, \(options.threads) guest threads"
        if options.kernelAccess { summary += ", kernel access" }
        if options.balloonPages > 0 { summary += ", \(options.balloonPages) ballooned pages read zeros" }
        emit(summary, to: 1)
        if options.lingerSeconds > 0, !options.closeAfterSend { linger(on: connection, seconds: options.lingerSeconds) }
    }

    /// The image, mapped read-only: the guest compares what it sees with it.
    static func mapImage(_ path: String) throws(Failure) -> (UnsafeRawPointer, Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(2, "cannot open the image \(path): \(errnoText())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { throw Failure(2, "the image \(path) is empty or unreadable") }
        let bytes = Int(info.st_size)
        guard let mapped = mmap(nil, bytes, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw Failure(2, "cannot map the image \(path): \(errnoText())")
        }
        return (UnsafeRawPointer(mapped), bytes)
    }

    /// Stays alive (the VM "runs") until the handler hangs up or `seconds` pass.
    static func linger(on connection: Int32, seconds: Double) {
        let end = monotonicSeconds() + seconds
        var scratch = [UInt8](repeating: 0, count: 256)
        while monotonicSeconds() < end {
            var entry = pollfd(fd: connection, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(min(end - monotonicSeconds(), 1) * 1000) + 1) > 0 else { continue }
            if recv(connection, &scratch, scratch.count, Int32(MSG_DONTWAIT)) == 0 || entry.revents & Int16(POLLHUP) != 0 { return }
        }
    }
}

/// Ends the process with status 3 and one line naming the phase if the guest is not done by the
/// deadline: a fault nobody resolves must not hang whoever runs this program.
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var current = "starting"
    private let done = DispatchSemaphore(value: 0)

    init(seconds: Double) {
        let thread = Thread { [self] in
            if done.wait(timeout: .now() + seconds) == .success { return }
            let phase = lock.withLock { current }
            emit("stand-in-vmm: error: the guest is not done after \(seconds) s (a fault never resolved?), during: \(phase)", to: 2)
            _exit(3)
        }
        thread.name = "watchdog"
        thread.start()
    }

    var phase: String {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }

    func disarm() { done.signal() }
}

/// One line, written at once with write(2) (unbuffered: a line is out before any exit).
func emit(_ line: String, to fd: Int32) {
    var bytes = Array((line + "\n").utf8)
    var done = 0
    while done < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if written <= 0 { return }
        done += written
    }
}
