import CLibUV

/// Runs an action on the loop's next iteration (a `uv_idle_t` started once):
/// work split across turns lets the loop poll the userfaultfd and the urgent
/// connection in between. Loop thread only; keeps itself alive until closed.
public final class NextTurn {
    private let handle: UnsafeMutablePointer<uv_idle_t>
    private let loop: EventLoop
    private let action: () -> Void

    public init(loop: EventLoop, _ action: @escaping () -> Void) {
        loop.assertOnLoop()
        self.loop = loop
        self.action = action
        handle = .allocate(capacity: 1)
        uv_idle_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Schedules the action once for the next iteration (again while pending: no effect).
    public func schedule() {
        loop.assertOnLoop()
        uv_idle_start(handle) { h in
            uv_idle_stop(h)
            Unmanaged<NextTurn>.fromOpaque(h!.pointee.data).takeUnretainedValue().action()
        }
    }

    public func close() {
        loop.assertOnLoop()
        uv_idle_stop(handle)
        closeHandle(handle) { h in
            let turn = Unmanaged<NextTurn>.fromOpaque(h!.pointee.data)
            h!.deallocate()
            turn.release()
        }
    }
}
