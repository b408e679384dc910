// The userfaultfd kernel ABI for Swift: constants newer than Debian's 6.1 headers
// (WP_ASYNC, MOVE, POISON, PAGEMAP_SCAN, and RWP from Linux 7.3, see docs/rwp-abi.md),
// and one thin wrapper per ioctl. Swift cannot see _IOWR request numbers nor call
// the variadic syscall(), so each wrapper returns 0 (or a count) on success and
// -errno on failure. Nothing here allocates or keeps state.
#ifndef CUFFD_H
#define CUFFD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* fallocate */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

// MARK: - Feature bits (uffdio_api.features)

static const uint64_t CUFFD_FEATURE_PAGEFAULT_FLAG_WP = 1ULL << 0;
static const uint64_t CUFFD_FEATURE_EVENT_FORK = 1ULL << 1;
static const uint64_t CUFFD_FEATURE_EVENT_REMAP = 1ULL << 2;
static const uint64_t CUFFD_FEATURE_EVENT_REMOVE = 1ULL << 3;
static const uint64_t CUFFD_FEATURE_EVENT_UNMAP = 1ULL << 4;
static const uint64_t CUFFD_FEATURE_MISSING_HUGETLBFS = 1ULL << 5;
static const uint64_t CUFFD_FEATURE_MISSING_SHMEM = 1ULL << 6;
static const uint64_t CUFFD_FEATURE_SIGBUS = 1ULL << 7;
static const uint64_t CUFFD_FEATURE_THREAD_ID = 1ULL << 8;
static const uint64_t CUFFD_FEATURE_MINOR_HUGETLBFS = 1ULL << 9;
static const uint64_t CUFFD_FEATURE_MINOR_SHMEM = 1ULL << 10;
static const uint64_t CUFFD_FEATURE_EXACT_ADDRESS = 1ULL << 11;
static const uint64_t CUFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1ULL << 12;
static const uint64_t CUFFD_FEATURE_WP_UNPOPULATED = 1ULL << 13;
static const uint64_t CUFFD_FEATURE_POISON = 1ULL << 14;
static const uint64_t CUFFD_FEATURE_WP_ASYNC = 1ULL << 15;
static const uint64_t CUFFD_FEATURE_MOVE = 1ULL << 16;
static const uint64_t CUFFD_FEATURE_RWP = 1ULL << 17;        // Linux 7.3
static const uint64_t CUFFD_FEATURE_RWP_ASYNC = 1ULL << 18;  // Linux 7.3, needs RWP

// MARK: - Register modes and per-ioctl mode bits

static const uint64_t CUFFD_REGISTER_MODE_MISSING = 1ULL << 0;
static const uint64_t CUFFD_REGISTER_MODE_WP = 1ULL << 1;
static const uint64_t CUFFD_REGISTER_MODE_MINOR = 1ULL << 2;
static const uint64_t CUFFD_REGISTER_MODE_RWP = 1ULL << 3;

static const uint64_t CUFFD_COPY_MODE_DONTWAKE = 1ULL << 0;
static const uint64_t CUFFD_COPY_MODE_WP = 1ULL << 1;
static const uint64_t CUFFD_ZEROPAGE_MODE_DONTWAKE = 1ULL << 0;
static const uint64_t CUFFD_WRITEPROTECT_MODE_WP = 1ULL << 0;
static const uint64_t CUFFD_WRITEPROTECT_MODE_DONTWAKE = 1ULL << 1;
static const uint64_t CUFFD_CONTINUE_MODE_DONTWAKE = 1ULL << 0;
static const uint64_t CUFFD_CONTINUE_MODE_WP = 1ULL << 1;
static const uint64_t CUFFD_RWPROTECT_MODE_RWP = 1ULL << 0;
static const uint64_t CUFFD_RWPROTECT_MODE_DONTWAKE = 1ULL << 1;

// MARK: - Events and page-fault flags (struct uffd_msg)

static const uint8_t CUFFD_EVENT_PAGEFAULT = 0x12;
static const uint8_t CUFFD_EVENT_FORK = 0x13;
static const uint8_t CUFFD_EVENT_REMAP = 0x14;
static const uint8_t CUFFD_EVENT_REMOVE = 0x15;
static const uint8_t CUFFD_EVENT_UNMAP = 0x16;

static const uint64_t CUFFD_PAGEFAULT_FLAG_WRITE = 1ULL << 0;
static const uint64_t CUFFD_PAGEFAULT_FLAG_WP = 1ULL << 1;
static const uint64_t CUFFD_PAGEFAULT_FLAG_MINOR = 1ULL << 2;
static const uint64_t CUFFD_PAGEFAULT_FLAG_RWP = 1ULL << 3;

// MARK: - Ioctl numbers the 6.1 headers lack

struct cuffd_rwprotect { uint64_t start; uint64_t len; uint64_t mode; };
struct cuffd_set_mode { uint64_t enable; uint64_t disable; };
#define CUFFD_IOC_RWPROTECT _IOWR(UFFDIO, 0x09, struct cuffd_rwprotect)  /* 0xC018AA09 */
#define CUFFD_IOC_SET_MODE _IOW(UFFDIO, 0x0A, struct cuffd_set_mode)     /* 0x4010AA0A */
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

// PAGEMAP_SCAN (Linux 6.7, linux/fs.h)
struct cuffd_page_region { uint64_t start; uint64_t end; uint64_t categories; };
struct cuffd_pm_scan_arg {
    uint64_t size; uint64_t flags; uint64_t start; uint64_t end; uint64_t walk_end;
    uint64_t vec; uint64_t vec_len; uint64_t max_pages;
    uint64_t category_inverted; uint64_t category_mask; uint64_t category_anyof_mask; uint64_t return_mask;
};
#define CUFFD_IOC_PAGEMAP_SCAN _IOWR('f', 16, struct cuffd_pm_scan_arg)
static const uint64_t CUFFD_PM_SCAN_WP_MATCHING = 1ULL << 0;
static const uint64_t CUFFD_PM_SCAN_CHECK_WPASYNC = 1ULL << 1;
static const uint64_t CUFFD_PAGE_IS_WPALLOWED = 1ULL << 0;
static const uint64_t CUFFD_PAGE_IS_WRITTEN = 1ULL << 1;
static const uint64_t CUFFD_PAGE_IS_FILE = 1ULL << 2;
static const uint64_t CUFFD_PAGE_IS_PRESENT = 1ULL << 3;
static const uint64_t CUFFD_PAGE_IS_ACCESSED = 1ULL << 9;  // Linux 7.3, RWP ranges only

// MARK: - Opening a userfaultfd

/// How cuffd_open obtained the descriptor.
enum cuffd_open_how { CUFFD_OPEN_SYSCALL = 1, CUFFD_OPEN_DEVICE = 2 };

/// Opens a non-blocking, close-on-exec userfaultfd: the syscall first, then
/// /dev/userfaultfd. `user_mode_only` asks for UFFD_USER_MODE_ONLY (allowed
/// unprivileged, but then kernel accesses to missing pages fail with EFAULT).
/// Returns the fd, or -errno of the syscall attempt (EPERM) when both fail,
/// with *device_errno set to the device's errno (0 if it was not tried).
static inline int cuffd_open(int user_mode_only, int *how, int *device_errno) {
    int flags = O_CLOEXEC | O_NONBLOCK | (user_mode_only ? UFFD_USER_MODE_ONLY : 0);
    *device_errno = 0;
    int fd = (int)syscall(SYS_userfaultfd, flags);
    if (fd >= 0) { *how = CUFFD_OPEN_SYSCALL; return fd; }
    int syscall_errno = errno;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) { *device_errno = errno; return -syscall_errno; }
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    *device_errno = fd < 0 ? errno : 0;
    close(dev);
    if (fd < 0) return -syscall_errno;
    *how = CUFFD_OPEN_DEVICE;
    return fd;
}

// MARK: - The ioctls, one wrapper each (the corresponding kernel call is in the name)

static inline int cuffd_api(int fd, uint64_t features, uint64_t *out_features, uint64_t *out_ioctls) {
    struct uffdio_api api = { .api = UFFD_API, .features = features, .ioctls = 0 };
    if (ioctl(fd, UFFDIO_API, &api) != 0) return -errno;
    *out_features = api.features;
    *out_ioctls = api.ioctls;
    return 0;
}

static inline int cuffd_register(int fd, void *start, uint64_t len, uint64_t mode, uint64_t *out_ioctls) {
    struct uffdio_register reg = { .range = { .start = (uint64_t)(uintptr_t)start, .len = len }, .mode = mode };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) return -errno;
    *out_ioctls = reg.ioctls;
    return 0;
}

static inline int cuffd_unregister(int fd, void *start, uint64_t len) {
    struct uffdio_range range = { .start = (uint64_t)(uintptr_t)start, .len = len };
    return ioctl(fd, UFFDIO_UNREGISTER, &range) == 0 ? 0 : -errno;
}

static inline int cuffd_wake(int fd, void *start, uint64_t len) {
    struct uffdio_range range = { .start = (uint64_t)(uintptr_t)start, .len = len };
    return ioctl(fd, UFFDIO_WAKE, &range) == 0 ? 0 : -errno;
}

/// UFFDIO_COPY. *copied receives the bytes copied, also on a partial failure
/// (EEXIST after some pages: the kernel reports how far it got).
static inline int cuffd_copy(int fd, void *dst, const void *src, uint64_t len, uint64_t mode, int64_t *copied) {
    struct uffdio_copy c = { .dst = (uint64_t)(uintptr_t)dst, .src = (uint64_t)(uintptr_t)src, .len = len, .mode = mode, .copy = 0 };
    int rc = ioctl(fd, UFFDIO_COPY, &c) == 0 ? 0 : -errno;
    *copied = c.copy;
    return rc;
}

static inline int cuffd_zeropage(int fd, void *dst, uint64_t len, uint64_t mode, int64_t *zeroed) {
    struct uffdio_zeropage z = { .range = { .start = (uint64_t)(uintptr_t)dst, .len = len }, .mode = mode, .zeropage = 0 };
    int rc = ioctl(fd, UFFDIO_ZEROPAGE, &z) == 0 ? 0 : -errno;
    *zeroed = z.zeropage;
    return rc;
}

static inline int cuffd_continue(int fd, void *start, uint64_t len, uint64_t mode, int64_t *mapped) {
    struct uffdio_continue c = { .range = { .start = (uint64_t)(uintptr_t)start, .len = len }, .mode = mode, .mapped = 0 };
    int rc = ioctl(fd, UFFDIO_CONTINUE, &c) == 0 ? 0 : -errno;
    *mapped = c.mapped;
    return rc;
}

static inline int cuffd_writeprotect(int fd, void *start, uint64_t len, uint64_t mode) {
    struct uffdio_writeprotect wp = { .range = { .start = (uint64_t)(uintptr_t)start, .len = len }, .mode = mode };
    return ioctl(fd, UFFDIO_WRITEPROTECT, &wp) == 0 ? 0 : -errno;
}

static inline int cuffd_rwprotect(int fd, void *start, uint64_t len, uint64_t mode) {
    struct cuffd_rwprotect rw = { .start = (uint64_t)(uintptr_t)start, .len = len, .mode = mode };
    return ioctl(fd, CUFFD_IOC_RWPROTECT, &rw) == 0 ? 0 : -errno;
}

static inline int cuffd_set_mode(int fd, uint64_t enable, uint64_t disable) {
    struct cuffd_set_mode m = { .enable = enable, .disable = disable };
    return ioctl(fd, CUFFD_IOC_SET_MODE, &m) == 0 ? 0 : -errno;
}

/// PAGEMAP_SCAN on an open /proc/self/pagemap. Returns the number of regions
/// written to `vec`, or -errno. *walk_end receives where the walk stopped.
static inline int cuffd_pagemap_scan(int pagemap_fd, void *start, void *end, uint64_t flags,
                                     struct cuffd_page_region *vec, uint64_t vec_len, uint64_t max_pages,
                                     uint64_t category_mask, uint64_t return_mask, uint64_t *walk_end) {
    struct cuffd_pm_scan_arg a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a; a.flags = flags;
    a.start = (uint64_t)(uintptr_t)start; a.end = (uint64_t)(uintptr_t)end;
    a.vec = (uint64_t)(uintptr_t)vec; a.vec_len = vec_len; a.max_pages = max_pages;
    a.category_mask = category_mask; a.return_mask = return_mask;
    int rc = ioctl(pagemap_fd, CUFFD_IOC_PAGEMAP_SCAN, &a);
    *walk_end = a.walk_end;
    return rc < 0 ? -errno : rc;
}

// MARK: - Reading fault messages

/// Reads up to `max` messages in one read(2). Returns the count, 0 when none
/// is pending (EAGAIN), or -errno.
static inline int cuffd_read_msgs(int fd, struct uffd_msg *msgs, int max) {
    ssize_t n = read(fd, msgs, sizeof(struct uffd_msg) * (size_t)max);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    return (int)(n / (ssize_t)sizeof(struct uffd_msg));
}

/// 1 when a message waits to be read (poll with no timeout), 0 when none, or -errno.
static inline int cuffd_has_msgs(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
    int n = poll(&p, 1, 0);
    return n < 0 ? -errno : n;
}

static inline uint8_t cuffd_msg_event(const struct uffd_msg *m) { return m->event; }
static inline uint64_t cuffd_msg_fault_address(const struct uffd_msg *m) { return m->arg.pagefault.address; }
static inline uint64_t cuffd_msg_fault_flags(const struct uffd_msg *m) { return m->arg.pagefault.flags; }
static inline uint32_t cuffd_msg_fault_tid(const struct uffd_msg *m) { return m->arg.pagefault.feat.ptid; }
static inline uint64_t cuffd_msg_remove_start(const struct uffd_msg *m) { return m->arg.remove.start; }
static inline uint64_t cuffd_msg_remove_end(const struct uffd_msg *m) { return m->arg.remove.end; }

// MARK: - Memory and thread helpers glibc's Swift module does not export

static inline int cuffd_memfd_create(const char *name, unsigned int flags) {
    int fd = (int)syscall(SYS_memfd_create, name, flags);
    return fd < 0 ? -errno : fd;
}
static const unsigned int CUFFD_MFD_CLOEXEC = 0x0001U;

/// Drops a range of a memfd's pages (contents gone): fallocate(PUNCH_HOLE | KEEP_SIZE).
static inline int cuffd_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, 0x02 /* FALLOC_FL_PUNCH_HOLE */ | 0x01 /* FALLOC_FL_KEEP_SIZE */, offset, length) == 0 ? 0 : -errno;
}

static inline int cuffd_gettid(void) { return (int)syscall(SYS_gettid); }
/// EEVDF's custom slice (Linux 6.12+): a SCHED_OTHER thread asking for a short slice gets
/// an earlier virtual deadline, so it preempts a running thread when it wakes. Returns 0 or -errno.
static inline int cuffd_set_slice(uint64_t nanos) {
    struct {
        uint32_t size, sched_policy; uint64_t sched_flags; int32_t sched_nice; uint32_t sched_priority;
        uint64_t sched_runtime, sched_deadline, sched_period; uint32_t sched_util_min, sched_util_max;
    } attr = {0};
    attr.size = sizeof(attr);
    attr.sched_policy = 0;  // SCHED_OTHER
    attr.sched_runtime = nanos;
    return syscall(SYS_sched_setattr, 0, &attr, 0) == 0 ? 0 : -errno;
}
// SCHED_IDLE needs _GNU_SOURCE in glibc's headers, which Swift does not define.
static const int cuffd_sched_idle = 5;
/// Names the calling thread for the kernel (`comm`, 15 bytes kept): prctl is variadic
/// and pthread_setname_np needs _GNU_SOURCE, neither reachable from Swift. 0 or -errno.
static inline int cuffd_name_thread(const char *name) {
    return prctl(15 /* PR_SET_NAME */, (unsigned long)name, 0UL, 0UL, 0UL) == 0 ? 0 : -errno;
}

// A pipe whose ends close on exec, created atomically (pipe2 needs _GNU_SOURCE,
// which Swift's Glibc module does not define): a child spawned by another thread
// meanwhile must not inherit it, or its reader never sees the end.
static inline int cuffd_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno;
}

#include "cuffd_gate.h"

#endif
