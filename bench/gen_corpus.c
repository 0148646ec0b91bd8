/*
 * gen_corpus: writes the benchmark's corpus, a tree of files to scan with
 * planted detections, and its ground truth (see benchgen.h for the model).
 *
 *   gen_corpus [--scale S] [--seed N] [...] --out DIR --truth FILE
 *
 * DIR receives dNNN/fNNNNNN.EXT, 256 files per folder: random binary (.bin),
 * text made of words (.txt), small PE images (.exe) and zip / tar.gz
 * archives of such files, until --corpus-mb megabytes are written. Plant k
 * (an object whose hash is in the database, or which carries bytes matching
 * a body signature at the offset the signature demands) replaces every
 * stride-th file, alone or as one member of an archive; all other files are
 * clean. FILE gets one line per infected top-level file:
 *
 *   path  name  kind  container  host  class  offset  target
 *
 * path relative to DIR; name the expected detection (ClamAV spelling,
 * without the .UNOFFICIAL suffix clamscan adds); kind md5, sha256 or body;
 * container file, zip or tgz; host bin, text or pe; for body signatures the
 * pattern class, offset kind and target type, '-' otherwise.
 */
#include "benchgen.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <sys/stat.h>

/* The mean file size the mix below gives, to spread the plants evenly. */
#define MEAN_FILE_SIZE (96u << 10)
/* Every member's and file's modification time, for reproducible archives. */
#define FIXED_MTIME 1700000000

static const char *const host_label[] = {"bin", "text", "pe", "zip", "tgz"};

struct member {
    char name[32];
    uint8_t *data;
    size_t len;
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: gen_corpus [OPTIONS] --out DIR --truth FILE\n"
               "Writes the corpus under DIR and its ground truth (TSV) to FILE.\n" BG_USAGE_SHARED);
}

static int write_file(const char *path, const uint8_t *data, size_t len)
{
    int rc = -1;
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        goto out;
    if (fwrite(data, 1, len, f) != len) {
        fclose(f);
        goto out;
    }
    if (fclose(f) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
    return rc;
}

/* Writes the members as a zip (deflate) or a gzip-compressed ustar. Every
 * header field that could vary between runs (times, owners, the gzip
 * timestamp) is fixed. Returns the archive's size, or -1. */
static long long write_archive(const char *path, int tgz, const struct member *m, size_t n)
{
    long long rc = -1;
    struct archive *a = archive_write_new();
    struct archive_entry *e = NULL;
    struct stat st;
    if (a == NULL)
        goto out;
    if (tgz) {
        if (archive_write_add_filter_gzip(a) != ARCHIVE_OK ||
            archive_write_set_filter_option(a, "gzip", "timestamp", NULL) != ARCHIVE_OK ||
            archive_write_set_format_ustar(a) != ARCHIVE_OK)
            goto fail;
    } else if (archive_write_set_format_zip(a) != ARCHIVE_OK) {
        goto fail;
    }
    if (archive_write_open_filename(a, path) != ARCHIVE_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        e = archive_entry_new();
        if (e == NULL)
            goto fail;
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_size(e, (la_int64_t)m[i].len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_mtime(e, FIXED_MTIME, 0);
        if (archive_write_header(a, e) != ARCHIVE_OK ||
            archive_write_data(a, m[i].data, m[i].len) != (la_ssize_t)m[i].len)
            goto fail;
        archive_entry_free(e);
        e = NULL;
    }
    if (archive_write_close(a) != ARCHIVE_OK)
        goto fail;
    if (stat(path, &st) != 0)
        goto out;
    rc = (long long)st.st_size;
    goto out;
fail:
    fprintf(stderr, "gen_corpus: %s: %s\n", path, archive_error_string(a));
out:
    archive_entry_free(e);
    archive_write_free(a);
    return rc;
}

/* Fills m[0..n) with clean members drawn from r, all but m[skip]. */
static int clean_members(struct bg_rng *r, const struct bg_vocab *v, struct member *m, size_t n,
                         size_t skip)
{
    for (size_t i = 0; i < n; i++) {
        if (i == skip)
            continue;
        int host = (int)bg_below(r, 3);
        size_t size = bg_host_size(host, r, 1);
        snprintf(m[i].name, sizeof(m[i].name), "m%02zu%s", i, bg_host_ext(host));
        if (bg_make_host(host, r, v, size, NULL, NULL, 0, &m[i].data, &m[i].len) != 0)
            return -1;
    }
    return 0;
}

static void free_members(struct member *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].data);
        m[i].data = NULL;
    }
}

/* Writes clean file f at base (a path without extension); returns its size
 * or -1. The mix by count: 40% binary, 25% text, 25% PE, 5% zip, 5% tar.gz. */
static long long write_clean(const struct bg_params *p, const struct bg_vocab *v, uint64_t f,
                             char *path, size_t cap, size_t baselen)
{
    long long rc = -1;
    struct bg_rng r = bg_stream(p->seed, BG_S_FILE, f);
    uint64_t roll = bg_below(&r, 100);
    int host = roll < 40   ? BG_HOST_BIN
               : roll < 65 ? BG_HOST_TEXT
               : roll < 90 ? BG_HOST_PE
               : roll < 95 ? BG_HOST_ZIP
                           : BG_HOST_TGZ;
    snprintf(path + baselen, cap - baselen, "%s", bg_host_ext(host));
    if (host == BG_HOST_ZIP || host == BG_HOST_TGZ) {
        struct member m[16] = {{{0}, NULL, 0}};
        size_t n = bg_range(&r, 3, 16);
        if (clean_members(&r, v, m, n, n) == 0)
            rc = write_archive(path, host == BG_HOST_TGZ, m, n);
        free_members(m, n);
        return rc;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    size_t size = bg_host_size(host, &r, 0);
    if (bg_make_host(host, &r, v, size, NULL, NULL, 0, &data, &len) == 0 &&
        write_file(path, data, len) == 0)
        rc = (long long)len;
    free(data);
    return rc;
}

/* Writes plant k at base, alone or inside an archive, and its truth line. */
static long long write_plant(const struct bg_params *p, const struct bg_vocab *v, uint64_t k,
                             char *path, size_t cap, size_t baselen, const char *rel, FILE *truth)
{
    long long rc = -1;
    struct bg_plant pl;
    struct bg_body body;
    struct member m[8] = {{{0}, NULL, 0}};
    size_t n = 0;
    uint8_t *obj = NULL;
    size_t len = 0;
    char name[64];

    if (bg_plant_object(p, v, k, &pl, &obj, &len) != 0)
        goto out;
    if (pl.where == BG_WHERE_FILE) {
        snprintf(path + baselen, cap - baselen, "%s", bg_host_ext(pl.host));
        if (write_file(path, obj, len) == 0)
            rc = (long long)len;
    } else {
        int tgz = pl.where == BG_WHERE_TGZ;
        struct bg_rng r = bg_stream(p->seed, BG_S_PLANTARCH, k);
        n = bg_range(&r, 2, 8);
        size_t at = bg_below(&r, n);
        m[at].data = obj;
        m[at].len = len;
        snprintf(m[at].name, sizeof(m[at].name), "m%02zu%s", at, bg_host_ext(pl.host));
        obj = NULL;
        snprintf(path + baselen, cap - baselen, "%s", bg_host_ext(tgz ? BG_HOST_TGZ : BG_HOST_ZIP));
        if (clean_members(&r, v, m, n, at) == 0)
            rc = write_archive(path, tgz, m, n);
    }
    if (rc < 0)
        goto out;

    bg_sig_name(name, sizeof(name), pl.n);
    static const char *const where[] = {"file", "zip", "tgz"};
    if (pl.kind == BG_PLANT_HASH) {
        fprintf(truth, "%s%s\t%s\t%s\t%s\t%s\t-\t-\t-\n", rel, path + baselen, name,
                pl.algo == BG_MD5 ? "md5" : "sha256", where[pl.where], host_label[pl.host]);
    } else {
        bg_plan(p, k, &pl, &body);
        fprintf(truth, "%s%s\t%s\tbody\t%s\t%s\t%s\t%s\t%d\n", rel, path + baselen, name,
                where[pl.where], host_label[pl.host], bg_class_label(body.cls),
                bg_off_label(body.offkind), body.target);
    }
out:
    free(obj);
    free_members(m, n);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 1;
    struct bg_params p = {.seed = 1};
    const char *outdir = NULL, *truthpath = NULL;
    struct bg_vocab *v = NULL;
    FILE *truth = NULL;
    char path[4096], rel[64];

    bg_params_scale(&p, "small");
    for (int i = 1; i < argc;) {
        int s = bg_parse_shared(&p, argc, argv, &i);
        if (s < 0)
            return 2;
        if (s > 0)
            continue;
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            outdir = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "--truth") == 0 && i + 1 < argc) {
            truthpath = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (outdir == NULL || truthpath == NULL) {
        usage(stderr);
        return 2;
    }
    if (bg_params_check(&p) != 0)
        return 2;
    if (strlen(outdir) > 3000 || (mkdir(outdir, 0755) != 0 && errno != EEXIST)) {
        fprintf(stderr, "gen_corpus: %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    v = malloc(sizeof(*v));
    truth = fopen(truthpath, "w");
    if (v == NULL || truth == NULL) {
        fprintf(stderr, "gen_corpus: %s: %s\n", truthpath, strerror(errno));
        goto out;
    }
    bg_vocab_make(p.seed, v);
    fprintf(truth, "# path\tname\tkind\tcontainer\thost\tclass\toffset\ttarget\n");

    uint64_t stride = p.corpus_bytes / MEAN_FILE_SIZE / p.nplants;
    if (stride < 1)
        stride = 1;
    uint64_t bytes = 0, k = 0;
    for (uint64_t f = 0; bytes < p.corpus_bytes || k < p.nplants; f++) {
        if (f % 256 == 0) {
            snprintf(path, sizeof(path), "%s/d%03llu", outdir, (unsigned long long)(f / 256));
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
                goto out;
            }
        }
        snprintf(rel, sizeof(rel), "d%03llu/f%06llu", (unsigned long long)(f / 256),
                 (unsigned long long)f);
        int baselen = snprintf(path, sizeof(path), "%s/%s", outdir, rel);
        long long len;
        if (k < p.nplants && (f % stride == stride / 2 || bytes >= p.corpus_bytes))
            len = write_plant(&p, v, k++, path, sizeof(path), (size_t)baselen, rel, truth);
        else
            len = write_clean(&p, v, f, path, sizeof(path), (size_t)baselen);
        if (len < 0)
            goto out;
        bytes += (uint64_t)len;
    }
    rc = 0;
out:
    if (truth && fclose(truth) != 0) {
        fprintf(stderr, "gen_corpus: %s: %s\n", truthpath, strerror(errno));
        rc = 1;
    }
    free(v);
    return rc;
}
