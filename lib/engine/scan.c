/*
 * Scanning one object with an engine: the per-thread scanner, and the order
 * in which one object is examined:
 *
 *   type      khx_filetype, then the PE/ELF parser for executables;
 *   hashes    whole-object, PE section and import-table hashes, computed only
 *             when the database holds a hash that this object could match
 *             (same size, or a "*" size entry); the .fp/.sfp allowlist first;
 *   bodies    Hyperscan over the raw bytes, then over the ASCII and HTML
 *             normalised views for text; each report is checked against the
 *             pattern's target type and offset, and verified by its matcher
 *             program when Hyperscan alone cannot prove it;
 *   logical   PCRE subsignatures whose trigger holds, then the .ldb
 *             expressions of the signatures that saw any subsignature match;
 *   yara      the YARA rules, through one libyara scanner per thread;
 *   members   container members, recursively, within the limits.
 *
 * Without allmatch the first detection ends the scan of the top-level file.
 */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "exe.h"
#include "yara_int.h"

#define MAX_INNER_PATH 4096
/* Candidate offsets of embedded objects kept per object; past this the
 * search falls back to looking at every byte. */
#define MAX_MAGIC_CANDIDATES (1u << 20)

struct kh_scanner {
    kh_engine *e;
    struct kh_scan_opts opts;
    hs_scratch_t *scratch;
    YR_SCANNER *yara;
    uint32_t *sub_counts;   /* one per .ldb subsignature (engine->nsubs) */
    uint64_t *sub_last_end; /* last counted match end + 1, to count each end once */
    uint32_t *touched;      /* .ldb indexes with counts in this object */
    size_t ntouched;
    uint8_t *ldb_mark; /* 1 if the ldb is in `touched` */
    atomic_int cancel; /* set by kh_scanner_cancel */
};

/* One top-level scan. */
struct scan_ctx {
    kh_scanner *s;
    const kh_engine *e;
    kh_detect_fn cb;
    void *ud;
    struct kh_scan_result *res;
    uint64_t deadline; /* ms, 0 = none */
    uint64_t total;    /* bytes examined so far, against max_scansize */
    int stop;          /* a detection ended the scan (no allmatch) */
    int aborted;       /* the callback asked to stop */
    int timed_out;
};

/* One object: the top-level file or a container member. */
struct obj {
    const uint8_t *buf;
    size_t len;
    enum khx_ftype type;
    struct khx_exe exe;
    const char *inner; /* NULL at top level */
    uint32_t depth;
    enum khx_ftype parent;
    int embedded; /* found by the embedded-object search: not searched again */
    struct khx_vec reported;
    /* Offsets where an embedded object may start, from the raw Hyperscan
     * pass (KDB_FLAG_MAGICS); `magics_lost` when more than fit. */
    struct khx_vec magics;
    int magics_lost; /* uint32_t signature indexes reported on this object */
};

/* What Hyperscan callbacks need. */
struct hs_ctx {
    struct scan_ctx *c;
    struct obj *o;
    const uint8_t *view;
    size_t view_len;
    unsigned view_id;
    unsigned ncallbacks;
};

void kh_limits_default(struct kh_limits *l)
{
    /* ClamAV's defaults, except the time limit, which ClamAV sets to 2 min. */
    l->max_filesize = 100ull << 20;
    l->max_scansize = 400ull << 20;
    l->max_recursion = 17;
    l->max_files = 10000;
    l->max_ratio = 250;
    l->max_scantime_ms = 120000;
}

void kh_scan_opts_default(struct kh_scan_opts *o)
{
    memset(o, 0, sizeof(*o));
    kh_limits_default(&o->limits);
    o->scan_archives = 1;
}

int kh_scanner_new(kh_engine *e, const struct kh_scan_opts *opts, kh_scanner **out)
{
    int r = KH_ENOMEM;
    if (e == NULL || out == NULL)
        return KH_EINVAL;
    kh_scanner *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KH_ENOMEM;
    s->e = kh_engine_ref(e);
    if (opts)
        s->opts = *opts;
    else
        kh_scan_opts_default(&s->opts);
    for (unsigned v = 0; v < KDB_VIEW_COUNT; v++) {
        if (e->hs[v] && hs_alloc_scratch(e->hs[v], &s->scratch) != HS_SUCCESS) {
            r = KH_EMATCHER;
            goto fail;
        }
    }
    if (e->nsubs > 0) {
        s->sub_counts = calloc(e->nsubs, sizeof(*s->sub_counts));
        s->sub_last_end = calloc(e->nsubs, sizeof(*s->sub_last_end));
        s->touched = calloc(e->nldbs, sizeof(*s->touched));
        s->ldb_mark = calloc(e->nldbs, 1);
        if (!s->sub_counts || !s->sub_last_end || !s->touched || !s->ldb_mark)
            goto fail;
    }
    if (e->yara) {
        if (yr_scanner_create(e->yara, &s->yara) != ERROR_SUCCESS) {
            r = KH_EMATCHER;
            goto fail;
        }
    }
    *out = s;
    return KH_OK;
fail:
    kh_scanner_free(s);
    return r;
}

void kh_scanner_free(kh_scanner *s)
{
    if (s == NULL)
        return;
    if (s->scratch)
        hs_free_scratch(s->scratch);
    if (s->yara)
        yr_scanner_destroy(s->yara);
    free(s->sub_counts);
    free(s->sub_last_end);
    free(s->touched);
    free(s->ldb_mark);
    kh_engine_free(s->e);
    free(s);
}

const kh_engine *khx_scanner_engine(const kh_scanner *s)
{
    return s->e;
}

void kh_scanner_cancel(kh_scanner *s)
{
    if (s)
        atomic_store(&s->cancel, 1);
}

void kh_scanner_reset_cancel(kh_scanner *s)
{
    if (s)
        atomic_store(&s->cancel, 0);
}

static int deadline_passed(struct scan_ctx *c)
{
    if (atomic_load_explicit(&c->s->cancel, memory_order_relaxed)) {
        c->aborted = 1;
        return 1;
    }
    if (c->deadline && khx_now_ms() > c->deadline) {
        c->timed_out = 1;
        return 1;
    }
    return 0;
}

static int done(const struct scan_ctx *c)
{
    return c->stop || c->aborted || c->timed_out ||
           atomic_load_explicit(&c->s->cancel, memory_order_relaxed);
}

static void report(struct scan_ctx *c, struct obj *o, const char *name, int kind, int severity,
                   const char *source)
{
    struct kh_detection d = {name, kind, severity, source ? source : "", o->inner, o->depth};
    if (severity == KH_SEV_MALWARE)
        c->res->detections++;
    else
        c->res->notices++;
    if (c->cb && c->cb(c->ud, &d) != 0)
        c->aborted = 1;
    if (severity == KH_SEV_MALWARE && !c->s->opts.allmatch)
        c->stop = 1;
}

static void report_sig(struct scan_ctx *c, struct obj *o, uint32_t sig)
{
    for (size_t i = 0; i < o->reported.len; i++)
        if (*KHX_VEC_AT(&o->reported, uint32_t, i) == sig)
            return;
    uint32_t *slot = khx_vec_push(&o->reported);
    if (slot)
        *slot = sig;
    /* Signature records are checked here rather than when the database is
     * opened (see engine.c). */
    const struct kdb_sig *s = &c->e->sigs[sig];
    const char *src = s->source < c->e->nsources ? c->e->sources[s->source].name : "";
    const char *name = s->name < c->e->strings_len ? c->e->strings + s->name : "(damaged)";
    int kind = s->kind < KH_SIG_KIND_COUNT ? s->kind : KH_SIG_HASH;
    report(c, o, name, kind, KH_SEV_MALWARE, src);
}

static void report_notice(struct scan_ctx *c, struct obj *o, const char *name)
{
    report(c, o, name, KH_SIG_HEURISTIC, KH_SEV_NOTICE, "");
}

/* ---- hashes ------------------------------------------------------------ */

static int compute(unsigned algo, const uint8_t *p, size_t n, uint8_t *out)
{
    return algo == KDB_HA_MD5    ? khx_md5(p, n, out)
           : algo == KDB_HA_SHA1 ? khx_sha1(p, n, out)
                                 : khx_sha256(p, n, out);
}

/* Looks `p[0..n)` up in the class's tables; `size` is the key for sized
 * entries. Reports every hit (or just returns 1 for the allowlist). */
static int hash_lookup(struct scan_ctx *c, struct obj *o, unsigned cls, const uint8_t *p, size_t n,
                       uint64_t size, int top)
{
    int hit = 0;
    for (unsigned algo = 0; algo < KDB_HA_COUNT && !done(c); algo++) {
        const struct khx_hashtab *sized = &c->e->hash[cls][algo];
        const struct khx_hashtab *any = &c->e->hashany[cls][algo];
        int want_sized = khx_hashtab_has_size(sized, size);
        if (!want_sized && any->n == 0)
            continue;
        uint8_t d[32];
        if (algo == KDB_HA_SHA256 && top && c->res->sha256_valid) {
            memcpy(d, c->res->sha256, 32);
        } else if (compute(algo, p, n, d) != 0) {
            continue;
        } else if (algo == KDB_HA_SHA256 && top) {
            memcpy(c->res->sha256, d, 32);
            c->res->sha256_valid = 1;
        }
        for (int pass = 0; pass < 2; pass++) {
            const struct khx_hashtab *t = pass == 0 ? sized : any;
            if (pass == 0 && !want_sized)
                continue;
            size_t lo, hi;
            khx_hashtab_find(t, size, d, &lo, &hi);
            for (size_t i = lo; i < hi; i++) {
                uint32_t sig = t->sigs[i];
                if (sig >= c->e->nsigs)
                    continue; /* damaged record: never trusted blindly */
                hit = 1;
                if (cls == KDB_HC_ALLOW)
                    return 1;
                report_sig(c, o, sig);
                if (done(c))
                    return hit;
            }
        }
    }
    return hit;
}

static void scan_pe_hashes(struct scan_ctx *c, struct obj *o)
{
    const struct khx_exe *x = &o->exe;
    if (x->type != KHX_EXE_PE32 && x->type != KHX_EXE_PE32PLUS)
        return;
    int want_sect = 0, want_imp = 0;
    for (unsigned a = 0; a < KDB_HA_COUNT; a++) {
        want_sect |= c->e->hash[KDB_HC_SECTION][a].n + c->e->hashany[KDB_HC_SECTION][a].n > 0;
        want_imp |= c->e->hash[KDB_HC_IMPORT][a].n + c->e->hashany[KDB_HC_IMPORT][a].n > 0;
    }
    for (uint32_t i = 0; want_sect && i < x->nsections && !done(c); i++) {
        const struct khx_section *s = &x->sections[i];
        if (s->raw_size == 0 || s->raw_off > o->len || s->raw_size > o->len - s->raw_off)
            continue;
        hash_lookup(c, o, KDB_HC_SECTION, o->buf + s->raw_off, s->raw_size, s->raw_size, 0);
    }
    if (want_imp && x->imphash_str && !done(c))
        hash_lookup(c, o, KDB_HC_IMPORT, (const uint8_t *)x->imphash_str, x->imphash_len,
                    x->imphash_len, 0);
}

/* ---- body patterns ----------------------------------------------------- */

static int target_ok(uint32_t target, const struct obj *o)
{
    switch (target) {
    case KDB_T_ANY:
        return 1;
    case KDB_T_PE:
        return o->exe.type == KHX_EXE_PE32 || o->exe.type == KHX_EXE_PE32PLUS;
    case KDB_T_ELF:
        return o->exe.type == KHX_EXE_ELF32 || o->exe.type == KHX_EXE_ELF64;
    case KDB_T_ASCII:
        return o->type == KHX_FT_TEXT || o->type == KHX_FT_HTML || o->type == KHX_FT_MAIL;
    case KDB_T_HTML:
        return o->type == KHX_FT_HTML;
    }
    return 0;
}

/* Is there a real match of pattern p ending at or before `to`, starting
 * where its offset allows? */
static int pattern_confirm(struct hs_ctx *h, const struct kdb_pattern *p, uint64_t to)
{
    const struct kh_engine *e = h->c->e;
    int exact = p->flags & KDB_PAT_EXACT;
    if (exact && p->offset.type == KHX_OFF_ANY)
        return 1;
    const uint8_t *prog = e->progs + p->prog;
    uint64_t wlo = 0, whi = to;
    if (p->maxlen != UINT32_MAX && to > p->maxlen)
        wlo = to - p->maxlen;
    if (to < p->minlen)
        return 0;
    whi = to - p->minlen;
    size_t st, en;
    if (p->offset.type == KHX_OFF_VI) {
        if (h->view_id != KDB_VIEW_RAW)
            return 0;
        for (uint32_t i = 0; i < h->o->exe.nverinfo; i++) {
            const struct khx_verinfo *v = &h->o->exe.verinfo[i];
            uint64_t lo = KHX_MAX(wlo, v->off), hi = KHX_MIN(whi, v->off + v->len);
            uint64_t end_max = KHX_MIN(to, v->off + v->len);
            if (lo <= hi &&
                khx_body_find(prog, p->prog_len, h->view, h->view_len, lo, hi, end_max, &st, &en))
                return 1;
        }
        return 0;
    }
    struct khx_layout lay = {h->view_len, h->view_id == KDB_VIEW_RAW ? &h->o->exe : NULL};
    uint64_t lo, hi, end_max;
    if (khx_offset_resolve(&p->offset, &lay, &lo, &hi, &end_max) != 0)
        return 0;
    lo = KHX_MAX(lo, wlo);
    hi = KHX_MIN(hi, whi);
    end_max = KHX_MIN(end_max, to);
    if (lo > hi)
        return 0;
    return khx_body_find(prog, p->prog_len, h->view, h->view_len, lo, hi, end_max, &st, &en);
}

static void ldb_touch(kh_scanner *s, uint32_t ldb)
{
    if (!s->ldb_mark[ldb]) {
        s->ldb_mark[ldb] = 1;
        s->touched[s->ntouched++] = ldb;
    }
}

static int on_hs_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                       void *ud)
{
    struct hs_ctx *h = ud;
    struct scan_ctx *c = h->c;
    const struct kh_engine *e = c->e;
    (void)from;
    (void)flags;
    if ((++h->ncallbacks & 1023) == 0 && deadline_passed(c))
        return 1;
    if (done(c))
        return 1;
    if (id >= KDB_MAGIC_ID) {
        size_t k = id - KDB_MAGIC_ID;
        size_t mlen = k < khx_embedded_nmagics ? khx_embedded_magics[k].len : 0;
        uint64_t at = (uint64_t)(h->view - h->o->buf) + to;
        if (h->view_id == KDB_VIEW_RAW && mlen > 0 && at >= mlen) {
            uint64_t *slot = khx_vec_push(&h->o->magics);
            if (slot)
                *slot = at - mlen;
            else
                h->o->magics_lost = 1;
        }
        return 0;
    }
    if (id >= e->npatterns)
        return 0;
    const struct kdb_pattern *p = &e->patterns[id];
    if (p->owner == UINT32_MAX)
        return 0;
    if (p->subsig == 0xffff) {
        if (!target_ok(p->target, h->o) || !pattern_confirm(h, p, to))
            return 0;
        report_sig(c, h->o, p->owner);
        return done(c);
    }
    const struct kdb_ldb *l = &e->ldbs[p->owner];
    uint32_t slot = l->first_sub + p->subsig;
    if (c->s->sub_last_end[slot] == to + 1)
        return 0;
    if (!pattern_confirm(h, p, to))
        return 0;
    c->s->sub_last_end[slot] = to + 1;
    if (c->s->sub_counts[slot] < UINT32_MAX)
        c->s->sub_counts[slot]++;
    ldb_touch(c->s, p->owner);
    return 0;
}

static void scan_view(struct scan_ctx *c, struct obj *o, unsigned view, const uint8_t *buf,
                      size_t len)
{
    const struct kh_engine *e = c->e;
    if (e->hs[view] == NULL || len == 0 || done(c))
        return;
    struct hs_ctx h = {c, o, buf, len, view, 0};
    /* Hyperscan's block mode takes an unsigned int length; larger objects are
     * scanned in overlapping windows (the overlap is the longest bounded
     * pattern we accept, so no match within a window is lost). */
    const size_t window = (size_t)1 << 30, overlap = (size_t)1 << 20;
    size_t off = 0;
    while (off < len && !done(c)) {
        size_t n = KHX_MIN(len - off, window);
        h.view = buf + off;
        h.view_len = n;
        hs_scan(e->hs[view], (const char *)buf + off, (unsigned)n, 0, c->s->scratch, on_hs_match,
                &h);
        if (off + n >= len)
            break;
        off += n - overlap;
    }
}

static const uint8_t *view_buffer(const struct obj *o, unsigned view, uint8_t *norm, size_t *len)
{
    if (view == KDB_VIEW_ASCII) {
        *len = khx_normalize_ascii(o->buf, o->len, norm);
        return norm;
    }
    *len = khx_normalize_html(o->buf, o->len, norm);
    return norm;
}

/* ---- logical signatures ------------------------------------------------ */

/* Does a Container: name from a signature fit the parent's type? ClamAV
 * distinguishes cpio and tar variants that one libarchive reader covers. */
static int container_matches(const char *want, enum khx_ftype parent)
{
    const char *have = khx_ftype_cltype(parent);
    if (strcmp(want, have) == 0)
        return 1;
    if (parent == KHX_FT_CPIO)
        return strncmp(want, "CL_TYPE_CPIO_", 13) == 0;
    if (parent == KHX_FT_TAR)
        return strcmp(want, "CL_TYPE_OLD_TAR") == 0;
    return 0;
}

static int ldb_tdb_ok(const struct scan_ctx *c, const struct kdb_ldb *l, const struct obj *o)
{
    if (l->target >= 0 && !target_ok((uint32_t)l->target, o))
        return 0;
    if ((l->present & KHX_TDB_FILESIZE) && (o->len < l->filesize_min || o->len > l->filesize_max))
        return 0;
    if (l->present & KHX_TDB_ENTRYPOINT) {
        if (!o->exe.ep_valid || o->exe.ep < l->ep_min || o->exe.ep > l->ep_max)
            return 0;
    }
    if ((l->present & KHX_TDB_NSECTIONS) &&
        (o->exe.nsections < l->nsect_min || o->exe.nsections > l->nsect_max))
        return 0;
    if (l->present & KHX_TDB_CONTAINER) {
        const char *want = c->e->strings + l->container;
        if (strcmp(want, "CL_TYPE_ANY") == 0) {
            if (o->depth != 0)
                return 0;
        } else if (o->depth == 0 || !container_matches(want, o->parent)) {
            return 0;
        }
    }
    return 1;
}

static void run_pcres(struct scan_ctx *c, struct obj *o, const struct kdb_ldb *l, uint8_t *norm)
{
    const struct kh_engine *e = c->e;
    for (uint32_t i = 0; i < l->nsubs && !done(c); i++) {
        const struct kdb_ldbsub *s = &e->subs[l->first_sub + i];
        if (s->kind != KDB_SUB_PCRE || s->ref == UINT32_MAX)
            continue;
        const struct kdb_pcre *pc = &e->pcres[s->ref];
        uint32_t *counts = &c->s->sub_counts[l->first_sub];
        if (!khx_lexpr_eval(e->progs + pc->trigger, pc->trigger_len, counts, l->nsubs))
            continue;
        const uint8_t *buf = o->buf;
        size_t len = o->len;
        if (l->target == KDB_T_ASCII || l->target == KDB_T_HTML)
            buf = view_buffer(o, l->target == KDB_T_ASCII ? KDB_VIEW_ASCII : KDB_VIEW_HTML, norm,
                              &len);
        struct khx_layout lay = {len, buf == o->buf ? &o->exe : NULL};
        uint64_t lo, hi, end_max;
        if (khx_offset_resolve(&pc->offset, &lay, &lo, &hi, &end_max) != 0)
            continue;
        int n = khx_pcre_count(e->pcre_code[s->ref], buf, len, lo, hi, end_max);
        if (n > 0)
            counts[i] += (uint32_t)n;
    }
}

static void eval_ldbs(struct scan_ctx *c, struct obj *o, uint8_t *norm)
{
    kh_scanner *s = c->s;
    const struct kh_engine *e = c->e;
    for (size_t t = 0; t < s->ntouched; t++) {
        uint32_t li = s->touched[t];
        const struct kdb_ldb *l = &e->ldbs[li];
        if (!done(c) && ldb_tdb_ok(c, l, o)) {
            if (e->npcres > 0)
                run_pcres(c, o, l, norm);
            if (khx_lexpr_eval(e->progs + l->expr, l->expr_len, &s->sub_counts[l->first_sub],
                               l->nsubs))
                report_sig(c, o, l->sig);
        }
    }
    for (size_t t = 0; t < s->ntouched; t++) {
        const struct kdb_ldb *l = &e->ldbs[s->touched[t]];
        memset(&s->sub_counts[l->first_sub], 0, l->nsubs * sizeof(uint32_t));
        memset(&s->sub_last_end[l->first_sub], 0, l->nsubs * sizeof(uint64_t));
        s->ldb_mark[s->touched[t]] = 0;
    }
    s->ntouched = 0;
}

/* ---- YARA ---------------------------------------------------------------- */

static int on_yara(YR_SCAN_CONTEXT *yctx, int message, void *data, void *ud)
{
    struct hs_ctx *h = ud;
    (void)yctx;
    if (message != CALLBACK_MSG_RULE_MATCHING)
        return CALLBACK_CONTINUE;
    YR_RULE *rule = data;
    char name[300];
    snprintf(name, sizeof(name), "YARA.%s", rule->identifier);
    report(h->c, h->o, name, KH_SIG_YARA, KH_SEV_MALWARE, rule->ns ? rule->ns->name : "");
    return done(h->c) ? CALLBACK_ABORT : CALLBACK_CONTINUE;
}

static void scan_yara(struct scan_ctx *c, struct obj *o, const char *top_name)
{
    YR_SCANNER *y = c->s->yara;
    if (y == NULL || done(c))
        return;
    const char *path = o->inner ? o->inner : (top_name ? top_name : "");
    const char *base = khx_path_base(path);
    const char *ext = khx_path_ext(base);
    yr_scanner_define_string_variable(y, "filename", base);
    yr_scanner_define_string_variable(y, "filepath", path);
    yr_scanner_define_string_variable(y, "extension", ext[0] ? ext - 1 : "");
    yr_scanner_define_string_variable(y, "filetype", khx_ftype_name(o->type));
    struct hs_ctx h = {c, o, NULL, 0, 0, 0};
    yr_scanner_set_callback(y, on_yara, &h);
    if (c->deadline) {
        uint64_t now = khx_now_ms();
        int secs = now >= c->deadline ? 1 : (int)((c->deadline - now + 999) / 1000);
        yr_scanner_set_timeout(y, secs);
    } else {
        yr_scanner_set_timeout(y, 0);
    }
    int r = yr_scanner_scan_mem(y, o->buf, o->len);
    if (r == ERROR_SCAN_TIMEOUT)
        c->timed_out = 1;
}

/* ---- objects and containers ------------------------------------------- */

static void scan_obj(struct scan_ctx *c, struct obj *o, const char *top_name);

struct walk_ctx {
    struct scan_ctx *c;
    struct obj *parent;
    const char *top_name;
    int embedded;
};

/* Single-stream formats (gzip, bzip2, xz ...) have no member names; the
 * member is named after its container without the compression suffix, as
 * gunzip would name it ("a.tar.gz" -> "a.tar", "a.tgz" -> "a.tar"). */
static void stream_member_name(char *out, size_t n, const char *container)
{
    const char *base = khx_path_base(container && *container ? container : "-");
    const char *dot = strrchr(base, '.');
    static const char *const suffixes[] = {"gz", "bz2", "xz", "zst", "lzma", "z", "Z"};
    if (dot && (strcmp(dot + 1, "tgz") == 0 || strcmp(dot + 1, "tbz2") == 0 ||
                strcmp(dot + 1, "txz") == 0)) {
        snprintf(out, n, "%.*s.tar", (int)(dot - base), base);
        return;
    }
    for (size_t i = 0; dot && i < KHX_ARRAY_LEN(suffixes); i++) {
        if (strcmp(dot + 1, suffixes[i]) == 0) {
            snprintf(out, n, "%.*s", (int)(dot - base), base);
            return;
        }
    }
    snprintf(out, n, "%s", "-");
}

static void join_inner(char *out, size_t n, const struct obj *parent, const char *name,
                       const char *top_name)
{
    char derived[256];
    const char *nm = name;
    if (nm == NULL || *nm == '\0') {
        stream_member_name(derived, sizeof(derived), parent->inner ? parent->inner : top_name);
        nm = derived;
    }
    if (parent->inner)
        snprintf(out, n, "%s/%s", parent->inner, nm);
    else
        snprintf(out, n, "%s", nm);
}

static int on_member(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct walk_ctx *w = ud;
    char inner[MAX_INNER_PATH];
    join_inner(inner, sizeof(inner), w->parent, name, w->top_name);
    struct obj child;
    memset(&child, 0, sizeof(child));
    child.buf = data;
    child.len = len;
    child.inner = inner;
    child.depth = w->parent->depth + 1;
    child.parent = w->parent->type;
    child.embedded = w->embedded;
    khx_vec_init(&child.reported, sizeof(uint32_t), 4096);
    khx_vec_init(&child.magics, sizeof(uint64_t), MAX_MAGIC_CANDIDATES);
    scan_obj(w->c, &child, w->top_name);
    khx_vec_free(&child.reported);
    khx_vec_free(&child.magics);
    return done(w->c) ? 1 : 0;
}

static void on_issue(void *ud, const char *name, int issue, const char *detail)
{
    struct walk_ctx *w = ud;
    char inner[MAX_INNER_PATH], hname[128];
    (void)detail;
    /* An object the embedded search found is a guess (a library may hold
     * "Rar!" as a constant): if it turns out not to parse, that is not news. */
    if (w->parent->embedded && issue == KHX_WALK_CORRUPT)
        return;
    struct obj where = *w->parent;
    if (name && *name) {
        join_inner(inner, sizeof(inner), w->parent, name, w->top_name);
        where.inner = inner;
        where.depth = w->parent->depth + 1;
    }
    khx_walk_issue_name(issue, w->parent->type, hname, sizeof(hname));
    report_notice(w->c, &where, hname);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void scan_members(struct scan_ctx *c, struct obj *o, const char *top_name)
{
    const struct kh_limits *lim = &c->s->opts.limits;
    if (!c->s->opts.scan_archives || done(c))
        return;
    int container = khx_ftype_is_container(o->type);
    if (o->depth + 1 > lim->max_recursion) {
        report_notice(c, o, "Heuristics.Limits.Exceeded.MaxRecursion");
        return;
    }
    struct khx_walk_limits wl = {lim->max_filesize, lim->max_scansize, lim->max_files,
                                 lim->max_ratio, c->deadline};
    /* An embedded object runs to the end of its parent, so searching it
     * again would find the same later objects once more. */
    if (!container && o->embedded)
        return;
    struct walk_ctx w = {c, o, top_name, !container};
    struct khx_walk_cb cb = {on_member, on_issue, &w};
    /* Containers are walked member by member; other objects are searched
     * for executables and archives embedded inside them. */
    if (container) {
        khx_container_walk(o->buf, o->len, o->type, &wl, &c->total, &cb);
    } else if ((c->e->hdr->flags & KDB_FLAG_MAGICS) && !o->magics_lost) {
        /* Hyperscan reports each magic's ends in order, but the magics
         * interleave: sort the candidates. */
        if (o->magics.len > 1)
            qsort(o->magics.items, o->magics.len, sizeof(uint64_t), cmp_u64);
        khx_embedded_walk_at(o->buf, o->len, o->type, o->magics.items, o->magics.len, &wl,
                             &c->total, &cb);
    } else {
        khx_embedded_walk(o->buf, o->len, o->type, &wl, &c->total, &cb);
    }
    if (c->timed_out)
        report_notice(c, o, "Heuristics.Limits.Exceeded.MaxScanTime");
}

static void scan_obj(struct scan_ctx *c, struct obj *o, const char *top_name)
{
    const struct kh_engine *e = c->e;
    uint8_t *norm = NULL;
    c->res->objects++;
    c->res->bytes_scanned += o->len;
    o->type = khx_filetype(o->buf, o->len);
    if (o->type == KHX_FT_PE)
        khx_pe_parse(o->buf, o->len, &o->exe);
    else if (o->type == KHX_FT_ELF)
        khx_elf_parse(o->buf, o->len, &o->exe);

    /* The allowlist decides before anything else. */
    int top = o->depth == 0;
    if (hash_lookup(c, o, KDB_HC_ALLOW, o->buf, o->len, o->len, top))
        goto out;
    hash_lookup(c, o, KDB_HC_FILE, o->buf, o->len, o->len, top);
    scan_pe_hashes(c, o);
    scan_view(c, o, KDB_VIEW_RAW, o->buf, o->len);
    if ((o->type == KHX_FT_TEXT || o->type == KHX_FT_HTML || o->type == KHX_FT_MAIL) &&
        (e->hs[KDB_VIEW_ASCII] || e->hs[KDB_VIEW_HTML] || e->npcres > 0) && !done(c)) {
        norm = malloc(o->len ? o->len : 1);
        if (norm) {
            size_t n;
            if (e->hs[KDB_VIEW_ASCII]) {
                const uint8_t *v = view_buffer(o, KDB_VIEW_ASCII, norm, &n);
                scan_view(c, o, KDB_VIEW_ASCII, v, n);
            }
            if (o->type == KHX_FT_HTML && e->hs[KDB_VIEW_HTML] && !done(c)) {
                const uint8_t *v = view_buffer(o, KDB_VIEW_HTML, norm, &n);
                scan_view(c, o, KDB_VIEW_HTML, v, n);
            }
        }
    }
    for (size_t i = 0; i < e->nldb_zero; i++)
        ldb_touch(c->s, e->ldb_zero[i]);
    if (c->s->ntouched > 0) {
        if (norm == NULL && e->npcres > 0)
            norm = malloc(o->len ? o->len : 1);
        eval_ldbs(c, o, norm);
    }
    scan_yara(c, o, top_name);
    if (!done(c) && deadline_passed(c))
        report_notice(c, o, "Heuristics.Limits.Exceeded.MaxScanTime");
    scan_members(c, o, top_name);
out:
    /* Counters must be clean for the next object even if we stopped early. */
    if (c->s->ntouched > 0) {
        for (size_t t = 0; t < c->s->ntouched; t++) {
            const struct kdb_ldb *l = &e->ldbs[c->s->touched[t]];
            memset(&c->s->sub_counts[l->first_sub], 0, l->nsubs * sizeof(uint32_t));
            memset(&c->s->sub_last_end[l->first_sub], 0, l->nsubs * sizeof(uint64_t));
            c->s->ldb_mark[c->s->touched[t]] = 0;
        }
        c->s->ntouched = 0;
    }
    free(norm);
    khx_exe_clear(&o->exe);
}

int kh_scan_mem(kh_scanner *s, const void *data, size_t len, const char *name, kh_detect_fn cb,
                void *ud, struct kh_scan_result *result)
{
    struct kh_scan_result local;
    if (s == NULL || (data == NULL && len > 0))
        return KH_EINVAL;
    if (result == NULL)
        result = &local;
    memset(result, 0, sizeof(*result));
    result->size = len;
    struct scan_ctx c;
    memset(&c, 0, sizeof(c));
    c.s = s;
    c.e = s->e;
    c.cb = cb;
    c.ud = ud;
    c.res = result;
    if (s->opts.limits.max_scantime_ms)
        c.deadline = khx_now_ms() + s->opts.limits.max_scantime_ms;
    struct obj o;
    memset(&o, 0, sizeof(o));
    o.buf = data;
    o.len = len;
    khx_vec_init(&o.reported, sizeof(uint32_t), 4096);
    khx_vec_init(&o.magics, sizeof(uint64_t), MAX_MAGIC_CANDIDATES);
    if (s->opts.limits.max_filesize && len > s->opts.limits.max_filesize) {
        report_notice(&c, &o, "Heuristics.Limits.Exceeded.MaxFileSize");
    } else {
        c.total = len;
        scan_obj(&c, &o, name);
    }
    khx_vec_free(&o.reported);
    khx_vec_free(&o.magics);
    /* Hashing costs as much as matching; it is done when asked for, or to
     * identify a detected file. */
    if (!result->sha256_valid && (s->opts.want_sha256 || result->detections > 0) &&
        khx_sha256(data ? data : "", len, result->sha256) == 0)
        result->sha256_valid = 1;
    if (atomic_load(&s->cancel))
        c.aborted = 1;
    return c.aborted ? KH_EABORTED : KH_OK;
}

int kh_scan_file(kh_scanner *s, const char *path, kh_detect_fn cb, void *ud,
                 struct kh_scan_result *result)
{
    struct khx_map m;
    if (s == NULL || path == NULL)
        return KH_EINVAL;
    int r = khx_map_file(path, &m);
    if (r != 0)
        return r;
    r = kh_scan_mem(s, m.data, m.len, path, cb, ud, result);
    khx_map_close(&m);
    return r;
}
