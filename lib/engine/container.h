/*
 * File typing, text normalisation and container unpacking.
 *
 * khx_filetype() decides from magic bytes what an object is: an executable,
 * a container libarchive can open, an e-mail message, HTML, plain text, or
 * other binary.
 * khx_normalize_*() produce the views ClamAV's target types 7 (ASCII) and
 * 3 (HTML) are matched against. khx_container_walk() extracts the members of
 * a container into memory, one at a time, enforcing the scan limits and
 * reporting encrypted, corrupt or over-limit members instead of passing them
 * silently. E-mail (mime.c) is walked by our own MIME parser, and
 * khx_embedded_walk() (embedded.c) finds executables and archives hidden
 * inside other files.
 */
#ifndef KHX_CONTAINER_H
#define KHX_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include <khien/khien.h>

enum khx_ftype {
    KHX_FT_BINARY = 0,
    KHX_FT_TEXT, /* mostly printable ASCII/UTF-8 */
    KHX_FT_HTML, /* text that looks like HTML */
    KHX_FT_PE,
    KHX_FT_ELF,
    KHX_FT_ZIP,
    KHX_FT_7Z,
    KHX_FT_RAR,
    KHX_FT_TAR,
    KHX_FT_GZ,
    KHX_FT_BZ2,
    KHX_FT_XZ,
    KHX_FT_CAB,
    KHX_FT_ISO,
    KHX_FT_CPIO,
    KHX_FT_LHA,
    KHX_FT_AR,
    KHX_FT_ZSTD,
    KHX_FT_LZMA,
    KHX_FT_MAIL, /* RFC 822 message, mbox, or a BinHex 4.0 text */
    KHX_FT_COUNT
};

enum khx_ftype khx_filetype(const uint8_t *buf, size_t len);

/* ClamAV's CL_TYPE_* name for a type ("CL_TYPE_ZIP", "CL_TYPE_MSEXE", ...),
 * used by .ldb Container: checks. */
const char *khx_ftype_cltype(enum khx_ftype t);
/* Short lowercase name for messages and heuristic names ("zip", "7z", "rar"). */
const char *khx_ftype_name(enum khx_ftype t);
int khx_ftype_is_container(enum khx_ftype t);

/* ClamAV's ASCII normalisation (target type 7): lowercase, runs of white
 * space folded to one space, control bytes dropped. `out` must hold `len`
 * bytes; returns the normalised length. */
size_t khx_normalize_ascii(const uint8_t *in, size_t len, uint8_t *out);

/* HTML normalisation (target type 3): lowercase, comments removed, character
 * references decoded, white space folded, tags kept with their attributes
 * normalised. `out` must hold `len` bytes; returns the normalised length. */
size_t khx_normalize_html(const uint8_t *in, size_t len, uint8_t *out);

struct khx_walk_limits {
    uint64_t max_member_size; /* members larger than this are not extracted */
    uint64_t max_total;       /* bytes extracted in all (shared with the caller's budget) */
    uint32_t max_members;     /* members extracted */
    uint32_t max_ratio;       /* uncompressed/compressed ratio for a member */
    uint64_t deadline_ms;     /* CLOCK_MONOTONIC ms; 0 = none */
};

/* Why a member or the container was not fully scanned. */
enum khx_walk_issue {
    KHX_WALK_ENCRYPTED = 1, /* "Heuristics.Encrypted.<Type>" */
    KHX_WALK_CORRUPT,       /* "Heuristics.Broken.<Type>" */
    KHX_WALK_MAX_FILESIZE,  /* "Heuristics.Limits.Exceeded.MaxFileSize" */
    KHX_WALK_MAX_SCANSIZE,  /* "Heuristics.Limits.Exceeded.MaxScanSize" */
    KHX_WALK_MAX_FILES,     /* "Heuristics.Limits.Exceeded.MaxFiles" */
    KHX_WALK_MAX_RATIO,     /* "Heuristics.Limits.Exceeded.MaxCompressionRatio" */
    KHX_WALK_MAX_TIME,      /* "Heuristics.Limits.Exceeded.MaxScanTime" */
};

struct khx_walk_cb {
    /* A member's contents, fully extracted. `name` is the path inside the
     * container ("" for single-stream formats like gzip). Return non-zero to
     * stop the walk; the value is returned by khx_container_walk. */
    int (*member)(void *ud, const char *name, const uint8_t *data, size_t len);
    /* A member (name may be "") or the whole container was not fully scanned. */
    void (*issue)(void *ud, const char *name, int issue, const char *detail);
    void *ud;
};

/* Walks the members of a container of type `t`. `total_used` is the running
 * byte count against max_total, updated as members are extracted. Returns 0
 * when the walk finished (issues are reported through the callback, not as an
 * error), KH_ENOMEM, or a non-zero value returned by cb->member. */
int khx_container_walk(const uint8_t *buf, size_t len, enum khx_ftype t,
                       const struct khx_walk_limits *lim, uint64_t *total_used,
                       const struct khx_walk_cb *cb);

/* Walks an e-mail message or mbox (mime.c): every decoded MIME part,
 * uuencoded block and BinHex file becomes a member, with the same limits,
 * callback and return contract as khx_container_walk (which calls it for
 * KHX_FT_MAIL). Members are named after their filename / name parameter,
 * else "part-N". */
int khx_mail_walk(const uint8_t *buf, size_t len, const struct khx_walk_limits *lim,
                  uint64_t *total_used, const struct khx_walk_cb *cb);

/* Looks for objects embedded in a non-container object of type `t`
 * (embedded.c): PE images at a non-zero offset (member = the image as its
 * section table bounds it) and zip, cab, 7z and rar archives starting at a
 * non-zero offset (member = from the signature to the end of the buffer, to
 * be walked as a container by the caller). Members are named
 * "embedded-<kind>@0x<offset>". Nothing is reported for offset 0, nor for
 * containers (khx_container_walk covers those). Limits, callback and return
 * values as for khx_container_walk; KH_EINVAL for bad arguments. */
int khx_embedded_walk(const uint8_t *buf, size_t len, enum khx_ftype t,
                      const struct khx_walk_limits *lim, uint64_t *total_used,
                      const struct khx_walk_cb *cb);

/* The same search over candidate offsets only: `cand` holds, in ascending
 * order, the offsets where one of khx_embedded_magics occurs (the scanner
 * finds them in its Hyperscan pass). Offsets that fall inside an object
 * already delivered are skipped. */
int khx_embedded_walk_at(const uint8_t *buf, size_t len, enum khx_ftype t, const uint64_t *cand,
                         size_t ncand, const struct khx_walk_limits *lim, uint64_t *total_used,
                         const struct khx_walk_cb *cb);

/* The byte strings that can start an embedded object. */
struct khx_magic {
    const char *bytes;
    size_t len;
};
extern const struct khx_magic khx_embedded_magics[];
extern const size_t khx_embedded_nmagics;

/* Admits one fully decoded member of `n` bytes against the limits, counting
 * it in *members and, when admitted, in *total_used. Returns 0 when it may be
 * scanned, else the issue: KHX_WALK_MAX_FILES and KHX_WALK_MAX_SCANSIZE mean
 * the walk should stop, KHX_WALK_MAX_FILESIZE only that this member is
 * skipped. Shared by the walkers that decode whole members (mail, embedded). */
int khx_walk_admit(const struct khx_walk_limits *lim, uint32_t *members, uint64_t *total_used,
                   size_t n);

/* The heuristic name for an issue and container type, e.g.
 * "Heuristics.Encrypted.Zip". Writes into out (NUL-terminated). */
void khx_walk_issue_name(int issue, enum khx_ftype t, char *out, size_t outlen);

#endif
