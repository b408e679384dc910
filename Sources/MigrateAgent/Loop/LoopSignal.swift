import CLibUV

/// Wakes the loop from another thread to run one fixed action (a `uv_async_t`):
/// any number of `signal`s before the loop gets to it run the action once. No
/// allocation per signal, unlike `EventLoop.execute`.
///
/// Threading: `init`, `close` and the action on the loop thread; `signal` from
/// any thread until `close`. Keeps itself alive until closed.
final class LoopSignal: @unchecked Sendable {
    private let handle: UnsafeMutablePointer<uv_async_t>
    private let action: () -> Void

    init(loop: EventLoop, _ action: @escaping () -> Void) {
        loop.assertOnLoop()
        self.action = action
        handle = .allocate(capacity: 1)
        uv_async_init(loop.raw, handle) { h in
            Unmanaged<LoopSignal>.fromOpaque(h!.pointee.data).takeUnretainedValue().action()
        }
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Any thread. Only before `close`: the caller makes sure no signal races the close.
    func signal() { uv_async_send(handle) }

    func close() {
        closeHandle(handle) { h in
            let signal = Unmanaged<LoopSignal>.fromOpaque(h!.pointee.data)
            h!.deallocate()
            signal.release()
        }
    }
}
