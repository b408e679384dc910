// Guest-memory accesses the Swift optimiser must not remove or merge: a guest
// "touch" has to reach the page, or the fault it is meant to cause never
// happens (docs/kernel-and-swift-notes.md). Also relaxed atomic bytes for state that the loop
// thread writes and guest threads only read, and per-page flags that many threads set and one collects.
#ifndef GUEST_ACCESS_H
#define GUEST_ACCESS_H
#include <stdint.h>
#include <string.h>

static inline uint64_t guest_read_u64(const void *p) { return *(const volatile uint64_t *)p; }
static inline void guest_write_u64(void *p, uint64_t v) { *(volatile uint64_t *)p = v; }

static inline uint8_t atomic_load_u8(const uint8_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_store_u8(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t atomic_load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t atomic_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t atomic_add_u64(uint64_t *p, uint64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
static inline uint64_t atomic_fetch_or_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
static inline uint64_t atomic_fetch_and_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
// Per-page flags written by many threads and collected by one: relaxed, the flag is the whole message.
static inline uint8_t atomic_load_relaxed_u8(const uint8_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void atomic_store_relaxed_u8(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint8_t atomic_exchange_u8(uint8_t *p, uint8_t v) { return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL); }
/// Sets a flag unless it is set already (a load first, so a hot page's cache line is not written again).
static inline void atomic_mark_u8(uint8_t *p) { if (__atomic_load_n(p, __ATOMIC_RELAXED) == 0) __atomic_store_n(p, 1, __ATOMIC_RELAXED); }
#endif
