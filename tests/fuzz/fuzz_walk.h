/*
 * Helpers shared by the libFuzzer targets. Each target is built from its
 * own .c file alone, so everything here is a static inline function: a
 * target includes this header and uses only what it needs.
 *
 * The walk helpers serve the targets that drive the container, e-mail and
 * embedded-object walkers (fuzz_container.c, fuzz_mime.c, fuzz_embedded.c);
 * the range helpers serve the executable-layout targets (fuzz_pe.c,
 * fuzz_elf.c), which check that every range a parser reports lies inside
 * the input.
 */
#ifndef KHIEN_FUZZ_WALK_H
#define KHIEN_FUZZ_WALK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "container.h"
#include "exe.h"

/* The state a recursive walk callback carries: the limits and running total
 * of the outermost walk (both owned by LLVMFuzzerTestOneInput) and how many
 * walks deep the callback currently is. */
struct fuzz_ctx {
    const struct khx_walk_limits *lim;
    uint64_t *total;
    int depth;
};

static inline uint64_t fuzz_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Small walk limits, so that a single input cannot run for long or allocate
 * much; the two-second deadline starts now. */
static inline struct khx_walk_limits fuzz_walk_limits(uint32_t max_members)
{
    struct khx_walk_limits lim = {
        .max_member_size = 1u << 20,
        .max_total = 4u << 20,
        .max_members = max_members,
        .max_ratio = 50,
        .deadline_ms = fuzz_now_ms() + 2000,
    };
    return lim;
}

/* Touches a string a walker handed over, so that a dangling or unterminated
 * pointer is noticed by the sanitizers. */
static inline void fuzz_touch_str(const char *s)
{
    if (strlen(s) == (size_t)-1)
        abort();
}

/* Reads every byte of a member, so that a bad length is noticed. */
static inline void fuzz_touch_bytes(const uint8_t *data, size_t len)
{
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++)
        sink ^= data[i];
    (void)sink;
}

/* An issue callback that only checks the strings it is given. */
static inline void fuzz_on_issue(void *ud, const char *name, int issue, const char *detail)
{
    (void)ud;
    (void)issue;
    fuzz_touch_str(name);
    fuzz_touch_str(detail);
}

/* Reads every byte of buf[off, off + n) and traps when the range does not
 * lie inside buf; the sum keeps the reads alive. */
static inline unsigned fuzz_touch_range(const uint8_t *buf, size_t len, uint64_t off, uint64_t n)
{
    unsigned sum = 0;
    if (off > len || n > len - off)
        __builtin_trap();
    for (uint64_t i = 0; i < n; i++)
        sum += buf[off + i];
    return sum;
}

/* Touches the ranges every executable layout reports: each non-empty
 * section's raw data and, when valid, the entry point's byte. */
static inline unsigned fuzz_touch_exe(const uint8_t *buf, size_t len, const struct khx_exe *exe)
{
    unsigned sum = 0;
    for (uint32_t i = 0; i < exe->nsections; i++)
        if (exe->sections[i].raw_size)
            sum += fuzz_touch_range(buf, len, exe->sections[i].raw_off, exe->sections[i].raw_size);
    if (exe->ep_valid)
        sum += fuzz_touch_range(buf, len, exe->ep, 1);
    return sum;
}

#endif
