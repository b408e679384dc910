import Glibc

/// Unbuffered output to stdout and stderr (write(2) on fds 1 and 2): a line is
/// out before the process goes on, which a parent reading the pipe relies on.
public enum Console {
    public static func out(_ line: String) { write(1, line + "\n") }
    public static func err(_ line: String) { write(2, line + "\n") }

    private static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 { if errno == EINTR { continue } else { return } }
                offset += n
            }
        }
    }
}
