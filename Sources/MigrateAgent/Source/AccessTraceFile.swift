import Glibc

/// Reads and writes `AccessTrace` files. A write is atomic: the bytes go to a
/// temporary file in the same directory, are synced, and the temporary file is
/// renamed over the target, so a reader never sees half a trace and a failed
/// write leaves the old trace (if any) in place.
/// Threading: any thread; not on a hot path (run before the loop or after it).
public enum AccessTraceFile {
    /// The trace in `path`, checked (`AccessTrace.decode`). Errors name the path.
    public static func read(_ path: String) throws(AgentError) -> AccessTrace {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .invalidArgument("cannot open the trace \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw .invalidArgument("the trace \(path) is not a regular file")
        }
        // Larger than a trace of 2³² pages: refused before reading it all.
        let size = Int(info.st_size)
        guard size <= AccessTrace.headerSize + 4 * AccessTrace.maxPageCount + AccessTrace.checksumSize else {
            throw .invalidArgument("the trace \(path) is not an access trace: \(size) bytes is more than any trace")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, size - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                throw .system("cannot read the trace \(path): \(n == 0 ? "it shrank while read" : String(cString: strerror(errno)))")
            }
            done += n
        }
        let decoded = bytes.withUnsafeBytes { raw in
            Result { () throws(AgentError) in try AccessTrace.decode(raw, path: path) }
        }
        return try decoded.get()
    }

    /// Writes `trace` to `path` atomically (temporary file, fsync, rename).
    public static func write(_ trace: AccessTrace, to path: String) throws(AgentError) {
        let temporary = "\(path).tmp-\(getpid())"
        func fail(_ call: String) -> AgentError {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            return .system("cannot write the trace \(path): \(call): \(reason)")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("open \(temporary)") }
        let bytes = trace.encoded()
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                let error = fail("write")
                close(fd)
                throw error
            }
            done += n
        }
        guard fsync(fd) == 0 else {
            let error = fail("fsync")
            close(fd)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw fail("rename \(temporary)") }
    }
}
