/*
 * The benchmark's synthetic world, shared by gen_db (the signature database)
 * and gen_corpus (the files to scan). Both programs derive everything from
 * one seed through independent pseudo-random streams, so that each can
 * rebuild exactly the pieces of the other that it needs without reading its
 * output: gen_db rebuilds the planted files to put their MD5/SHA-256 in the
 * .hdb/.hsb, and gen_corpus rebuilds the body signatures to plant bytes that
 * match them. The same seed and parameters always give byte-identical files.
 *
 * The model:
 *   - hash signature j (0 <= j < nhash) is MD5 (75%) or SHA-256 (25%), with a
 *     file size drawn from a log-normal distribution and a random digest,
 *     except for the few that a plant replaces with a real file's digest;
 *   - body signature i (0 <= i < nbody) is a ClamAV .ndb pattern: plain hex,
 *     or with `??`, `(aa|bb)` alternates, `{n-m}` gaps or `*`, every static
 *     run at least 8 bytes long; about a third are target type 1 (PE), with
 *     offsets `*`, `EP+n`, `Sx+n` or `SL+n`; the rest are type 0 with `*`, an
 *     absolute offset or `EOF-n`;
 *   - plant k (0 <= k < nplants) is one infected object: a clean file whose
 *     hash is signature j, or a host file carrying an instance of body
 *     signature i at the place its offset demands; 20% of plants are a member
 *     of a zip or tar.gz archive. Plant k owns the k-th slice of the hash and
 *     body index ranges, so no two plants share a signature.
 *
 * This is a header of static functions because bench/CMakeLists.txt turns
 * every .c file in bench/ into a program of its own.
 */
#ifndef KHIEN_BENCHGEN_H
#define KHIEN_BENCHGEN_H

#include "pegen.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* ------------------------------------------------------------------------ */
/* Pseudo-random numbers: splitmix64, one independent stream per item.      */
/* ------------------------------------------------------------------------ */

struct bg_rng {
    uint64_t state;
};

static inline uint64_t bg_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t bg_next(struct bg_rng *r)
{
    r->state += 0x9e3779b97f4a7c15ull;
    return bg_mix(r->state);
}

/* The stream names; each numbered item of each kind has its own stream, so
 * regenerating one item never depends on how many others were drawn. */
enum bg_stream_id {
    BG_S_HASHALGO = 1,
    BG_S_HASH,
    BG_S_BODY,
    BG_S_INSTANCE,
    BG_S_PLAN,
    BG_S_PLANTOBJ,
    BG_S_PLANTARCH,
    BG_S_FILE,
    BG_S_VOCAB,
};

static inline struct bg_rng bg_stream(uint64_t seed, uint64_t stream, uint64_t index)
{
    struct bg_rng r = {bg_mix(seed ^ bg_mix(stream * 0x9e3779b97f4a7c15ull ^ bg_mix(index + 1)))};
    return r;
}

/* A number in [0, n); the modulo bias is below 2^-40 for every n we use. */
static inline uint64_t bg_below(struct bg_rng *r, uint64_t n)
{
    return n ? bg_next(r) % n : 0;
}

/* A number in [lo, hi]. */
static inline uint64_t bg_range(struct bg_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + bg_below(r, hi - lo + 1);
}

static inline double bg_unit(struct bg_rng *r)
{
    return (double)(bg_next(r) >> 11) * 0x1.0p-53;
}

/* A size from a log-normal distribution (Box-Muller), clamped to [lo, hi].
 * File sizes on disks and in malware collections are close to log-normal. */
static inline size_t bg_lognormal(struct bg_rng *r, double median, double sigma, size_t lo,
                                  size_t hi)
{
    double u1 = 1.0 - bg_unit(r); /* (0, 1], so the log is finite */
    double u2 = bg_unit(r);
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    double v = median * exp(sigma * z);
    if (v < (double)lo)
        return lo;
    if (v > (double)hi)
        return hi;
    return (size_t)v;
}

static inline void bg_fill(struct bg_rng *r, uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t v = bg_next(r);
        memcpy(p, &v, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = bg_next(r);
        memcpy(p, &v, n);
    }
}

/* ------------------------------------------------------------------------ */
/* Scales and parameters.                                                   */
/* ------------------------------------------------------------------------ */

struct bg_params {
    const char *scale;
    uint64_t seed;
    uint64_t nhash;        /* .hdb + .hsb signatures */
    uint64_t nbody;        /* .ndb signatures */
    uint64_t corpus_bytes; /* bytes of files to write (more if plants remain) */
    uint64_t nplants;      /* infected objects in the corpus */
};

static const struct {
    const char *name;
    uint64_t nhash, nbody, corpus_mb, nplants;
} bg_scales[] = {
    {"small", 10000, 2000, 20, 60},
    {"medium", 1000000, 20000, 256, 300},
    {"full", 8600000, 50000, 1024, 400},
};

static inline int bg_params_scale(struct bg_params *p, const char *scale)
{
    for (size_t i = 0; i < sizeof(bg_scales) / sizeof(bg_scales[0]); i++) {
        if (strcmp(scale, bg_scales[i].name) == 0) {
            p->scale = bg_scales[i].name;
            p->nhash = bg_scales[i].nhash;
            p->nbody = bg_scales[i].nbody;
            p->corpus_bytes = bg_scales[i].corpus_mb << 20;
            p->nplants = bg_scales[i].nplants;
            return 0;
        }
    }
    return -1;
}

static inline int bg_parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Parses the options both programs share; *argi is left on the first option
 * that is not one of them (the caller handles it and calls again). Returns 1
 * when argv[*argi] was consumed, 0 when it is not a shared option, -1 on a
 * bad value. */
static inline int bg_parse_shared(struct bg_params *p, int argc, char **argv, int *argi)
{
    const char *opt = argv[*argi];
    uint64_t *dst = NULL;
    if (strcmp(opt, "--scale") == 0) {
        if (*argi + 1 >= argc || bg_params_scale(p, argv[*argi + 1]) != 0) {
            fprintf(stderr, "--scale wants small, medium or full\n");
            return -1;
        }
        *argi += 2;
        return 1;
    }
    if (strcmp(opt, "--seed") == 0)
        dst = &p->seed;
    else if (strcmp(opt, "--hash") == 0)
        dst = &p->nhash;
    else if (strcmp(opt, "--body") == 0)
        dst = &p->nbody;
    else if (strcmp(opt, "--plants") == 0)
        dst = &p->nplants;
    else if (strcmp(opt, "--corpus-mb") == 0)
        dst = &p->corpus_bytes;
    else
        return 0;
    if (*argi + 1 >= argc || bg_parse_u64(argv[*argi + 1], dst) != 0) {
        fprintf(stderr, "%s wants a non-negative integer\n", opt);
        return -1;
    }
    if (dst == &p->corpus_bytes)
        p->corpus_bytes <<= 20;
    *argi += 2;
    return 1;
}

/* The plan needs a slice of at least one signature per plant of each kind. */
static inline int bg_params_check(const struct bg_params *p)
{
    if (p->nplants == 0 || p->nhash < p->nplants || p->nbody < p->nplants) {
        fprintf(stderr, "need --plants >= 1 and --hash, --body >= --plants\n");
        return -1;
    }
    return 0;
}

#define BG_USAGE_SHARED                                                                            \
    "  --scale small|medium|full  preset sizes (default small)\n"                                  \
    "  --seed N        PRNG seed (default 1)\n"                                                    \
    "  --hash N        hash signatures (.hdb + .hsb)\n"                                            \
    "  --body N        body signatures (.ndb)\n"                                                   \
    "  --plants N      infected objects planted in the corpus\n"                                   \
    "  --corpus-mb N   megabytes of clean files\n"                                                 \
    "gen_db and gen_corpus must get the same values for these options.\n"

/* Signature n's name; hash signatures are 1..nhash, body signatures follow. */
static inline void bg_sig_name(char *buf, size_t len, uint64_t n)
{
    snprintf(buf, len, "Bench.Trojan.Gen-%llu-0", (unsigned long long)n);
}

/* ------------------------------------------------------------------------ */
/* Hash signatures.                                                         */
/* ------------------------------------------------------------------------ */

enum { BG_MD5 = 0, BG_SHA256 = 1 };

static inline int bg_hash_algo(uint64_t seed, uint64_t j)
{
    struct bg_rng r = bg_stream(seed, BG_S_HASHALGO, j);
    return bg_below(&r, 100) < 75 ? BG_MD5 : BG_SHA256;
}

/* Digest of buf with the given algorithm into out (16 or 32 bytes). */
static inline int bg_digest(int algo, const uint8_t *buf, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    const EVP_MD *md = algo == BG_MD5 ? EVP_md5() : EVP_sha256();
    return EVP_Digest(buf, len, out, &n, md, NULL) == 1 ? 0 : -1;
}

static inline size_t bg_digest_len(int algo)
{
    return algo == BG_MD5 ? 16 : 32;
}

/* ------------------------------------------------------------------------ */
/* Body signatures.                                                         */
/* ------------------------------------------------------------------------ */

#define BG_MAX_TOKS 24
#define BG_MAX_POOL 512
/* Bytes an instance puts in place of a `*` at most. */
#define BG_STAR_MAX 64

enum bg_tok_kind {
    BG_TOK_BYTES, /* pool[off, off+len) */
    BG_TOK_ANY,   /* len times `??` */
    BG_TOK_ALT,   /* nalt choices of len bytes at pool[off + c*len] */
    BG_TOK_GAP,   /* {lo-hi} */
    BG_TOK_STAR,  /* * */
};

struct bg_tok {
    uint8_t kind;
    uint8_t nalt;
    uint16_t off;
    uint16_t len;
    uint16_t lo, hi;
};

/* What a body signature looks like besides plain hex. */
enum bg_class {
    BG_CLS_PLAIN, /* one run of plain hex */
    BG_CLS_ANYQ,  /* runs joined by `??` */
    BG_CLS_ALT,   /* runs joined by alternates */
    BG_CLS_GAP,   /* parts joined by {n-m} */
    BG_CLS_STAR,  /* parts joined by * */
};

static inline const char *bg_class_label(int cls)
{
    static const char *const names[] = {"plain", "anyq", "alt", "gap", "star"};
    return cls >= 0 && cls <= BG_CLS_STAR ? names[cls] : "?";
}

enum bg_off_kind {
    BG_OFF_ANY, /* * */
    BG_OFF_ABS, /* n */
    BG_OFF_EOF, /* EOF-n */
    BG_OFF_EP,  /* EP+n */
    BG_OFF_SEC, /* Sx+n */
    BG_OFF_SL,  /* SL+n */
};

struct bg_body {
    int target; /* 0 any file, 1 PE */
    int offkind;
    uint32_t offn;
    uint32_t sec;  /* x of Sx+n */
    size_t maxlen; /* longest instance */
    int cls;       /* enum bg_class */
    size_t ntoks;
    struct bg_tok toks[BG_MAX_TOKS];
    size_t npool;
    uint8_t pool[BG_MAX_POOL];
};

static inline void bg_body_bytes(struct bg_body *b, struct bg_rng *r, size_t len)
{
    struct bg_tok *t = &b->toks[b->ntoks++];
    t->kind = BG_TOK_BYTES;
    t->off = (uint16_t)b->npool;
    t->len = (uint16_t)len;
    bg_fill(r, b->pool + b->npool, len);
    b->npool += len;
    b->maxlen += len;
}

/* Builds body signature i. The class mix follows what ClamAV's own .ndb
 * files hold: mostly plain hex, then `??`, gaps, `*` and alternates. */
static inline void bg_body_make(uint64_t seed, uint64_t i, struct bg_body *b)
{
    struct bg_rng r = bg_stream(seed, BG_S_BODY, i);
    memset(b, 0, sizeof(*b));
    uint64_t roll = bg_below(&r, 100);
    b->cls = roll < 52   ? BG_CLS_PLAIN
             : roll < 67 ? BG_CLS_ANYQ
             : roll < 80 ? BG_CLS_GAP
             : roll < 90 ? BG_CLS_STAR
                         : BG_CLS_ALT;
    int multipart = b->cls == BG_CLS_GAP || b->cls == BG_CLS_STAR;
    int wild = b->cls == BG_CLS_ANYQ || b->cls == BG_CLS_ALT;

    size_t nparts = multipart ? 2 + bg_below(&r, 2) : 1;
    for (size_t p = 0; p < nparts; p++) {
        if (p > 0) {
            struct bg_tok *t = &b->toks[b->ntoks++];
            if (b->cls == BG_CLS_GAP) {
                t->kind = BG_TOK_GAP;
                t->lo = (uint16_t)bg_below(&r, 33);
                t->hi = (uint16_t)(t->lo + bg_range(&r, 1, 64));
                b->maxlen += t->hi;
            } else {
                t->kind = BG_TOK_STAR;
                b->maxlen += BG_STAR_MAX;
            }
        }
        size_t nruns = wild ? 2 + bg_below(&r, 2) : 1;
        for (size_t k = 0; k < nruns; k++) {
            if (k > 0) {
                struct bg_tok *t = &b->toks[b->ntoks++];
                if (b->cls == BG_CLS_ANYQ) {
                    t->kind = BG_TOK_ANY;
                    t->len = (uint16_t)bg_range(&r, 1, 4);
                } else {
                    t->kind = BG_TOK_ALT;
                    t->nalt = (uint8_t)bg_range(&r, 2, 4);
                    t->len = (uint16_t)(bg_below(&r, 2) ? 1 : bg_range(&r, 2, 4));
                    t->off = (uint16_t)b->npool;
                    bg_fill(&r, b->pool + b->npool, (size_t)t->nalt * t->len);
                    /* Distinct first bytes keep the choices distinct. */
                    for (size_t c = 1; c < t->nalt; c++)
                        b->pool[b->npool + c * t->len] = (uint8_t)(b->pool[b->npool] + c * 61);
                    b->npool += (size_t)t->nalt * t->len;
                }
                b->maxlen += t->len;
            }
            size_t len = wild || multipart ? bg_range(&r, 8, 24) : bg_range(&r, 12, 64);
            bg_body_bytes(b, &r, len);
        }
    }

    b->target = bg_below(&r, 100) < 35 ? 1 : 0;
    roll = bg_below(&r, 100);
    if (b->target == 1) {
        if (roll < 40) {
            b->offkind = BG_OFF_ANY;
        } else if (roll < 70) {
            b->offkind = BG_OFF_EP;
            b->offn = (uint32_t)bg_below(&r, 64);
        } else if (roll < 85) {
            b->offkind = BG_OFF_SEC;
            b->sec = (uint32_t)bg_below(&r, 3);
            b->offn = (uint32_t)bg_below(&r, 512);
        } else {
            b->offkind = BG_OFF_SL;
            b->offn = (uint32_t)bg_below(&r, 512);
        }
    } else {
        if (roll < 88) {
            b->offkind = BG_OFF_ANY;
        } else if (roll < 95) {
            b->offkind = BG_OFF_ABS;
            b->offn = (uint32_t)bg_below(&r, 4096);
        } else if (b->cls != BG_CLS_STAR) {
            /* EOF-n must leave room for the longest instance. */
            b->offkind = BG_OFF_EOF;
            b->offn = (uint32_t)(b->maxlen + bg_below(&r, 1024));
        }
    }
}

/* Writes an instance of b (bytes that match it) into out (at least
 * b->maxlen bytes) and returns its length. Wildcards get random bytes, gaps a
 * random length within their range. */
static inline size_t bg_body_instance(uint64_t seed, uint64_t i, const struct bg_body *b,
                                      uint8_t *out)
{
    struct bg_rng r = bg_stream(seed, BG_S_INSTANCE, i);
    size_t n = 0;
    for (size_t k = 0; k < b->ntoks; k++) {
        const struct bg_tok *t = &b->toks[k];
        size_t len;
        switch (t->kind) {
        case BG_TOK_BYTES:
            memcpy(out + n, b->pool + t->off, t->len);
            n += t->len;
            break;
        case BG_TOK_ANY:
            bg_fill(&r, out + n, t->len);
            n += t->len;
            break;
        case BG_TOK_ALT:
            memcpy(out + n, b->pool + t->off + bg_below(&r, t->nalt) * t->len, t->len);
            n += t->len;
            break;
        case BG_TOK_GAP:
            len = bg_range(&r, t->lo, t->hi);
            bg_fill(&r, out + n, len);
            n += len;
            break;
        default:
            len = bg_below(&r, BG_STAR_MAX + 1);
            bg_fill(&r, out + n, len);
            n += len;
            break;
        }
    }
    return n;
}

/* Appends text to a bounded line buffer; returns -1 when it would not fit. */
static inline int bg_put(char *buf, size_t cap, size_t *n, const char *s)
{
    size_t len = strlen(s);
    if (*n + len + 1 > cap)
        return -1;
    memcpy(buf + *n, s, len + 1);
    *n += len;
    return 0;
}

static inline int bg_put_hex(char *buf, size_t cap, size_t *n, const uint8_t *p, size_t len,
                             int yara)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t k = 0; k < len; k++) {
        if (*n + 4 > cap)
            return -1;
        if (yara && *n > 0 && buf[*n - 1] != ' ' && buf[*n - 1] != '(')
            buf[(*n)++] = ' ';
        buf[(*n)++] = hex[p[k] >> 4];
        buf[(*n)++] = hex[p[k] & 15];
    }
    buf[*n] = '\0';
    return 0;
}

/* Formats b's pattern as ClamAV body hex (yara == 0) or as the inside of a
 * YARA hex string (yara == 1) into buf. Returns 0, or -1 when cap is short. */
static inline int bg_body_hex(const struct bg_body *b, int yara, char *buf, size_t cap)
{
    size_t n = 0;
    char tmp[32];
    buf[0] = '\0';
    for (size_t k = 0; k < b->ntoks; k++) {
        const struct bg_tok *t = &b->toks[k];
        int r = 0;
        switch (t->kind) {
        case BG_TOK_BYTES:
            r = bg_put_hex(buf, cap, &n, b->pool + t->off, t->len, yara);
            break;
        case BG_TOK_ANY:
            for (size_t c = 0; c < t->len && r == 0; c++)
                r = bg_put(buf, cap, &n, yara ? " ??" : "??");
            break;
        case BG_TOK_ALT:
            r = bg_put(buf, cap, &n, yara ? " (" : "(");
            for (size_t c = 0; c < t->nalt && r == 0; c++) {
                if (c > 0)
                    r = bg_put(buf, cap, &n, yara ? " | " : "|");
                if (r == 0)
                    r = bg_put_hex(buf, cap, &n, b->pool + t->off + c * t->len, t->len, yara);
            }
            if (r == 0)
                r = bg_put(buf, cap, &n, yara ? " )" : ")");
            break;
        case BG_TOK_GAP:
            /* ClamAV writes an open lower bound as {-n}. */
            if (yara)
                snprintf(tmp, sizeof(tmp), " [%u-%u]", t->lo, t->hi);
            else if (t->lo == 0)
                snprintf(tmp, sizeof(tmp), "{-%u}", t->hi);
            else
                snprintf(tmp, sizeof(tmp), "{%u-%u}", t->lo, t->hi);
            r = bg_put(buf, cap, &n, tmp);
            break;
        default:
            r = bg_put(buf, cap, &n, yara ? " [-]" : "*");
            break;
        }
        if (r != 0)
            return -1;
    }
    return 0;
}

/* ClamAV's offset field for b. */
static inline void bg_body_offset(const struct bg_body *b, char *buf, size_t cap)
{
    switch (b->offkind) {
    case BG_OFF_ABS:
        snprintf(buf, cap, "%u", b->offn);
        break;
    case BG_OFF_EOF:
        snprintf(buf, cap, "EOF-%u", b->offn);
        break;
    case BG_OFF_EP:
        snprintf(buf, cap, "EP+%u", b->offn);
        break;
    case BG_OFF_SEC:
        snprintf(buf, cap, "S%u+%u", b->sec, b->offn);
        break;
    case BG_OFF_SL:
        snprintf(buf, cap, "SL+%u", b->offn);
        break;
    default:
        snprintf(buf, cap, "*");
        break;
    }
}

/* The YARA condition with the same meaning as b's target type and offset.
 * The pe module gives the entry point as a file offset and each section's
 * raw data offset, so the PE offsets are exact, not approximated. */
static inline void bg_body_condition(const struct bg_body *b, char *buf, size_t cap)
{
    switch (b->offkind) {
    case BG_OFF_ABS:
        snprintf(buf, cap, "$a at %u", b->offn);
        break;
    case BG_OFF_EOF:
        snprintf(buf, cap, "$a at filesize - %u", b->offn);
        break;
    case BG_OFF_EP:
        snprintf(buf, cap, "$a at pe.entry_point + %u", b->offn);
        break;
    case BG_OFF_SEC:
        snprintf(buf, cap, "$a at pe.sections[%u].raw_data_offset + %u", b->sec, b->offn);
        break;
    case BG_OFF_SL:
        snprintf(buf, cap, "$a at pe.sections[pe.number_of_sections - 1].raw_data_offset + %u",
                 b->offn);
        break;
    default:
        snprintf(buf, cap, b->target == 1 ? "uint16(0) == 0x5a4d and $a" : "$a");
        break;
    }
}

static inline const char *bg_off_label(int offkind)
{
    static const char *const names[] = {"any", "abs", "eof", "ep", "sec", "sl"};
    return offkind >= 0 && offkind <= BG_OFF_SL ? names[offkind] : "?";
}

/* ------------------------------------------------------------------------ */
/* File contents: random binary, text, PE.                                  */
/* ------------------------------------------------------------------------ */

enum { BG_HOST_BIN = 0, BG_HOST_TEXT, BG_HOST_PE, BG_HOST_ZIP, BG_HOST_TGZ };

static inline const char *bg_host_ext(int host)
{
    static const char *const ext[] = {".bin", ".txt", ".exe", ".zip", ".tar.gz"};
    return ext[host];
}

#define BG_NWORDS 2048

struct bg_vocab {
    char words[BG_NWORDS][16];
};

/* Pronounceable lower-case words, so that text files look like text to
 * every file-type detector. */
static inline void bg_vocab_make(uint64_t seed, struct bg_vocab *v)
{
    static const char cons[] = "bcdfghklmnprstvwz";
    static const char vow[] = "aeiou";
    struct bg_rng r = bg_stream(seed, BG_S_VOCAB, 0);
    for (size_t w = 0; w < BG_NWORDS; w++) {
        size_t n = 0, syl = bg_range(&r, 1, 4);
        for (size_t s = 0; s < syl; s++) {
            v->words[w][n++] = cons[bg_below(&r, sizeof(cons) - 1)];
            v->words[w][n++] = vow[bg_below(&r, sizeof(vow) - 1)];
            if (bg_below(&r, 4) == 0)
                v->words[w][n++] = cons[bg_below(&r, sizeof(cons) - 1)];
        }
        v->words[w][n] = '\0';
    }
}

/* Fills p with words, spaces and newlines. */
static inline void bg_fill_text(struct bg_rng *r, const struct bg_vocab *v, uint8_t *p, size_t n)
{
    size_t i = 0, col = 0;
    while (i < n) {
        const char *w = v->words[bg_below(r, BG_NWORDS)];
        for (size_t k = 0; w[k] && i < n; k++)
            p[i++] = (uint8_t)w[k];
        col++;
        if (i < n)
            p[i++] = col >= 6 + bg_below(r, 8) ? '\n' : ' ';
        if (i > 0 && p[i - 1] == '\n')
            col = 0;
    }
}

/* Random bytes whose first byte is never the start of a common magic
 * (MZ, PK, gzip, ELF, %PDF, ...), so that "random binary" stays untyped. */
static inline void bg_fill_binary(struct bg_rng *r, uint8_t *p, size_t n)
{
    bg_fill(r, p, n);
    if (n > 0)
        p[0] = (uint8_t)(0x90 + (p[0] & 0x1f));
}

/* Size of a clean file or plant host of the given type; archive members are
 * smaller. Medians: binary 24 KiB, text 8 KiB, PE 64 KiB. */
static inline size_t bg_host_size(int host, struct bg_rng *r, int member)
{
    double scale = member ? 0.5 : 1.0;
    switch (host) {
    case BG_HOST_TEXT:
        return bg_lognormal(r, 8192 * scale, 1.2, 64, 2u << 20);
    case BG_HOST_PE:
        return bg_lognormal(r, 65536 * scale, 1.0, 4096, 4u << 20);
    default:
        return bg_lognormal(r, 24576 * scale, 1.6, 256, 8u << 20);
    }
}

/* Builds a PE image of about `size` bytes: 3 to 5 sections, the entry point
 * in the first (.text), imports from KERNEL32. When b is not NULL the
 * instance inst[0..ilen) is planted where b's offset says; a plant at SL+n
 * gets no generated .idata, so that the last section is one of ours. */
static inline int bg_make_pe(struct bg_rng *r, const struct bg_vocab *v, size_t size,
                             const struct bg_body *b, const uint8_t *inst, size_t ilen,
                             uint8_t **out, size_t *outlen)
{
    static const char *const names[] = {".text", ".rdata", ".data", ".pdata", ".reloc"};
    static const struct pegen_func k32[] = {
        {"GetProcAddress", 0, 0}, {"LoadLibraryA", 0, 0}, {"ExitProcess", 0, 0}};
    static const struct pegen_import imps[] = {{"KERNEL32.dll", k32, 3}};
    struct pegen_section secs[5];
    uint8_t *data[5] = {NULL};
    size_t sz[5];
    int rc = -1;

    size_t nsec = 3 + bg_below(r, 3);
    if (b && b->offkind == BG_OFF_SEC && nsec < b->sec + 1)
        nsec = b->sec + 1;
    int imports = !(b && b->offkind == BG_OFF_SL);
    if (size < 2048)
        size = 2048;
    sz[0] = size / 2;
    for (size_t s = 1; s < nsec; s++)
        sz[s] = 512 + bg_below(r, size / (2 * (nsec - 1)) + 1);
    uint32_t entry = (uint32_t)(16 * bg_below(r, sz[0] / 64 + 1));

    /* Where the instance goes: section and offset inside it. */
    size_t psec = 0, poff = 0;
    if (b) {
        switch (b->offkind) {
        case BG_OFF_EP:
            psec = 0;
            poff = entry + b->offn;
            break;
        case BG_OFF_SEC:
            psec = b->sec;
            poff = b->offn;
            break;
        case BG_OFF_SL:
            psec = nsec - 1;
            poff = b->offn;
            break;
        default:
            psec = bg_below(r, nsec);
            poff = bg_below(r, sz[psec]);
            break;
        }
        if (sz[psec] < poff + ilen)
            sz[psec] = poff + ilen + bg_below(r, 256);
    }

    for (size_t s = 0; s < nsec; s++) {
        data[s] = malloc(sz[s]);
        if (data[s] == NULL)
            goto out;
        if (s == 1) {
            bg_fill_text(r, v, data[s], sz[s]);
        } else if (s == 2) { /* .data: values, then zeros */
            bg_fill(r, data[s], sz[s] / 2);
            memset(data[s] + sz[s] / 2, 0, sz[s] - sz[s] / 2);
        } else {
            bg_fill(r, data[s], sz[s]);
        }
        secs[s].name = names[s];
        secs[s].data = data[s];
        secs[s].size = sz[s];
        secs[s].vsize = 0;
        secs[s].characteristics = s == 0   ? PEGEN_SCN_CODE
                                  : s == 1 ? PEGEN_SCN_RDATA
                                           : PEGEN_SCN_DATA;
    }
    if (b)
        memcpy(data[psec] + poff, inst, ilen);

    struct pegen_pe pe = {
        .pe32plus = (int)bg_below(r, 2),
        .sections = secs,
        .nsections = nsec,
        .entry_section = 0,
        .entry = entry,
        .imports = imports ? imps : NULL,
        .nimports = imports ? 1 : 0,
    };
    rc = pegen_pe_build(&pe, out, outlen, NULL) == 0 ? 0 : -1;
out:
    for (size_t s = 0; s < 5; s++)
        free(data[s]);
    return rc;
}

/* Builds a host object of type `host` (binary, text or PE) of about `size`
 * bytes into a malloc'd *out, with the instance of b planted in it when b is
 * not NULL. Binary and text hosts honour absolute and EOF-n offsets by
 * growing to fit; the caller never gives them PE offsets. */
static inline int bg_make_host(int host, struct bg_rng *r, const struct bg_vocab *v, size_t size,
                               const struct bg_body *b, const uint8_t *inst, size_t ilen,
                               uint8_t **out, size_t *outlen)
{
    if (host == BG_HOST_PE)
        return bg_make_pe(r, v, size, b, inst, ilen, out, outlen);
    if (b) {
        size_t need = b->offkind == BG_OFF_ABS   ? b->offn + b->maxlen + 16
                      : b->offkind == BG_OFF_EOF ? b->offn + 16
                                                 : ilen + 32;
        if (size < need)
            size = need + bg_below(r, 4096);
    }
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL)
        return -1;
    if (host == BG_HOST_TEXT)
        bg_fill_text(r, v, p, size);
    else
        bg_fill_binary(r, p, size);
    if (b) {
        size_t pos;
        if (b->offkind == BG_OFF_ABS)
            pos = b->offn;
        else if (b->offkind == BG_OFF_EOF)
            pos = size - b->offn;
        else
            pos = 16 + bg_below(r, size - ilen - 16 + 1);
        memcpy(p + pos, inst, ilen);
    }
    *out = p;
    *outlen = size;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Plants.                                                                  */
/* ------------------------------------------------------------------------ */

enum { BG_PLANT_HASH = 0, BG_PLANT_BODY = 1 };
enum { BG_WHERE_FILE = 0, BG_WHERE_ZIP, BG_WHERE_TGZ };

struct bg_plant {
    int kind;     /* BG_PLANT_HASH or BG_PLANT_BODY */
    uint64_t sig; /* hash index j or body index i */
    uint64_t n;   /* the signature's number in its name */
    int algo;     /* for a hash plant */
    int host;     /* BG_HOST_BIN, _TEXT or _PE */
    int where;    /* BG_WHERE_* */
};

static inline void bg_plan(const struct bg_params *p, uint64_t k, struct bg_plant *pl,
                           struct bg_body *body)
{
    struct bg_rng r = bg_stream(p->seed, BG_S_PLAN, k);
    memset(pl, 0, sizeof(*pl));
    pl->kind = bg_below(&r, 100) < 30 ? BG_PLANT_HASH : BG_PLANT_BODY;
    uint64_t roll = bg_below(&r, 100);
    pl->where = roll < 10 ? BG_WHERE_ZIP : roll < 20 ? BG_WHERE_TGZ : BG_WHERE_FILE;
    if (pl->kind == BG_PLANT_HASH) {
        uint64_t stride = p->nhash / p->nplants;
        pl->sig = k * stride + bg_below(&r, stride);
        pl->n = pl->sig + 1;
        pl->algo = bg_hash_algo(p->seed, pl->sig);
        pl->host = (int)bg_below(&r, 3);
    } else {
        uint64_t stride = p->nbody / p->nplants;
        pl->sig = k * stride + bg_below(&r, stride);
        pl->n = p->nhash + pl->sig + 1;
        bg_body_make(p->seed, pl->sig, body);
        if (body->target == 1)
            pl->host = BG_HOST_PE;
        else if (body->offkind != BG_OFF_ANY)
            pl->host = (int)bg_below(&r, 2); /* binary or text */
        else
            pl->host = (int)bg_below(&r, 3);
    }
}

/* The infected object of plant k (a whole file, or the archive member that
 * carries the detection) into a malloc'd *out. */
static inline int bg_plant_object(const struct bg_params *p, const struct bg_vocab *v, uint64_t k,
                                  struct bg_plant *pl, uint8_t **out, size_t *outlen)
{
    struct bg_body body;
    uint8_t inst[BG_MAX_POOL + BG_MAX_TOKS * BG_STAR_MAX];
    bg_plan(p, k, pl, &body);
    struct bg_rng r = bg_stream(p->seed, BG_S_PLANTOBJ, k);
    size_t size = bg_host_size(pl->host, &r, pl->where != BG_WHERE_FILE);
    if (pl->kind == BG_PLANT_HASH)
        return bg_make_host(pl->host, &r, v, size, NULL, NULL, 0, out, outlen);
    size_t ilen = bg_body_instance(p->seed, pl->sig, &body, inst);
    return bg_make_host(pl->host, &r, v, size, &body, inst, ilen, out, outlen);
}

#endif
