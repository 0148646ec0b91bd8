/*
 * Loaders for the line-oriented signature formats: ClamAV hash databases
 * (.hdb .hsb .mdb .msb .imp .fp .sfp), plain hash lists, extended (.ndb)
 * and logical (.ldb) signatures, and ignore lists (.ign2). Each line is parsed
 * strictly; a bad line is reported as "file:line: reason" and skipped, and
 * nothing of it is kept.
 */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>

#define ERR_LEN 256

/* Signature names: printable ASCII without the field separators of any format. */
static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n > KHX_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == ':' || c == ';')
            return 0;
    }
    return 1;
}

/* Parses optional MinFL/MaxFL fields. Returns 1 if the signature applies to
 * our level, 0 if it is outside it, -1 on a malformed field. */
static int flevel_ok(const char *minf, size_t minn, const char *maxf, size_t maxn, uint64_t *minfl)
{
    uint64_t lo = 0, hi = UINT32_MAX;
    if (minf && minn > 0 && khx_parse_u64(minf, minn, &lo) != 0)
        return -1;
    if (maxf && maxn > 0 && khx_parse_u64(maxf, maxn, &hi) != 0)
        return -1;
    if (minfl)
        *minfl = lo;
    return lo <= KH_FLEVEL && KH_FLEVEL <= hi;
}

static int hash_algo(size_t hexlen)
{
    switch (hexlen) {
    case 32:
        return KDB_HA_MD5;
    case 40:
        return KDB_HA_SHA1;
    case 64:
        return KDB_HA_SHA256;
    }
    return -1;
}

static struct bsource *source_of(kh_builder *b, uint32_t src)
{
    return KHX_VEC_AT(&b->sources, struct bsource, src);
}

static int push_hash(kh_builder *b, uint32_t src, int cls, int algo, const char *hex, int any,
                     uint64_t size, const char *name, size_t name_len)
{
    int kind = cls == KDB_HC_FILE      ? KH_SIG_HASH
               : cls == KDB_HC_SECTION ? KH_SIG_PESECT
               : cls == KDB_HC_IMPORT  ? KH_SIG_IMPHASH
                                       : KH_SIG_ALLOW;
    int64_t sig = khx_builder_sig(b, name, name_len, kind, src);
    if (sig < 0)
        return (int)sig;
    struct bhash *h = khx_vec_push(&b->hashes);
    if (h == NULL)
        return KH_ENOMEM;
    khx_hex_decode(hex, kdb_halgo_len((unsigned)algo), h->digest);
    h->size = any ? 0 : size;
    h->any_size = (uint8_t)any;
    h->cls = (uint8_t)cls;
    h->algo = (uint8_t)algo;
    h->sig = (uint32_t)sig;
    return KH_OK;
}

int khx_load_hashes(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len,
                    int cls, int size_first)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        const char *f[6];
        size_t fl[6];
        if (n == 0 || line[0] == '#')
            continue;
        size_t nf = khx_split(line, n, ':', f, fl, 5);
        if (nf < 3 || nf > 5) {
            khx_builder_error(b, src, file, it.lineno,
                              "expected 3 to 5 ':'-separated fields, found %zu", nf);
            continue;
        }
        const char *hex = size_first ? f[1] : f[0];
        size_t hexlen = size_first ? fl[1] : fl[0];
        const char *sz = size_first ? f[0] : f[1];
        size_t szlen = size_first ? fl[0] : fl[1];
        int algo = hash_algo(hexlen);
        uint8_t tmp[32];
        if (algo < 0 || khx_hex_decode(hex, hexlen / 2, tmp) != 0) {
            khx_builder_error(b, src, file, it.lineno,
                              "hash must be 32, 40 or 64 hex digits (MD5, SHA1, SHA256)");
            continue;
        }
        int any = szlen == 1 && sz[0] == '*';
        uint64_t size = 0;
        if (!any && khx_parse_u64(sz, szlen, &size) != 0) {
            khx_builder_error(b, src, file, it.lineno, "size must be a number or '*'");
            continue;
        }
        if (!name_ok(f[2], fl[2])) {
            khx_builder_error(b, src, file, it.lineno, "invalid signature name");
            continue;
        }
        uint64_t minfl = 0;
        int ok = flevel_ok(nf > 3 ? f[3] : NULL, nf > 3 ? fl[3] : 0, nf > 4 ? f[4] : NULL,
                           nf > 4 ? fl[4] : 0, &minfl);
        if (ok < 0) {
            khx_builder_error(b, src, file, it.lineno, "functionality level must be a number");
            continue;
        }
        /* ClamAV wants level 73 for "*" sizes, except in .imp files, which
         * need level 90 as a whole and accept "*" without it. */
        if (any && minfl < 73 && cls != KDB_HC_IMPORT) {
            khx_builder_error(b, src, file, it.lineno,
                              "size '*' needs a minimum functionality level of 73 (add ':73')");
            continue;
        }
        if (!ok) {
            source_of(b, src)->skipped++;
            continue;
        }
        if (cls != KDB_HC_ALLOW && khx_builder_ignored(b, f[2], fl[2], line, n))
            continue;
        int r = push_hash(b, src, cls, algo, hex, any, size, f[2], fl[2]);
        if (r != 0)
            return r;
    }
    return KH_OK;
}

/* Plain hash lists as threat-intelligence feeds publish them: one hash per
 * line, optionally followed by a separator (white space, ';', ',' or ':')
 * and a name or comment. '#' starts a comment line. */
int khx_load_hashlist(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    char defname[KHX_MAX_NAME + 1];
    const char *base = khx_path_base(file);
    size_t stem = strcspn(base, ".");
    snprintf(defname, sizeof(defname), "HashList.%.*s", (int)KHX_MIN(stem, 200), base);
    for (char *p = defname; *p; p++)
        if (!name_ok(p, 1))
            *p = '_';
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        while (n > 0 && (line[0] == ' ' || line[0] == '\t')) {
            line++;
            n--;
        }
        if (n == 0 || line[0] == '#')
            continue;
        size_t hexlen = 0;
        while (hexlen < n && khx_hexval((unsigned char)line[hexlen]) >= 0)
            hexlen++;
        int algo = hash_algo(hexlen);
        if (algo < 0 || (hexlen < n && strchr(" \t;,:", line[hexlen]) == NULL)) {
            khx_builder_error(b, src, file, it.lineno,
                              "expected an MD5, SHA1 or SHA256 hash at the start of the line");
            continue;
        }
        /* The rest, if any, names the detection; characters a name may not
         * hold become '_' so that comments like "Dark Caracal - PE32" work. */
        char name[KHX_MAX_NAME + 1];
        size_t nl = 0;
        const char *rest = line + hexlen;
        size_t restn = n - hexlen;
        while (restn > 0 && strchr(" \t;,:", rest[0])) {
            rest++;
            restn--;
        }
        while (restn > 0 && (rest[restn - 1] == ' ' || rest[restn - 1] == '\t'))
            restn--;
        for (size_t i = 0; i < restn && nl < 128; i++) {
            char c = rest[i];
            name[nl++] = name_ok(&c, 1) ? c : '_';
        }
        name[nl] = '\0';
        const char *nm = nl > 0 ? name : defname;
        if (khx_builder_ignored(b, nm, strlen(nm), line, n))
            continue;
        int r = push_hash(b, src, KDB_HC_FILE, algo, line, 1, 0, nm, strlen(nm));
        if (r != 0)
            return r;
    }
    return KH_OK;
}

int khx_load_ign(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        if (n == 0 || line[0] == '#')
            continue;
        /* .ign2: "Name" or "Name:md5"; legacy .ign: "db:line:Name". */
        const char *f[4];
        size_t fl[4];
        size_t nf = khx_split(line, n, ':', f, fl, 3);
        const char *name = f[0];
        size_t name_len = fl[0];
        const char *md5 = NULL;
        if (nf == 2) {
            md5 = f[1];
            if (fl[1] != 32) {
                khx_builder_error(b, src, file, it.lineno, "expected 'Name' or 'Name:md5'");
                continue;
            }
        } else if (nf == 3) {
            name = f[2];
            name_len = fl[2];
        } else if (nf != 1) {
            khx_builder_error(b, src, file, it.lineno, "expected 'Name' or 'Name:md5'");
            continue;
        }
        if (!name_ok(name, name_len)) {
            khx_builder_error(b, src, file, it.lineno, "invalid signature name");
            continue;
        }
        struct bignore *g = khx_vec_push(&b->ignores);
        if (g == NULL)
            return KH_ENOMEM;
        if ((g->name = khx_strndup(name, name_len)) == NULL) {
            b->ignores.len--;
            return KH_ENOMEM;
        }
        if (md5 && khx_hex_decode(md5, 16, g->md5) == 0)
            g->has_md5 = 1;
        b->sorted_ignores = 0;
        source_of(b, src)->signatures++;
    }
    return KH_OK;
}

static int target_supported(int64_t t)
{
    return t == KDB_T_ANY || t == KDB_T_PE || t == KDB_T_HTML || t == KDB_T_ELF || t == KDB_T_ASCII;
}

static uint8_t target_view(int64_t t)
{
    return t == KDB_T_ASCII ? KDB_VIEW_ASCII : t == KDB_T_HTML ? KDB_VIEW_HTML : KDB_VIEW_RAW;
}

/* Adds a body pattern; on success ownership of `body` passes to the builder. */
static int push_pattern(kh_builder *b, uint32_t owner, uint16_t subsig, int64_t target,
                        const struct khx_offset *off, struct khx_body *body, uint32_t src,
                        unsigned line)
{
    struct bpattern *p = khx_vec_push(&b->patterns);
    if (p == NULL)
        return KH_ENOMEM;
    p->owner = owner;
    p->subsig = subsig;
    p->target = (uint32_t)target;
    p->view = target_view(target);
    p->offset = *off;
    p->body = *body;
    p->source = src;
    p->line = line;
    memset(body, 0, sizeof(*body));
    return KH_OK;
}

int khx_load_ndb(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    char err[ERR_LEN];
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        const char *f[7];
        size_t fl[7];
        if (n == 0 || line[0] == '#')
            continue;
        size_t nf = khx_split(line, n, ':', f, fl, 6);
        if (nf < 4 || nf > 6) {
            khx_builder_error(b, src, file, it.lineno,
                              "expected Name:Target:Offset:Hex[:MinFL[:MaxFL]], found %zu fields",
                              nf);
            continue;
        }
        if (!name_ok(f[0], fl[0])) {
            khx_builder_error(b, src, file, it.lineno, "invalid signature name");
            continue;
        }
        uint64_t target;
        if (khx_parse_u64(f[1], fl[1], &target) != 0 || target > 255) {
            khx_builder_error(b, src, file, it.lineno, "target type must be a number 0-255");
            continue;
        }
        int ok = flevel_ok(nf > 4 ? f[4] : NULL, nf > 4 ? fl[4] : 0, nf > 5 ? f[5] : NULL,
                           nf > 5 ? fl[5] : 0, NULL);
        if (ok < 0) {
            khx_builder_error(b, src, file, it.lineno, "functionality level must be a number");
            continue;
        }
        /* Signatures for other engine levels may use syntax we do not know:
         * skip them before parsing, as ClamAV does. */
        if (!ok || !target_supported((int64_t)target)) {
            source_of(b, src)->skipped++;
            continue;
        }
        struct khx_offset off;
        if (khx_offset_parse(f[2], fl[2], &off, err, sizeof(err)) != 0) {
            khx_builder_error(b, src, file, it.lineno, "offset: %s", err);
            continue;
        }
        struct khx_body body;
        memset(&body, 0, sizeof(body));
        if (khx_body_parse(f[3], fl[3], 0, &body, err, sizeof(err)) != 0) {
            khx_builder_error(b, src, file, it.lineno, "body: %s", err);
            continue;
        }
        if (khx_builder_ignored(b, f[0], fl[0], line, n)) {
            khx_body_clear(&body);
            continue;
        }
        int64_t sig = khx_builder_sig(b, f[0], fl[0], KH_SIG_BODY, src);
        int r = sig < 0 ? (int)sig
                        : push_pattern(b, (uint32_t)sig, 0xffff, (int64_t)target, &off, &body, src,
                                       it.lineno);
        if (r != 0) {
            khx_body_clear(&body);
            return r;
        }
    }
    return KH_OK;
}

/* Undoes a partly added logical signature. */
static void ldb_rollback(kh_builder *b, size_t npat, size_t nsubs, size_t npcre, size_t nsigs)
{
    for (size_t i = npat; i < b->patterns.len; i++)
        khx_body_clear(&KHX_VEC_AT(&b->patterns, struct bpattern, i)->body);
    for (size_t i = npcre; i < b->pcres.len; i++) {
        free(KHX_VEC_AT(&b->pcres, struct bpcre, i)->ser);
        free(KHX_VEC_AT(&b->pcres, struct bpcre, i)->trigger);
    }
    for (size_t i = nsigs; i < b->sigs.len; i++) {
        struct bsig *s = KHX_VEC_AT(&b->sigs, struct bsig, i);
        source_of(b, s->source)->signatures--;
        free(s->name);
    }
    b->patterns.len = npat;
    b->subs.len = nsubs;
    b->pcres.len = npcre;
    b->sigs.len = nsigs;
}

/* Parses one .ldb line. Returns 0 (added), 1 (skipped: outside our level or
 * unsupported), 2 after reporting an error, 3 (ignored by an .ign2), or a
 * negative kh_err. */
static int load_ldb_line(kh_builder *b, uint32_t src, const char *file, unsigned lineno,
                         const char *line, size_t n)
{
    char err[ERR_LEN];
    struct khx_ldb_line l;
    struct khx_tdb tdb;
    uint8_t *expr = NULL;
    size_t expr_len = 0;
    if (khx_ldb_split(line, n, &l, err, sizeof(err)) != 0) {
        khx_builder_error(b, src, file, lineno, "%s", err);
        return 2;
    }
    if (!name_ok(l.name, l.name_len)) {
        khx_builder_error(b, src, file, lineno, "invalid signature name");
        return 2;
    }
    if (khx_tdb_parse(l.tdb, l.tdb_len, &tdb, err, sizeof(err)) != 0) {
        khx_builder_error(b, src, file, lineno, "target description block: %s", err);
        return 2;
    }
    /* For another engine level: its expression and subsignatures may use
     * syntax we do not know, so it is skipped before they are parsed. */
    if ((tdb.present & KHX_TDB_ENGINE) &&
        (tdb.engine_min > KH_FLEVEL || tdb.engine_max < KH_FLEVEL))
        return 1;
    if (khx_lexpr_compile(l.expr, l.expr_len, l.nsubsigs, &expr, &expr_len, err, sizeof(err)) !=
        0) {
        khx_builder_error(b, src, file, lineno, "logical expression: %s", err);
        return 2;
    }
    int skip = 0;
    if (tdb.present & (KHX_TDB_ICONGROUP | KHX_TDB_INTERMEDIATES | KHX_TDB_HANDLERTYPE))
        skip = 1;
    int64_t target = (tdb.present & KHX_TDB_TARGET) ? tdb.target : KDB_T_ANY;
    if (!target_supported(target))
        skip = 1;

    size_t npat = b->patterns.len, nsubs = b->subs.len, npcre = b->pcres.len, nsigs = b->sigs.len;
    int r = 0;
    struct bldb *ldb = NULL;
    uint32_t ldb_index = (uint32_t)b->ldbs.len;
    for (unsigned i = 0; i < l.nsubsigs && r == 0; i++) {
        struct khx_subsig sub;
        if (khx_subsig_parse(l.sub[i], l.sub_len[i], &sub, err, sizeof(err)) != 0) {
            khx_builder_error(b, src, file, lineno, "subsignature %u: %s", i, err);
            r = 2;
            break;
        }
        struct kdb_ldbsub *s = khx_vec_push(&b->subs);
        if (s == NULL) {
            r = KH_ENOMEM;
            break;
        }
        if (sub.kind == KHX_SUB_BODY) {
            struct khx_body body;
            memset(&body, 0, sizeof(body));
            if (khx_body_parse(sub.hex, sub.hex_len, sub.mods, &body, err, sizeof(err)) != 0) {
                khx_builder_error(b, src, file, lineno, "subsignature %u: %s", i, err);
                r = 2;
                break;
            }
            s->kind = KDB_SUB_PATTERN;
            s->ref = (uint32_t)b->patterns.len;
            int rr =
                push_pattern(b, ldb_index, (uint16_t)i, target, &sub.offset, &body, src, lineno);
            if (rr != 0) {
                khx_body_clear(&body);
                r = rr;
            }
        } else if (sub.kind == KHX_SUB_PCRE) {
            struct bpcre *p = khx_vec_push(&b->pcres);
            if (p == NULL) {
                r = KH_ENOMEM;
                break;
            }
            p->ldb = ldb_index;
            p->subsig = i;
            p->offset = sub.offset;
            s->kind = KDB_SUB_PCRE;
            s->ref = (uint32_t)(b->pcres.len - 1);
            /* A trigger may only refer to earlier subsignatures. */
            if (khx_lexpr_compile(sub.trigger, sub.trigger_len, i, &p->trigger, &p->trigger_len,
                                  err, sizeof(err)) != 0) {
                khx_builder_error(b, src, file, lineno, "subsignature %u trigger: %s", i, err);
                r = 2;
                break;
            }
            if (khx_pcre_compile(sub.regex, sub.regex_len, sub.flags, sub.flags_len, &p->ser,
                                 &p->ser_len, &p->cflags, err, sizeof(err)) != 0) {
                khx_builder_error(b, src, file, lineno, "subsignature %u: %s", i, err);
                r = 2;
                break;
            }
        } else {
            skip = 1; /* byte-compare, macros and image hashes are not supported */
            s->kind = KDB_SUB_PATTERN;
            s->ref = UINT32_MAX;
        }
    }
    if (r == 0 && skip)
        r = 1;
    if (r == 0 && khx_builder_ignored(b, l.name, l.name_len, line, n))
        r = 3; /* ignored: neither added nor counted as skipped */
    if (r == 0) {
        int64_t sig = khx_builder_sig(b, l.name, l.name_len, KH_SIG_LOGICAL, src);
        if (sig < 0 || (ldb = khx_vec_push(&b->ldbs)) == NULL) {
            r = KH_ENOMEM;
        } else {
            ldb->sig = (uint32_t)sig;
            ldb->tdb = tdb;
            ldb->tdb.target = (int32_t)((tdb.present & KHX_TDB_TARGET) ? tdb.target : -1);
            ldb->expr = expr;
            ldb->expr_len = expr_len;
            ldb->nsubs = l.nsubsigs;
            ldb->first_sub = (uint32_t)nsubs;
            expr = NULL;
        }
    }
    if (r != 0)
        ldb_rollback(b, npat, nsubs, npcre, nsigs);
    free(expr);
    return r;
}

int khx_load_ldb(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len)
{
    struct khx_lines it;
    const char *line;
    size_t n;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &line, &n)) {
        if (n == 0 || line[0] == '#')
            continue;
        int r = load_ldb_line(b, src, file, it.lineno, line, n);
        if (r < 0)
            return r;
        if (r == 1)
            source_of(b, src)->skipped++;
    }
    return KH_OK;
}
