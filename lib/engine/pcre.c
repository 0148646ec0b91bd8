/*
 * PCRE subsignatures of ClamAV logical signatures, through PCRE2.
 *
 * The database builder compiles each regex once (khx_pcre_compile) and stores
 * PCRE2's serialized byte code in the .kdb; the engine decodes it at load
 * time (khx_pcre_load) without compiling, and the scanner counts matches in
 * an offset window (khx_pcre_count).
 *
 * Two properties matter for hostile input:
 *  - Matching is bounded. PCRE2's match limit is per start position, so on
 *    its own it does not bound a search over a large file. Every pattern is
 *    therefore compiled with automatic callouts, and the callout counts steps
 *    against a budget that grows linearly with the subject length; the depth
 *    and heap limits bound memory.
 *  - Decoding is checked. PCRE2 trusts serialized data; before handing it
 *    over we check the header and that the byte code's stated size is exactly
 *    what the blob holds, so a truncated or padded blob cannot make PCRE2 read
 *    past it. PCRE2 does not validate the byte code itself: a .kdb must be
 *    authenticated before it is loaded (docs/internals/ldb.md).
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "ldb.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"

/* The longest regex we compile, and PCRE2's parenthesis nesting limit. */
#define PCRE_MAX_REGEX  32768
#define PCRE_MAX_PARENS 128

/* Per-match limits. The match limit and the depth limit are ClamAV's
 * PCREMatchLimit default and five times its PCRERecMatchLimit (PCRE2 counts
 * depth differently from PCRE1, and lazy quantifiers over a few thousand
 * bytes are common in real signatures). */
#define PCRE_MATCH_LIMIT    100000
#define PCRE_DEPTH_LIMIT    10000
#define PCRE_HEAP_LIMIT_KIB 32768

/* The step budget of one khx_pcre_count call: callouts allowed before the
 * search is abandoned. Real signatures take well under one step per subject
 * byte; the budget allows 8 per byte plus a fixed allowance, which keeps the
 * worst case linear in the subject (about a second per 10 MiB). */
#define PCRE_STEPS_BASE     10000000u
#define PCRE_STEPS_PER_BYTE 8u

/* Counts are ints; stop counting long before they could overflow. */
#define PCRE_MAX_COUNT (1 << 30)

/* Options every pattern is compiled with, and which a decoded pattern must
 * carry: no UTF (ClamAV forbids (*UTF)), start positions limited by the
 * window, and the callouts the step budget relies on. */
#define PCRE_REQUIRED_OPTIONS                                                                      \
    (PCRE2_NEVER_UTF | PCRE2_NEVER_UCP | PCRE2_USE_OFFSET_LIMIT | PCRE2_AUTO_CALLOUT)

#define KHX_PCRE_ALL (KHX_PCRE_GLOBAL | KHX_PCRE_ENCOMPASS | KHX_PCRE_ROLLING)

struct khx_pcre {
    pcre2_code *code; /* owned */
    unsigned cflags;  /* KHX_PCRE_* */
};

/* ------------------------------------------------------------------------ */
/* Compiling                                                                 */
/* ------------------------------------------------------------------------ */

static int parse_flags(const char *flags, size_t n, uint32_t *opts, unsigned *cflags, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        switch (flags[i]) {
        case 'g':
            *cflags |= KHX_PCRE_GLOBAL;
            break;
        case 'r':
            *cflags |= KHX_PCRE_ROLLING;
            break;
        case 'e':
            *cflags |= KHX_PCRE_ENCOMPASS;
            break;
        case 'i':
            *opts |= PCRE2_CASELESS;
            break;
        case 's':
            *opts |= PCRE2_DOTALL;
            break;
        case 'm':
            *opts |= PCRE2_MULTILINE;
            break;
        case 'x':
            *opts |= PCRE2_EXTENDED;
            break;
        case 'A':
            *opts |= PCRE2_ANCHORED;
            break;
        case 'E':
            *opts |= PCRE2_DOLLAR_ENDONLY;
            break;
        case 'U':
            *opts |= PCRE2_UNGREEDY;
            break;
        default:
            khx_errf(err, errlen, "unknown PCRE flag 0x%02x", (unsigned)(unsigned char)flags[i]);
            return KH_EFORMAT;
        }
    }
    return KH_OK;
}

/* Compiles with our fixed options and limits. On failure returns NULL with
 * the PCRE2 error code in *ec and the offset in *eo. */
static pcre2_code *compile_regex(const char *regex, size_t len, uint32_t opts, int *ec,
                                 PCRE2_SIZE *eo)
{
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    pcre2_code *code = NULL;
    if (cc == NULL) {
        *ec = PCRE2_ERROR_NOMEMORY;
        *eo = 0;
        return NULL;
    }
    pcre2_set_max_pattern_length(cc, PCRE_MAX_REGEX);
    pcre2_set_parens_nest_limit(cc, PCRE_MAX_PARENS);
    code = pcre2_compile((PCRE2_SPTR)regex, len, opts | PCRE_REQUIRED_OPTIONS, ec, eo, cc);
    pcre2_compile_context_free(cc);
    return code;
}

int khx_pcre_compile(const char *regex, size_t regex_len, const char *flags, size_t flags_len,
                     uint8_t **ser, size_t *ser_len, unsigned *cflags, char *err, size_t errlen)
{
    int r = KH_EFORMAT;
    uint32_t opts = 0;
    unsigned cf = 0;
    pcre2_code *code = NULL;
    uint8_t *bytes = NULL, *copy = NULL;
    PCRE2_SIZE nbytes = 0;
    int ec = 0;
    PCRE2_SIZE eo = 0;

    if (regex == NULL || ser == NULL || ser_len == NULL || cflags == NULL ||
        (flags == NULL && flags_len > 0)) {
        khx_errf(err, errlen, "no regular expression");
        return KH_EINVAL;
    }
    if (regex_len == 0) {
        khx_errf(err, errlen, "empty regular expression");
        return KH_EFORMAT;
    }
    if (regex_len > PCRE_MAX_REGEX) {
        khx_errf(err, errlen, "regular expression longer than %d bytes", PCRE_MAX_REGEX);
        return KH_EFORMAT;
    }
    if ((r = parse_flags(flags, flags_len, &opts, &cf, err, errlen)) != 0)
        return r;
    code = compile_regex(regex, regex_len, opts, &ec, &eo);
    if (code == NULL) {
        PCRE2_UCHAR msg[128];
        if (ec == PCRE2_ERROR_NOMEMORY) {
            khx_errf(err, errlen, "out of memory compiling the regular expression");
            r = KH_ENOMEM;
            goto out;
        }
        if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
            strcpy((char *)msg, "unknown error");
        khx_errf(err, errlen, "regular expression: %s at offset %zu", (const char *)msg,
                 (size_t)eo);
        r = KH_EFORMAT;
        goto out;
    }
    int32_t rc = pcre2_serialize_encode((const pcre2_code **)&code, 1, &bytes, &nbytes, NULL);
    if (rc != 1) {
        khx_errf(err, errlen, "cannot serialize the regular expression (PCRE2 error %d)", (int)rc);
        r = rc == PCRE2_ERROR_NOMEMORY ? KH_ENOMEM : KH_EMATCHER;
        goto out;
    }
    /* Copied so that the caller frees it with free(), like every other
     * buffer the builder collects. */
    copy = malloc(nbytes);
    if (copy == NULL) {
        khx_errf(err, errlen, "out of memory");
        r = KH_ENOMEM;
        goto out;
    }
    memcpy(copy, bytes, nbytes);
    *ser = copy;
    *ser_len = nbytes;
    *cflags = cf;
    copy = NULL;
    r = KH_OK;
out:
    pcre2_serialize_free(bytes);
    pcre2_code_free(code);
    free(copy);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

/* Where PCRE2 keeps the size of a serialized pattern. A serialized blob is a
 * header and character tables followed by the pattern's memory block, whose
 * first fields include that block's size; pcre2_serialize_decode copies as
 * many bytes as the size says. The layout is internal to PCRE2, so instead of
 * hard-coding it we find it once by serializing two known patterns. */
static struct {
    int ok;
    size_t hdr;    /* bytes before the pattern block */
    size_t bs_off; /* offset of the size field in the pattern block */
} layout;
static pthread_once_t layout_once = PTHREAD_ONCE_INIT;

static void layout_probe(void)
{
    static const char *const probes[2] = {"a", "(?:x|yz)+[0-9]{3}\\d(?<n>q)"};
    uint8_t *bytes[2] = {NULL, NULL};
    PCRE2_SIZE nbytes[2] = {0, 0};
    size_t size[2] = {0, 0};
    size_t hdr = 0, found = 0, hits = 0;

    for (int k = 0; k < 2; k++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *code = compile_regex(probes[k], strlen(probes[k]), 0, &ec, &eo);
        if (code == NULL)
            goto out;
        int rc = pcre2_pattern_info(code, PCRE2_INFO_SIZE, &size[k]);
        int32_t n =
            pcre2_serialize_encode((const pcre2_code **)&code, 1, &bytes[k], &nbytes[k], NULL);
        pcre2_code_free(code);
        if (rc != 0 || n != 1 || nbytes[k] <= size[k])
            goto out;
    }
    hdr = nbytes[0] - size[0];
    if (hdr != nbytes[1] - size[1] || size[0] == size[1])
        goto out;
    for (size_t off = 0; off + sizeof(size_t) <= size[0] && off < 512; off += sizeof(size_t)) {
        size_t v0, v1;
        memcpy(&v0, bytes[0] + hdr + off, sizeof(v0));
        memcpy(&v1, bytes[1] + hdr + off, sizeof(v1));
        if (v0 == size[0] && v1 == size[1]) {
            found = off;
            hits++;
        }
    }
    if (hits == 1) {
        layout.hdr = hdr;
        layout.bs_off = found;
        layout.ok = 1;
    }
out:
    pcre2_serialize_free(bytes[0]);
    pcre2_serialize_free(bytes[1]);
}

int khx_pcre_load(const uint8_t *ser, size_t ser_len, unsigned cflags, struct khx_pcre **out)
{
    int r = KH_EFORMAT;
    uint8_t *aligned = NULL;
    const uint8_t *src = ser;
    pcre2_code *code = NULL;
    struct khx_pcre *p = NULL;
    size_t bs;
    uint32_t argopts = 0, allopts = 0;

    if (out == NULL)
        return KH_EINVAL;
    if (ser == NULL || (cflags & ~(unsigned)KHX_PCRE_ALL) != 0)
        goto out;
    pthread_once(&layout_once, layout_probe);
    if (!layout.ok || ser_len < layout.hdr + layout.bs_off + sizeof(size_t))
        goto out;
    /* PCRE2 reads the header as 32-bit fields; a blob inside a mapped .kdb
     * need not be aligned. */
    if ((uintptr_t)ser % sizeof(size_t) != 0) {
        aligned = malloc(ser_len);
        if (aligned == NULL) {
            r = KH_ENOMEM;
            goto out;
        }
        memcpy(aligned, ser, ser_len);
        src = aligned;
    }
    if (pcre2_serialize_get_number_of_codes(src) != 1)
        goto out;
    memcpy(&bs, src + layout.hdr + layout.bs_off, sizeof(bs));
    if (bs != ser_len - layout.hdr)
        goto out;
    int32_t rc = pcre2_serialize_decode(&code, 1, src, NULL);
    if (rc == PCRE2_ERROR_NOMEMORY) {
        r = KH_ENOMEM;
        goto out;
    }
    if (rc != 1)
        goto out;
    if (pcre2_pattern_info(code, PCRE2_INFO_ARGOPTIONS, &argopts) != 0 ||
        pcre2_pattern_info(code, PCRE2_INFO_ALLOPTIONS, &allopts) != 0 ||
        (argopts & PCRE_REQUIRED_OPTIONS) != PCRE_REQUIRED_OPTIONS || (allopts & PCRE2_UTF) != 0)
        goto out;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    p->code = code;
    p->cflags = cflags;
    code = NULL;
    *out = p;
    r = KH_OK;
out:
    pcre2_code_free(code);
    free(aligned);
    return r;
}

void khx_pcre_free(struct khx_pcre *p)
{
    if (p == NULL)
        return;
    pcre2_code_free(p->code);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Matching                                                                  */
/* ------------------------------------------------------------------------ */

struct budget {
    uint64_t steps;
    uint64_t max;
};

/* Called by PCRE2 before each pattern item. A negative return abandons the
 * match, and pcre2_match() returns that value. */
static int count_step(pcre2_callout_block *cb, void *ud)
{
    struct budget *b = ud;
    (void)cb;
    if (++b->steps > b->max)
        return PCRE2_ERROR_CALLOUT;
    return 0;
}

int khx_pcre_count(const struct khx_pcre *p, const uint8_t *buf, size_t len, uint64_t lo,
                   uint64_t hi, uint64_t end_max)
{
    int r = KH_EMATCHER;
    pcre2_match_context *mc = NULL;
    pcre2_match_data *md = NULL;
    struct budget budget;
    uint64_t end = len;
    int count = 0;

    if (p == NULL || p->code == NULL || (buf == NULL && len > 0))
        return KH_EINVAL;
    /* The window, as ClamAV applies it: the subject starts at the window's
     * first position (so ^ and lookbehind see nothing before it), and a
     * window of one position anchors the match there unless the pattern is
     * rolling, in which case the search runs on to the end. */
    if (lo >= len)
        return 0;
    if (hi > len)
        hi = len;
    if (hi < lo)
        return 0;
    if ((p->cflags & KHX_PCRE_ROLLING) && lo == hi)
        hi = len;
    if (p->cflags & KHX_PCRE_ENCOMPASS) {
        /* Encompassed matches lie wholly inside the window [lo, hi) (when it
         * is wider than one position) and before end_max. */
        if (end_max < end)
            end = end_max;
        if (lo < hi && hi < end)
            end = hi;
        if (end <= lo)
            return 0;
    }
    const uint8_t *subj = buf + lo;
    size_t slen = (size_t)(end - lo);
    size_t limit = (size_t)(hi - lo);
    if (limit > slen)
        limit = slen;

    mc = pcre2_match_context_create(NULL);
    md = pcre2_match_data_create_from_pattern(p->code, NULL);
    if (mc == NULL || md == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    budget.steps = 0;
    budget.max = PCRE_STEPS_BASE + (uint64_t)PCRE_STEPS_PER_BYTE * slen;
    pcre2_set_match_limit(mc, PCRE_MATCH_LIMIT);
    pcre2_set_depth_limit(mc, PCRE_DEPTH_LIMIT);
    pcre2_set_heap_limit(mc, PCRE_HEAP_LIMIT_KIB);
    pcre2_set_offset_limit(mc, limit);
    pcre2_set_callout(mc, count_step, &budget);

    size_t start = 0;
    for (;;) {
        int rc = pcre2_match(p->code, subj, slen, start, 0, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            r = rc == PCRE2_ERROR_NOMEMORY ? KH_ENOMEM : KH_EMATCHER;
            goto out;
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > limit)
            break;
        count++;
        if (!(p->cflags & KHX_PCRE_GLOBAL) || count >= PCRE_MAX_COUNT)
            break;
        /* The next search starts where this match ended; after an empty
         * match, one byte further, so that the loop always advances. */
        start = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
        if (start > limit || start > slen)
            break;
    }
    r = count;
out:
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return r;
}
