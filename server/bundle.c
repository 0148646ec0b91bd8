/*
 * Signature bundles on the server (see bundle.h): the Ed25519 signing key,
 * publishing (compile the enabled signature sources with libkhien, gather
 * the enabled indicator lists, sign, store as the next version in chunks,
 * prune), and reading a version back for download.
 *
 * Publishing is split so that the slow part holds no lock: compiling a full
 * ClamAV database takes minutes, so the .kdb is built and hashed first, and
 * only then does a write transaction pick the version number, sign the
 * small header that names it, and copy header and image into 1 MiB chunks.
 * Because the version is inside the signed manifest, the header is made
 * inside that transaction; the SHA-256 of the .kdb and of the indicator list
 * are all it needs of them.
 *
 * Indicator lists (sources of kind "indicators") never reach the builder:
 * every line is normalised with ioc_normalize_line(), a line that is not an
 * indicator fails the publish naming list and line, duplicates (by value,
 * across lists) keep their first line, and the result is the bundle's
 * indicator section.
 *
 * Downloads come from DATA/cache/bundle-<version>.khb, written at publish
 * time and otherwise rebuilt from the chunks on first request (into a
 * temporary file renamed into place, so concurrent requests and processes
 * each see either no file or a complete one).
 */
#include "bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include <khien/khien.h>

#include "ioc.h"
#include "khx.h"

/* lib/common/bundle.h, the file format; included by path because the
 * server's own bundle.h has the same name. */
#include "khx_bundle.h"

#define CHUNK_SIZE      (1024 * 1024)
#define PUBLISH_RETRIES 3
#define DIAG_KEEP       32
/* The indicator section: what an agent's ioc_set_load() accepts by default,
 * and a bound on the bytes held in memory while publishing. */
#define IOC_MAX_INDICATORS 10000000
#define IOC_SECTION_MAX    (1024u * 1024u * 1024u)

struct srv_signer {
    uint8_t sk[KHX_BUNDLE_SK_LEN];
    uint8_t pk[KHX_BUNDLE_PK_LEN];
    char pub_b64[48];
    char key_id[KHX_BUNDLE_KEY_ID_LEN + 1];
};

/* ------------------------------------------------------------------------ */
/* Files.                                                                    */
/* ------------------------------------------------------------------------ */

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int make_dir(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* The signing key.                                                          */
/* ------------------------------------------------------------------------ */

/* Reads DATA/bundle.key into `signer` and checks it: exactly 64 bytes, not
 * accessible to group or others, and internally consistent (the public half
 * is the one its seed derives), so a damaged file is refused rather than
 * producing bundles no agent accepts. */
static int signer_load(const char *path, struct srv_signer *signer, char *err, size_t errlen)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    struct stat st;
    int r = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        khx_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != KHX_BUNDLE_SK_LEN) {
        khx_errf(err, errlen, "%s is not a 64-byte Ed25519 secret key", path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        khx_errf(err, errlen, "%s is accessible by other users (mode %03o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        goto out;
    }
    size_t got = 0;
    while (got < sizeof(signer->sk)) {
        ssize_t k = read(fd, signer->sk + got, sizeof(signer->sk) - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            khx_errf(err, errlen, "cannot read %s", path);
            goto out;
        }
        got += (size_t)k;
    }
    crypto_sign_ed25519_sk_to_seed(seed, signer->sk);
    if (crypto_sign_seed_keypair(pk, sk, seed) != 0 ||
        sodium_memcmp(sk, signer->sk, sizeof(sk)) != 0) {
        khx_errf(err, errlen, "%s is damaged: its two halves do not belong together", path);
        goto out;
    }
    memcpy(signer->pk, pk, sizeof(pk));
    sodium_bin2base64(signer->pub_b64, sizeof(signer->pub_b64), pk, sizeof(pk),
                      sodium_base64_VARIANT_ORIGINAL);
    if (khx_bundle_key_id(pk, signer->key_id) != KH_OK) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    r = 0;
out:
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(sk, sizeof(sk));
    close(fd);
    return r;
}

int srv_signer_init_dir(const char *dir, char *err, size_t errlen)
{
    char key_path[PATH_MAX], pub_path[PATH_MAX];
    struct srv_signer *signer = NULL;
    int r = -1;

    if (dir == NULL || path_join(key_path, sizeof(key_path), dir, "bundle.key") != 0 ||
        path_join(pub_path, sizeof(pub_path), dir, "bundle.pub") != 0) {
        khx_errf(err, errlen, "bad data folder name");
        return -1;
    }
    if (sodium_init() < 0 || (signer = sodium_malloc(sizeof(*signer))) == NULL) {
        khx_errf(err, errlen, "cannot initialise libsodium");
        return -1;
    }
    if (make_dir(dir) != 0) {
        khx_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    if (access(key_path, F_OK) == 0) {
        /* An existing key is kept: agents already trust it. */
        if (signer_load(key_path, signer, err, errlen) != 0)
            goto out;
    } else {
        crypto_sign_keypair(signer->pk, signer->sk);
        if (khx_write_file_mode(key_path, signer->sk, sizeof(signer->sk), 0600) != 0) {
            khx_errf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
            goto out;
        }
        sodium_bin2base64(signer->pub_b64, sizeof(signer->pub_b64), signer->pk, sizeof(signer->pk),
                          sodium_base64_VARIANT_ORIGINAL);
    }
    /* bundle.pub is for people and scripts (base64 and a newline); the
     * server itself always derives the public key from bundle.key. */
    char line[sizeof(signer->pub_b64) + 1];
    int n = snprintf(line, sizeof(line), "%s\n", signer->pub_b64);
    if (access(pub_path, F_OK) != 0 && khx_write_file_mode(pub_path, line, (size_t)n, 0644) != 0) {
        khx_errf(err, errlen, "cannot write %s: %s", pub_path, strerror(errno));
        goto out;
    }
    r = 0;
out:
    sodium_free(signer);
    return r;
}

int srv_signer_open(const char *dir, struct srv_signer **out, char *err, size_t errlen)
{
    char key_path[PATH_MAX];
    struct srv_signer *signer = NULL;

    *out = NULL;
    if (dir == NULL || path_join(key_path, sizeof(key_path), dir, "bundle.key") != 0) {
        khx_errf(err, errlen, "bad data folder name");
        return -1;
    }
    /* sodium_malloc keeps the key out of swap and wipes it when freed. */
    if (sodium_init() < 0 || (signer = sodium_malloc(sizeof(*signer))) == NULL) {
        khx_errf(err, errlen, "cannot initialise libsodium");
        return -1;
    }
    if (signer_load(key_path, signer, err, errlen) != 0) {
        sodium_free(signer);
        return -1;
    }
    *out = signer;
    return 0;
}

void srv_signer_free(struct srv_signer *signer)
{
    if (signer != NULL)
        sodium_free(signer);
}

const char *srv_signer_public_b64(const struct srv_signer *signer)
{
    return signer ? signer->pub_b64 : NULL;
}

const char *srv_signer_key_id(const struct srv_signer *signer)
{
    return signer ? signer->key_id : NULL;
}

/* ------------------------------------------------------------------------ */
/* Compiling the enabled sources.                                            */
/* ------------------------------------------------------------------------ */

/* The first problems the builder reports, kept to explain a failure. */
struct diags {
    unsigned n;
    char text[DIAG_KEEP][256];
};

static void on_diag(void *ud, const char *source, unsigned line, const char *msg)
{
    struct diags *d = ud;
    if (d->n >= DIAG_KEEP)
        return;
    if (line > 0)
        snprintf(d->text[d->n], sizeof(d->text[0]), "%s:%u: %s", source, line, msg);
    else
        snprintf(d->text[d->n], sizeof(d->text[0]), "%s: %s", source, msg);
    d->n++;
}

/* The first kept problem that mentions `name`, or "". */
static const char *diag_for(const struct diags *d, const char *name)
{
    for (unsigned i = 0; i < d->n; i++)
        if (strstr(d->text[i], name) != NULL)
            return d->text[i];
    return "";
}

struct source_row {
    int64_t id;
    char *name;
    char *path;
    int indicators; /* an indicator list, not signatures */
};

static void free_rows(struct source_row *rows, size_t n)
{
    for (size_t i = 0; rows != NULL && i < n; i++) {
        free(rows[i].name);
        free(rows[i].path);
    }
    free(rows);
}

/* Reads the enabled sources' ids, names, paths and kinds (not their content,
 * which is fetched one at a time so that only one upload is in memory at
 * once). */
static int list_sources(struct store_db *db, struct source_row **out, size_t *nout)
{
    struct store_stmt *st = NULL;
    struct source_row *rows = NULL;
    size_t n = 0, cap = 0;
    int rc = store_queryf(
        db, &st, "SELECT id, name, path, kind FROM sig_sources WHERE enabled = 1 ORDER BY id", "");
    for (; rc == STORE_ROW; rc = store_step(st)) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct source_row *grown = realloc(rows, ncap * sizeof(*rows));
            if (grown == NULL) {
                rc = STORE_ENOMEM;
                break;
            }
            rows = grown;
            cap = ncap;
        }
        const char *name = store_col_text(st, 1), *path = store_col_text(st, 2);
        const char *kind = store_col_text(st, 3);
        rows[n].id = store_col_int(st, 0);
        rows[n].indicators = kind != NULL && strcmp(kind, SRV_KIND_INDICATORS) == 0;
        rows[n].name = strdup(name ? name : "");
        rows[n].path = strdup(path ? path : "");
        n++;
        if (rows[n - 1].name == NULL || rows[n - 1].path == NULL) {
            rc = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (rc < 0) {
        free_rows(rows, n);
        return rc;
    }
    *out = rows;
    *nout = n;
    return 0;
}

/* Adds one source to the builder: a path on the server as is, an upload
 * from memory under its own name (whose extension picks the loader). */
static int add_source(struct store_db *db, kh_builder *b, const struct source_row *row,
                      const struct diags *d, char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    int r;
    unsigned before = d->n;
    if (row->path[0] != '\0') {
        r = kh_builder_add_path(b, row->path);
    } else {
        int rc =
            store_queryf(db, &st, "SELECT content FROM sig_sources WHERE id = $1", "i", row->id);
        if (rc < 0) {
            khx_errf(err, errlen, "cannot read source '%s': %s", row->name, store_strerror(rc));
            return -1;
        }
        size_t len = 0;
        const void *data = rc == STORE_ROW ? store_col_blob(st, 0, &len) : NULL;
        r = kh_builder_add_mem(b, row->name, data ? data : "", data ? len : 0);
        store_finalize(st);
    }
    if (r != KH_OK) {
        khx_errf(err, errlen, "source '%s' failed to load: %s", row->name,
                 d->n > before ? d->text[before] : kh_strerror(r));
        return -1;
    }
    return 0;
}

/* What the compiled database holds, from its own header. */
struct kdb_summary {
    int64_t signatures;
    json_t *sources; /* [{"name","version","signatures","skipped","errors"}] */
};

/* Opens the freshly written .kdb the way an agent will, counts its
 * signatures and refuses a database in which a source that had errors
 * contributed nothing (a damaged upload, a CVD whose signature failed):
 * publishing it would silently drop those signatures everywhere. */
static int summarize_kdb(const char *path, const struct diags *d, struct kdb_summary *sum,
                         char *err, size_t errlen)
{
    kh_engine *e = NULL;
    struct kh_db_info info;
    char msg[256] = "";
    int r = -1;

    sum->signatures = 0;
    sum->sources = json_array();
    if (sum->sources == NULL)
        goto out;
    if (kh_engine_open(path, &e, msg, sizeof(msg)) != KH_OK || kh_engine_info(e, &info) != KH_OK) {
        khx_errf(err, errlen, "the compiled database does not open: %s", msg);
        goto out;
    }
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        if (k != KH_SIG_HEURISTIC)
            sum->signatures += (int64_t)info.counts[k];
    for (uint32_t i = 0; i < info.nsources; i++) {
        const struct kh_source_info *s = &info.sources[i];
        if (s->errors > 0 && s->signatures == 0) {
            const char *why = diag_for(d, s->name);
            khx_errf(err, errlen, "source '%s' loaded no signatures (%u errors)%s%s", s->name,
                     s->errors, why[0] ? ": " : "", why);
            goto out;
        }
        json_array_append_new(sum->sources,
                              json_pack("{s:s, s:I, s:I, s:I, s:I}", "name", s->name, "version",
                                        (json_int_t)s->version, "signatures",
                                        (json_int_t)s->signatures, "skipped",
                                        (json_int_t)s->skipped, "errors", (json_int_t)s->errors));
    }
    if (sum->signatures == 0) {
        khx_errf(err, errlen, "the enabled sources hold no signatures");
        goto out;
    }
    r = 0;
out:
    kh_engine_free(e);
    if (r != 0) {
        json_decref(sum->sources);
        sum->sources = NULL;
    }
    return r;
}

/* Compiles every enabled signature source of `rows` into `kdb_path`. */
static int compile_sources(struct store_db *db, const struct source_row *rows, size_t nrows,
                           const char *kdb_path, struct kdb_summary *sum, char *err, size_t errlen)
{
    struct diags *d = calloc(1, sizeof(*d));
    kh_builder *b = NULL;
    size_t nsig = 0;
    int r = -1;

    if (d == NULL) {
        khx_errf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < nrows; i++)
        nsig += !rows[i].indicators;
    /* Indicators alone would publish a bundle without signatures and take
     * every agent's scanning away: a signature source is required. */
    if (nsig == 0) {
        khx_errf(err, errlen, "no signature source is enabled");
        goto out;
    }
    /* Bundles run on other machines: the pattern matcher is built for any
     * CPU Hyperscan supports, not only this server's. */
    struct kh_build_opts opts = {.portable = 1, .diag = on_diag, .diag_ud = d};
    if (kh_builder_new(&opts, &b) != KH_OK) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nrows; i++)
        if (!rows[i].indicators && add_source(db, b, &rows[i], d, err, errlen) != 0)
            goto out;
    int kr = kh_builder_write(b, kdb_path);
    if (kr != KH_OK) {
        khx_errf(err, errlen, "cannot compile the signatures: %s%s%s", kh_strerror(kr),
                 d->n ? "; first problem: " : "", d->n ? d->text[0] : "");
        goto out;
    }
    kh_builder_free(b);
    b = NULL;
    if (summarize_kdb(kdb_path, d, sum, err, errlen) != 0)
        goto out;
    r = 0;
out:
    kh_builder_free(b);
    free(d);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Indicator lists.                                                          */
/* ------------------------------------------------------------------------ */

/* The list's name as a source word of the text form ([A-Za-z0-9._-], at most
 * 64 characters): it names the list in lines that do not name their own. */
static void source_word(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    for (; name[n] != '\0' && n + 1 < cap && n < 64; n++) {
        char c = name[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        out[n] = ok ? c : '_';
    }
    if (n == 0 && cap > 1)
        out[n++] = '-';
    out[n] = '\0';
}

int srv_indicators_check(const char *name, const void *data, size_t len, struct khx_buf *out,
                         size_t *count, srv_indicator_diag diag, void *ud)
{
    char line_out[IOC_NORMALIZED_MAX + 80], why[256], word[72];
    struct khx_lines it;
    const char *line;
    size_t n, good = 0, bad = 0;

    source_word(name, word, sizeof(word));
    khx_lines_init(&it, data, len);
    while (khx_lines_next(&it, &line, &n)) {
        int r = ioc_normalize_line(line, n, line_out, IOC_NORMALIZED_MAX, why, sizeof(why));
        if (r == 0)
            continue;
        if (r < 0) {
            bad++;
            if (diag != NULL)
                diag(ud, name, it.lineno, why);
            continue;
        }
        good++;
        if (out == NULL)
            continue;
        /* "value category -": the list's own name is the better source. */
        size_t k = strlen(line_out);
        if (k >= 2 && strcmp(line_out + k - 2, " -") == 0)
            snprintf(line_out + k - 1, sizeof(line_out) - (k - 1), "%s", word);
        k = strlen(line_out);
        line_out[k++] = '\n';
        if (khx_buf_append(out, line_out, k) != KH_OK)
            return -1;
    }
    if (count != NULL)
        *count = good;
    return (int)KHX_MIN(bad, (size_t)INT32_MAX);
}

/* One line of the gathered section, for removing duplicates. */
struct ioc_line {
    uint32_t off;  /* in the section */
    uint16_t len;  /* without the newline */
    uint16_t vlen; /* of the value, up to the first blank */
};

static int cmp_ioc_value(const void *a, const void *b, void *ud)
{
    const struct ioc_line *x = a, *y = b;
    const char *text = ud;
    size_t n = KHX_MIN(x->vlen, y->vlen);
    int c = memcmp(text + x->off, text + y->off, n);
    if (c == 0)
        c = x->vlen < y->vlen ? -1 : x->vlen > y->vlen;
    if (c == 0)
        c = x->off < y->off ? -1 : x->off > y->off;
    return c;
}

static int cmp_ioc_off(const void *a, const void *b)
{
    const struct ioc_line *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Removes lines whose value an earlier line has (the first list to name an
 * indicator gives its category and source) from the section, in place.
 * starts[i] is where source i's lines begin; dups[i] gets how many of its
 * lines were removed. Returns 0 or -1 (out of memory). */
static int remove_duplicates(struct khx_buf *sec, const size_t *starts, size_t nsrc, int64_t *dups,
                             int64_t *lines)
{
    struct khx_lines it;
    const char *line;
    size_t n, count = 0, cap = 0;
    struct ioc_line *v = NULL;

    *lines = 0;
    khx_lines_init(&it, sec->data, sec->len);
    while (khx_lines_next(&it, &line, &n)) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            struct ioc_line *grown = realloc(v, ncap * sizeof(*v));
            if (grown == NULL) {
                free(v);
                return -1;
            }
            v = grown;
            cap = ncap;
        }
        const char *sp = memchr(line, ' ', n);
        v[count].off = (uint32_t)(line - (const char *)sec->data);
        v[count].len = (uint16_t)n;
        v[count].vlen = (uint16_t)(sp ? (size_t)(sp - line) : n);
        count++;
    }
    if (count > 1)
        qsort_r(v, count, sizeof(*v), cmp_ioc_value, sec->data);
    /* Equal values are now adjacent, the earliest first: mark the others. */
    for (size_t i = 1; i < count; i++) {
        const struct ioc_line *a = &v[i - 1], *b = &v[i];
        if (a->vlen == b->vlen && memcmp(sec->data + a->off, sec->data + b->off, a->vlen) == 0)
            v[i].len = UINT16_MAX;
    }
    if (count > 1)
        qsort(v, count, sizeof(*v), cmp_ioc_off);
    size_t w = 0, src = 0;
    for (size_t i = 0; i < count; i++) {
        while (src + 1 < nsrc && v[i].off >= starts[src + 1])
            src++;
        if (v[i].len == UINT16_MAX) {
            dups[src]++;
            continue;
        }
        memmove(sec->data + w, sec->data + v[i].off, (size_t)v[i].len + 1);
        w += (size_t)v[i].len + 1;
        (*lines)++;
    }
    sec->len = w;
    free(v);
    return 0;
}

/* Reads an indicator list: an upload's content from the database, or the
 * file on the server. *data is malloc'd. */
static int read_list(struct store_db *db, const struct source_row *row, uint8_t **data, size_t *len,
                     char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    *data = NULL;
    *len = 0;
    if (row->path[0] != '\0') {
        int r = khx_read_file(row->path, IOC_SECTION_MAX, data, len);
        if (r != KH_OK) {
            khx_errf(err, errlen, "indicator list '%s' cannot be read from %s: %s", row->name,
                     row->path, kh_strerror(r));
            return -1;
        }
        return 0;
    }
    int rc = store_queryf(db, &st, "SELECT content FROM sig_sources WHERE id = $1", "i", row->id);
    if (rc < 0) {
        khx_errf(err, errlen, "cannot read source '%s': %s", row->name, store_strerror(rc));
        return -1;
    }
    size_t n = 0;
    const void *blob = rc == STORE_ROW ? store_col_blob(st, 0, &n) : NULL;
    if ((*data = malloc(n + 1)) == NULL) {
        store_finalize(st);
        khx_errf(err, errlen, "out of memory");
        return -1;
    }
    if (n > 0)
        memcpy(*data, blob, n);
    *len = n;
    store_finalize(st);
    return 0;
}

/* The first bad line of a list, to explain a failed publish. */
static void first_bad_line(void *ud, const char *source, unsigned line, const char *msg)
{
    char *text = ud;
    if (text[0] == '\0')
        snprintf(text, 300, "%s:%u: %s", source, line, msg);
}

/* Gathers every enabled indicator list into `sec` (the bundle's indicator
 * section), with the number of lines in *lines, and adds one entry per list
 * to sum->sources. A bad line fails it all, naming list and line. */
static int gather_indicators(struct store_db *db, const struct source_row *rows, size_t nrows,
                             struct khx_buf *sec, int64_t *lines, json_t *sources, char *err,
                             size_t errlen)
{
    size_t *starts = calloc(nrows + 1, sizeof(*starts));
    int64_t *dups = calloc(nrows + 1, sizeof(*dups));
    size_t *good = calloc(nrows + 1, sizeof(*good));
    size_t *which = calloc(nrows + 1, sizeof(*which));
    size_t nlists = 0, total = 0;
    uint8_t *data = NULL;
    char first[300];
    int r = -1;

    *lines = 0;
    if (starts == NULL || dups == NULL || good == NULL || which == NULL) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nrows; i++) {
        size_t len = 0;
        if (!rows[i].indicators)
            continue;
        if (read_list(db, &rows[i], &data, &len, err, errlen) != 0)
            goto out;
        starts[nlists] = sec->len;
        which[nlists] = i;
        first[0] = '\0';
        int bad = srv_indicators_check(rows[i].name, data, len, sec, &good[nlists], first_bad_line,
                                       first);
        free(data);
        data = NULL;
        if (bad < 0) {
            khx_errf(err, errlen, "the indicator lists are larger than %u MiB together",
                     IOC_SECTION_MAX >> 20);
            goto out;
        }
        if (bad > 0) {
            khx_errf(err, errlen, "%s%s", first,
                     bad > 1 ? " (and more lines that are not indicators)" : "");
            goto out;
        }
        total += good[nlists];
        if (total > IOC_MAX_INDICATORS) {
            khx_errf(err, errlen, "the indicator lists hold more than %d indicators together",
                     IOC_MAX_INDICATORS);
            goto out;
        }
        nlists++;
    }
    if (nlists > 0 && remove_duplicates(sec, starts, nlists, dups, lines) != 0) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < nlists; k++) {
        json_t *entry =
            json_pack("{s:s, s:s, s:I, s:I}", "name", rows[which[k]].name, "kind",
                      SRV_KIND_INDICATORS, "indicators", (json_int_t)good[k] - (json_int_t)dups[k],
                      "duplicates", (json_int_t)dups[k]);
        if (entry == NULL || json_array_append_new(sources, entry) != 0) {
            khx_errf(err, errlen, "out of memory");
            goto out;
        }
    }
    r = 0;
out:
    free(data);
    free(starts);
    free(dups);
    free(good);
    free(which);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Storing a version.                                                        */
/* ------------------------------------------------------------------------ */

/* A bundle file as three pieces: the signed header, the mapped .kdb and
 * the indicator section (possibly empty). */
struct pieces {
    const uint8_t *data[3];
    size_t len[3];
};

static uint64_t pieces_total(const struct pieces *p)
{
    return (uint64_t)p->len[0] + p->len[1] + p->len[2];
}

/* Copies up to `cap` bytes of the file starting at `off` into buf. */
static size_t pieces_read(const struct pieces *p, uint64_t off, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    uint64_t base = 0;
    for (size_t i = 0; i < KHX_ARRAY_LEN(p->data) && n < cap; i++) {
        if (off < base + p->len[i]) {
            size_t poff = (size_t)(off - base);
            size_t k = KHX_MIN(cap - n, p->len[i] - poff);
            memcpy(buf + n, p->data[i] + poff, k);
            n += k;
            off += k;
        }
        base += p->len[i];
    }
    return n;
}

/* Inserts the chunks of the file and computes its SHA-256 on the way. */
static int insert_chunks(struct store_db *db, int64_t version, const struct pieces *p,
                         uint8_t *chunk, char sha_hex[65])
{
    crypto_hash_sha256_state h;
    struct store_stmt *st = NULL;
    uint8_t md[32];
    uint64_t total = pieces_total(p), off = 0;
    int rc = store_prepare(db, "INSERT INTO bundle_chunks (version, seq, data) VALUES ($1, $2, $3)",
                           &st);
    crypto_hash_sha256_init(&h);
    for (int64_t seq = 0; rc == 0 && off < total; seq++) {
        size_t n = pieces_read(p, off, chunk, CHUNK_SIZE);
        crypto_hash_sha256_update(&h, chunk, n);
        if ((rc = store_reset(st)) != 0 || (rc = store_bind_int(st, 1, version)) != 0 ||
            (rc = store_bind_int(st, 2, seq)) != 0 || (rc = store_bind_blob(st, 3, chunk, n)) != 0)
            break;
        rc = store_step(st);
        if (rc == STORE_DONE)
            rc = 0;
        off += n;
    }
    store_finalize(st);
    crypto_hash_sha256_final(&h, md);
    khx_hex_encode(md, sizeof(md), sha_hex);
    return rc < 0 ? rc : 0;
}

/* Deletes every version older than the newest `keep`, returning the oldest
 * kept one in *cutoff (0 when nothing was old enough). */
static int prune_versions(struct store_db *db, unsigned keep, int64_t *cutoff)
{
    int64_t oldest = 0;
    *cutoff = 0;
    int rc = store_query_int(db, &oldest,
                             "SELECT version FROM bundles ORDER BY version DESC LIMIT 1 OFFSET $1",
                             "i", (int64_t)(keep > 0 ? keep - 1 : 0));
    if (rc != STORE_ROW)
        return rc < 0 ? rc : 0;
    if ((rc = store_execf(db, NULL, "DELETE FROM bundle_chunks WHERE version < $1", "i", oldest)) !=
            0 ||
        (rc = store_execf(db, NULL, "DELETE FROM bundles WHERE version < $1", "i", oldest)) != 0)
        return rc;
    *cutoff = oldest;
    return 0;
}

/* Adds the version's row; created_by is NULL when no user asked (a script
 * or the command line). */
static int insert_row(struct store_db *db, int64_t version, const char *sha_hex, int64_t size,
                      const char *sig_b64, const char *key_id, int64_t signatures,
                      const char *sources, int64_t user_id, int64_t now)
{
    struct store_stmt *st = NULL;
    int rc = store_prepare(db,
                           "INSERT INTO bundles (version, sha256, size, signature, key_id,"
                           " signatures, sources, created_by, created_at)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                           &st);
    if (rc == 0 &&
        ((rc = store_bind_int(st, 1, version)) != 0 ||
         (rc = store_bind_text(st, 2, sha_hex)) != 0 || (rc = store_bind_int(st, 3, size)) != 0 ||
         (rc = store_bind_text(st, 4, sig_b64)) != 0 ||
         (rc = store_bind_text(st, 5, key_id)) != 0 ||
         (rc = store_bind_int(st, 6, signatures)) != 0 ||
         (rc = store_bind_text(st, 7, sources)) != 0 ||
         (rc = user_id > 0 ? store_bind_int(st, 8, user_id) : store_bind_null(st, 8)) != 0 ||
         (rc = store_bind_int(st, 9, now)) != 0))
        goto out;
    if (rc == 0 && (rc = store_step(st)) == STORE_DONE)
        rc = 0;
out:
    store_finalize(st);
    return rc < 0 ? rc : 0;
}

/* What a version is made of besides its header. */
struct payload {
    const uint8_t *kdb;
    size_t kdb_len;
    uint8_t kdb_sha[32];
    const uint8_t *ioc; /* the indicator section; ioc_len 0 when none */
    size_t ioc_len;
    uint8_t ioc_sha[32];
    int64_t indicators;
};

/* One attempt at the transaction that turns the compiled .kdb and the
 * indicator section into the next version. Returns 0 or a negative store
 * code (the transaction is rolled back). */
static int publish_version(struct srv *s, struct store_db *db, int64_t user_id,
                           const struct kdb_summary *sum, const struct payload *pl, uint8_t *chunk,
                           int64_t *version, int64_t *cutoff, struct khx_buf *head, char *err,
                           size_t errlen)
{
    int64_t latest = 0, now = srv_now();
    char sha_hex[65], sig_b64[96];
    char *sources = NULL;
    int rc;

    head->len = 0;
    if ((rc = store_begin_write(db)) != 0)
        return rc;
    rc = store_query_int(db, &latest, "SELECT COALESCE(MAX(version), 0) FROM bundles", "");
    if (rc < 0)
        goto out;
    int64_t v = latest + 1;
    int kr = khx_bundle_header(v, now, sum->signatures, pl->kdb_len, pl->kdb_sha, pl->ioc_len,
                               pl->ioc_len > 0 ? pl->ioc_sha : NULL, pl->indicators, s->signer->sk,
                               head);
    if (kr != KH_OK) {
        khx_errf(err, errlen, "cannot sign the bundle: %s", kh_strerror(kr));
        rc = STORE_EINVAL;
        goto out;
    }
    struct pieces p = {{head->data, pl->kdb, pl->ioc}, {head->len, pl->kdb_len, pl->ioc_len}};
    if ((rc = insert_chunks(db, v, &p, chunk, sha_hex)) != 0)
        goto out;
    sodium_bin2base64(sig_b64, sizeof(sig_b64), head->data + head->len - KHX_BUNDLE_SIG_LEN,
                      KHX_BUNDLE_SIG_LEN, sodium_base64_VARIANT_ORIGINAL);
    if ((sources = json_dumps(sum->sources, JSON_COMPACT)) == NULL) {
        rc = STORE_ENOMEM;
        goto out;
    }
    if ((rc = insert_row(db, v, sha_hex, (int64_t)pieces_total(&p), sig_b64, s->signer->key_id,
                         sum->signatures, sources, user_id, now)) != 0)
        goto out;
    if ((rc = prune_versions(db, s->cfg.keep_bundles, cutoff)) != 0)
        goto out;
    rc = store_commit(db);
    if (rc == 0)
        *version = v;
out:
    if (rc != 0)
        store_rollback(db);
    free(sources);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The download cache.                                                       */
/* ------------------------------------------------------------------------ */

static int cache_path(const struct srv *s, int64_t version, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/cache/bundle-%" PRId64 ".khb", s->cfg.data_dir, version);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Opens a temporary file beside the cache entry for `version`; *tmp gets its
 * name. Returns the fd or -1. */
static int cache_temp(const struct srv *s, int64_t version, char *tmp, size_t cap)
{
    char dir[PATH_MAX];
    if (path_join(dir, sizeof(dir), s->cfg.data_dir, "cache") != 0 || make_dir(dir) != 0)
        return -1;
    int n = snprintf(tmp, cap, "%s/.bundle-%" PRId64 ".XXXXXX", dir, version);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return mkstemp(tmp);
}

/* Fills the cache with the version just published, so the first agents to
 * ask do not wait for it to be reassembled. Failure only costs that wait. */
static void cache_store(const struct srv *s, int64_t version, const struct pieces *p)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    int fd = cache_temp(s, version, tmp, sizeof(tmp));
    if (fd < 0)
        return;
    int ok = fchmod(fd, 0644) == 0;
    for (size_t i = 0; ok && i < KHX_ARRAY_LEN(p->data); i++)
        ok = khx_write_all(fd, p->data[i], p->len[i]) == 0;
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || cache_path(s, version, final, sizeof(final)) != 0 || rename(tmp, final) != 0)
        unlink(tmp);
}

/* Removes cached files of versions older than `cutoff`. */
static void cache_prune(const struct srv *s, int64_t cutoff)
{
    char dir[PATH_MAX], path[PATH_MAX];
    if (path_join(dir, sizeof(dir), s->cfg.data_dir, "cache") != 0)
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t v = 0;
        int used = 0;
        if (sscanf(de->d_name, "bundle-%" SCNd64 ".khb%n", &v, &used) == 1 &&
            de->d_name[used] == '\0' && v < cutoff &&
            path_join(path, sizeof(path), dir, de->d_name) == 0)
            unlink(path);
    }
    closedir(d);
}

/* ------------------------------------------------------------------------ */
/* Publishing.                                                               */
/* ------------------------------------------------------------------------ */

int srv_bundle_publish(struct srv *s, struct store_db *db, int64_t user_id, int64_t *version,
                       char *err, size_t errlen)
{
    /* One compile at a time per process: two would double the memory of
     * the largest step for no gain, as the second would only publish the
     * same sources again. */
    static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;
    char tmp_root[PATH_MAX], work[PATH_MAX], kdb_path[PATH_MAX];
    struct kdb_summary sum = {0, NULL};
    struct khx_map map = {NULL, 0, 0};
    struct khx_buf head, ioc;
    struct source_row *rows = NULL;
    struct payload pl;
    json_t *ioc_sources = json_array();
    size_t nrows = 0;
    uint8_t *chunk = NULL;
    int64_t cutoff = 0;
    int r = -1, rc = 0, have_work = 0, have_map = 0;

    memset(&pl, 0, sizeof(pl));
    khx_buf_init(&head, KHX_BUNDLE_PREFIX_LEN + KHX_BUNDLE_MAX_MANIFEST + KHX_BUNDLE_SIG_LEN);
    khx_buf_init(&ioc, IOC_SECTION_MAX);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (s == NULL || db == NULL || version == NULL || s->signer == NULL || ioc_sources == NULL) {
        khx_errf(err, errlen, "the bundle signing key is not loaded");
        json_decref(ioc_sources);
        return -1;
    }
    if (pthread_mutex_trylock(&publish_lock) != 0) {
        khx_errf(err, errlen, "another publish is already running");
        json_decref(ioc_sources);
        return -1;
    }
    /* The .kdb is compiled into a private folder under DATA/tmp. */
    if (path_join(tmp_root, sizeof(tmp_root), s->cfg.data_dir, "tmp") != 0 ||
        make_dir(tmp_root) != 0 || path_join(work, sizeof(work), tmp_root, "publish-XXXXXX") != 0 ||
        mkdtemp(work) == NULL || path_join(kdb_path, sizeof(kdb_path), work, "bundle.kdb") != 0) {
        khx_errf(err, errlen, "cannot create a work folder under %s: %s", tmp_root,
                 strerror(errno));
        goto out;
    }
    have_work = 1;
    if ((rc = list_sources(db, &rows, &nrows)) != 0) {
        khx_errf(err, errlen, "cannot list the signature sources: %s", store_strerror(rc));
        goto out;
    }
    /* The indicator lists first: a bad line fails in seconds, not after a
     * compile of minutes. */
    if (gather_indicators(db, rows, nrows, &ioc, &pl.indicators, ioc_sources, err, errlen) != 0 ||
        compile_sources(db, rows, nrows, kdb_path, &sum, err, errlen) != 0)
        goto out;
    if (json_array_extend(sum.sources, ioc_sources) != 0) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    if (khx_map_file(kdb_path, &map) != KH_OK || map.len == 0) {
        khx_errf(err, errlen, "cannot read the compiled database");
        goto out;
    }
    have_map = 1;
    pl.kdb = map.data;
    pl.kdb_len = map.len;
    pl.ioc = ioc.data;
    pl.ioc_len = ioc.len;
    if (khx_sha256(map.data, map.len, pl.kdb_sha) != KH_OK ||
        (ioc.len > 0 && khx_sha256(ioc.data, ioc.len, pl.ioc_sha) != KH_OK) ||
        (chunk = malloc(CHUNK_SIZE)) == NULL) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    /* Two servers publishing at once both pick the same number; the loser's
     * insert conflicts and it tries again with the next one. */
    for (int attempt = 0; attempt < PUBLISH_RETRIES; attempt++) {
        rc =
            publish_version(s, db, user_id, &sum, &pl, chunk, version, &cutoff, &head, err, errlen);
        if (rc != STORE_ECONFLICT && rc != STORE_EBUSY)
            break;
    }
    if (rc != 0) {
        if (err == NULL || errlen == 0 || err[0] == '\0')
            khx_errf(err, errlen, "cannot store the bundle: %s", store_strerror(rc));
        srv_log("bundle publish: %s (%s)", store_strerror(rc), store_errmsg(db));
        goto out;
    }
    struct pieces p = {{head.data, pl.kdb, pl.ioc}, {head.len, pl.kdb_len, pl.ioc_len}};
    cache_store(s, *version, &p);
    if (cutoff > 0)
        cache_prune(s, cutoff);
    r = 0;
out:
    if (have_map)
        khx_map_close(&map);
    if (have_work) {
        unlink(kdb_path);
        rmdir(work);
    }
    free(chunk);
    khx_buf_free(&head);
    khx_buf_free(&ioc);
    free_rows(rows, nrows);
    json_decref(sum.sources);
    json_decref(ioc_sources);
    pthread_mutex_unlock(&publish_lock);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Reading versions.                                                         */
/* ------------------------------------------------------------------------ */

#define INFO_COLUMNS "version, sha256, size, created_at, signatures"

static void read_info(struct store_stmt *st, struct srv_bundle_info *info)
{
    const char *sha = store_col_text(st, 1);
    memset(info, 0, sizeof(*info));
    info->version = store_col_int(st, 0);
    snprintf(info->sha256, sizeof(info->sha256), "%s", sha ? sha : "");
    info->size = store_col_int(st, 2);
    info->created_at = store_col_int(st, 3);
    info->signatures = store_col_int(st, 4);
}

int srv_bundle_latest(struct store_db *db, struct srv_bundle_info *info)
{
    struct store_stmt *st = NULL;
    int rc = store_queryf(db, &st,
                          "SELECT " INFO_COLUMNS " FROM bundles ORDER BY version DESC LIMIT 1", "");
    if (rc == STORE_ROW)
        read_info(st, info);
    store_finalize(st);
    return rc;
}

/* Writes version `version` from its chunks into the open file `fd`, one
 * chunk in memory at a time, and checks the result against the row.
 * Returns STORE_ROW, STORE_DONE when a chunk is missing (the version was
 * pruned meanwhile), or a negative code. */
static int assemble(struct store_db *db, const struct srv_bundle_info *info, int fd)
{
    crypto_hash_sha256_state h;
    struct store_stmt *st = NULL;
    uint8_t md[32];
    char hex[65];
    uint64_t total = 0;
    int rc =
        store_prepare(db, "SELECT data FROM bundle_chunks WHERE version = $1 AND seq = $2", &st);
    crypto_hash_sha256_init(&h);
    for (int64_t seq = 0; rc == 0 && total < (uint64_t)info->size; seq++) {
        size_t len = 0;
        const void *data;
        if ((rc = store_reset(st)) != 0 || (rc = store_bind_int(st, 1, info->version)) != 0 ||
            (rc = store_bind_int(st, 2, seq)) != 0)
            break;
        if ((rc = store_step(st)) != STORE_ROW)
            break;
        data = store_col_blob(st, 0, &len);
        if (len == 0 || len > CHUNK_SIZE || total + len > (uint64_t)info->size) {
            rc = STORE_EINVAL;
            break;
        }
        crypto_hash_sha256_update(&h, data, len);
        if (khx_write_all(fd, data, len) != 0) {
            rc = STORE_EINVAL;
            break;
        }
        total += len;
        rc = 0;
    }
    store_finalize(st);
    if (rc != 0)
        return rc;
    crypto_hash_sha256_final(&h, md);
    khx_hex_encode(md, sizeof(md), hex);
    if (strcmp(hex, info->sha256) != 0) {
        srv_log("bundle %" PRId64 ": the stored chunks do not match the recorded SHA-256",
                info->version);
        return STORE_EINVAL;
    }
    return STORE_ROW;
}

int srv_bundle_open(struct srv *s, struct store_db *db, int64_t version,
                    struct srv_bundle_info *info, int *fd)
{
    char final[PATH_MAX], tmp[PATH_MAX];
    struct store_stmt *st = NULL;
    struct stat stt;
    int out_fd = -1;

    *fd = -1;
    int rc = store_queryf(db, &st, "SELECT " INFO_COLUMNS " FROM bundles WHERE version = $1", "i",
                          version);
    if (rc != STORE_ROW)
        return rc;
    read_info(st, info);
    store_finalize(st);
    if (cache_path(s, version, final, sizeof(final)) != 0)
        return STORE_EINVAL;
    /* A cached file of the recorded size is complete: it only ever appears
     * under its final name by rename. */
    out_fd = open(final, O_RDONLY | O_CLOEXEC);
    if (out_fd >= 0) {
        if (fstat(out_fd, &stt) == 0 && S_ISREG(stt.st_mode) && stt.st_size == info->size) {
            *fd = out_fd;
            return STORE_ROW;
        }
        close(out_fd);
    }
    if ((out_fd = cache_temp(s, version, tmp, sizeof(tmp))) < 0) {
        srv_log("bundle %" PRId64 ": cannot create a cache file: %s", version, strerror(errno));
        return STORE_EINVAL;
    }
    rc = assemble(db, info, out_fd);
    if (rc == STORE_ROW && (fchmod(out_fd, 0644) != 0 || fsync(out_fd) != 0 ||
                            rename(tmp, final) != 0 || lseek(out_fd, 0, SEEK_SET) != 0))
        rc = STORE_EINVAL;
    if (rc != STORE_ROW) {
        unlink(tmp);
        close(out_fd);
        return rc;
    }
    *fd = out_fd;
    return STORE_ROW;
}
