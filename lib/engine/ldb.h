/*
 * ClamAV logical signatures (.ldb): splitting a line, the target description
 * block, the logical expression language, subsignature kinds, and PCRE
 * subsignatures (through PCRE2, serialized into the .kdb so that loading does
 * not compile).
 *
 * Line:  Name;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;...
 * At most 64 subsignatures.
 */
#ifndef KHX_LDB_H
#define KHX_LDB_H

#include <stddef.h>
#include <stdint.h>

#include "bodysig.h"

#define KHX_LDB_MAX_SUBSIGS 64

enum {
    KHX_TDB_ENGINE = 1 << 0,
    KHX_TDB_TARGET = 1 << 1,
    KHX_TDB_FILESIZE = 1 << 2,
    KHX_TDB_ENTRYPOINT = 1 << 3,
    KHX_TDB_NSECTIONS = 1 << 4,
    KHX_TDB_CONTAINER = 1 << 5,
    KHX_TDB_INTERMEDIATES = 1 << 6,
    KHX_TDB_ICONGROUP = 1 << 7, /* parsed, but needs .idb support we lack */
    KHX_TDB_HANDLERTYPE = 1 << 8,
};

struct khx_tdb {
    uint32_t present; /* KHX_TDB_* bits */
    uint32_t engine_min, engine_max;
    int32_t target; /* ClamAV target type, -1 when absent */
    uint64_t filesize_min, filesize_max;
    uint64_t ep_min, ep_max;
    uint32_t nsect_min, nsect_max;
    char container[48]; /* "CL_TYPE_ZIP" ..., "" when absent */
    char handler_type[48];
};

/* Parses a TDB ("Engine:51-255,Target:1,FileSize:10-200"). Single values
 * ("Target:1", "NumberOfSections:3") give min == max. Unknown keys are
 * KH_EFORMAT; known but unsupported keys set their KHX_TDB_* bit so the
 * caller can skip the signature and count it. */
int khx_tdb_parse(const char *s, size_t len, struct khx_tdb *out, char *err, size_t errlen);

/* Logical expressions: subsignature indexes, &, |, parentheses, and the
 * count modifiers =X, =X,Y, >X, >X,Y, <X, <X,Y on a subsignature or a
 * parenthesised sub-expression. Compiled to a small stack program. */
int khx_lexpr_compile(const char *s, size_t len, unsigned nsubsigs, uint8_t **prog,
                      size_t *prog_len, char *err, size_t errlen);

/* Validates a program read from a .kdb. */
int khx_lexpr_check(const uint8_t *prog, size_t prog_len, unsigned nsubsigs);

/* Evaluates with counts[i] = matches of subsignature i (0..nsubsigs-1).
 * Returns 1 if the expression is true, 0 if not. */
int khx_lexpr_eval(const uint8_t *prog, size_t prog_len, const uint32_t *counts, unsigned nsubsigs);

/* Returns a bitmask of the subsignatures the expression mentions (bit i for
 * subsignature i), so unreferenced ones can be skipped. */
uint64_t khx_lexpr_refs(const uint8_t *prog, size_t prog_len);

enum khx_subsig_kind {
    KHX_SUB_BODY = 0,  /* [offset:]hex[::mods] */
    KHX_SUB_PCRE,      /* [offset:]Trigger/regex/[flags] */
    KHX_SUB_BYTECMP,   /* N(>>off#...) -- parsed, not supported */
    KHX_SUB_MACRO,     /* ${min-max}id$ -- parsed, not supported */
    KHX_SUB_FUZZY_IMG, /* fuzzy_img#... -- parsed, not supported */
};

struct khx_subsig {
    int kind;                 /* enum khx_subsig_kind */
    struct khx_offset offset; /* KHX_OFF_ANY when there is no offset prefix */
    /* KHX_SUB_BODY: the hex text (pointing into the parsed line) and modifiers */
    const char *hex;
    size_t hex_len;
    unsigned mods;
    /* KHX_SUB_PCRE: pointing into the parsed line */
    const char *trigger; /* logical expression over earlier subsigs */
    size_t trigger_len;
    const char *regex; /* with "\x3B"-style escapes still in place */
    size_t regex_len;
    const char *flags;
    size_t flags_len;
};

/* Classifies and parses one subsignature. Returns 0 or KH_EFORMAT. */
int khx_subsig_parse(const char *s, size_t len, struct khx_subsig *out, char *err, size_t errlen);

struct khx_ldb_line {
    const char *name;
    size_t name_len;
    const char *tdb;
    size_t tdb_len;
    const char *expr;
    size_t expr_len;
    unsigned nsubsigs;
    const char *sub[KHX_LDB_MAX_SUBSIGS];
    size_t sub_len[KHX_LDB_MAX_SUBSIGS];
};

/* Splits an .ldb line into its fields (no copies). Returns 0 or KH_EFORMAT. */
int khx_ldb_split(const char *line, size_t len, struct khx_ldb_line *out, char *err, size_t errlen);

/* PCRE subsignatures. The flags are ClamAV's: g (count every match),
 * r (rolling, accepted and ignored), e (encompass: the match must lie inside
 * the offset window), i s m x A E U (as in PCRE). */
enum {
    KHX_PCRE_GLOBAL = 1,
    KHX_PCRE_ENCOMPASS = 2,
    KHX_PCRE_ROLLING = 4,
};

/* Compiles a PCRE subsignature's regex and flags and serializes the compiled
 * code (pcre2_serialize_encode) into *ser (malloc'd). *cflags gets the
 * KHX_PCRE_* bits. Returns 0, KH_EFORMAT (reason in err) or KH_ENOMEM. */
int khx_pcre_compile(const char *regex, size_t regex_len, const char *flags, size_t flags_len,
                     uint8_t **ser, size_t *ser_len, unsigned *cflags, char *err, size_t errlen);

struct khx_pcre; /* a decoded, ready-to-match PCRE */

/* Decodes a serialized PCRE (no compilation). Returns 0 or KH_EFORMAT. */
int khx_pcre_load(const uint8_t *ser, size_t ser_len, unsigned cflags, struct khx_pcre **out);
void khx_pcre_free(struct khx_pcre *p);

/* Counts matches whose start lies in [lo, hi] (with KHX_PCRE_ENCOMPASS, whose
 * whole extent lies in [lo, end_max)). Without KHX_PCRE_GLOBAL it stops at the
 * first match. Thread-safe: match data is allocated per call. Returns the
 * count (>= 0) or KH_EMATCHER on a PCRE error (match limits). */
int khx_pcre_count(const struct khx_pcre *p, const uint8_t *buf, size_t len, uint64_t lo,
                   uint64_t hi, uint64_t end_max);

#endif
