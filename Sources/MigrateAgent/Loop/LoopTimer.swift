import CLibUV

/// A repeating `uv_timer_t`. Loop thread only; keeps itself alive until closed.
public final class LoopTimer {
    private let handle: UnsafeMutablePointer<uv_timer_t>
    private let loop: EventLoop
    private let action: () -> Void

    public init(loop: EventLoop, everyMillis: UInt64, _ action: @escaping () -> Void) {
        loop.assertOnLoop()
        self.loop = loop
        self.action = action
        handle = .allocate(capacity: 1)
        uv_timer_init(loop.raw, handle)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
        uv_timer_start(handle, { h in
            Unmanaged<LoopTimer>.fromOpaque(h!.pointee.data).takeUnretainedValue().action()
        }, everyMillis, everyMillis)
    }

    public func close() {
        loop.assertOnLoop()
        closeHandle(handle) { h in
            let timer = Unmanaged<LoopTimer>.fromOpaque(h!.pointee.data)
            h!.deallocate()
            timer.release()
        }
    }
}
