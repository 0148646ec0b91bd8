/*
 * libFuzzer target for lib/engine/bodysig.c. The first input byte picks the
 * ldb modifiers (low four bits) and whether the rest is a hex pattern or a
 * raw matcher program (bit 4, as a hostile .kdb would hold one). For a
 * pattern, the bytes up to the first newline are the pattern, and also an
 * offset field; the rest is the data searched. A raw program is preceded by
 * its length (two bytes, little-endian) and followed by the data. Besides memory errors, the target
 * aborts when a result breaks the module's contract: a compiled program that does not verify, or a
 * match outside the window or of an impossible length.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bodysig.h"
#include "khx.h"

static void check_find(const uint8_t *prog, size_t prog_len, const uint8_t *data, size_t len,
                       uint64_t lo, uint64_t hi, uint64_t end_max, uint32_t minlen, uint32_t maxlen)
{
    size_t s = 0, e = 0, s2 = 0, e2 = 0;
    int f = khx_body_find(prog, prog_len, data, len, lo, hi, end_max, &s, &e);
    if (f != 1)
        return;
    if (s < lo || s > hi || e > end_max || e > len || s > e || e - s < minlen ||
        (maxlen != UINT32_MAX && e - s > maxlen))
        abort();
    /* The match found must be found again from its own start. */
    if (khx_body_find(prog, prog_len, data, len, s, s, e, &s2, &e2) != 1 || s2 != s || e2 != e)
        abort();
}

static void windows(const uint8_t *prog, size_t prog_len, const uint8_t *data, size_t len,
                    uint32_t minlen, uint32_t maxlen)
{
    check_find(prog, prog_len, data, len, 0, len, len, minlen, maxlen);
    if (len >= 4) {
        uint64_t lo = data[0] % (len + 1), hi = lo + data[1] % (len + 1 - lo);
        uint64_t em = data[2] % (len + 2);
        check_find(prog, prog_len, data, len, lo, hi, em, minlen, maxlen);
        check_find(prog, prog_len, data, len, hi, hi, len, minlen, maxlen);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    char err[256];
    if (size < 1)
        return 0;
    unsigned mods = in[0] & 15u;
    int raw_prog = (in[0] & 16u) != 0;
    const uint8_t *rest = in + 1;
    size_t rlen = size - 1;
    const uint8_t *nl = memchr(rest, '\n', rlen);
    size_t plen = nl ? (size_t)(nl - rest) : rlen;
    const uint8_t *data = nl ? nl + 1 : rest + rlen;
    size_t dlen = rlen - plen - (nl ? 1 : 0);

    /* The same bytes as an offset field, resolved against a small layout. */
    struct khx_offset off;
    if (khx_offset_parse((const char *)rest, plen, &off, err, sizeof(err)) == 0) {
        static struct khx_section secs[2] = {{.raw_off = 4, .raw_size = 8},
                                             {.raw_off = 12, .raw_size = 100}};
        struct khx_exe exe = {
            .type = KHX_EXE_PE32, .ep_valid = 1, .ep = 6, .nsections = 2, .sections = secs};
        struct khx_layout l = {dlen, &exe};
        uint64_t lo, hi, em;
        if (khx_offset_resolve(&off, &l, &lo, &hi, &em) == 0 && (lo > hi || hi > dlen || em > dlen))
            abort();
    }

    if (raw_prog) {
        /* A program may hold newlines: here two length bytes come first. */
        if (rlen < 2)
            return 0;
        plen = (size_t)rest[0] | (size_t)rest[1] << 8;
        rest += 2;
        rlen -= 2;
        if (plen > rlen)
            plen = rlen;
        data = rest + plen;
        dlen = rlen - plen;
        if (khx_body_prog_check(rest, plen) == 0) {
            /* The header is little-endian: minlen at 8, maxlen at 12. */
            uint32_t minlen = (uint32_t)rest[8] | (uint32_t)rest[9] << 8 |
                              (uint32_t)rest[10] << 16 | (uint32_t)rest[11] << 24;
            uint32_t maxlen = (uint32_t)rest[12] | (uint32_t)rest[13] << 8 |
                              (uint32_t)rest[14] << 16 | (uint32_t)rest[15] << 24;
            windows(rest, plen, data, dlen, minlen, maxlen);
        }
        return 0;
    }

    struct khx_body b;
    int r = khx_body_parse((const char *)rest, plen, mods, &b, err, sizeof(err));
    if (r != 0) {
        if (err[0] == '\0')
            abort(); /* every rejection must say why */
        return 0;
    }
    if (b.regex == NULL || b.regex[0] == '\0' || khx_body_prog_check(b.prog, b.prog_len) != 0 ||
        b.minlen > b.maxlen)
        abort();
    windows(b.prog, b.prog_len, data, dlen, b.minlen, b.maxlen);
    khx_body_clear(&b);
    return 0;
}
