/// Memory whose every page exists before its bytes arrive (`destination
/// --preallocate`): a run can be written to its place first, out of the guest's
/// sight, and mapped after. The background installer writes and hashes runs this
/// way, with no ring of its own.
///
/// Threading: `ioPage` and `mapWritten` on any thread, for pages no other thread
/// installs at the same time.
public protocol PreallocatedPages: AnyObject, Sendable {
    /// Where page `page`'s bytes are written (the io view: the guest does not see it).
    func ioPage(_ page: Int) -> UnsafeMutableRawPointer
    /// Maps absent pages whose bytes were written through `ioPage`, waking their waiters.
    func mapWritten(first: Int, count: Int) throws(AgentError) -> InstallOutcome
}
