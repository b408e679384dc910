/// The stand-in VMM's command line (no argument-parser dependency: this program
/// must stay a small, separate binary).
struct Options {
    enum Layout: String { case one, gap }
    /// Which page-size keys the region JSON carries, i.e. which Firecracker generation it imitates.
    enum JSONKeys: String {
        /// Firecracker before 1.7: no page size (the handler assumes 4096).
        case none
        /// Firecracker 1.7 to 1.11: `page_size_kib` only, which holds bytes despite its name.
        case kib
        /// Firecracker 1.12 and later: `page_size` and the deprecated `page_size_kib`, both bytes.
        case bytes
        /// Firecracker 2.0 as announced: `page_size` only.
        case bytesOnly = "bytes-only"
    }

    var socketPath = ""
    var imagePath = ""
    var layout = Layout.one
    var json = JSONKeys.bytes
    var pageSize = 4096
    var threads = 2
    var kernelAccess = false
    var balloonPages = 0
    var balloonAtResidentPercent = 0
    var deadlineSeconds = 60.0
    var lingerSeconds = 0.0
    var closeAfterSend = false

    static let usage = """
        usage: stand-in-vmm --socket PATH --image PATH [options]
        Does what Firecracker does at snapshot load with a Uffd memory backend: maps its
        guest regions, registers them with a userfaultfd, hands the regions (JSON) and the
        userfaultfd (SCM_RIGHTS) to the handler listening at PATH, then runs a guest that
        checks every page against the memory image the handler serves.
          --socket PATH        the handler's Unix socket
          --image PATH         the memory image (read only to check what the guest sees)
          --layout one|gap     one region, or two with a 1 GiB address hole (x86's MMIO gap),
                               consecutive in the image (default one)
          --json none|kib|bytes|bytes-only
                               page-size keys sent: none (Firecracker < 1.7), page_size_kib
                               (1.7-1.11), page_size and page_size_kib (1.12+, default),
                               page_size only (2.0)
          --page-size 4096|2097152  2097152 (or 2MiB): hugetlbfs (MAP_HUGETLB) guest memory
          --threads N          guest threads reading every page in random order (default 2; 0: none)
          --kernel-access      a read(2) into and a write(2) from absent guest pages first
          --balloon PAGES      afterwards MADV_DONTNEED PAGES pages; they must then read zeros
          --balloon-at-resident PERCENT
                               give them back once PERCENT of them are resident (mincore), so
                               that the removal meets pages the handler is installing
          --deadline SECONDS   exit 3 if the guest is not done by then (default 60)
          --linger SECONDS     after the checks, stay alive until the handler hangs up (at most SECONDS)
          --close-after-send   close the socket after the handover (Firecracker < 1.12 did)
        exit: 0 every check passed; 1 a page was wrong; 2 usage or setup failed; 3 deadline
        """

    struct UsageError: Error, CustomStringConvertible { let description: String }

    static func parse(_ arguments: [String]) throws(UsageError) -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ name: String) throws(UsageError) -> String {
            guard let next = rest.popFirst() else { throw UsageError(description: "\(name) needs a value") }
            return next
        }
        func number(_ name: String, _ text: String, _ range: ClosedRange<Double>) throws(UsageError) -> Double {
            guard let parsed = Double(text), range.contains(parsed) else {
                throw UsageError(description: "\(name) must be a number in \(range.lowerBound)...\(range.upperBound), not \(text)")
            }
            return parsed
        }
        while let argument = rest.popFirst() {
            switch argument {
            case "--socket": options.socketPath = try value(argument)
            case "--image": options.imagePath = try value(argument)
            case "--layout":
                let text = try value(argument)
                guard let layout = Layout(rawValue: text) else { throw UsageError(description: "--layout is one or gap, not \(text)") }
                options.layout = layout
            case "--json":
                let text = try value(argument)
                guard let keys = JSONKeys(rawValue: text) else {
                    throw UsageError(description: "--json is none, kib, bytes or bytes-only, not \(text)")
                }
                options.json = keys
            case "--page-size":
                switch try value(argument) {
                case "4096", "4KiB": options.pageSize = 4096
                case "2097152", "2MiB": options.pageSize = 2 << 20
                case let text: throw UsageError(description: "--page-size is 4096 or 2097152, not \(text)")
                }
            case "--threads": options.threads = Int(try number(argument, try value(argument), 0...256))
            case "--kernel-access": options.kernelAccess = true
            case "--balloon": options.balloonPages = Int(try number(argument, try value(argument), 0...1_073_741_824))
            case "--balloon-at-resident": options.balloonAtResidentPercent = Int(try number(argument, try value(argument), 0...100))
            case "--deadline": options.deadlineSeconds = try number(argument, try value(argument), 0.1...86_400)
            case "--linger": options.lingerSeconds = try number(argument, try value(argument), 0...86_400)
            case "--close-after-send": options.closeAfterSend = true
            default: throw UsageError(description: "unknown option \(argument)")
            }
        }
        guard !options.socketPath.isEmpty, !options.imagePath.isEmpty else {
            throw UsageError(description: "--socket and --image are required")
        }
        return options
    }
}
