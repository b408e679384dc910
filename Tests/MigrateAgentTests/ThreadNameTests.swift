import Foundation
import MigrateAgent
import SyntheticGuest
import Testing

/// Threads the agents start carry their names into the kernel, where `top -H`
/// and `perf` read them (`/proc/thread-self/comm`), cut to the kernel's 15 bytes.
struct ThreadNameTests {
    @Test(arguments: [("page-installer", "page-installer"), ("a-much-longer-thread-name", "a-much-longer-t")])
    func kernelSeesTheName(name: String, expected: String) {
        // DeadlineThread starts its thread with startThread(named:).
        let thread = DeadlineThread(name) {
            (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?
                .trimmingCharacters(in: .newlines) ?? "unreadable"
        }
        #expect(thread.join(until: .now() + 10) == expected)
    }
}
