/*
 * The .kdb image: one versioned, checksummed file that holds a whole compiled
 * signature database in the form the scanner uses directly.
 *
 * Layout (all integers little-endian):
 *
 *   header      struct kdb_header (128 bytes)
 *   sections    struct kdb_section[nsections] (the table of contents)
 *   payload     each section's bytes, 64-byte aligned
 *
 * The header's SHA-256 covers every byte after the header. Sections are
 * arrays of the fixed-size records below or opaque blobs (serialized
 * Hyperscan databases, compiled YARA rules, PCRE2 code). Records refer to
 * strings by byte offset into the STRINGS section and to programs by
 * (offset, length) into the PROGS section; the loader checks every such
 * reference once at load time, so the scanner can trust them afterwards.
 */
#ifndef KHX_KDB_H
#define KHX_KDB_H

#include <stdint.h>

#include "bodysig.h"

#define KDB_MAGIC          "KHIENKDB"
#define KDB_FORMAT_VERSION 2
#define KDB_ALIGN          64
#define KDB_MAX_SECTIONS   64

struct kdb_header {
    char magic[8];
    uint32_t format_version;
    uint32_t nsections;
    uint64_t image_size;
    int64_t created;
    uint32_t flevel;
    uint32_t flags;     /* KDB_FLAG_* */
    uint8_t sha256[32]; /* of bytes [sizeof(struct kdb_header), image_size) */
    uint8_t reserved[56];
};

enum kdb_flags {
    /* The raw view's Hyperscan database also reports the embedded-object
     * magics (container.h khx_embedded_magics) with ids KDB_MAGIC_ID + k. */
    KDB_FLAG_MAGICS = 1,
};
#define KDB_MAGIC_ID 0x80000000u

struct kdb_section {
    uint32_t id;
    uint32_t reserved;
    uint64_t offset;
    uint64_t length;
};

/* Hash classes and algorithms: one sorted table per (class, algorithm, sized). */
enum kdb_hclass { KDB_HC_FILE = 0, KDB_HC_SECTION, KDB_HC_IMPORT, KDB_HC_ALLOW, KDB_HC_COUNT };
enum kdb_halgo { KDB_HA_MD5 = 0, KDB_HA_SHA1, KDB_HA_SHA256, KDB_HA_COUNT };

static inline unsigned kdb_halgo_len(unsigned algo)
{
    return algo == KDB_HA_MD5 ? 16 : algo == KDB_HA_SHA1 ? 20 : 32;
}

/* Views the body patterns are matched against. */
enum kdb_view { KDB_VIEW_RAW = 0, KDB_VIEW_ASCII, KDB_VIEW_HTML, KDB_VIEW_COUNT };

enum kdb_section_id {
    KDB_SEC_STRINGS = 1,  /* NUL-terminated strings */
    KDB_SEC_SOURCES,      /* struct kdb_source[] */
    KDB_SEC_COUNTS,       /* uint64_t[KH_SIG_KIND_COUNT + 1]: per kind, then ignored */
    KDB_SEC_SIGS,         /* struct kdb_sig[] */
    KDB_SEC_PATTERNS,     /* struct kdb_pattern[] (Hyperscan ids index this) */
    KDB_SEC_PROGS,        /* body matcher programs and logical-expression programs */
    KDB_SEC_LDBS,         /* struct kdb_ldb[] */
    KDB_SEC_LDBSUBS,      /* struct kdb_ldbsub[] */
    KDB_SEC_PCRES,        /* struct kdb_pcre[] */
    KDB_SEC_BLOBS,        /* serialized PCRE2 code */
    KDB_SEC_YARA,         /* YARA compiled rules (yr_rules_save_stream) */
    KDB_SEC_HS_BASE = 16, /* + view: serialized Hyperscan block-mode database */
    /* + class * KDB_HA_COUNT + algo: a hash table (hashtab.h) */
    KDB_SEC_HASH_BASE = 24,
    /* same indexing: entries whose size is "*" (any) */
    KDB_SEC_HASHANY_BASE = 40,
};

struct kdb_source {
    uint32_t name; /* string offset */
    uint32_t version;
    uint32_t signatures;
    uint32_t skipped;
    uint32_t errors;
    uint32_t reserved;
    int64_t built;
};

struct kdb_sig {
    uint32_t name;   /* string offset */
    uint16_t kind;   /* enum kh_sigkind */
    uint16_t source; /* index into SOURCES */
};

enum kdb_pattern_flags {
    KDB_PAT_EXACT = 1, /* Hyperscan reports are exact match ends */
};

/* Target file types a pattern or logical signature applies to (ClamAV's). */
enum kdb_target { KDB_T_ANY = 0, KDB_T_PE = 1, KDB_T_HTML = 3, KDB_T_ELF = 6, KDB_T_ASCII = 7 };

struct kdb_pattern {
    uint32_t prog; /* offset in PROGS */
    uint32_t prog_len;
    uint32_t owner;  /* .ndb: signature index; .ldb: index into LDBS */
    uint16_t subsig; /* .ldb subsignature number, 0xffff for .ndb */
    uint8_t view;    /* enum kdb_view */
    uint8_t flags;   /* enum kdb_pattern_flags */
    uint32_t target; /* enum kdb_target */
    uint32_t minlen;
    uint32_t maxlen;
    uint32_t reserved;
    struct khx_offset offset;
};

struct kdb_ldb {
    uint32_t sig; /* index into SIGS */
    uint32_t nsubs;
    uint32_t first_sub; /* index into LDBSUBS */
    uint32_t expr;      /* offset in PROGS */
    uint32_t expr_len;
    int32_t target; /* -1: any */
    uint64_t filesize_min, filesize_max;
    uint64_t ep_min, ep_max;
    uint32_t nsect_min, nsect_max;
    uint32_t present;   /* KHX_TDB_* bits that are checked */
    uint32_t container; /* string offset of a CL_TYPE_* name, 0 if none */
};

enum kdb_ldbsub_kind { KDB_SUB_PATTERN = 0, KDB_SUB_PCRE = 1 };

struct kdb_ldbsub {
    uint32_t kind; /* enum kdb_ldbsub_kind */
    uint32_t ref;  /* pattern index or PCRE index */
};

struct kdb_pcre {
    uint32_t ldb; /* index into LDBS */
    uint32_t subsig;
    uint32_t blob; /* offset in BLOBS of the serialized code */
    uint32_t blob_len;
    uint32_t trigger; /* logical-expression program offset in PROGS */
    uint32_t trigger_len;
    uint32_t cflags; /* KHX_PCRE_* */
    uint32_t reserved;
    struct khx_offset offset;
};

#endif
