/*
 * Container unpacking over libarchive.
 *
 * khx_container_walk() opens a container held in memory, extracts its
 * members one at a time into a bounded heap buffer and hands each to the
 * caller, who scans it (and, if it is a container itself, walks it in turn:
 * recursion depth is the caller's business). Everything that stops a member
 * or the whole container from being scanned is reported through the issue
 * callback, never skipped silently: encryption, damage, and each of the scan
 * limits.
 *
 * Only the reader for the detected type is registered, never libarchive's
 * "all" sets. Two of the readers those sets bring in are unsafe for hostile
 * input: the mtree reader opens the files an mtree listing names on the local
 * disk, and several filters (lrzip, grzip, lzop without liblzo2) run an
 * external program. Registering one reader also keeps each layer of a nested
 * file a separate walk (a .tar.gz is a gzip stream holding a tar), which is
 * what ClamAV's Container and Intermediates checks expect.
 */
#include "container.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "khx.h"

/* Bytes asked of libarchive per read; also how often the deadline is checked. */
#define CHUNK_SIZE (64 * 1024)
/* Compression ratios are judged only past this much output, so that a small,
 * very repetitive file (a few KiB of spaces in a 40-byte gzip) is not called
 * a bomb. */
#define RATIO_FLOOR (1024 * 1024)
/* No member is buffered past this size, even when max_member_size is 0. */
#define MEMBER_HARD_MAX ((uint64_t)2 << 30)
/* The first allocation for a member whose header states its size; larger
 * members grow from there as data actually arrives, so a header that lies
 * about its size cannot make us reserve memory. */
#define INITIAL_RESERVE_MAX (16u << 20)
/* Consecutive unreadable headers tolerated before the container is given up. */
#define MAX_HEADER_FAILURES 8
/* Encrypted RAR 5 member names remembered by rar5_scan(). */
#define RAR5_MAX_ENCRYPTED 256

/* What rar5_scan() found in a RAR 5 archive's block headers. */
struct rar5_crypt {
    int headers_encrypted; /* an archive encryption header: nothing is readable */
    size_t n;
    char *names[RAR5_MAX_ENCRYPTED];
};

struct walk {
    struct archive *a;
    const struct khx_walk_limits *lim;
    const struct khx_walk_cb *cb;
    uint64_t *total_used;
    enum khx_ftype t;
    size_t len;        /* the container's size in bytes */
    int stream;        /* gzip, bzip2, xz, zstd, lzma: one member, no name */
    uint64_t inflated; /* bytes decompressed from this container, kept or not */
    uint32_t members;  /* file members seen */
    int stop;          /* an issue ended the walk */
    locale_t saved;    /* the caller's locale, while ours is in force */
    uint8_t *data;     /* the member being extracted (reused) */
    size_t cap;
    uint8_t *chunk; /* CHUNK_SIZE bytes */
    struct rar5_crypt rar5;
};

/* libarchive converts member names through the thread's locale; in the "C"
 * locale a name it cannot turn into ASCII makes some readers (LHA) give up on
 * the whole archive. A UTF-8 locale for the calling thread only, set with
 * uselocale() around libarchive calls, avoids that without touching the
 * process-wide locale. */
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale = (locale_t)0;

static void utf8_locale_init(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static void locale_enter(struct walk *w)
{
    if (utf8_locale != (locale_t)0)
        w->saved = uselocale(utf8_locale);
}

static void locale_leave(struct walk *w)
{
    if (utf8_locale != (locale_t)0 && w->saved != (locale_t)0)
        uselocale(w->saved);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int deadline_passed(const struct walk *w)
{
    return w->lim->deadline_ms != 0 && now_ms() >= w->lim->deadline_ms;
}

static void report(struct walk *w, const char *name, int issue, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(struct walk *w, const char *name, int issue, const char *fmt, ...)
{
    if (w->cb->issue == NULL)
        return;
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    w->cb->issue(w->cb->ud, name ? name : "", issue, detail);
}

static const char *archive_message(struct archive *a)
{
    const char *s = archive_error_string(a);
    return s ? s : "unknown error";
}

/* libarchive has no error code for "encrypted": its readers say so in the
 * message ("Passphrase required for this entry", "The archive header is
 * encrypted, but currently not supported", "RAR encryption support
 * unavailable"). Everything else that fails is damage, or a compression
 * method libarchive does not implement, which we also report as damage
 * because the member could not be scanned. */
static int classify_failure(struct archive *a)
{
    const char *s = archive_error_string(a);
    if (s != NULL &&
        (strcasestr(s, "encrypt") || strcasestr(s, "passphrase") || strcasestr(s, "password")))
        return KHX_WALK_ENCRYPTED;
    return KHX_WALK_CORRUPT;
}

/* ------------------------------------------------------------------------ */
/* RAR 5 encryption                                                          */
/* ------------------------------------------------------------------------ */

/* libarchive 3.6 reads a RAR 5 file header's encryption record without
 * acting on it: an encrypted stored member comes out as its ciphertext, a
 * compressed one as a decoding error. So for RAR 5 we walk the block headers
 * ourselves first (signature, then blocks of CRC32, vint header size, vint
 * type, vint flags, optional extra-area and data sizes) and note which file
 * headers carry an encryption record (extra record type 1), or whether the
 * archive starts with an archive encryption header (type 4). Only sizes are
 * followed; nothing is decoded, and every read is checked against the end. */

/* Reads a RAR 5 vint (7 bits per byte, low first, at most 10 bytes) from
 * p[*i..end). Returns 0, or -1 if it runs past `end` or is too long. */
static int rar5_vint(const uint8_t *p, size_t end, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= end)
            return -1;
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* Parses the file header fields in p[i..end) up to the name, and the extra
 * area p[extra..end); returns 1 if it holds an encryption record, with the
 * name in *name / *name_len. Returns 0 otherwise or when malformed. */
static int rar5_file_encrypted(const uint8_t *p, size_t i, size_t end, size_t extra,
                               const uint8_t **name, size_t *name_len)
{
    uint64_t file_flags, v, nlen;
    if (rar5_vint(p, end, &i, &file_flags) || rar5_vint(p, end, &i, &v) /* unpacked size */ ||
        rar5_vint(p, end, &i, &v) /* attributes */)
        return 0;
    if (file_flags & 0x0002)
        i += 4; /* mtime */
    if (file_flags & 0x0004)
        i += 4; /* data CRC32 */
    if (i > end || rar5_vint(p, end, &i, &v) /* compression */ ||
        rar5_vint(p, end, &i, &v) /* host OS */ || rar5_vint(p, end, &i, &nlen) || nlen > end - i)
        return 0;
    *name = p + i;
    *name_len = (size_t)nlen;
    while (extra < end) {
        uint64_t rec_size, rec_type;
        if (rar5_vint(p, end, &extra, &rec_size) || rec_size == 0 || rec_size > end - extra)
            return 0;
        size_t next = extra + (size_t)rec_size;
        if (rar5_vint(p, next, &extra, &rec_type))
            return 0;
        if (rec_type == 1)
            return 1;
        extra = next;
    }
    return 0;
}

/* Fills w->rar5 for a RAR 5 archive in buf[0..len). Returns 0 or KH_ENOMEM. */
static int rar5_scan(struct walk *w, const uint8_t *buf, size_t len)
{
    static const uint8_t sig[8] = {'R', 'a', 'r', '!', 0x1A, 0x07, 0x01, 0x00};
    if (len < sizeof(sig) || memcmp(buf, sig, sizeof(sig)) != 0)
        return 0;
    size_t pos = sizeof(sig);
    /* Each block is at least 7 bytes, so this bounds the loop too. */
    while (pos < len && len - pos >= 7) {
        size_t i = pos + 4; /* past the CRC32 */
        uint64_t hsize, type, flags, extra_size = 0, data_size = 0;
        if (rar5_vint(buf, len, &i, &hsize) || hsize == 0 || hsize > len - i)
            break;
        size_t end = i + (size_t)hsize;
        if (rar5_vint(buf, end, &i, &type) || rar5_vint(buf, end, &i, &flags))
            break;
        if ((flags & 0x0001) && rar5_vint(buf, end, &i, &extra_size))
            break;
        if ((flags & 0x0002) && rar5_vint(buf, end, &i, &data_size))
            break;
        if (extra_size > end - i)
            break;
        if (type == 4) {
            w->rar5.headers_encrypted = 1;
            break;
        }
        const uint8_t *name;
        size_t name_len;
        if (type == 2 && w->rar5.n < RAR5_MAX_ENCRYPTED &&
            rar5_file_encrypted(buf, i, end, end - (size_t)extra_size, &name, &name_len)) {
            char *copy = khx_strndup((const char *)name, name_len);
            if (copy == NULL)
                return KH_ENOMEM;
            w->rar5.names[w->rar5.n++] = copy;
        }
        if (type == 5 || data_size > len - end)
            break;
        pos = end + (size_t)data_size;
    }
    return 0;
}

static int rar5_is_encrypted(const struct walk *w, const char *name)
{
    for (size_t i = 0; i < w->rar5.n; i++)
        if (strcmp(w->rar5.names[i], name) == 0)
            return 1;
    return 0;
}

static void rar5_free(struct walk *w)
{
    for (size_t i = 0; i < w->rar5.n; i++)
        free(w->rar5.names[i]);
    w->rar5.n = 0;
}

/* Registers the one reader for type t. For single-stream types the raw
 * format is used with the matching decompressor, and *filter is set to the
 * filter code that must be in force after opening. Returns 0, or -1 if this
 * libarchive cannot read the type in-process. */
static int register_reader(struct archive *a, enum khx_ftype t, int *filter)
{
    int r;
    *filter = -1;
    switch (t) {
    case KHX_FT_ZIP:
        r = archive_read_support_format_zip(a);
        break;
    case KHX_FT_7Z:
        r = archive_read_support_format_7zip(a);
        break;
    case KHX_FT_RAR:
        r = archive_read_support_format_rar(a);
        if (r == ARCHIVE_OK)
            r = archive_read_support_format_rar5(a);
        break;
    case KHX_FT_TAR:
        r = archive_read_support_format_tar(a);
        break;
    case KHX_FT_CAB:
        r = archive_read_support_format_cab(a);
        break;
    case KHX_FT_ISO:
        r = archive_read_support_format_iso9660(a);
        break;
    case KHX_FT_CPIO:
        r = archive_read_support_format_cpio(a);
        break;
    case KHX_FT_LHA:
        r = archive_read_support_format_lha(a);
        /* LHA names carry no charset; most non-ASCII ones are Shift-JIS
         * (CP932), and UTF-8 archives say so in an extended header. */
        if (r == ARCHIVE_OK)
            archive_read_set_format_option(a, "lha", "hdrcharset", "CP932");
        break;
    case KHX_FT_AR:
        r = archive_read_support_format_ar(a);
        break;
    case KHX_FT_GZ:
        r = archive_read_support_filter_gzip(a);
        *filter = ARCHIVE_FILTER_GZIP;
        break;
    case KHX_FT_BZ2:
        r = archive_read_support_filter_bzip2(a);
        *filter = ARCHIVE_FILTER_BZIP2;
        break;
    case KHX_FT_XZ:
        r = archive_read_support_filter_xz(a);
        *filter = ARCHIVE_FILTER_XZ;
        break;
    case KHX_FT_ZSTD:
        r = archive_read_support_filter_zstd(a);
        *filter = ARCHIVE_FILTER_ZSTD;
        break;
    case KHX_FT_LZMA:
        r = archive_read_support_filter_lzma(a);
        *filter = ARCHIVE_FILTER_LZMA;
        break;
    default:
        return -1;
    }
    /* ARCHIVE_WARN from a filter means "an external program will be used":
     * we refuse that rather than run a program on hostile bytes. */
    if (r != ARCHIVE_OK)
        return -1;
    if (*filter >= 0 && archive_read_support_format_raw(a) != ARCHIVE_OK)
        return -1;
    return 0;
}

/* An upper bound on the compressed bytes behind the current member, for the
 * ratio check. In formats that store each member's data right after its
 * header, that is everything from the header to the end of the container.
 * In the others (7z and cab pack members into shared blocks, ISO places
 * them anywhere) and in single streams it is the whole container. An upper
 * bound keeps the check from ever calling an honest member a bomb. */
static uint64_t compressed_share(const struct walk *w)
{
    switch (w->t) {
    case KHX_FT_ZIP:
    case KHX_FT_RAR:
    case KHX_FT_TAR:
    case KHX_FT_CPIO:
    case KHX_FT_LHA:
    case KHX_FT_AR: {
        int64_t pos = archive_read_header_position(w->a);
        if (pos >= 0 && (uint64_t)pos < w->len)
            return w->len - (uint64_t)pos;
        return w->len;
    }
    default:
        return w->len;
    }
}

/* True if `out` bytes from `in` compressed bytes is past the ratio limit. */
static int over_ratio(const struct walk *w, uint64_t out, uint64_t in)
{
    uint32_t ratio = w->lim->max_ratio;
    if (ratio == 0 || out <= RATIO_FLOOR)
        return 0;
    if (in == 0)
        in = 1;
    if (in > UINT64_MAX / ratio)
        return 0;
    return out > in * ratio;
}

/* Makes room for `need` bytes in the member buffer, doubling. */
static int reserve(struct walk *w, size_t need)
{
    if (need <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : CHUNK_SIZE;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(w->data, cap);
    if (p == NULL)
        return KH_ENOMEM;
    w->data = p;
    w->cap = cap;
    return 0;
}

static int is_stream_type(enum khx_ftype t)
{
    return t == KHX_FT_GZ || t == KHX_FT_BZ2 || t == KHX_FT_XZ || t == KHX_FT_ZSTD ||
           t == KHX_FT_LZMA;
}

static const char *member_name(struct walk *w, struct archive_entry *e)
{
    if (w->stream)
        return "";
    const char *name = archive_entry_pathname_utf8(e);
    if (name == NULL)
        name = archive_entry_pathname(e);
    return name ? name : "?";
}

/* Only regular files carry data to scan. ar members have no file type at
 * all in libarchive, so "unknown" counts as a file too. Hard links in tar
 * and cpio point at data stored under another name and are skipped. */
static int is_file_member(struct walk *w, struct archive_entry *e)
{
    if (w->stream)
        return 1;
    mode_t type = archive_entry_filetype(e);
    if (type != AE_IFREG && type != 0)
        return 0;
    if (archive_entry_hardlink(e) != NULL && archive_entry_size(e) == 0)
        return 0;
    return 1;
}

/* Extracts the current member and hands it to the caller. Returns 0, KH_ENOMEM
 * or the member callback's non-zero value; sets w->stop when an issue ends
 * the whole walk. */
static int extract_member(struct walk *w, struct archive_entry *e)
{
    const struct khx_walk_limits *lim = w->lim;
    const char *name = member_name(w, e);

    w->members++;
    if (lim->max_members != 0 && w->members > lim->max_members) {
        report(w, "", KHX_WALK_MAX_FILES, "more than %u members", (unsigned)lim->max_members);
        w->stop = 1;
        return 0;
    }
    if (!w->stream && (archive_entry_is_encrypted(e) || rar5_is_encrypted(w, name))) {
        report(w, name, KHX_WALK_ENCRYPTED, "member is encrypted");
        return 0;
    }

    uint64_t max_member = lim->max_member_size ? lim->max_member_size : MEMBER_HARD_MAX;
    max_member = KHX_MIN(max_member, MEMBER_HARD_MAX);
    uint64_t remaining = UINT64_MAX;
    if (lim->max_total != 0)
        remaining = lim->max_total > *w->total_used ? lim->max_total - *w->total_used : 0;

    int64_t declared = -1;
    if (!w->stream && archive_entry_size_is_set(e))
        declared = archive_entry_size(e);
    if (declared >= 0 && (uint64_t)declared > max_member) {
        report(w, name, KHX_WALK_MAX_FILESIZE, "member declares %lld bytes, limit %llu",
               (long long)declared, (unsigned long long)max_member);
        return 0;
    }
    if (declared >= 0 && (uint64_t)declared > remaining) {
        report(w, name, KHX_WALK_MAX_SCANSIZE,
               "member declares %lld bytes, %llu left of the scan budget", (long long)declared,
               (unsigned long long)remaining);
        w->stop = 1;
        return 0;
    }
    if (declared > 0) {
        int r = reserve(w, (size_t)KHX_MIN((uint64_t)declared, (uint64_t)INITIAL_RESERVE_MAX));
        if (r != 0)
            return r;
    }

    uint64_t share = compressed_share(w);
    size_t got = 0;
    for (;;) {
        if (deadline_passed(w)) {
            report(w, name, KHX_WALK_MAX_TIME, "deadline passed while extracting");
            w->stop = 1;
            return 0;
        }
        la_ssize_t n = archive_read_data(w->a, w->chunk, CHUNK_SIZE);
        if (n == 0)
            break;
        if (n < 0) {
            if (archive_errno(w->a) == ENOMEM)
                return KH_ENOMEM;
            report(w, name, classify_failure(w->a), "%s", archive_message(w->a));
            if (n == ARCHIVE_FATAL)
                w->stop = 1;
            return 0;
        }
        /* The container-wide ratio counts every byte decompressed, also
         * those of members dropped for a limit, so that a zip of many
         * overlapping bomb members stops at the container bound instead of
         * inflating each one up to its own. */
        w->inflated += (uint64_t)n;
        uint64_t now = (uint64_t)got + (uint64_t)n;
        if (now > max_member) {
            report(w, name, KHX_WALK_MAX_FILESIZE, "member is larger than %llu bytes",
                   (unsigned long long)max_member);
            return 0;
        }
        if (now > remaining) {
            report(w, name, KHX_WALK_MAX_SCANSIZE, "scan budget of %llu bytes used up",
                   (unsigned long long)lim->max_total);
            w->stop = 1;
            return 0;
        }
        if (over_ratio(w, now, share)) {
            report(w, name, KHX_WALK_MAX_RATIO,
                   "member expands past %u times its at most %llu compressed bytes",
                   (unsigned)lim->max_ratio, (unsigned long long)share);
            return 0;
        }
        if (over_ratio(w, w->inflated, w->len)) {
            report(w, "", KHX_WALK_MAX_RATIO, "container expands past %u times its %zu bytes",
                   (unsigned)lim->max_ratio, w->len);
            w->stop = 1;
            return 0;
        }
        int r = reserve(w, (size_t)now);
        if (r != 0)
            return r;
        memcpy(w->data + got, w->chunk, (size_t)n);
        got = (size_t)now;
    }

    *w->total_used += got;
    static const uint8_t empty[1];
    /* The caller's callback runs in the caller's own locale. */
    locale_leave(w);
    int rc = w->cb->member(w->cb->ud, name, got ? w->data : empty, got);
    locale_enter(w);
    return rc;
}

int khx_container_walk(const uint8_t *buf, size_t len, enum khx_ftype t,
                       const struct khx_walk_limits *lim, uint64_t *total_used,
                       const struct khx_walk_cb *cb)
{
    if (!khx_ftype_is_container(t) || lim == NULL || total_used == NULL || cb == NULL ||
        cb->member == NULL || (buf == NULL && len > 0))
        return KH_EINVAL;

    int r = 0;
    struct walk w = {
        .lim = lim,
        .cb = cb,
        .total_used = total_used,
        .t = t,
        .len = len,
        .stream = is_stream_type(t),
    };
    pthread_once(&utf8_once, utf8_locale_init);
    locale_enter(&w);

    if (len == 0) {
        report(&w, "", KHX_WALK_CORRUPT, "empty %s container", khx_ftype_name(t));
        goto out;
    }
    if (deadline_passed(&w)) {
        report(&w, "", KHX_WALK_MAX_TIME, "deadline passed before the %s container was opened",
               khx_ftype_name(t));
        goto out;
    }

    if (t == KHX_FT_RAR) {
        r = rar5_scan(&w, buf, len);
        if (r != 0)
            goto out;
        if (w.rar5.headers_encrypted) {
            report(&w, "", KHX_WALK_ENCRYPTED, "RAR 5 archive with encrypted headers");
            goto out;
        }
    }

    w.chunk = malloc(CHUNK_SIZE);
    w.a = archive_read_new();
    if (w.chunk == NULL || w.a == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    int filter;
    if (register_reader(w.a, t, &filter) != 0) {
        report(&w, "", KHX_WALK_CORRUPT, "no in-process %s reader in this libarchive",
               khx_ftype_name(t));
        goto out;
    }
    if (archive_read_open_memory(w.a, buf, len) != ARCHIVE_OK) {
        if (archive_errno(w.a) == ENOMEM) {
            r = KH_ENOMEM;
            goto out;
        }
        report(&w, "", classify_failure(w.a), "%s", archive_message(w.a));
        goto out;
    }
    /* The raw reader accepts anything; if the decompressor did not claim the
     * input, the one "member" would be the input itself. */
    if (filter >= 0 && archive_filter_code(w.a, 0) != filter) {
        report(&w, "", KHX_WALK_CORRUPT, "not a %s stream", khx_ftype_name(t));
        goto out;
    }

    int failures = 0;
    while (!w.stop) {
        if (deadline_passed(&w)) {
            report(&w, "", KHX_WALK_MAX_TIME, "deadline passed after %u members",
                   (unsigned)w.members);
            break;
        }
        struct archive_entry *e = NULL;
        int hr = archive_read_next_header(w.a, &e);
        if (hr == ARCHIVE_EOF)
            break;
        if (hr < ARCHIVE_WARN) {
            if (archive_errno(w.a) == ENOMEM) {
                r = KH_ENOMEM;
                goto out;
            }
            const char *name = (hr != ARCHIVE_FATAL && e != NULL) ? member_name(&w, e) : "";
            report(&w, name, classify_failure(w.a), "%s", archive_message(w.a));
            if (hr == ARCHIVE_FATAL || ++failures > MAX_HEADER_FAILURES)
                break;
            continue;
        }
        failures = 0;
        if (!is_file_member(&w, e))
            continue;
        r = extract_member(&w, e);
        if (r != 0)
            goto out;
    }

out:
    locale_leave(&w);
    if (w.a != NULL)
        archive_read_free(w.a);
    free(w.chunk);
    free(w.data);
    rar5_free(&w);
    return r;
}
