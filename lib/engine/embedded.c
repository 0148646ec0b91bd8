/*
 * Objects embedded in other objects.
 *
 * Droppers carry their payload as a second executable inside their own file
 * (in a resource or an overlay), and archives are hidden by appending them
 * to, or inserting them into, a picture or a document. khx_embedded_walk()
 * looks through an object that is not itself a container for the start of
 * a PE image or of a zip, cab, 7z or rar archive at a non-zero offset,
 * checks that what follows really is one (a signature alone is too common
 * in compressed data), and hands each one found to the caller as a member,
 * which the scanner then types and, for archives, walks like any other
 * container.
 *
 * Where an object's end can be read from its own headers (a PE's section
 * table, a cab's cabinet size, a 7z's next-header position, a zip's end of
 * central directory record) the member stops there, and the search resumes
 * after it, so that whatever sits inside an object already delivered is not
 * delivered a second time at this level (the scanner finds it when it scans
 * that member). A rar runs to the end of the buffer.
 *
 * Bounds: at most MAX_FOUND objects per call, the walk limits of
 * container.h (members, member size, total bytes, deadline), and every
 * header read is checked against the buffer's end. Signature checks are not
 * capped: each costs a few header reads, and a cap would mark every large
 * binary "not fully scanned".
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "container.h"
#include "khx.h"

/* Embedded objects delivered per call. */
#define MAX_FOUND 64
/* Signature occurrences examined per call; past this the rest of the
 * buffer is not searched (and an issue says so). */
/* How often (in probes) the deadline is checked. */
#define DEADLINE_EVERY 1024
/* A PE header must start within this many bytes of its "MZ". */
#define MAX_LFANEW 0x10000
/* PE section count limit (the loader's own limit is 96). */
#define MAX_SECTIONS 96

enum kind { EMB_NONE, EMB_PE, EMB_ZIP, EMB_CAB, EMB_7Z, EMB_RAR };

static const char *const kind_names[] = {"", "pe", "zip", "cab", "7z", "rar"};

struct embed {
    const struct khx_walk_limits *lim;
    const struct khx_walk_cb *cb;
    uint64_t *total_used;
    uint32_t members;
    int stop;
    int rc;
};

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void issue(struct embed *m, const char *name, int what, const char *detail)
{
    if (m->cb->issue != NULL)
        m->cb->issue(m->cb->ud, name, what, detail);
}

/* The size of the PE image starting at p[0..n): the furthest end of its
 * headers and of any section's raw data, bounded by n. Returns 0 if p does
 * not hold a plausible PE header and section table. */
static size_t pe_extent(const uint8_t *p, size_t n)
{
    if (n < 0x40 || p[0] != 'M' || p[1] != 'Z')
        return 0;
    uint32_t lfanew = le32(p + 0x3C);
    if (lfanew < 0x40 || lfanew > MAX_LFANEW || lfanew > n || n - lfanew < 24)
        return 0;
    const uint8_t *pe = p + lfanew;
    if (memcmp(pe, "PE\0\0", 4) != 0)
        return 0;
    uint16_t nsect = le16(pe + 6), optsize = le16(pe + 20);
    if (nsect == 0 || nsect > MAX_SECTIONS)
        return 0;
    size_t table = (size_t)lfanew + 24 + optsize;
    if (table > n || (n - table) / 40 < nsect)
        return 0;
    /* SizeOfHeaders sits at offset 60 of both optional header forms. */
    size_t end = table + (size_t)nsect * 40;
    if (optsize >= 64) {
        uint32_t hdrs = le32(pe + 24 + 60);
        if (hdrs > end)
            end = hdrs;
    }
    for (uint16_t i = 0; i < nsect; i++) {
        const uint8_t *s = p + table + (size_t)i * 40;
        uint64_t raw_size = le32(s + 16), raw_ptr = le32(s + 20);
        if (raw_size == 0)
            continue;
        uint64_t e = raw_ptr + raw_size;
        if (e > end)
            end = (size_t)KHX_MIN(e, (uint64_t)n);
    }
    return KHX_MIN(end, n);
}

/* A zip local file header at p[0..n): plausible version, a name of sane
 * length, the header inside the buffer. Returns the member's extent: up to
 * the end of the first end-of-central-directory record after it (with its
 * comment), else to the end of the buffer; 0 if not a header. */
static size_t zip_extent(const uint8_t *p, size_t n)
{
    if (n < 30 || memcmp(p, "PK\3\4", 4) != 0 || p[4] > 100 || p[5] > 20)
        return 0;
    uint16_t method = le16(p + 8), name_len = le16(p + 26), extra_len = le16(p + 28);
    if (name_len == 0 || name_len > 1024 || (size_t)30 + name_len + extra_len > n)
        return 0;
    if (method > 20 && method != 93 && method != 95 && method != 96 && method != 97 &&
        method != 98 && method != 99)
        return 0;
    for (size_t i = 30; i + 22 <= n;) {
        const uint8_t *e = memmem(p + i, n - i, "PK\5\6", 4);
        if (e == NULL)
            break;
        size_t at = (size_t)(e - p);
        if (n - at >= 22) {
            size_t end = at + 22 + le16(e + 20);
            return KHX_MIN(end, n);
        }
        i = at + 1;
    }
    return n;
}

/* A cabinet header: signature, reserved zero, cabinet size that fits,
 * version 1.3, file table inside the cabinet. */
static size_t cab_extent(const uint8_t *p, size_t n)
{
    if (n < 36 || memcmp(p, "MSCF\0\0\0\0", 8) != 0)
        return 0;
    uint32_t size = le32(p + 8), files = le32(p + 16);
    if (size < 36 || size > n || files >= size || p[24] != 3 || p[25] != 1)
        return 0;
    return size;
}

/* A 7z signature header: major version 0; the next header's offset and
 * size give the archive's end when they fit. */
static size_t sevenzip_extent(const uint8_t *p, size_t n)
{
    if (n < 32 || memcmp(p, "7z\xBC\xAF\x27\x1C", 6) != 0 || p[6] != 0)
        return 0;
    uint64_t off = le64(p + 12), size = le64(p + 20);
    if (off > n || size > n || 32 + off + size > n || size == 0)
        return n;
    return (size_t)(32 + off + size);
}

static size_t rar_extent(const uint8_t *p, size_t n)
{
    if (n >= 7 && memcmp(p, "Rar!\x1A\x07\x00", 7) == 0)
        return n;
    if (n >= 8 && memcmp(p, "Rar!\x1A\x07\x01\x00", 8) == 0)
        return n;
    return 0;
}

/* What starts at p[0..n), and how long it is. */
static enum kind probe(const uint8_t *p, size_t n, size_t *extent)
{
    switch (p[0]) {
    case 'M':
        if ((*extent = pe_extent(p, n)) != 0)
            return EMB_PE;
        if ((*extent = cab_extent(p, n)) != 0)
            return EMB_CAB;
        return EMB_NONE;
    case 'P':
        *extent = zip_extent(p, n);
        return *extent ? EMB_ZIP : EMB_NONE;
    case '7':
        *extent = sevenzip_extent(p, n);
        return *extent ? EMB_7Z : EMB_NONE;
    case 'R':
        *extent = rar_extent(p, n);
        return *extent ? EMB_RAR : EMB_NONE;
    default:
        return EMB_NONE;
    }
}

/* Whether byte c can start a signature we look for. */
static int first_byte(uint8_t c)
{
    return c == 'M' || c == 'P' || c == '7' || c == 'R';
}

static void deliver(struct embed *m, enum kind k, size_t off, const uint8_t *data, size_t n)
{
    char name[64];
    snprintf(name, sizeof(name), "embedded-%s@0x%zx", kind_names[k], off);
    const struct khx_walk_limits *lim = m->lim;
    if (lim->deadline_ms != 0 && now_ms() >= lim->deadline_ms) {
        issue(m, "", KHX_WALK_MAX_TIME, "deadline passed while searching embedded objects");
        m->stop = 1;
        return;
    }
    switch (khx_walk_admit(lim, &m->members, m->total_used, n)) {
    case 0:
        break;
    case KHX_WALK_MAX_FILES:
        issue(m, "", KHX_WALK_MAX_FILES, "more embedded objects than the member limit");
        m->stop = 1;
        return;
    case KHX_WALK_MAX_FILESIZE:
        issue(m, name, KHX_WALK_MAX_FILESIZE, "embedded object is larger than the member limit");
        return;
    default:
        issue(m, name, KHX_WALK_MAX_SCANSIZE, "scan budget used up");
        m->stop = 1;
        return;
    }
    int rc = m->cb->member(m->cb->ud, name, data, n);
    if (rc != 0) {
        m->rc = rc;
        m->stop = 1;
    }
}

const struct khx_magic khx_embedded_magics[] = {
    {"MZ", 2}, {"MSCF", 4}, {"PK\3\4", 4}, {"7z\xBC\xAF\x27\x1C", 6}, {"Rar!\x1A\x07", 6},
};
const size_t khx_embedded_nmagics = sizeof(khx_embedded_magics) / sizeof(khx_embedded_magics[0]);

/* The search itself, over either every offset (cand == NULL) or the sorted
 * candidate offsets a caller found (the scanner gets them from its Hyperscan
 * pass at no extra cost). */
static int walk(const uint8_t *buf, size_t len, enum khx_ftype t, int listed, const uint64_t *cand,
                size_t ncand, const struct khx_walk_limits *lim, uint64_t *total_used,
                const struct khx_walk_cb *cb)
{
    if (lim == NULL || total_used == NULL || cb == NULL || cb->member == NULL ||
        (buf == NULL && len > 0) || (cand == NULL && ncand > 0))
        return KH_EINVAL;
    /* A container's members are the container walk's business; searching
     * its (compressed) bytes as well would deliver them twice. */
    if (khx_ftype_is_container(t) || len < 2)
        return 0;
    struct embed m = {.lim = lim, .cb = cb, .total_used = total_used};
    size_t found = 0, probes = 0, next = 1; /* offset 0 is the object itself */
    for (size_t i = 0; !m.stop; i++) {
        size_t off;
        if (listed) {
            if (i >= ncand)
                break;
            if (cand[i] < next || cand[i] >= len)
                continue;
            off = (size_t)cand[i];
        } else {
            off = next; /* every offset, from just past the last object */
            if (off >= len)
                break;
            next = off + 1;
            if (!first_byte(buf[off]))
                continue;
        }
        /* Each probe is a few header checks, so there is no cap on their
         * number (a cap would mark every large binary "not fully scanned");
         * the deadline bounds the search instead. */
        if (lim->deadline_ms != 0 && ++probes % DEADLINE_EVERY == 0 &&
            now_ms() >= lim->deadline_ms) {
            issue(&m, "", KHX_WALK_MAX_TIME, "deadline passed while searching embedded objects");
            break;
        }
        size_t extent = 0;
        enum kind k = probe(buf + off, len - off, &extent);
        if (k == EMB_NONE)
            continue;
        if (found++ >= MAX_FOUND) {
            issue(&m, "", KHX_WALK_MAX_FILES, "more than 64 embedded objects; rest not scanned");
            break;
        }
        deliver(&m, k, off, buf + off, extent);
        /* Resume after the object: what it holds is found when it is
         * scanned itself. */
        next = off + extent;
    }
    return m.rc;
}

int khx_embedded_walk(const uint8_t *buf, size_t len, enum khx_ftype t,
                      const struct khx_walk_limits *lim, uint64_t *total_used,
                      const struct khx_walk_cb *cb)
{
    return walk(buf, len, t, 0, NULL, 0, lim, total_used, cb);
}

int khx_embedded_walk_at(const uint8_t *buf, size_t len, enum khx_ftype t, const uint64_t *cand,
                         size_t ncand, const struct khx_walk_limits *lim, uint64_t *total_used,
                         const struct khx_walk_cb *cb)
{
    /* An empty list means no candidates, not "search everywhere". */
    return walk(buf, len, t, 1, cand, ncand, lim, total_used, cb);
}
