/*
 * ClamAV body signatures: offsets and hex patterns.
 *
 * A body pattern (the hex part of an .ndb line or of an .ldb subsignature) is
 * parsed once, at database build time, into
 *   - a Hyperscan regular expression that finds candidate match ends fast, and
 *   - a small position-independent matcher program, stored in the .kdb, that
 *     decides exactly whether the pattern matches at a given start position.
 * When `exact` is set, every Hyperscan report is a true match end and the
 * program is needed only to learn the start (for offset checks).
 *
 * Supported syntax: hex bytes, `??`, nibble wildcards `a?` `?a`, `*`, `{n}`,
 * `{-n}`, `{n-}`, `{n-m}`, `[x-y]`, alternates `(aa|bb)`, negated `!(aa|bb)`,
 * multi-byte `(aabb|ccdd)` (negatable when all alternatives have equal
 * length), generic variable-length alternates, the character classes `(B)`,
 * `(L)`, `(W)`, and the ldb modifiers i (nocase), w (wide), f (fullword),
 * a (ascii, with w: both).
 */
#ifndef KHX_BODYSIG_H
#define KHX_BODYSIG_H

#include <stddef.h>
#include <stdint.h>

#include "exe.h"

enum khx_offtype {
    KHX_OFF_ANY = 0,    /* "*" */
    KHX_OFF_ABS,        /* "n" */
    KHX_OFF_EOF,        /* "EOF-n": start = size - n */
    KHX_OFF_EP,         /* "EP+n" / "EP-n": n is signed */
    KHX_OFF_SECT,       /* "Sx+n": start of section x (0-based) plus n */
    KHX_OFF_SECT_WHOLE, /* "SEx": anywhere inside section x */
    KHX_OFF_LASTSECT,   /* "SL+n": start of the last section plus n */
    KHX_OFF_VI,         /* "VI": match against PE VersionInfo strings */
};

struct khx_offset {
    uint32_t type;     /* enum khx_offtype */
    uint32_t section;  /* for KHX_OFF_SECT and KHX_OFF_SECT_WHOLE */
    int64_t n;         /* the numeric part; negative only for EP-n */
    uint64_t maxshift; /* from ",MaxShift"; 0 if absent */
};

/* Parses an offset field ("*", "100", "EOF-10", "EP+0,32", "S2+4", "SE1",
 * "SL+8", "VI"). Returns 0 or KH_EFORMAT with a reason in err. */
int khx_offset_parse(const char *s, size_t len, struct khx_offset *out, char *err, size_t errlen);

/* What an offset is resolved against. exe may be NULL (not an executable). */
struct khx_layout {
    uint64_t size;
    const struct khx_exe *exe;
};

/* Resolves an offset to the inclusive range [*lo, *hi] of allowed match start
 * positions, and *end_max, the exclusive limit for the match end (the file
 * size, or the section end for SEx). Returns 0, or 1 if the offset does not
 * apply to this file (EP on a non-executable, section index out of range,
 * position beyond the end). KHX_OFF_ANY gives [0, size]. KHX_OFF_VI returns 1:
 * the scanner handles it through khx_exe.verinfo. */
int khx_offset_resolve(const struct khx_offset *o, const struct khx_layout *l, uint64_t *lo,
                       uint64_t *hi, uint64_t *end_max);

/* Modifiers of .ldb subsignatures ("::iwfa"). */
enum {
    KHX_MOD_NOCASE = 1,
    KHX_MOD_WIDE = 2,
    KHX_MOD_FULLWORD = 4,
    KHX_MOD_ASCII = 8,
};

/* Parses "iwfa"-style modifier letters into KHX_MOD_* bits. */
int khx_mods_parse(const char *s, size_t len, unsigned *mods, char *err, size_t errlen);

struct khx_body {
    uint8_t *prog; /* matcher program, malloc'd */
    size_t prog_len;
    char *regex;     /* Hyperscan expression, malloc'd, NUL-terminated */
    int exact;       /* Hyperscan reports are exact match ends */
    uint32_t minlen; /* shortest possible match, bytes */
    uint32_t maxlen; /* longest possible match, UINT32_MAX if unbounded */
};

/* Parses a hex body pattern with KHX_MOD_* modifiers. Returns 0, KH_EFORMAT
 * (reason in err, naming the column), or KH_ENOMEM. Enforces ClamAV's rules
 * (for example that each part split by `*` or `{n-m}` has at least two static
 * bytes) so that every accepted pattern can be matched efficiently. */
int khx_body_parse(const char *hex, size_t len, unsigned mods, struct khx_body *out, char *err,
                   size_t errlen);

/* Frees a parsed body. NULL-safe. */
void khx_body_clear(struct khx_body *b);

/* Checks that a program read from a .kdb is well formed (every jump and
 * operand in bounds). Returns 0 or KH_EFORMAT. */
int khx_body_prog_check(const uint8_t *prog, size_t prog_len);

/* Looks for a match that starts in [lo, hi] and ends at or before end_max
 * (exclusive). On success returns 1 and sets *start and *end (exclusive);
 * returns 0 if there is none. The work done is bounded by the window size
 * times the program's size; the program must have passed khx_body_prog_check. */
int khx_body_find(const uint8_t *prog, size_t prog_len, const uint8_t *buf, size_t len, uint64_t lo,
                  uint64_t hi, uint64_t end_max, size_t *start, size_t *end);

#endif
