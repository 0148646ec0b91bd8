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
 *
 * Two formats get more than one pass. A zip is read through its central
 * directory with libarchive's seekable reader, after we have checked the
 * directory ourselves and, where it names members that are not in this
 * buffer (the last part of a split archive, a damaged file), handed
 * libarchive a rewritten directory that lists only the members whose local
 * headers are present; without a usable directory (a truncated zip) the
 * streaming reader walks the local headers instead. An ISO 9660 image with
 * a Joliet tree is read twice, Joliet first and then the primary tree, since
 * the two trees need not list the same files; a file already delivered from
 * the first tree (same SHA-256) is not delivered again.
 *
 * E-mail is not libarchive's: KHX_FT_MAIL is handed to khx_mail_walk().
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
    int open_failed;     /* the last pass could not open the input */
    int record;          /* remember the SHA-256 of each delivered member */
    int dedup;           /* skip members whose SHA-256 was remembered */
    struct khx_vec seen; /* uint8_t[32] digests, for record/dedup */
};

/* How a pass reads the input: which variant of the type's reader. */
enum reader_variant {
    READ_DEFAULT = 0,
    READ_ZIP_SEEKABLE,  /* central directory first */
    READ_ZIP_STREAMING, /* local headers in order */
    READ_ISO_PRIMARY,   /* Joliet extensions off: the primary tree */
};

/* Central directory records kept when a zip's directory is rewritten. */
#define ZIP_MAX_DROPPED_REPORTS 16
/* Digests remembered for the ISO second pass. */
#define SEEN_MAX 4096

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
static int register_reader(struct archive *a, enum khx_ftype t, enum reader_variant v, int *filter)
{
    int r;
    *filter = -1;
    switch (t) {
    case KHX_FT_ZIP:
        r = v == READ_ZIP_SEEKABLE ? archive_read_support_format_zip_seekable(a)
                                   : archive_read_support_format_zip_streamable(a);
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
        /* A NULL value switches an option off. */
        if (r == ARCHIVE_OK && v == READ_ISO_PRIMARY)
            r = archive_read_set_format_option(a, "iso9660", "joliet", NULL);
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
static int seen_before(const struct walk *w, const uint8_t digest[32]);

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

    static const uint8_t empty[1];
    const uint8_t *data = got ? w->data : empty;
    if (w->record || w->dedup) {
        uint8_t digest[32];
        int r = khx_sha256(data, got, digest);
        if (r != 0)
            return r;
        if (w->dedup && seen_before(w, digest)) {
            /* Already delivered from the other tree: not a new member. */
            w->members--;
            return 0;
        }
        if (w->record) {
            uint8_t *slot = khx_vec_push(&w->seen);
            if (slot != NULL)
                memcpy(slot, digest, sizeof(digest));
        }
    }
    *w->total_used += got;
    /* The caller's callback runs in the caller's own locale. */
    locale_leave(w);
    int rc = w->cb->member(w->cb->ud, name, data, got);
    locale_enter(w);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Reading from a list of byte ranges                                        */
/* ------------------------------------------------------------------------ */

/* libarchive reads a "file" through callbacks; this one is the
 * concatenation of up to three byte ranges, so that a zip's central
 * directory can be replaced without copying the rest of the buffer. Seeking
 * is supported, which the seekable zip reader needs. */
struct vseg {
    const uint8_t *p;
    size_t n;
};

struct vfile {
    struct vseg seg[3];
    size_t nseg;
    int64_t size;
    int64_t pos;
};

static la_ssize_t vfile_read(struct archive *a, void *ud, const void **out)
{
    struct vfile *v = ud;
    (void)a;
    int64_t off = v->pos;
    for (size_t i = 0; i < v->nseg; i++) {
        if ((uint64_t)off < v->seg[i].n) {
            size_t n = v->seg[i].n - (size_t)off;
            *out = v->seg[i].p + off;
            v->pos += (int64_t)n;
            return (la_ssize_t)n;
        }
        off -= (int64_t)v->seg[i].n;
    }
    *out = NULL;
    return 0;
}

static la_int64_t vfile_seek(struct archive *a, void *ud, la_int64_t offset, int whence)
{
    struct vfile *v = ud;
    (void)a;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? v->pos : v->size;
    if ((offset < 0 && base + offset < 0) || (offset > 0 && offset > v->size - base))
        return ARCHIVE_FATAL;
    v->pos = base + offset;
    return v->pos;
}

static la_int64_t vfile_skip(struct archive *a, void *ud, la_int64_t request)
{
    struct vfile *v = ud;
    (void)a;
    if (request <= 0)
        return 0;
    int64_t n = KHX_MIN(request, v->size - v->pos);
    v->pos += n;
    return n;
}

static int open_vfile(struct archive *a, struct vfile *v)
{
    v->size = 0;
    v->pos = 0;
    for (size_t i = 0; i < v->nseg; i++)
        v->size += (int64_t)v->seg[i].n;
    if (archive_read_set_read_callback(a, vfile_read) != ARCHIVE_OK ||
        archive_read_set_seek_callback(a, vfile_seek) != ARCHIVE_OK ||
        archive_read_set_skip_callback(a, vfile_skip) != ARCHIVE_OK ||
        archive_read_set_callback_data(a, v) != ARCHIVE_OK)
        return ARCHIVE_FATAL;
    return archive_read_open1(a);
}

/* ------------------------------------------------------------------------ */
/* One pass of libarchive over the input                                     */
/* ------------------------------------------------------------------------ */

/* Opens the input (the buffer, or `vf` when given) with the reader variant
 * `v` and delivers its members. With `quiet_open`, failing to open is not
 * reported but noted in w->open_failed, so that the caller can try another
 * way. Returns 0, KH_ENOMEM or the member callback's non-zero value. */
static int walk_pass(struct walk *w, const uint8_t *buf, size_t len, struct vfile *vf,
                     enum reader_variant v, int quiet_open)
{
    int r = 0;
    w->open_failed = 0;
    w->a = archive_read_new();
    if (w->a == NULL)
        return KH_ENOMEM;
    int filter;
    if (register_reader(w->a, w->t, v, &filter) != 0) {
        report(w, "", KHX_WALK_CORRUPT, "no in-process %s reader in this libarchive",
               khx_ftype_name(w->t));
        goto out;
    }
    int orc = vf ? open_vfile(w->a, vf) : archive_read_open_memory(w->a, buf, len);
    if (orc != ARCHIVE_OK) {
        if (archive_errno(w->a) == ENOMEM) {
            r = KH_ENOMEM;
            goto out;
        }
        w->open_failed = 1;
        if (!quiet_open)
            report(w, "", classify_failure(w->a), "%s", archive_message(w->a));
        goto out;
    }
    /* The raw reader accepts anything; if the decompressor did not claim the
     * input, the one "member" would be the input itself. */
    if (filter >= 0 && archive_filter_code(w->a, 0) != filter) {
        report(w, "", KHX_WALK_CORRUPT, "not a %s stream", khx_ftype_name(w->t));
        goto out;
    }

    int failures = 0;
    while (!w->stop) {
        if (deadline_passed(w)) {
            report(w, "", KHX_WALK_MAX_TIME, "deadline passed after %u members",
                   (unsigned)w->members);
            w->stop = 1;
            break;
        }
        struct archive_entry *e = NULL;
        int hr = archive_read_next_header(w->a, &e);
        if (hr == ARCHIVE_EOF)
            break;
        if (hr < ARCHIVE_WARN) {
            if (archive_errno(w->a) == ENOMEM) {
                r = KH_ENOMEM;
                goto out;
            }
            const char *name = (hr != ARCHIVE_FATAL && e != NULL) ? member_name(w, e) : "";
            report(w, name, classify_failure(w->a), "%s", archive_message(w->a));
            if (hr == ARCHIVE_FATAL || ++failures > MAX_HEADER_FAILURES)
                break;
            continue;
        }
        failures = 0;
        if (!is_file_member(w, e))
            continue;
        r = extract_member(w, e);
        if (r != 0)
            goto out;
    }

out:
    archive_read_free(w->a);
    w->a = NULL;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Zip: the central directory, checked and if need be rewritten              */
/* ------------------------------------------------------------------------ */

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Finds the last end-of-central-directory record in the final 64 KiB + 22
 * bytes whose directory fits before it. Returns its offset, or -1. */
static int64_t zip_find_eocd(const uint8_t *buf, size_t len)
{
    if (len < 22)
        return -1;
    size_t lowest = len > 22 + 65535 ? len - 22 - 65535 : 0;
    for (size_t e = len - 22 + 1; e-- > lowest;) {
        if (buf[e] != 'P' || memcmp(buf + e, "PK\5\6", 4) != 0)
            continue;
        if (rd32(buf + e + 12) <= e)
            return (int64_t)e;
    }
    return -1;
}

/* How the zip in buf will be read. */
enum zip_route {
    ZIP_STREAM,   /* no usable central directory: local headers in order */
    ZIP_SEEK_RAW, /* the directory is sound: the seekable reader on the buffer */
    ZIP_SEEK_NEW, /* the seekable reader on the buffer with a rewritten directory */
    ZIP_NOTHING,  /* the directory names no member that is present */
};

/* Checks the central directory of the zip in buf[0..len). Each record must
 * be whole and lie before the end record; a member counts as present when it
 * starts on this disk and its local header signature is where the record
 * (corrected for data prepended to the archive) says. Missing members are
 * reported. If any are missing, or the archive is a later part of a split
 * set (which libarchive refuses), a new directory listing only the present
 * members, with their real offsets, and an end record for disk 0 is built in
 * *newcd (the caller frees it) and *cd_start says where the old one began. */
static int zip_plan(struct walk *w, const uint8_t *buf, size_t len, enum zip_route *route,
                    uint8_t **newcd, size_t *newcd_len, size_t *cd_start)
{
    *route = ZIP_STREAM;
    *newcd = NULL;
    *newcd_len = 0;
    int64_t eocd = zip_find_eocd(buf, len);
    if (eocd < 0)
        return 0;
    const uint8_t *e = buf + eocd;
    uint16_t this_disk = rd16(e + 4);
    uint32_t cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
    /* Zip64 archives keep their real sizes elsewhere; libarchive reads those
     * itself, so they go to it as they are. */
    if (rd16(e + 10) == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu ||
        len > 0xFFFFFFFFu) {
        *route = ZIP_SEEK_RAW;
        return 0;
    }
    size_t start = (size_t)eocd - cd_size;
    int64_t correction = (int64_t)start - (int64_t)cd_offset;

    size_t kept = 0, dropped = 0, omitted = 0, pos = start;
    uint8_t *out = malloc((size_t)cd_size + 22);
    if (out == NULL)
        return KH_ENOMEM;
    size_t outlen = 0;
    while (pos < (size_t)eocd) {
        if ((size_t)eocd - pos < 46 || memcmp(buf + pos, "PK\1\2", 4) != 0) {
            /* Not a directory we can trust: read the local headers instead. */
            free(out);
            return 0;
        }
        const uint8_t *c = buf + pos;
        size_t rec = 46 + (size_t)rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
        if (rec > (size_t)eocd - pos) {
            free(out);
            return 0;
        }
        int64_t local = (int64_t)rd32(c + 42) + correction;
        int present = rd16(c + 34) == this_disk && local >= 0 && (uint64_t)local + 30 <= start &&
                      memcmp(buf + local, "PK\3\4", 4) == 0;
        if (present) {
            memcpy(out + outlen, c, rec);
            wr16(out + outlen + 34, 0);
            wr32(out + outlen + 42, (uint32_t)local);
            outlen += rec;
            kept++;
        } else if (rd16(c + 28) > 0 && c[46 + rd16(c + 28) - 1] == '/') {
            /* A directory: nothing to scan is lost, but it must go. */
            omitted++;
        } else {
            omitted++;
            dropped++;
            if (dropped <= ZIP_MAX_DROPPED_REPORTS) {
                char name[256];
                size_t n = KHX_MIN((size_t)rd16(c + 28), sizeof(name) - 1);
                memcpy(name, c + 46, n);
                name[n] = '\0';
                if (rd16(c + 34) != this_disk)
                    report(w, name, KHX_WALK_CORRUPT,
                           "member starts on disk %u of a split archive, this is disk %u",
                           (unsigned)rd16(c + 34) + 1, (unsigned)this_disk + 1);
                else
                    report(w, name, KHX_WALK_CORRUPT, "member's local header is missing");
            }
        }
        pos += rec;
    }
    if (dropped > ZIP_MAX_DROPPED_REPORTS)
        report(w, "", KHX_WALK_CORRUPT, "%zu more members missing from this zip",
               dropped - ZIP_MAX_DROPPED_REPORTS);
    if (kept == 0 && dropped > 0) {
        free(out);
        *route = ZIP_NOTHING;
        return 0;
    }
    if (omitted == 0 && this_disk == 0 && rd16(e + 6) == 0 && rd16(e + 8) == rd16(e + 10)) {
        free(out);
        *route = ZIP_SEEK_RAW;
        return 0;
    }
    uint8_t *end = out + outlen;
    memset(end, 0, 22);
    memcpy(end, "PK\5\6", 4);
    wr16(end + 8, (uint16_t)kept);
    wr16(end + 10, (uint16_t)kept);
    wr32(end + 12, (uint32_t)outlen);
    wr32(end + 16, (uint32_t)start);
    *newcd = out;
    *newcd_len = outlen + 22;
    *cd_start = start;
    *route = ZIP_SEEK_NEW;
    return 0;
}

static int walk_zip(struct walk *w, const uint8_t *buf, size_t len)
{
    enum zip_route route;
    uint8_t *newcd = NULL;
    size_t newcd_len = 0, cd_start = 0;
    int r = zip_plan(w, buf, len, &route, &newcd, &newcd_len, &cd_start);
    if (r != 0)
        return r;
    if (route == ZIP_NOTHING) {
        report(w, "", KHX_WALK_CORRUPT, "no member of this zip has its data in it");
    } else if (route == ZIP_SEEK_NEW) {
        struct vfile vf = {.seg = {{buf, cd_start}, {newcd, newcd_len}}, .nseg = 2};
        r = walk_pass(w, buf, len, &vf, READ_ZIP_SEEKABLE, 1);
        if (r == 0 && w->open_failed)
            r = walk_pass(w, buf, len, NULL, READ_ZIP_STREAMING, 0);
    } else if (route == ZIP_SEEK_RAW) {
        r = walk_pass(w, buf, len, NULL, READ_ZIP_SEEKABLE, 1);
        if (r == 0 && w->open_failed)
            r = walk_pass(w, buf, len, NULL, READ_ZIP_STREAMING, 0);
    } else {
        r = walk_pass(w, buf, len, NULL, READ_ZIP_STREAMING, 0);
    }
    free(newcd);
    return r;
}

/* ------------------------------------------------------------------------ */
/* ISO 9660: both trees                                                      */
/* ------------------------------------------------------------------------ */

/* Whether the image has a Joliet supplementary volume descriptor (type 2,
 * escape sequence %/@, %/C or %/E at offset 88), looking at the descriptors
 * from sector 16 up to the set terminator. */
static int iso_has_joliet(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < 64; i++) {
        size_t off = 32768 + i * 2048;
        if (off > len || len - off < 2048 || memcmp(buf + off + 1, "CD001", 5) != 0)
            return 0;
        uint8_t type = buf[off];
        if (type == 255)
            return 0;
        const uint8_t *esc = buf + off + 88;
        if (type == 2 && esc[0] == '%' && esc[1] == '/' &&
            (esc[2] == '@' || esc[2] == 'C' || esc[2] == 'E'))
            return 1;
    }
    return 0;
}

static int seen_before(const struct walk *w, const uint8_t digest[32])
{
    for (size_t i = 0; i < w->seen.len; i++)
        if (memcmp((const uint8_t *)w->seen.items + i * 32, digest, 32) == 0)
            return 1;
    return 0;
}

static int walk_iso(struct walk *w, const uint8_t *buf, size_t len)
{
    int joliet = iso_has_joliet(buf, len);
    w->record = joliet;
    int r = walk_pass(w, buf, len, NULL, READ_DEFAULT, 0);
    w->record = 0;
    if (r != 0 || !joliet || w->stop || w->open_failed)
        return r;
    w->dedup = 1;
    r = walk_pass(w, buf, len, NULL, READ_ISO_PRIMARY, 0);
    w->dedup = 0;
    return r;
}

/* Parses `digits` hex or octal digits; returns -1 on a bad digit. */
static int64_t parse_num(const uint8_t *p, size_t digits, unsigned base)
{
    int64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        int d = khx_hexval(p[i]);
        if (d < 0 || (unsigned)d >= base)
            return -1;
        v = v * base + d;
    }
    return v;
}

/* libarchive's cpio reader allocates a header's name size before it checks
 * that the archive holds that many bytes, so a hostile 4 GiB name size costs
 * a 4 GiB allocation. It also resynchronises on the next header magic after
 * damage, so every ASCII header (newc/crc "070701"/"070702", odc "070707")
 * anywhere in the buffer is checked, not only the chain from the start: a
 * name or file size that runs past the buffer refuses the archive. */
static int cpio_names_sane(const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        const uint8_t *h = memmem(p, (size_t)(end - p), "07070", 5);
        if (h == NULL)
            break;
        size_t left = (size_t)(end - h);
        p = h + 1;
        if (left < 6 || (h[5] != '1' && h[5] != '2' && h[5] != '7'))
            continue;
        int64_t ns, fs;
        size_t hdr;
        if (h[5] == '7') {
            if (left < 76)
                continue; /* too short to be read as a header */
            ns = parse_num(h + 59, 6, 8);
            fs = parse_num(h + 65, 11, 8);
            hdr = 76;
        } else {
            if (left < 110)
                continue;
            ns = parse_num(h + 94, 8, 16);
            fs = parse_num(h + 54, 8, 16);
            hdr = 110;
        }
        if (ns < 0 || fs < 0)
            continue; /* not a header libarchive would accept either */
        if ((uint64_t)ns > left - hdr || (uint64_t)fs > left)
            return 0;
    }
    return 1;
}

int khx_walk_admit(const struct khx_walk_limits *lim, uint32_t *members, uint64_t *total_used,
                   size_t n)
{
    (*members)++;
    if (lim->max_members != 0 && *members > lim->max_members)
        return KHX_WALK_MAX_FILES;
    if (lim->max_member_size != 0 && n > lim->max_member_size)
        return KHX_WALK_MAX_FILESIZE;
    if (lim->max_total != 0 && (*total_used >= lim->max_total || n > lim->max_total - *total_used))
        return KHX_WALK_MAX_SCANSIZE;
    *total_used += n;
    return 0;
}

int khx_container_walk(const uint8_t *buf, size_t len, enum khx_ftype t,
                       const struct khx_walk_limits *lim, uint64_t *total_used,
                       const struct khx_walk_cb *cb)
{
    if (!khx_ftype_is_container(t) || lim == NULL || total_used == NULL || cb == NULL ||
        cb->member == NULL || (buf == NULL && len > 0))
        return KH_EINVAL;
    if (t == KHX_FT_MAIL)
        return khx_mail_walk(buf, len, lim, total_used, cb);

    int r = 0;
    struct walk w = {
        .lim = lim,
        .cb = cb,
        .total_used = total_used,
        .t = t,
        .len = len,
        .stream = is_stream_type(t),
    };
    khx_vec_init(&w.seen, 32, SEEN_MAX);
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

    if (t == KHX_FT_CPIO && !cpio_names_sane(buf, len)) {
        report(&w, "", KHX_WALK_CORRUPT, "cpio header names a file name larger than the archive");
        goto out;
    }

    w.chunk = malloc(CHUNK_SIZE);
    if (w.chunk == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if (t == KHX_FT_ZIP)
        r = walk_zip(&w, buf, len);
    else if (t == KHX_FT_ISO)
        r = walk_iso(&w, buf, len);
    else
        r = walk_pass(&w, buf, len, NULL, READ_DEFAULT, 0);

out:
    locale_leave(&w);
    free(w.chunk);
    free(w.data);
    rar5_free(&w);
    khx_vec_free(&w.seen);
    return r;
}
