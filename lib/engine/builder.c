/*
 * The database builder: reads signature sources of every supported kind into
 * one intermediate form, then hands it to compile.c for the .kdb image.
 *
 * A source's file name selects its parser. Directories are read in name
 * order with .ign2/.ign files first, so that ignore lists apply to the
 * signatures that follow them. CVD/CLD containers are verified and their
 * members loaded as sources named "daily.cvd:daily.ndb".
 */
#include "engine_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cvd.h"

#define DIAG_MAX 512

void khx_builder_error(kh_builder *b, uint32_t source, const char *file, unsigned line,
                       const char *fmt, ...)
{
    char msg[DIAG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->errors++;
    if (source < b->sources.len)
        KHX_VEC_AT(&b->sources, struct bsource, source)->errors++;
    if (b->opts.diag)
        b->opts.diag(b->opts.diag_ud, file, line, msg);
}

void khx_builder_note(kh_builder *b, const char *file, unsigned line, const char *fmt, ...)
{
    char msg[DIAG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (b->opts.diag)
        b->opts.diag(b->opts.diag_ud, file, line, msg);
}

int kh_builder_new(const struct kh_build_opts *opts, kh_builder **out)
{
    kh_builder *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return KH_ENOMEM;
    if (opts)
        b->opts = *opts;
    khx_vec_init(&b->sigs, sizeof(struct bsig), KHX_MAX_SIGS);
    khx_vec_init(&b->hashes, sizeof(struct bhash), KHX_MAX_SIGS);
    khx_vec_init(&b->patterns, sizeof(struct bpattern), KHX_MAX_PATTERNS);
    khx_vec_init(&b->ldbs, sizeof(struct bldb), KHX_MAX_PATTERNS);
    khx_vec_init(&b->subs, sizeof(struct kdb_ldbsub), KHX_MAX_PATTERNS);
    khx_vec_init(&b->pcres, sizeof(struct bpcre), KHX_MAX_PATTERNS);
    khx_vec_init(&b->sources, sizeof(struct bsource), KHX_MAX_SOURCES);
    khx_vec_init(&b->yara, sizeof(struct byara), KHX_MAX_SOURCES);
    khx_vec_init(&b->ignores, sizeof(struct bignore), KHX_MAX_SIGS);
    *out = b;
    return KH_OK;
}

void kh_builder_free(kh_builder *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->sigs.len; i++)
        free(KHX_VEC_AT(&b->sigs, struct bsig, i)->name);
    for (size_t i = 0; i < b->patterns.len; i++)
        khx_body_clear(&KHX_VEC_AT(&b->patterns, struct bpattern, i)->body);
    for (size_t i = 0; i < b->ldbs.len; i++)
        free(KHX_VEC_AT(&b->ldbs, struct bldb, i)->expr);
    for (size_t i = 0; i < b->pcres.len; i++) {
        struct bpcre *p = KHX_VEC_AT(&b->pcres, struct bpcre, i);
        free(p->ser);
        free(p->trigger);
    }
    for (size_t i = 0; i < b->sources.len; i++)
        free(KHX_VEC_AT(&b->sources, struct bsource, i)->name);
    for (size_t i = 0; i < b->yara.len; i++) {
        struct byara *y = KHX_VEC_AT(&b->yara, struct byara, i);
        free(y->name);
        free(y->text);
    }
    for (size_t i = 0; i < b->ignores.len; i++)
        free(KHX_VEC_AT(&b->ignores, struct bignore, i)->name);
    khx_vec_free(&b->sigs);
    khx_vec_free(&b->hashes);
    khx_vec_free(&b->patterns);
    khx_vec_free(&b->ldbs);
    khx_vec_free(&b->subs);
    khx_vec_free(&b->pcres);
    khx_vec_free(&b->sources);
    khx_vec_free(&b->yara);
    khx_vec_free(&b->ignores);
    free(b);
}

int khx_builder_source(kh_builder *b, const char *name)
{
    struct bsource *s = khx_vec_push(&b->sources);
    if (s == NULL)
        return KH_ENOMEM;
    if ((s->name = strdup(name)) == NULL) {
        b->sources.len--;
        return KH_ENOMEM;
    }
    return (int)(b->sources.len - 1);
}

int64_t khx_builder_sig(kh_builder *b, const char *name, size_t name_len, int kind, uint32_t source)
{
    struct bsig *s = khx_vec_push(&b->sigs);
    if (s == NULL)
        return KH_ENOMEM;
    if ((s->name = khx_strndup(name, name_len)) == NULL) {
        b->sigs.len--;
        return KH_ENOMEM;
    }
    s->kind = (uint16_t)kind;
    s->source = (uint16_t)source;
    KHX_VEC_AT(&b->sources, struct bsource, source)->signatures++;
    return (int64_t)(b->sigs.len - 1);
}

static int cmp_ignore(const void *a, const void *b)
{
    return strcmp(((const struct bignore *)a)->name, ((const struct bignore *)b)->name);
}

int khx_builder_ignored(kh_builder *b, const char *name, size_t name_len, const char *line,
                        size_t line_len)
{
    if (b->ignores.len == 0)
        return 0;
    if (!b->sorted_ignores) {
        qsort(b->ignores.items, b->ignores.len, sizeof(struct bignore), cmp_ignore);
        b->sorted_ignores = 1;
    }
    char key[KHX_MAX_NAME + 1];
    if (name_len > KHX_MAX_NAME)
        return 0;
    memcpy(key, name, name_len);
    key[name_len] = '\0';
    struct bignore probe = {.name = key};
    struct bignore *hit =
        bsearch(&probe, b->ignores.items, b->ignores.len, sizeof(struct bignore), cmp_ignore);
    if (hit == NULL)
        return 0;
    /* Entries of the same name are adjacent; any one that applies ignores. */
    struct bignore *first = hit, *end = KHX_VEC_AT(&b->ignores, struct bignore, b->ignores.len);
    while (first > (struct bignore *)b->ignores.items && strcmp(first[-1].name, key) == 0)
        first--;
    for (struct bignore *g = first; g < end && strcmp(g->name, key) == 0; g++) {
        if (!g->has_md5) {
            b->ignored++;
            return 1;
        }
        uint8_t md[16];
        if (line && khx_md5(line, line_len, md) == 0 && memcmp(md, g->md5, 16) == 0) {
            b->ignored++;
            return 1;
        }
    }
    return 0;
}

/* How a source file is handled, chosen by its extension. */
enum srckind {
    SRC_UNKNOWN = 0,
    SRC_HDB, /* hash:size:name */
    SRC_MDB, /* size:hash:name (PE sections) */
    SRC_IMP, /* hash:size:name (import table) */
    SRC_FP,  /* allowlist, hash:size:name */
    SRC_NDB,
    SRC_LDB,
    SRC_IGN,
    SRC_YARA,
    SRC_HASHLIST,
    SRC_CVD,
    SRC_CLD,
    SRC_SKIP, /* known ClamAV file we do not use (.info, .cfg, .cbc, .pdb ...) */
};

static enum srckind source_kind(const char *name, int pua, int explicit)
{
    const char *ext = khx_path_ext(name);
    static const struct {
        const char *ext;
        enum srckind kind;
        int pua;
    } table[] = {
        {"hdb", SRC_HDB, 0},
        {"hsb", SRC_HDB, 0},
        {"hdu", SRC_HDB, 1},
        {"hsu", SRC_HDB, 1},
        {"mdb", SRC_MDB, 0},
        {"msb", SRC_MDB, 0},
        {"mdu", SRC_MDB, 1},
        {"msu", SRC_MDB, 1},
        {"imp", SRC_IMP, 0},
        {"fp", SRC_FP, 0},
        {"sfp", SRC_FP, 0},
        {"ndb", SRC_NDB, 0},
        {"ndu", SRC_NDB, 1},
        {"ldb", SRC_LDB, 0},
        {"ldu", SRC_LDB, 1},
        {"ign2", SRC_IGN, 0},
        {"ign", SRC_IGN, 0},
        {"yar", SRC_YARA, 0},
        {"yara", SRC_YARA, 0},
        {"cvd", SRC_CVD, 0},
        {"cld", SRC_CLD, 0},
        {"hashes", SRC_HASHLIST, 0},
        {"hashlist", SRC_HASHLIST, 0},
        {"md5", SRC_HASHLIST, 0},
        {"sha1", SRC_HASHLIST, 0},
        {"sha256", SRC_HASHLIST, 0},
        /* ClamAV files we recognise but do not use. */
        {"info", SRC_SKIP, 0},
        {"cfg", SRC_SKIP, 0},
        {"cbc", SRC_SKIP, 0},
        {"cdb", SRC_SKIP, 0},
        {"idb", SRC_SKIP, 0},
        {"pdb", SRC_SKIP, 0},
        {"gdb", SRC_SKIP, 0},
        {"wdb", SRC_SKIP, 0},
        {"ftm", SRC_SKIP, 0},
        {"crb", SRC_SKIP, 0},
        {"cat", SRC_SKIP, 0},
        {"pwdb", SRC_SKIP, 0},
        {"sign", SRC_SKIP, 0},
        {"cdiff", SRC_SKIP, 0},
        {"zmd", SRC_SKIP, 0},
        {"rmd", SRC_SKIP, 0},
        {"hdbx", SRC_SKIP, 0},
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(table); i++) {
        if (strcmp(ext, table[i].ext) == 0) {
            if (table[i].pua && !pua)
                return SRC_SKIP;
            return table[i].kind;
        }
    }
    /* A plain .txt hash list is accepted when named explicitly. */
    if (explicit && strcmp(ext, "txt") == 0)
        return SRC_HASHLIST;
    if (strcmp(khx_path_base(name), "COPYING") == 0)
        return SRC_SKIP;
    return SRC_UNKNOWN;
}

static unsigned count_lines(const char *text, size_t len)
{
    struct khx_lines it;
    const char *l;
    size_t n;
    unsigned count = 0;
    khx_lines_init(&it, text, len);
    while (khx_lines_next(&it, &l, &n))
        if (n > 0 && l[0] != '#')
            count++;
    return count;
}

/* Loads one text source into source entry `src`. */
static int load_text(kh_builder *b, uint32_t src, const char *file, enum srckind kind,
                     const char *text, size_t len)
{
    switch (kind) {
    case SRC_HDB:
        return khx_load_hashes(b, src, file, text, len, KDB_HC_FILE, 0);
    case SRC_MDB:
        return khx_load_hashes(b, src, file, text, len, KDB_HC_SECTION, 1);
    case SRC_IMP:
        return khx_load_hashes(b, src, file, text, len, KDB_HC_IMPORT, 0);
    case SRC_FP:
        return khx_load_hashes(b, src, file, text, len, KDB_HC_ALLOW, 0);
    case SRC_NDB:
        return khx_load_ndb(b, src, file, text, len);
    case SRC_LDB:
        return khx_load_ldb(b, src, file, text, len);
    case SRC_IGN:
        return khx_load_ign(b, src, file, text, len);
    case SRC_YARA:
        return khx_load_yara(b, src, file, text, len);
    case SRC_HASHLIST:
        return khx_load_hashlist(b, src, file, text, len);
    case SRC_SKIP: {
        unsigned n = count_lines(text, len);
        KHX_VEC_AT(&b->sources, struct bsource, src)->skipped += n;
        return KH_OK;
    }
    default:
        return KH_EUNSUPPORTED;
    }
}

/* CVD members are collected first, then loaded with the ignore lists
 * before everything else, so one verification and decompression suffices. */
struct cvd_member {
    char *name;
    uint8_t *data;
    size_t len;
};

struct cvd_ctx {
    struct khx_vec members; /* struct cvd_member */
};

static int cvd_collect(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct cvd_ctx *c = ud;
    struct cvd_member *m = khx_vec_push(&c->members);
    if (m == NULL)
        return KH_ENOMEM;
    m->name = strdup(name);
    m->data = malloc(len ? len : 1);
    if (m->name == NULL || m->data == NULL)
        return KH_ENOMEM; /* freed with the vector's other members */
    memcpy(m->data, data, len);
    m->len = len;
    return 0;
}

static int load_cvd(kh_builder *b, const char *name, const uint8_t *data, size_t len, int cld)
{
    int r = khx_builder_source(b, khx_path_base(name));
    if (r < 0)
        return r;
    uint32_t src = (uint32_t)r;
    struct khx_cvd_header hdr;
    char err[256] = "";
    unsigned flags = (cld ? KHX_CVD_IS_CLD : 0) | (b->opts.skip_cvd_verify ? KHX_CVD_NO_VERIFY : 0);
    struct cvd_ctx ctx;
    khx_vec_init(&ctx.members, sizeof(struct cvd_member), 4096);
    memset(&hdr, 0, sizeof(hdr));
    r = khx_cvd_open(data, len, flags, NULL, &hdr, cvd_collect, &ctx, err, sizeof(err));
    if (r != 0) {
        if (r != KH_ENOMEM)
            khx_builder_error(b, src, khx_path_base(name), 0, "%s", err[0] ? err : kh_strerror(r));
        r = r == KH_ENOMEM ? r : (b->opts.strict ? KH_ESTRICT : KH_OK);
        goto out;
    }
    struct bsource *s = KHX_VEC_AT(&b->sources, struct bsource, src);
    s->version = hdr.version;
    s->built = hdr.stime;
    for (int pass = 0; pass < 2 && r == 0; pass++) {
        for (size_t i = 0; i < ctx.members.len && r == 0; i++) {
            struct cvd_member *m = KHX_VEC_AT(&ctx.members, struct cvd_member, i);
            enum srckind kind = source_kind(m->name, b->opts.pua, 0);
            if ((kind == SRC_IGN) != (pass == 0))
                continue;
            if (kind == SRC_UNKNOWN) {
                KHX_VEC_AT(&b->sources, struct bsource, src)->skipped +=
                    count_lines((const char *)m->data, m->len);
                continue;
            }
            char file[512];
            snprintf(file, sizeof(file), "%s:%s", khx_path_base(name), m->name);
            r = load_text(b, src, file, kind, (const char *)m->data, m->len);
            if (r == KH_EUNSUPPORTED)
                r = KH_OK;
        }
    }
out:
    for (size_t i = 0; i < ctx.members.len; i++) {
        struct cvd_member *m = KHX_VEC_AT(&ctx.members, struct cvd_member, i);
        free(m->name);
        free(m->data);
    }
    khx_vec_free(&ctx.members);
    return r;
}

static int add_mem_kind(kh_builder *b, const char *name, const void *data, size_t len,
                        enum srckind kind)
{
    if (kind == SRC_UNKNOWN) {
        khx_builder_error(b, UINT32_MAX, name, 0,
                          "unknown signature file type '.%s' (see `khien db compile --help`)",
                          khx_path_ext(name));
        return KH_EUNSUPPORTED;
    }
    if (kind == SRC_CVD || kind == SRC_CLD)
        return load_cvd(b, name, data, len, kind == SRC_CLD);
    int r = khx_builder_source(b, khx_path_base(name));
    if (r < 0)
        return r;
    uint64_t before = b->errors;
    r = load_text(b, (uint32_t)r, name, kind, data, len);
    if (r == 0 && b->opts.strict && b->errors != before)
        r = KH_ESTRICT;
    return r;
}

int kh_builder_add_mem(kh_builder *b, const char *name, const void *data, size_t len)
{
    if (b == NULL || name == NULL || (data == NULL && len > 0))
        return KH_EINVAL;
    return add_mem_kind(b, name, data, len, source_kind(name, b->opts.pua, 1));
}

static int add_file(kh_builder *b, const char *path, enum srckind kind)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int r = khx_read_file(path, KHX_MAX_SOURCE_SIZE, &data, &len);
    if (r != 0) {
        khx_builder_error(b, UINT32_MAX, path, 0, "cannot read: %s",
                          r == KH_EIO ? strerror(errno) : kh_strerror(r));
        return r;
    }
    r = add_mem_kind(b, path, data, len, kind);
    free(data);
    return r;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_dir(kh_builder *b, const char *path)
{
    int r = KH_OK;
    DIR *d = opendir(path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (d == NULL) {
        khx_builder_error(b, UINT32_MAX, path, 0, "cannot open directory: %s", strerror(errno));
        return KH_EIO;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof(*names));
            if (p == NULL) {
                r = KH_ENOMEM;
                goto out;
            }
            names = p;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            r = KH_ENOMEM;
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof(*names), cmp_names);
    /* Two passes: ignore lists first, so they apply to every signature here. */
    for (int pass = 0; pass < 2 && r == KH_OK; pass++) {
        for (size_t i = 0; i < n; i++) {
            enum srckind kind = source_kind(names[i], b->opts.pua, 0);
            if (kind == SRC_UNKNOWN || kind == SRC_SKIP || (kind == SRC_IGN) != (pass == 0))
                continue;
            char full[4096];
            snprintf(full, sizeof(full), "%s/%s", path, names[i]);
            struct stat st;
            if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            int rr = add_file(b, full, kind);
            if (rr == KH_ENOMEM || rr == KH_ESTRICT) {
                r = rr;
                break;
            }
        }
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return r;
}

int kh_builder_add_path(kh_builder *b, const char *path)
{
    struct stat st;
    if (b == NULL || path == NULL)
        return KH_EINVAL;
    if (stat(path, &st) != 0) {
        khx_builder_error(b, UINT32_MAX, path, 0, "%s", strerror(errno));
        return errno == ENOENT ? KH_ENOTFOUND : KH_EIO;
    }
    if (S_ISDIR(st.st_mode))
        return add_dir(b, path);
    return add_file(b, path, source_kind(path, b->opts.pua, 1));
}

int kh_builder_compile(kh_builder *b, void **image, size_t *image_len)
{
    uint8_t *img = NULL;
    size_t len = 0;
    if (b == NULL || image == NULL || image_len == NULL)
        return KH_EINVAL;
    int r = khx_compile(b, &img, &len);
    if (r != 0)
        return r;
    *image = img;
    *image_len = len;
    return KH_OK;
}

int kh_builder_write(kh_builder *b, const char *path)
{
    void *img = NULL;
    size_t len = 0;
    int r = kh_builder_compile(b, &img, &len);
    if (r != 0)
        return r;
    r = khx_write_file_atomic(path, img, len);
    free(img);
    return r;
}
