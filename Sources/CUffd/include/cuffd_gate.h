// The install gate: one 32-bit word shared by the destination's loop and its
// background installer's worker, for a VMM's memory (which has removal events).
// The loop closes the gate around each read of the userfaultfd and the handling
// of the removals read; the worker holds it (BUSY) around each UFFDIO_COPY. So
// no copy is in flight while the loop reads an event (a copy that began before a
// removal was queued could otherwise land after the kernel zapped the range), and
// none starts on pages a removal gave back before the loop marked them.
// Waits spin briefly, then sleep on the word (futex). Nothing here allocates.
#ifndef CUFFD_GATE_H
#define CUFFD_GATE_H

#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

static const uint32_t CUFFD_GATE_CLOSED = 1;        // the loop reads the userfaultfd
static const uint32_t CUFFD_GATE_BUSY = 2;          // the worker is in a copy
static const uint32_t CUFFD_GATE_LOOP_WAITS = 4;    // the loop sleeps until BUSY clears
static const uint32_t CUFFD_GATE_WORKER_WAITS = 8;  // the worker sleeps until CLOSED clears

static inline void cuffd_gate_sleep(uint32_t *gate, uint32_t expected) {
    // Returns at once when the word no longer holds `expected`; spurious wake-ups are re-checked.
    syscall(SYS_futex, gate, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static inline void cuffd_gate_wake(uint32_t *gate) {
    syscall(SYS_futex, gate, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static inline void cuffd_gate_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t cuffd_gate_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/// Loop: closes the gate; returns 0 when no copy was in flight, 1 when the copy in
/// flight ended while it spun (up to `spin_nanos`: on the other CPU a copy ends
/// within a few µs), -1 when it is still in flight (the gate stays closed: finish
/// with `cuffd_gate_wait_copy`).
static inline int cuffd_gate_close_spinning(uint32_t *gate, int64_t spin_nanos) {
    uint32_t v = __atomic_fetch_or(gate, CUFFD_GATE_CLOSED, __ATOMIC_ACQ_REL);
    if (!(v & CUFFD_GATE_BUSY)) return 0;
    int64_t start = cuffd_gate_now();
    do {
        for (int i = 0; i < 64; i++) {
            cuffd_gate_relax();
            if (!(__atomic_load_n(gate, __ATOMIC_ACQUIRE) & CUFFD_GATE_BUSY)) return 1;
        }
    } while (cuffd_gate_now() - start < spin_nanos);
    return -1;
}

/// Loop, after `cuffd_gate_close_spinning` returned -1: sleeps until the copy in flight ended.
static inline void cuffd_gate_wait_copy(uint32_t *gate) {
    for (;;) {
        uint32_t v = __atomic_or_fetch(gate, CUFFD_GATE_LOOP_WAITS, __ATOMIC_ACQ_REL);
        if (!(v & CUFFD_GATE_BUSY)) break;
        cuffd_gate_sleep(gate, v);
    }
    __atomic_fetch_and(gate, ~CUFFD_GATE_LOOP_WAITS, __ATOMIC_RELAXED);
}

/// Loop: closes the gate if no copy is in flight (1), else leaves it open (0).
static inline int cuffd_gate_try_close(uint32_t *gate) {
    uint32_t v = __atomic_load_n(gate, __ATOMIC_RELAXED);
    do {
        if (v & CUFFD_GATE_BUSY) return 0;
    } while (!__atomic_compare_exchange_n(gate, &v, v | CUFFD_GATE_CLOSED, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    return 1;
}

/// Loop: opens the gate (release: the worker sees what the loop wrote before).
static inline void cuffd_gate_open(uint32_t *gate) {
    uint32_t v = __atomic_fetch_and(gate, ~(CUFFD_GATE_CLOSED | CUFFD_GATE_WORKER_WAITS), __ATOMIC_RELEASE);
    if (v & CUFFD_GATE_WORKER_WAITS) cuffd_gate_wake(gate);
}

/// Worker: waits while the gate is closed (spinning up to `spin_nanos` first: the
/// loop holds it for one read), then holds it BUSY (acquire).
static inline void cuffd_gate_enter(uint32_t *gate, int64_t spin_nanos) {
    uint32_t v = __atomic_load_n(gate, __ATOMIC_RELAXED);
    if (v & CUFFD_GATE_CLOSED) {
        int64_t start = cuffd_gate_now();
        do {
            for (int i = 0; i < 64 && (v & CUFFD_GATE_CLOSED); i++) {
                cuffd_gate_relax();
                v = __atomic_load_n(gate, __ATOMIC_RELAXED);
            }
        } while ((v & CUFFD_GATE_CLOSED) && cuffd_gate_now() - start < spin_nanos);
    }
    for (;;) {
        if (!(v & CUFFD_GATE_CLOSED)) {
            if (__atomic_compare_exchange_n(gate, &v, v | CUFFD_GATE_BUSY, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
            continue;  // `v` holds the word's new value
        }
        if (!(v & CUFFD_GATE_WORKER_WAITS)
            && !__atomic_compare_exchange_n(gate, &v, v | CUFFD_GATE_WORKER_WAITS, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            continue;
        }
        cuffd_gate_sleep(gate, v | CUFFD_GATE_WORKER_WAITS);
        v = __atomic_load_n(gate, __ATOMIC_RELAXED);
    }
}

/// Worker: the copy is done (release: the loop, once it sees BUSY clear, reads after it).
static inline void cuffd_gate_leave(uint32_t *gate) {
    uint32_t v = __atomic_fetch_and(gate, ~CUFFD_GATE_BUSY, __ATOMIC_RELEASE);
    if (v & CUFFD_GATE_LOOP_WAITS) cuffd_gate_wake(gate);
}

#endif
