/*
 * Compiles the builder's intermediate form into a .kdb image (see kdb.h):
 * strings, signature and source tables, sorted hash tables, body-pattern
 * records with their matcher programs, one Hyperscan database per view,
 * logical signatures, PCRE2 code and the YARA rules, then a checksummed
 * header. All the expensive work (regex compilation, sorting) happens here
 * so that loading an image is only mapping and checking it.
 */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "container.h"
#include "hashtab.h"
#include "yara_int.h"

#define IMAGE_MAX      ((size_t)16 << 30)
#define KDB_MAX_MAGICS 16

struct section_buf {
    uint32_t id;
    struct khx_buf buf;
};

struct image {
    struct section_buf sec[KDB_MAX_SECTIONS];
    unsigned nsec;
};

static struct khx_buf *section(struct image *img, uint32_t id)
{
    for (unsigned i = 0; i < img->nsec; i++)
        if (img->sec[i].id == id)
            return &img->sec[i].buf;
    if (img->nsec == KDB_MAX_SECTIONS)
        return NULL;
    struct section_buf *s = &img->sec[img->nsec++];
    s->id = id;
    khx_buf_init(&s->buf, IMAGE_MAX);
    return &s->buf;
}

static void image_free(struct image *img)
{
    for (unsigned i = 0; i < img->nsec; i++)
        khx_buf_free(&img->sec[i].buf);
}

/* Appends a NUL-terminated string and returns its offset (0 on failure, the
 * empty string's offset, which callers treat as "no string"). */
static uint32_t add_string(struct khx_buf *strings, const char *s, int *err)
{
    size_t off = strings->len;
    if (off > UINT32_MAX - 4096 || khx_buf_append(strings, s, strlen(s) + 1) != 0) {
        *err = KH_ENOMEM;
        return 0;
    }
    return (uint32_t)off;
}

static int build_hashes(kh_builder *b, struct image *img)
{
    for (unsigned cls = 0; cls < KDB_HC_COUNT; cls++) {
        for (unsigned algo = 0; algo < KDB_HA_COUNT; algo++) {
            for (int any = 0; any < 2; any++) {
                size_t n = 0;
                for (size_t i = 0; i < b->hashes.len; i++) {
                    struct bhash *h = KHX_VEC_AT(&b->hashes, struct bhash, i);
                    n += h->cls == cls && h->algo == algo && h->any_size == any;
                }
                if (n == 0)
                    continue;
                struct khx_hashrec *recs = calloc(n, sizeof(*recs));
                if (recs == NULL)
                    return KH_ENOMEM;
                size_t k = 0;
                for (size_t i = 0; i < b->hashes.len; i++) {
                    struct bhash *h = KHX_VEC_AT(&b->hashes, struct bhash, i);
                    if (h->cls != cls || h->algo != algo || h->any_size != any)
                        continue;
                    recs[k].size = h->size;
                    memcpy(recs[k].digest, h->digest, kdb_halgo_len(algo));
                    recs[k].sig = h->sig;
                    k++;
                }
                uint32_t id =
                    (any ? KDB_SEC_HASHANY_BASE : KDB_SEC_HASH_BASE) + cls * KDB_HA_COUNT + algo;
                struct khx_buf *s = section(img, id);
                int r = s ? khx_hashtab_write(recs, n, kdb_halgo_len(algo), !any, s) : KH_ENOMEM;
                free(recs);
                if (r != 0)
                    return r;
            }
        }
    }
    return KH_OK;
}

static unsigned pattern_hs_flags(const struct bpattern *p)
{
    unsigned f = HS_FLAG_DOTALL;
    if (!p->body.exact || p->prefilter)
        f |= HS_FLAG_PREFILTER;
    else if (p->subsig == 0xffff && p->offset.type == KHX_OFF_ANY)
        f |= HS_FLAG_SINGLEMATCH; /* one report proves the signature */
    return f;
}

/* Compiles the patterns of one view. A pattern Hyperscan rejects is retried
 * in prefilter mode (verified by its program), then dropped with a message. */
static int build_hs_view(kh_builder *b, struct image *img, unsigned view, const uint32_t *kdb_index)
{
    size_t n = 0;
    for (size_t i = 0; i < b->patterns.len; i++) {
        struct bpattern *p = KHX_VEC_AT(&b->patterns, struct bpattern, i);
        n += p->view == view && !p->dropped;
    }
    /* The raw view also finds where embedded objects may start, in the same
     * pass (see KDB_FLAG_MAGICS). */
    size_t nmagic = view == KDB_VIEW_RAW ? khx_embedded_nmagics : 0;
    char magic_re[KDB_MAX_MAGICS][64];
    for (size_t m = 0; m < nmagic && m < KDB_MAX_MAGICS; m++) {
        const struct khx_magic *mg = &khx_embedded_magics[m];
        for (size_t j = 0; j < mg->len && j < 15; j++)
            snprintf(magic_re[m] + 4 * j, 5, "\\x%02x", (unsigned char)mg->bytes[j]);
    }
    if (n + nmagic == 0)
        return KH_OK;
    int r = KH_ENOMEM;
    const char **exprs = calloc(n + nmagic, sizeof(*exprs));
    unsigned *flags = calloc(n + nmagic, sizeof(*flags));
    unsigned *ids = calloc(n + nmagic, sizeof(*ids));
    size_t *which = calloc(n + nmagic, sizeof(*which));
    hs_database_t *db = NULL;
    char *ser = NULL;
    if (!exprs || !flags || !ids || !which)
        goto out;
    for (;;) {
        size_t k = 0;
        for (size_t m = 0; m < nmagic; m++) {
            exprs[k] = magic_re[m];
            flags[k] = HS_FLAG_DOTALL;
            ids[k] = KDB_MAGIC_ID + (unsigned)m;
            which[k] = SIZE_MAX;
            k++;
        }
        for (size_t i = 0; i < b->patterns.len; i++) {
            struct bpattern *p = KHX_VEC_AT(&b->patterns, struct bpattern, i);
            if (p->view != view || p->dropped)
                continue;
            exprs[k] = p->body.regex;
            flags[k] = pattern_hs_flags(p);
            ids[k] = kdb_index[i];
            which[k] = i;
            k++;
        }
        if (k == 0) {
            r = KH_OK;
            goto out;
        }
        hs_compile_error_t *cerr = NULL;
        /* NULL targets this CPU (its widest vector unit); a portable database
         * uses only the baseline Hyperscan needs, so any agent can load it. */
        hs_platform_info_t generic = {HS_TUNE_FAMILY_GENERIC, 0, 0, 0};
        hs_error_t e = hs_compile_multi(exprs, flags, ids, (unsigned)k, HS_MODE_BLOCK,
                                        b->opts.portable ? &generic : NULL, &db, &cerr);
        if (e == HS_SUCCESS)
            break;
        int idx = cerr ? cerr->expression : -1;
        if (idx < 0 || (size_t)idx >= k || which[idx] == SIZE_MAX) {
            khx_builder_error(b, UINT32_MAX, "(database)", 0, "Hyperscan: %s",
                              cerr ? cerr->message : "compile failed");
            hs_free_compile_error(cerr);
            r = KH_EMATCHER;
            goto out;
        }
        struct bpattern *p = KHX_VEC_AT(&b->patterns, struct bpattern, which[idx]);
        if (!(flags[idx] & HS_FLAG_PREFILTER)) {
            p->prefilter = 1;
        } else {
            const char *file = p->source < b->sources.len
                                   ? KHX_VEC_AT(&b->sources, struct bsource, p->source)->name
                                   : "";
            khx_builder_error(b, p->source, file, p->line,
                              "pattern cannot be compiled (Hyperscan: %s); signature left out",
                              cerr->message);
            p->dropped = 1;
        }
        hs_free_compile_error(cerr);
        n = k; /* the arrays are large enough for every later attempt */
        (void)n;
    }
    size_t ser_len = 0;
    if (hs_serialize_database(db, &ser, &ser_len) != HS_SUCCESS) {
        r = KH_EMATCHER;
        goto out;
    }
    struct khx_buf *s = section(img, KDB_SEC_HS_BASE + view);
    r = s ? khx_buf_append(s, ser, ser_len) : KH_ENOMEM;
out:
    free(ser);
    hs_free_database(db);
    free(exprs);
    free(flags);
    free(ids);
    free(which);
    return r;
}

static int append_prog(struct khx_buf *progs, const uint8_t *p, size_t n, uint32_t *off)
{
    int r;
    if ((r = khx_buf_align(progs, 8)) != 0)
        return r;
    if (progs->len > UINT32_MAX - n)
        return KH_ELIMIT;
    *off = (uint32_t)progs->len;
    return khx_buf_append(progs, p, n);
}

static int build_patterns(kh_builder *b, struct image *img)
{
    int r = KH_OK;
    uint32_t *kdb_index = calloc(b->patterns.len + 1, sizeof(uint32_t));
    if (kdb_index == NULL)
        return KH_ENOMEM;
    /* Hyperscan first: it decides which patterns survive and which need
     * prefiltering; indexes are assigned to every pattern up front so ids
     * stay stable, and dropped ones keep a record that can never match. */
    for (size_t i = 0; i < b->patterns.len; i++)
        kdb_index[i] = (uint32_t)i;
    for (unsigned v = 0; v < KDB_VIEW_COUNT && r == 0; v++)
        r = build_hs_view(b, img, v, kdb_index);
    if (r != 0)
        goto out;
    struct khx_buf *pats = section(img, KDB_SEC_PATTERNS);
    struct khx_buf *progs = section(img, KDB_SEC_PROGS);
    if (!pats || !progs) {
        r = KH_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < b->patterns.len && r == 0; i++) {
        struct bpattern *p = KHX_VEC_AT(&b->patterns, struct bpattern, i);
        struct kdb_pattern rec;
        memset(&rec, 0, sizeof(rec));
        if ((r = append_prog(progs, p->body.prog, p->body.prog_len, &rec.prog)) != 0)
            break;
        rec.prog_len = (uint32_t)p->body.prog_len;
        rec.owner = p->dropped ? UINT32_MAX : p->owner;
        rec.subsig = p->subsig;
        rec.view = p->view;
        rec.flags = (p->body.exact && !p->prefilter) ? KDB_PAT_EXACT : 0;
        rec.target = p->target;
        rec.minlen = p->body.minlen;
        rec.maxlen = p->body.maxlen;
        rec.offset = p->offset;
        r = khx_buf_append(pats, &rec, sizeof(rec));
    }
out:
    free(kdb_index);
    return r;
}

static int build_ldbs(kh_builder *b, struct image *img, struct khx_buf *strings)
{
    int r = KH_OK;
    struct khx_buf *ldbs = section(img, KDB_SEC_LDBS);
    struct khx_buf *subs = section(img, KDB_SEC_LDBSUBS);
    struct khx_buf *progs = section(img, KDB_SEC_PROGS);
    struct khx_buf *pcres = section(img, KDB_SEC_PCRES);
    struct khx_buf *blobs = section(img, KDB_SEC_BLOBS);
    if (!ldbs || !subs || !progs || !pcres || !blobs)
        return KH_ENOMEM;
    for (size_t i = 0; i < b->ldbs.len && r == 0; i++) {
        struct bldb *l = KHX_VEC_AT(&b->ldbs, struct bldb, i);
        struct kdb_ldb rec;
        memset(&rec, 0, sizeof(rec));
        rec.sig = l->sig;
        rec.nsubs = l->nsubs;
        rec.first_sub = l->first_sub;
        if ((r = append_prog(progs, l->expr, l->expr_len, &rec.expr)) != 0)
            break;
        rec.expr_len = (uint32_t)l->expr_len;
        rec.target = l->tdb.target;
        rec.filesize_min = l->tdb.filesize_min;
        rec.filesize_max = l->tdb.filesize_max;
        rec.ep_min = l->tdb.ep_min;
        rec.ep_max = l->tdb.ep_max;
        rec.nsect_min = l->tdb.nsect_min;
        rec.nsect_max = l->tdb.nsect_max;
        rec.present = l->tdb.present & (KHX_TDB_FILESIZE | KHX_TDB_ENTRYPOINT | KHX_TDB_NSECTIONS |
                                        KHX_TDB_CONTAINER);
        if (l->tdb.present & KHX_TDB_CONTAINER)
            rec.container = add_string(strings, l->tdb.container, &r);
        if (r == 0)
            r = khx_buf_append(ldbs, &rec, sizeof(rec));
    }
    if (r == 0)
        r = khx_buf_append(subs, b->subs.items, b->subs.len * sizeof(struct kdb_ldbsub));
    for (size_t i = 0; i < b->pcres.len && r == 0; i++) {
        struct bpcre *p = KHX_VEC_AT(&b->pcres, struct bpcre, i);
        struct kdb_pcre rec;
        memset(&rec, 0, sizeof(rec));
        rec.ldb = p->ldb;
        rec.subsig = p->subsig;
        rec.cflags = p->cflags;
        rec.offset = p->offset;
        if ((r = append_prog(blobs, p->ser, p->ser_len, &rec.blob)) != 0)
            break;
        rec.blob_len = (uint32_t)p->ser_len;
        if ((r = append_prog(progs, p->trigger, p->trigger_len, &rec.trigger)) != 0)
            break;
        rec.trigger_len = (uint32_t)p->trigger_len;
        r = khx_buf_append(pcres, &rec, sizeof(rec));
    }
    return r;
}

static int assemble(struct image *img, uint8_t **out, size_t *out_len)
{
    struct khx_buf all;
    khx_buf_init(&all, IMAGE_MAX);
    struct kdb_header hdr;
    memset(&hdr, 0, sizeof(hdr));
    memcpy(hdr.magic, KDB_MAGIC, 8);
    hdr.format_version = KDB_FORMAT_VERSION;
    hdr.nsections = img->nsec;
    hdr.created = (int64_t)time(NULL);
    hdr.flevel = KH_FLEVEL;
    hdr.flags = KDB_FLAG_MAGICS;
    size_t table = sizeof(hdr) + img->nsec * sizeof(struct kdb_section);
    size_t off = (table + KDB_ALIGN - 1) & ~(size_t)(KDB_ALIGN - 1);
    struct kdb_section secs[KDB_MAX_SECTIONS];
    for (unsigned i = 0; i < img->nsec; i++) {
        secs[i].id = img->sec[i].id;
        secs[i].reserved = 0;
        secs[i].offset = off;
        secs[i].length = img->sec[i].buf.len;
        off += (img->sec[i].buf.len + KDB_ALIGN - 1) & ~(size_t)(KDB_ALIGN - 1);
    }
    hdr.image_size = off;
    int r;
    if ((r = khx_buf_reserve(&all, off)) != 0 || (r = khx_buf_append(&all, &hdr, sizeof(hdr))) ||
        (r = khx_buf_append(&all, secs, img->nsec * sizeof(secs[0]))) != 0)
        goto fail;
    for (unsigned i = 0; i < img->nsec; i++) {
        if ((r = khx_buf_align(&all, KDB_ALIGN)) != 0 ||
            (r = khx_buf_append(&all, img->sec[i].buf.data, img->sec[i].buf.len)) != 0)
            goto fail;
    }
    if ((r = khx_buf_align(&all, KDB_ALIGN)) != 0)
        goto fail;
    struct kdb_header *h = (struct kdb_header *)all.data;
    if ((r = khx_sha256(all.data + sizeof(hdr), all.len - sizeof(hdr), h->sha256)) != 0)
        goto fail;
    *out = khx_buf_steal(&all, out_len);
    return KH_OK;
fail:
    khx_buf_free(&all);
    return r;
}

int khx_compile(kh_builder *b, uint8_t **out, size_t *out_len)
{
    int r = KH_OK;
    struct image img;
    memset(&img, 0, sizeof(img));
    struct khx_buf *strings = section(&img, KDB_SEC_STRINGS);
    uint64_t counts[KH_SIG_KIND_COUNT + 1];
    memset(counts, 0, sizeof(counts));
    if (strings == NULL || khx_buf_append_u8(strings, 0) != 0) {
        r = KH_ENOMEM;
        goto out;
    }
    /* Patterns first: Hyperscan may drop some, which the counts reflect. */
    if ((r = build_patterns(b, &img)) != 0 || (r = build_hashes(b, &img)) != 0 ||
        (r = build_ldbs(b, &img, strings)) != 0)
        goto out;

    struct khx_buf *sigs = section(&img, KDB_SEC_SIGS);
    if (sigs == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < b->sigs.len && r == 0; i++) {
        struct bsig *s = KHX_VEC_AT(&b->sigs, struct bsig, i);
        struct kdb_sig rec = {add_string(strings, s->name, &r), s->kind, s->source};
        counts[s->kind < KH_SIG_KIND_COUNT ? s->kind : 0]++;
        if (r == 0)
            r = khx_buf_append(sigs, &rec, sizeof(rec));
    }
    for (size_t i = 0; i < b->patterns.len; i++) {
        struct bpattern *p = KHX_VEC_AT(&b->patterns, struct bpattern, i);
        if (p->dropped && p->subsig == 0xffff && counts[KH_SIG_BODY] > 0)
            counts[KH_SIG_BODY]--;
    }
    struct khx_buf *yara = section(&img, KDB_SEC_YARA);
    uint64_t nrules = 0;
    if (r != 0 || yara == NULL || (r = khx_yara_build(b, yara, &nrules)) != 0)
        goto out;
    counts[KH_SIG_YARA] = nrules;
    counts[KH_SIG_KIND_COUNT] = b->ignored;

    struct khx_buf *srcs = section(&img, KDB_SEC_SOURCES);
    struct khx_buf *cnt = section(&img, KDB_SEC_COUNTS);
    if (srcs == NULL || cnt == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < b->sources.len && r == 0; i++) {
        struct bsource *s = KHX_VEC_AT(&b->sources, struct bsource, i);
        struct kdb_source rec = {add_string(strings, s->name, &r),
                                 s->version,
                                 s->signatures,
                                 s->skipped,
                                 s->errors,
                                 0,
                                 s->built};
        if (r == 0)
            r = khx_buf_append(srcs, &rec, sizeof(rec));
    }
    if (r == 0)
        r = khx_buf_append(cnt, counts, sizeof(counts));
    if (r == 0)
        r = assemble(&img, out, out_len);
out:
    image_free(&img);
    return r;
}
