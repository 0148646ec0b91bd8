/*
 * Opening a .kdb image: map it, check the header, the section table and the
 * checksum, check every cross-reference once, and attach the Hyperscan,
 * PCRE2 and YARA parts by deserializing them (never compiling). After
 * kh_engine_open succeeds the scanner may trust the image's records.
 */
#include "engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "container.h"

static const struct kdb_section *find_section(const struct kh_engine *e, uint32_t id)
{
    const struct kdb_section *secs = (const void *)(e->image + sizeof(struct kdb_header));
    for (uint32_t i = 0; i < e->hdr->nsections; i++)
        if (secs[i].id == id)
            return &secs[i];
    return NULL;
}

/* Returns the section's bytes and sets *n to the number of `rec`-sized
 * records; an absent section is empty. Fails if the length is not a
 * multiple of the record size. */
static int get_array(const struct kh_engine *e, uint32_t id, size_t rec, const void **p, size_t *n)
{
    const struct kdb_section *s = find_section(e, id);
    *p = NULL;
    *n = 0;
    if (s == NULL)
        return KH_OK;
    if (rec > 1 && s->length % rec != 0)
        return KH_EFORMAT;
    *p = e->image + s->offset;
    *n = rec > 1 ? s->length / rec : s->length;
    return KH_OK;
}

/* Once a section has been deserialized into memory of its own (Hyperscan,
 * YARA, PCRE2), its pages in the mapping are never read again: give them back
 * so they do not count in the resident set. They stay in the page cache. */
static void drop_section_pages(const struct kh_engine *e, uint32_t id)
{
    const struct kdb_section *s = find_section(e, id);
    long page = sysconf(_SC_PAGESIZE);
    if (s == NULL || !e->mapped || page <= 0)
        return;
    uintptr_t start = (uintptr_t)(e->image + s->offset);
    uintptr_t end = start + s->length;
    start = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    end &= ~((uintptr_t)page - 1);
    if (end > start)
        madvise((void *)start, end - start, MADV_DONTNEED);
}

static int check_string(const struct kh_engine *e, uint32_t off)
{
    return off < e->strings_len ? KH_OK : KH_EFORMAT;
}

static int check_offset(const struct khx_offset *o)
{
    return o->type <= KHX_OFF_VI ? KH_OK : KH_EFORMAT;
}

static int attach(struct kh_engine *e, char *err, size_t errlen)
{
    const struct kdb_header *h = e->hdr;
    if (e->len < sizeof(*h) || memcmp(h->magic, KDB_MAGIC, 8) != 0) {
        khx_errf(err, errlen, "not a Khiên database (bad magic)");
        return KH_EFORMAT;
    }
    if (h->format_version != KDB_FORMAT_VERSION) {
        khx_errf(err, errlen, "database format version %u is not supported (expected %u)",
                 h->format_version, KDB_FORMAT_VERSION);
        return KH_EUNSUPPORTED;
    }
    if (h->image_size != e->len) {
        khx_errf(err, errlen,
                 "database is truncated or padded: header says %llu bytes, file has %zu",
                 (unsigned long long)h->image_size, e->len);
        return KH_EFORMAT;
    }
    if (h->nsections > KDB_MAX_SECTIONS ||
        sizeof(*h) + (size_t)h->nsections * sizeof(struct kdb_section) > e->len) {
        khx_errf(err, errlen, "database section table is damaged");
        return KH_EFORMAT;
    }
    uint8_t digest[32];
    if (e->payload_sha256_known)
        memcpy(digest, e->payload_sha256, 32);
    else if (khx_sha256(e->image + sizeof(*h), e->len - sizeof(*h), digest) != 0)
        return KH_ENOMEM;
    if (memcmp(digest, h->sha256, 32) != 0) {
        khx_errf(err, errlen, "database checksum does not match (damaged or modified)");
        return KH_ESIGNATURE;
    }
    const struct kdb_section *secs = (const void *)(e->image + sizeof(*h));
    for (uint32_t i = 0; i < h->nsections; i++) {
        if (secs[i].offset % KDB_ALIGN != 0 || secs[i].offset > e->len ||
            secs[i].length > e->len - secs[i].offset) {
            khx_errf(err, errlen, "database section %u lies outside the file", secs[i].id);
            return KH_EFORMAT;
        }
    }

    int r;
    const void *p;
    size_t n;
#define ARRAY(id, type, field, count)                                                              \
    do {                                                                                           \
        if ((r = get_array(e, id, sizeof(type), &p, &n)) != 0) {                                   \
            khx_errf(err, errlen, "database section %u has a bad length", (unsigned)(id));         \
            return r;                                                                              \
        }                                                                                          \
        e->field = p;                                                                              \
        e->count = n;                                                                              \
    } while (0)
    ARRAY(KDB_SEC_SIGS, struct kdb_sig, sigs, nsigs);
    ARRAY(KDB_SEC_PATTERNS, struct kdb_pattern, patterns, npatterns);
    ARRAY(KDB_SEC_LDBS, struct kdb_ldb, ldbs, nldbs);
    ARRAY(KDB_SEC_LDBSUBS, struct kdb_ldbsub, subs, nsubs);
    ARRAY(KDB_SEC_PCRES, struct kdb_pcre, pcres, npcres);
#undef ARRAY
    get_array(e, KDB_SEC_STRINGS, 1, &p, &n);
    e->strings = p;
    e->strings_len = n;
    if (n == 0 || e->strings[n - 1] != '\0') {
        khx_errf(err, errlen, "database string table is damaged");
        return KH_EFORMAT;
    }
    get_array(e, KDB_SEC_PROGS, 1, &p, &n);
    e->progs = p;
    e->progs_len = n;
    const uint8_t *blobs;
    size_t blobs_len;
    get_array(e, KDB_SEC_BLOBS, 1, &p, &blobs_len);
    blobs = p;
    if ((r = get_array(e, KDB_SEC_COUNTS, sizeof(uint64_t), &p, &n)) != 0 ||
        n != KH_SIG_KIND_COUNT + 1) {
        khx_errf(err, errlen, "database counts section is damaged");
        return KH_EFORMAT;
    }
    e->counts = p;

    /* Every reference in the small tables, once, so that scanning needs no
     * checks. The signature table and the hash tables grow with the database
     * (millions of records): their references are checked where they are
     * read, so that opening touches none of their pages. */
    uint32_t total_subs = 0;
    for (size_t i = 0; i < e->nldbs; i++) {
        const struct kdb_ldb *l = &e->ldbs[i];
        if (l->sig >= e->nsigs || l->nsubs > KHX_LDB_MAX_SUBSIGS || l->first_sub > e->nsubs ||
            l->nsubs > e->nsubs - l->first_sub || l->expr > e->progs_len ||
            l->expr_len > e->progs_len - l->expr ||
            khx_lexpr_check(e->progs + l->expr, l->expr_len, l->nsubs) != 0 ||
            check_string(e, l->container) != 0) {
            khx_errf(err, errlen, "database logical signature %zu is damaged", i);
            return KH_EFORMAT;
        }
        total_subs += l->nsubs;
    }
    static const uint32_t zeros[KHX_LDB_MAX_SUBSIGS];
    for (size_t i = 0; i < e->nldbs; i++) {
        const struct kdb_ldb *l = &e->ldbs[i];
        if (!khx_lexpr_eval(e->progs + l->expr, l->expr_len, zeros, l->nsubs))
            continue;
        if (e->ldb_zero == NULL && (e->ldb_zero = calloc(e->nldbs, sizeof(uint32_t))) == NULL)
            return KH_ENOMEM;
        e->ldb_zero[e->nldb_zero++] = (uint32_t)i;
    }
    e->ldb_max_subs = total_subs;
    for (size_t i = 0; i < e->npatterns; i++) {
        const struct kdb_pattern *pt = &e->patterns[i];
        int bad = pt->prog > e->progs_len || pt->prog_len > e->progs_len - pt->prog ||
                  pt->view >= KDB_VIEW_COUNT || check_offset(&pt->offset) != 0;
        if (!bad && pt->owner != UINT32_MAX) {
            if (pt->subsig == 0xffff)
                bad = pt->owner >= e->nsigs;
            else
                bad = pt->owner >= e->nldbs || pt->subsig >= e->ldbs[pt->owner].nsubs;
        }
        if (!bad)
            bad = khx_body_prog_check(e->progs + pt->prog, pt->prog_len) != 0;
        if (bad) {
            khx_errf(err, errlen, "database pattern %zu is damaged", i);
            return KH_EFORMAT;
        }
    }
    for (size_t i = 0; i < e->nsubs; i++) {
        const struct kdb_ldbsub *s = &e->subs[i];
        if (s->ref != UINT32_MAX &&
            ((s->kind == KDB_SUB_PATTERN && s->ref >= e->npatterns) ||
             (s->kind == KDB_SUB_PCRE && s->ref >= e->npcres) || s->kind > KDB_SUB_PCRE)) {
            khx_errf(err, errlen, "database subsignature %zu is damaged", i);
            return KH_EFORMAT;
        }
    }
    if (e->npcres > 0) {
        e->pcre_code = calloc(e->npcres, sizeof(*e->pcre_code));
        if (e->pcre_code == NULL)
            return KH_ENOMEM;
    }
    for (size_t i = 0; i < e->npcres; i++) {
        const struct kdb_pcre *pc = &e->pcres[i];
        if (pc->ldb >= e->nldbs || pc->subsig >= e->ldbs[pc->ldb].nsubs || pc->blob > blobs_len ||
            pc->blob_len > blobs_len - pc->blob || pc->trigger > e->progs_len ||
            pc->trigger_len > e->progs_len - pc->trigger || check_offset(&pc->offset) != 0 ||
            khx_lexpr_check(e->progs + pc->trigger, pc->trigger_len, e->ldbs[pc->ldb].nsubs) != 0 ||
            khx_pcre_load(blobs + pc->blob, pc->blob_len, pc->cflags, &e->pcre_code[i]) != 0) {
            khx_errf(err, errlen, "database PCRE %zu is damaged", i);
            return KH_EFORMAT;
        }
    }

    /* Sources, as the public struct. */
    const struct kdb_source *srcs;
    if ((r = get_array(e, KDB_SEC_SOURCES, sizeof(struct kdb_source), &p, &n)) != 0)
        return r;
    srcs = p;
    if (n > 0 && (e->sources = calloc(n, sizeof(*e->sources))) == NULL)
        return KH_ENOMEM;
    e->nsources = n;
    for (size_t i = 0; i < n; i++) {
        if (check_string(e, srcs[i].name) != 0) {
            khx_errf(err, errlen, "database source %zu is damaged", i);
            return KH_EFORMAT;
        }
        e->sources[i].name = e->strings + srcs[i].name;
        e->sources[i].version = srcs[i].version;
        e->sources[i].signatures = srcs[i].signatures;
        e->sources[i].skipped = srcs[i].skipped;
        e->sources[i].errors = srcs[i].errors;
        e->sources[i].built = srcs[i].built;
    }

    for (unsigned cls = 0; cls < KDB_HC_COUNT; cls++) {
        for (unsigned algo = 0; algo < KDB_HA_COUNT; algo++) {
            for (int any = 0; any < 2; any++) {
                uint32_t id =
                    (any ? KDB_SEC_HASHANY_BASE : KDB_SEC_HASH_BASE) + cls * KDB_HA_COUNT + algo;
                get_array(e, id, 1, &p, &n);
                struct khx_hashtab *t = any ? &e->hashany[cls][algo] : &e->hash[cls][algo];
                if (khx_hashtab_attach(p, n, kdb_halgo_len(algo), !any, t) != 0) {
                    khx_errf(err, errlen, "database hash table %u is damaged", id);
                    return KH_EFORMAT;
                }
            }
        }
    }

    for (unsigned v = 0; v < KDB_VIEW_COUNT; v++) {
        const struct kdb_section *s = find_section(e, KDB_SEC_HS_BASE + v);
        if (s == NULL || s->length == 0)
            continue;
        if (hs_deserialize_database((const char *)e->image + s->offset, s->length, &e->hs[v]) !=
            HS_SUCCESS) {
            khx_errf(err, errlen,
                     "database pattern matcher (view %u) cannot be loaded; "
                     "was it built for another CPU or Hyperscan version?",
                     v);
            return KH_EMATCHER;
        }
    }
    const struct kdb_section *ys = find_section(e, KDB_SEC_YARA);
    if (ys && ys->length > 0) {
        if (khx_yara_init() != 0)
            return KH_EMATCHER;
        struct mem_stream {
            const uint8_t *p;
            size_t left;
        } ms = {e->image + ys->offset, ys->length};
        YR_STREAM stream;
        memset(&stream, 0, sizeof(stream));
        stream.user_data = &ms;
        stream.read = NULL;
        extern size_t khx_yara_mem_read(void *ptr, size_t size, size_t count, void *ud);
        stream.read = khx_yara_mem_read;
        if (yr_rules_load_stream(&stream, &e->yara) != ERROR_SUCCESS) {
            khx_errf(err, errlen, "database YARA rules cannot be loaded");
            return KH_EFORMAT;
        }
    }
    for (unsigned v = 0; v < KDB_VIEW_COUNT; v++)
        drop_section_pages(e, KDB_SEC_HS_BASE + v);
    drop_section_pages(e, KDB_SEC_YARA);
    drop_section_pages(e, KDB_SEC_BLOBS);
    return KH_OK;
}

size_t khx_yara_mem_read(void *ptr, size_t size, size_t count, void *ud)
{
    struct mem_stream {
        const uint8_t *p;
        size_t left;
    } *ms = ud;
    if (size == 0)
        return 0;
    size_t n = KHX_MIN(count, ms->left / size);
    memcpy(ptr, ms->p, n * size);
    ms->p += n * size;
    ms->left -= n * size;
    return n;
}

static void engine_destroy(struct kh_engine *e)
{
    for (unsigned v = 0; v < KDB_VIEW_COUNT; v++)
        hs_free_database(e->hs[v]);
    if (e->yara)
        yr_rules_destroy(e->yara);
    if (e->pcre_code) {
        for (size_t i = 0; i < e->npcres; i++)
            khx_pcre_free(e->pcre_code[i]);
        free(e->pcre_code);
    }
    free(e->sources);
    free(e->ldb_zero);
    khx_lease_release(e->lease); /* before unmapping: a lease break copies from it */
    if (e->mapped)
        munmap((void *)e->image, e->len);
    else
        free((void *)e->image);
    free(e);
}

static int open_common(struct kh_engine *e, kh_engine **out, char *err, size_t errlen)
{
    e->hdr = (const struct kdb_header *)e->image;
    atomic_init(&e->refs, 1);
    int r = attach(e, err, errlen);
    if (r != 0) {
        engine_destroy(e);
        return r;
    }
    *out = e;
    return KH_OK;
}

/* SHA-256 of a file's bytes after the header, read with read(2) rather than
 * through the mapping: the pages pass through the page cache but are never
 * mapped into this process, so checking a large database does not inflate
 * its resident set. */
static int file_payload_sha256(const char *path, uint8_t out[32])
{
    int r = KH_EIO;
    uint8_t *buf = malloc(1u << 20);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (buf == NULL || ctx == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if (fd < 0 || lseek(fd, sizeof(struct kdb_header), SEEK_SET) < 0 ||
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = read(fd, buf, 1u << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            goto out;
    }
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, out, &len) == 1)
        r = KH_OK;
out:
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(ctx);
    free(buf);
    return r;
}

/* Verifying the checksum reads the whole file, which dominates opening a
 * large database (0.4 s for 600 MB from the page cache, seconds from a cold
 * disk). A file that verified once is stamped with an extended attribute
 * naming its inode, size, modification time and digest; while those are
 * unchanged, later opens trust the header's digest. Any write changes the
 * modification time, and an update replaces the file (a new inode), so both
 * invalidate the stamp. The checksum guards against damage, not against an
 * attacker who can write the file (and could then rewrite the digest too);
 * signed update bundles do that.
 *
 * Returns 1 if the file carries a valid stamp, 0 if not (stamp holds the
 * value to set after verifying), -1 if it cannot be stamped. */
#define VERIFIED_XATTR "user.khien.verified"

static int verified_stamp(const char *path, const struct kdb_header *h, char *stamp, size_t n)
{
    struct stat st;
    char hex[65], have[160];
    if (getenv("KHIEN_ALWAYS_VERIFY") != NULL || stat(path, &st) != 0)
        return -1;
    khx_hex_encode(h->sha256, 32, hex);
    snprintf(stamp, n, "%llx:%llx:%lld.%09ld:%s", (unsigned long long)st.st_ino,
             (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, hex);
    ssize_t got = getxattr(path, VERIFIED_XATTR, have, sizeof(have) - 1);
    if (got < 0)
        return 0;
    have[got] = '\0';
    return strcmp(have, stamp) == 0 ? 1 : 0;
}

int kh_engine_open(const char *path, kh_engine **out, char *err, size_t errlen)
{
    struct khx_map m;
    if (path == NULL || out == NULL)
        return KH_EINVAL;
    int r = khx_map_file(path, &m);
    if (r != 0) {
        khx_errf(err, errlen, "%s", kh_strerror(r));
        return r;
    }
    if (m.len < sizeof(struct kdb_header)) {
        khx_map_close(&m);
        khx_errf(err, errlen, "not a Khiên database (too short)");
        return KH_EFORMAT;
    }
    struct kh_engine *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        khx_map_close(&m);
        return KH_ENOMEM;
    }
    e->image = m.data;
    e->len = m.len;
    e->mapped = m.mapped;
    /* Taken before the checksum, so the bytes checked are the bytes kept. */
    e->lease = m.mapped ? khx_lease_take(path, m.data, m.len) : -1;
    const struct kdb_header *h = (const struct kdb_header *)e->image;
    char stamp[160];
    int stamped = verified_stamp(path, h, stamp, sizeof(stamp));
    if (stamped == 1) {
        /* Checked before and unchanged since: the header's digest stands. */
        memcpy(e->payload_sha256, h->sha256, 32);
    } else if ((r = file_payload_sha256(path, e->payload_sha256)) != 0) {
        khx_errf(err, errlen, "cannot read the database: %s", kh_strerror(r));
        e->hdr = h;
        engine_destroy(e);
        return r;
    }
    e->payload_sha256_known = 1;
    r = open_common(e, out, err, errlen);
    if (r == KH_OK && stamped == 0)
        setxattr(path, VERIFIED_XATTR, stamp, strlen(stamp), 0); /* best effort */
    return r;
}

int kh_engine_open_image(void *image, size_t len, kh_engine **out, char *err, size_t errlen)
{
    if (image == NULL || out == NULL)
        return KH_EINVAL;
    if (len < sizeof(struct kdb_header)) {
        free(image);
        khx_errf(err, errlen, "not a Khiên database (too short)");
        return KH_EFORMAT;
    }
    struct kh_engine *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        free(image);
        return KH_ENOMEM;
    }
    e->image = image;
    e->len = len;
    e->mapped = 0;
    e->lease = -1;
    return open_common(e, out, err, errlen);
}

kh_engine *kh_engine_ref(kh_engine *e)
{
    if (e)
        atomic_fetch_add(&e->refs, 1);
    return e;
}

void kh_engine_free(kh_engine *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        engine_destroy(e);
}

int kh_engine_info(const kh_engine *e, struct kh_db_info *info)
{
    if (e == NULL || info == NULL)
        return KH_EINVAL;
    memset(info, 0, sizeof(*info));
    info->format_version = e->hdr->format_version;
    info->created = e->hdr->created;
    info->image_size = e->len;
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        info->counts[k] = e->counts[k];
    info->ignored = e->counts[KH_SIG_KIND_COUNT];
    info->nsources = (uint32_t)e->nsources;
    info->sources = e->sources;
    return KH_OK;
}

const char *kh_sigkind_name(int kind)
{
    static const char *const names[KH_SIG_KIND_COUNT] = {
        "hash", "pe-section", "imphash", "body", "logical", "yara", "allow", "heuristic"};
    return kind >= 0 && kind < KH_SIG_KIND_COUNT ? names[kind] : "unknown";
}
