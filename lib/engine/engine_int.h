/*
 * Private structures of the engine, shared by its three stages:
 *
 *   builder.c, load_*.c   read signature sources into the builder's
 *                         intermediate form (struct kh_builder);
 *   compile.c             turns that form into a .kdb image (kdb.h);
 *   engine.c              maps and checks an image (struct kh_engine);
 *   scan.c                scans objects with an engine (struct kh_scanner).
 *
 * Nothing outside lib/engine includes this file.
 */
#ifndef KHX_ENGINE_INT_H
#define KHX_ENGINE_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include <hs/hs.h>
#include <yara.h>

#include "bodysig.h"
#include "hashtab.h"
#include "khx.h"
#include "kdb.h"
#include "ldb.h"

/* ---- builder ------------------------------------------------------------ */

/* Upper bounds that keep a hostile source from exhausting memory. */
#define KHX_MAX_SIGS        (64u * 1024 * 1024)
#define KHX_MAX_PATTERNS    (16u * 1024 * 1024)
#define KHX_MAX_SOURCES     65535u
#define KHX_MAX_SOURCE_SIZE ((size_t)2 << 30)
#define KHX_MAX_NAME        255

struct bsig {
    char *name;
    uint16_t kind;
    uint16_t source;
};

struct bhash {
    uint64_t size; /* ignored when any_size */
    uint8_t digest[32];
    uint8_t cls;  /* enum kdb_hclass */
    uint8_t algo; /* enum kdb_halgo */
    uint8_t any_size;
    uint32_t sig;
};

struct bpattern {
    uint32_t owner;  /* signature index (.ndb) or ldb index */
    uint16_t subsig; /* 0xffff for .ndb */
    uint8_t view;
    uint8_t prefilter; /* forced by a failed exact compile */
    uint32_t target;
    uint32_t source; /* for diagnostics */
    uint32_t line;
    struct khx_offset offset;
    struct khx_body body;
    uint8_t dropped;
};

struct bldb {
    uint32_t sig;
    struct khx_tdb tdb;
    uint8_t *expr;
    size_t expr_len;
    uint32_t nsubs;
    uint32_t first_sub; /* into builder.subs */
};

struct bpcre {
    uint32_t ldb;
    uint32_t subsig;
    uint8_t *ser;
    size_t ser_len;
    unsigned cflags;
    uint8_t *trigger;
    size_t trigger_len;
    struct khx_offset offset;
};

struct bsource {
    char *name;
    uint32_t version;
    uint32_t signatures;
    uint32_t skipped;
    uint32_t errors;
    int64_t built;
};

struct byara {
    char *name; /* the source name, used as the YARA namespace */
    char *text;
    uint32_t source;
};

struct bignore {
    char *name;
    int has_md5;
    uint8_t md5[16];
};

struct kh_builder {
    struct kh_build_opts opts;
    struct khx_vec sigs;     /* struct bsig */
    struct khx_vec hashes;   /* struct bhash */
    struct khx_vec patterns; /* struct bpattern */
    struct khx_vec ldbs;     /* struct bldb */
    struct khx_vec subs;     /* struct kdb_ldbsub */
    struct khx_vec pcres;    /* struct bpcre */
    struct khx_vec sources;  /* struct bsource */
    struct khx_vec yara;     /* struct byara */
    struct khx_vec ignores;  /* struct bignore */
    uint64_t ignored;
    uint64_t errors;
    int sorted_ignores;
};

/* Reports a problem with a source line and counts it as an error. */
void khx_builder_error(kh_builder *b, uint32_t source, const char *file, unsigned line,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Reports a note (an unsupported signature skipped); not an error. */
void khx_builder_note(kh_builder *b, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Creates a source entry and returns its index, or a negative kh_err. */
int khx_builder_source(kh_builder *b, const char *name);
/* Adds a signature name; returns its index or a negative kh_err. */
int64_t khx_builder_sig(kh_builder *b, const char *name, size_t name_len, int kind,
                        uint32_t source);
/* True if `name` (with the db line for Name:md5 entries) is in an .ign2. */
int khx_builder_ignored(kh_builder *b, const char *name, size_t name_len, const char *line,
                        size_t line_len);

/* Loaders for one source text each; `file` names it in diagnostics. */
int khx_load_hashes(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len,
                    int cls, int size_first);
int khx_load_hashlist(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len);
int khx_load_ndb(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len);
int khx_load_ldb(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len);
int khx_load_ign(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len);
int khx_load_yara(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len);

/* Compiles the builder's content into an image (compile.c). */
int khx_compile(kh_builder *b, uint8_t **image, size_t *len);

/* ---- engine ------------------------------------------------------------- */

struct kh_engine {
    atomic_int refs;
    const uint8_t *image;
    size_t len;
    int mapped; /* 1: munmap; 0: free */
    int lease;  /* lease.c slot protecting the mapping, or -1 */
    const struct kdb_header *hdr;
    /* Set when the payload's SHA-256 was computed while opening (from the
     * file, without mapping its pages in). */
    int payload_sha256_known;
    uint8_t payload_sha256[32];

    const char *strings;
    size_t strings_len;
    const struct kdb_sig *sigs;
    size_t nsigs;
    const struct kdb_pattern *patterns;
    size_t npatterns;
    const uint8_t *progs;
    size_t progs_len;
    const struct kdb_ldb *ldbs;
    size_t nldbs;
    const struct kdb_ldbsub *subs;
    size_t nsubs;
    const struct kdb_pcre *pcres;
    size_t npcres;
    struct khx_pcre **pcre_code; /* decoded, one per PCRE */
    const uint64_t *counts;      /* KH_SIG_KIND_COUNT + 1 values */
    struct kh_source_info *sources;
    size_t nsources;

    struct khx_hashtab hash[KDB_HC_COUNT][KDB_HA_COUNT];
    struct khx_hashtab hashany[KDB_HC_COUNT][KDB_HA_COUNT];

    hs_database_t *hs[KDB_VIEW_COUNT];
    YR_RULES *yara;
    uint32_t ldb_max_subs; /* total subsignatures, for per-scan counters */
    /* Logical signatures whose expression holds with no match at all (for
     * example "0=0" or "0<3"); they are evaluated on every object. */
    uint32_t *ldb_zero;
    size_t nldb_zero;
};

/* Takes a read lease on the mapped database file (lease.c); returns a slot
 * number for khx_lease_release, or -1 when the kernel refuses a lease. */
int khx_lease_take(const char *path, const void *addr, size_t len);
void khx_lease_release(int slot);

/* The engine a scanner was created for. */
const kh_engine *khx_scanner_engine(const kh_scanner *s);

/* Initializes libyara once per process. */
int khx_yara_init(void);

#endif
