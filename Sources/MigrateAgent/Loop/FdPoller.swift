import CLibUV

/// Watches a non-blocking descriptor (the userfaultfd) for readability with a
/// `uv_poll_t`. Loop thread only; keeps itself alive until closed.
public final class FdPoller {
    private let handle: UnsafeMutablePointer<uv_poll_t>
    private let loop: EventLoop
    private let onReadable: () -> Void

    public init(loop: EventLoop, fd: Int32, onReadable: @escaping () -> Void) throws(AgentError) {
        loop.assertOnLoop()
        self.loop = loop
        self.onReadable = onReadable
        handle = .allocate(capacity: 1)
        let rc = uv_poll_init(loop.raw, handle, fd)
        guard rc == 0 else { handle.deallocate(); throw .system("uv_poll_init: \(uvError(rc))") }
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_poll_start(handle, Int32(UV_READABLE.rawValue)) { h, _, _ in
            Unmanaged<FdPoller>.fromOpaque(h!.pointee.data).takeUnretainedValue().onReadable()
        }
    }

    /// Stops watching and releases the handle (before the descriptor is closed).
    public func close() {
        loop.assertOnLoop()
        uv_poll_stop(handle)
        closeHandle(handle) { h in
            let poller = Unmanaged<FdPoller>.fromOpaque(h!.pointee.data)
            h!.deallocate()
            poller.release()
        }
    }
}
