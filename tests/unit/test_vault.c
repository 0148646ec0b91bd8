/*
 * The agent's quarantine vault (agent/vault.c): a quarantined file leaves its
 * place and comes back byte for byte with its mode, owner and modification
 * time; restore never overwrites nor follows a folder swapped for a
 * symbolic link; a modified vault file fails authentication
 * and stays; a file replaced between scan and quarantine is left alone;
 * entry ids cannot name paths; paths that are not UTF-8 survive; a 20 MiB
 * file streams through; quarantines from several threads get distinct ids;
 * the key must be private; damaged metadata is skipped, never fatal.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "vault.h"

struct fx {
    char root[512];  /* the test's temporary folder */
    char vdir[600];  /* the vault */
    char files[600]; /* where the "user's" files live */
    struct vault *v;
};

static struct vault *vault_open_ok(const char *dir)
{
    struct vault *v = NULL;
    char err[512] = "";
    int r = vault_open(dir, &v, err, sizeof(err));
    if (r != KH_OK)
        fprintf(stderr, "vault_open: %s\n", err);
    assert_int_equal(r, KH_OK);
    return v;
}

static void fx_init(struct fx *f)
{
    snprintf(f->root, sizeof(f->root), "%s", tu_mkdtemp());
    snprintf(f->vdir, sizeof(f->vdir), "%s/vault", f->root);
    snprintf(f->files, sizeof(f->files), "%s/files", f->root);
    assert_int_equal(mkdir(f->files, 0755), 0);
    f->v = vault_open_ok(f->vdir);
}

static void fx_done(struct fx *f)
{
    vault_close(f->v);
    tu_rmtree(f->root);
}

static char *file_path(const struct fx *f, const char *name)
{
    char *p = malloc(strlen(f->files) + strlen(name) + 2);
    sprintf(p, "%s/%s", f->files, name);
    return p;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

static void expect_content(const char *path, const uint8_t *want, size_t n)
{
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(khx_read_file(path, SIZE_MAX, &got, &len), KH_OK);
    assert_int_equal(len, n);
    assert_true(n == 0 || memcmp(got, want, n) == 0);
    free(got);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Counts the entries of `dir` whose name contains `part`. */
static size_t count_names(const char *dir, const char *part)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            strstr(de->d_name, part) != NULL)
            n++;
    closedir(d);
    return n;
}

/* Quarantines `path`, which must succeed. */
static void quarantine_ok(struct fx *f, const char *path, const char *sig, struct vault_entry *e)
{
    char err[512] = "";
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    int r = vault_quarantine(f->v, fd, path, sig, e, err, sizeof(err));
    if (r != KH_OK)
        fprintf(stderr, "vault_quarantine: %s\n", err);
    assert_int_equal(r, KH_OK);
    close(fd);
}

static void vault_quarantine_then_restore_gives_the_same_file(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "evil.exe");
    uint8_t *data = pattern(200000, 1);
    free(tu_write(f.files, "evil.exe", data, 200000));
    assert_int_equal(chmod(path, 04751), 0);
    /* Another owner when we can (root); otherwise our own. */
    uid_t uid = geteuid() == 0 ? 1234 : geteuid();
    gid_t gid = geteuid() == 0 ? 4321 : getegid();
    assert_int_equal(chown(path, uid, gid), 0);
    assert_int_equal(chmod(path, 04751), 0); /* chown cleared set-user-ID */
    struct timespec times[2] = {{1600000000, 111}, {1500000000, 123456789}};
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
    struct stat before;
    assert_int_equal(stat(path, &before), 0);

    /* The caller's file position does not matter. */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 12345, SEEK_SET), 12345);
    struct vault_entry e;
    char err[512] = "";
    assert_int_equal(vault_quarantine(f.v, fd, path, "Win.Test.EICAR_HDB-1", &e, err, sizeof(err)),
                     KH_OK);
    close(fd);
    assert_false(exists(path));
    assert_true(vault_id_valid(e.id));
    assert_int_equal(strlen(e.id), strlen("q-20260101-000001"));
    assert_int_equal(strncmp(e.id, "q-", 2), 0);
    assert_string_equal(e.path, path);
    assert_string_equal(e.signature, "Win.Test.EICAR_HDB-1");
    assert_int_equal(e.size, 200000);
    assert_int_equal(e.uid, uid);
    assert_int_equal(e.gid, gid);
    assert_int_equal(e.mode, 04751);
    assert_int_equal(e.mtime, 1500000000);
    uint8_t md[32];
    char hex[65];
    assert_int_equal(khx_sha256(data, 200000, md), KH_OK);
    khx_hex_encode(md, 32, hex);
    assert_string_equal(e.sha256, hex);
    assert_int_equal(khx_md5(data, 200000, md), KH_OK);
    khx_hex_encode(md, 16, hex);
    assert_string_equal(e.md5, hex);
    assert_true(e.quarantined_at > 1700000000);

    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(&items[0], &e, sizeof(e));
    free(items);

    struct vault_entry back;
    assert_int_equal(vault_restore(f.v, e.id, NULL, &back, err, sizeof(err)), KH_OK);
    assert_memory_equal(&back, &e, sizeof(e));
    expect_content(path, data, 200000);
    struct stat after;
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_mode, before.st_mode);
    assert_int_equal(after.st_uid, before.st_uid);
    assert_int_equal(after.st_gid, before.st_gid);
    assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);

    /* The entry is gone from the vault, and no temporary file was left. */
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, 0);
    assert_null(items);
    assert_int_equal(count_names(f.vdir, e.id), 0);
    assert_int_equal(count_names(f.files, ".khien-restore"), 0);
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_ENOTFOUND);
    free(data);
    free(path);
    fx_done(&f);
}

static void vault_content_is_encrypted_on_disk(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "plain.txt");
    const char text[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    free(tu_write(f.files, "plain.txt", text, sizeof(text) - 1));
    struct vault_entry e;
    quarantine_ok(&f, path, "Eicar", &e);
    char bin[700];
    snprintf(bin, sizeof(bin), "%s/%s.bin", f.vdir, e.id);
    uint8_t *got = NULL;
    size_t len = 0;
    assert_int_equal(khx_read_file(bin, 1 << 20, &got, &len), KH_OK);
    assert_true(len > sizeof(text) - 1);
    assert_null(memmem(got, len, "EICAR", 5));
    free(got);
    struct stat st;
    assert_int_equal(stat(bin, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char key[700];
    snprintf(key, sizeof(key), "%s/key", f.vdir);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(stat(f.vdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    free(path);
    fx_done(&f);
}

static void vault_restore_never_overwrites(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "a.bin");
    free(tu_write(f.files, "a.bin", "malware", 7));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);
    free(tu_write(f.files, "a.bin", "new file", 8));
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_EINVAL);
    assert_non_null(strstr(err, "already exists"));
    expect_content(path, (const uint8_t *)"new file", 8);
    assert_int_equal(count_names(f.files, ".khien-restore"), 0);
    /* Not even a dangling symbolic link is replaced. */
    unlink(path);
    assert_int_equal(symlink("/nonexistent/target", path), 0);
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_EINVAL);
    unlink(path);

    /* The entry is still there, and can go elsewhere. */
    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, 1);
    free(items);
    char *other = file_path(&f, "elsewhere");
    assert_int_equal(vault_restore(f.v, e.id, other, NULL, err, sizeof(err)), KH_OK);
    expect_content(other, (const uint8_t *)"malware", 7);
    assert_false(exists(path));
    free(other);
    free(path);
    fx_done(&f);
}

static void vault_restore_to_missing_folder_is_not_found(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *sub = file_path(&f, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    char path[700];
    snprintf(path, sizeof(path), "%s/x", sub);
    free(tu_write(sub, "x", "abc", 3));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);
    assert_int_equal(rmdir(sub), 0);
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_ENOTFOUND);
    assert_non_null(strstr(err, "folder"));
    /* A relative destination is refused. */
    assert_int_equal(vault_restore(f.v, e.id, "relative/x", NULL, err, sizeof(err)), KH_EINVAL);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_OK);
    expect_content(path, (const uint8_t *)"abc", 3);
    free(sub);
    fx_done(&f);
}

static void vault_restore_refuses_a_folder_replaced_by_a_symlink(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *sub = file_path(&f, "sub"), *target = file_path(&f, "etc");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkdir(target, 0755), 0);
    char path[700], there[700];
    snprintf(path, sizeof(path), "%s/x.sh", sub);
    snprintf(there, sizeof(there), "%s/x.sh", target);
    free(tu_write(sub, "x.sh", "echo owned", 10));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);
    /* The user swaps their folder for a link to a place they cannot write. */
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(symlink(target, sub), 0);
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_EINVAL);
    assert_non_null(strstr(err, "symbolic link"));
    assert_false(exists(there));
    assert_int_equal(count_names(target, ".khien-restore"), 0);
    assert_int_equal(unlink(sub), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_OK);
    expect_content(path, (const uint8_t *)"echo owned", 10);
    free(sub);
    free(target);
    fx_done(&f);
}

static void vault_tampered_content_fails_and_stays(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "t.bin");
    uint8_t *data = pattern(150000, 2); /* three chunks */
    free(tu_write(f.files, "t.bin", data, 150000));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);

    char bin[700];
    snprintf(bin, sizeof(bin), "%s/%s.bin", f.vdir, e.id);
    const long offsets[] = {100000, 40, 9}; /* a later chunk, the first, the header */
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        int fd = open(bin, O_RDWR);
        assert_true(fd >= 0);
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, offsets[i]), 1);
        b ^= 0x01;
        assert_int_equal(pwrite(fd, &b, 1, offsets[i]), 1);
        char err[512] = "";
        assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_ESIGNATURE);
        assert_false(exists(path));
        assert_int_equal(count_names(f.files, ".khien-restore"), 0);
        b ^= 0x01;
        assert_int_equal(pwrite(fd, &b, 1, offsets[i]), 1);
        close(fd);
    }
    /* Cut short by one whole chunk: the final tag is missing. */
    struct stat st;
    assert_int_equal(stat(bin, &st), 0);
    assert_int_equal(truncate(bin, st.st_size - (150000 - 2 * 65536) - 17), 0);
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_ESIGNATURE);
    assert_false(exists(path));

    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].id, e.id);
    free(items);
    free(data);
    free(path);
    fx_done(&f);
}

static void vault_delete_removes_the_entry(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "d");
    free(tu_write(f.files, "d", "x", 1));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);
    char err[512] = "";
    assert_int_equal(vault_delete(f.v, e.id, err, sizeof(err)), KH_OK);
    assert_int_equal(count_names(f.vdir, e.id), 0);
    assert_int_equal(vault_delete(f.v, e.id, err, sizeof(err)), KH_ENOTFOUND);
    assert_int_equal(vault_delete(f.v, "q-20200101-000001", err, sizeof(err)), KH_ENOTFOUND);
    assert_false(exists(path));
    free(path);
    fx_done(&f);
}

static void vault_replaced_file_is_not_quarantined(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "swap");
    free(tu_write(f.files, "swap", "scanned", 7));
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    /* Between the scan and the quarantine, another file takes the name. */
    char *other = file_path(&f, "innocent");
    free(tu_write(f.files, "innocent", "innocent", 8));
    assert_int_equal(rename(other, path), 0);
    char err[512] = "";
    assert_int_equal(vault_quarantine(f.v, fd, path, "Sig", NULL, err, sizeof(err)), KH_EINVAL);
    assert_non_null(strstr(err, "replaced"));
    expect_content(path, (const uint8_t *)"innocent", 8);
    assert_int_equal(count_names(f.vdir, "q-"), 0);

    /* Gone altogether. */
    unlink(path);
    assert_int_equal(vault_quarantine(f.v, fd, path, "Sig", NULL, err, sizeof(err)), KH_ENOTFOUND);
    assert_int_equal(count_names(f.vdir, "q-"), 0);
    close(fd);

    /* Not a regular file, and not an absolute path. */
    fd = open(f.files, O_RDONLY | O_DIRECTORY);
    assert_int_equal(vault_quarantine(f.v, fd, f.files, "Sig", NULL, err, sizeof(err)), KH_EINVAL);
    close(fd);
    free(tu_write(f.files, "rel", "r", 1));
    char *rel = file_path(&f, "rel");
    fd = open(rel, O_RDONLY);
    assert_int_equal(vault_quarantine(f.v, fd, "files/rel", "Sig", NULL, err, sizeof(err)),
                     KH_EINVAL);
    assert_true(exists(rel));
    close(fd);
    free(rel);
    free(other);
    free(path);
    fx_done(&f);
}

static void vault_ids_cannot_name_paths(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const char *bad[] = {"",
                         "../key",
                         "key/../x",
                         "q-1.json",
                         "q_1",
                         ".",
                         "..",
                         "a b",
                         "q-20260101-000001\n",
                         "0123456789012345678901234567890123", /* 34 characters */
                         "01234567890123456789012345678901"};  /* 32 characters */
    char err[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(vault_id_valid(bad[i]));
        assert_int_equal(vault_restore(f.v, bad[i], NULL, NULL, err, sizeof(err)), KH_EINVAL);
        assert_int_equal(vault_delete(f.v, bad[i], err, sizeof(err)), KH_EINVAL);
    }
    assert_false(vault_id_valid(NULL));
    assert_true(vault_id_valid("0123456789012345678901234567890")); /* 31 */
    assert_true(vault_id_valid("q-20260101-000001"));
    /* The key is still there after all those attempts. */
    char key[700];
    snprintf(key, sizeof(key), "%s/key", f.vdir);
    assert_true(exists(key));
    fx_done(&f);
}

static void vault_non_utf8_path_survives(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const char name[] = "bad-\xff\xfe-\xc3(";
    char *path = file_path(&f, name);
    free(tu_write(f.files, name, "bytes", 5));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig\xff", &e);
    assert_false(exists(path));
    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].path, path);
    assert_string_equal(items[0].signature, "Sig\xff");
    free(items);
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_OK);
    expect_content(path, (const uint8_t *)"bytes", 5);
    free(path);
    fx_done(&f);
}

static void vault_large_file_streams(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const size_t size = 20u * 1024 * 1024 + 17;
    uint8_t *data = pattern(size, 3);
    char *path = file_path(&f, "big");
    free(tu_write(f.files, "big", data, size));
    struct vault_entry e;
    quarantine_ok(&f, path, "Big", &e);
    assert_int_equal(e.size, size);
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_OK);
    expect_content(path, data, size);
    free(data);
    free(path);
    fx_done(&f);
}

static void vault_empty_and_chunk_sized_files_round_trip(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    const size_t sizes[] = {0, 1, 65535, 65536, 65537, 2 * 65536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *data = pattern(sizes[i], (unsigned)i + 10);
        char name[32];
        snprintf(name, sizeof(name), "s%zu", sizes[i]);
        char *path = file_path(&f, name);
        free(tu_write(f.files, name, data, sizes[i]));
        struct vault_entry e;
        quarantine_ok(&f, path, "S", &e);
        char err[512] = "";
        assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_OK);
        expect_content(path, data, sizes[i]);
        free(path);
        free(data);
    }
    fx_done(&f);
}

#define Q_THREADS 4
#define Q_EACH    10

struct qworker {
    struct fx *f;
    int t;
    struct vault_entry e[Q_EACH];
    int failures;
};

static void *quarantine_loop(void *arg)
{
    struct qworker *w = arg;
    char name[32], err[512];
    for (int i = 0; i < Q_EACH; i++) {
        snprintf(name, sizeof(name), "t%d-%d", w->t, i);
        char *path = file_path(w->f, name);
        int fd = open(path, O_RDONLY);
        if (fd < 0 ||
            vault_quarantine(w->f->v, fd, path, name, &w->e[i], err, sizeof(err)) != KH_OK)
            w->failures++;
        if (fd >= 0)
            close(fd);
        free(path);
    }
    return NULL;
}

static void vault_concurrent_quarantines_get_distinct_ids(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char name[32], content[64];
    for (int t = 0; t < Q_THREADS; t++)
        for (int i = 0; i < Q_EACH; i++) {
            snprintf(name, sizeof(name), "t%d-%d", t, i);
            int n = snprintf(content, sizeof(content), "content of %s", name);
            free(tu_write(f.files, name, content, (size_t)n));
        }
    static struct qworker w[Q_THREADS];
    pthread_t th[Q_THREADS];
    for (int t = 0; t < Q_THREADS; t++) {
        memset(&w[t], 0, sizeof(w[t]));
        w[t].f = &f;
        w[t].t = t;
        assert_int_equal(pthread_create(&th[t], NULL, quarantine_loop, &w[t]), 0);
    }
    for (int t = 0; t < Q_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < Q_THREADS; t++)
        assert_int_equal(w[t].failures, 0);

    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, Q_THREADS * Q_EACH);
    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            assert_string_not_equal(items[i].id, items[k].id);
    for (size_t i = 1; i < n; i++)
        assert_true(items[i - 1].quarantined_at <= items[i].quarantined_at);
    /* Every entry restores to its own content. */
    char err[512];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(vault_restore(f.v, items[i].id, NULL, NULL, err, sizeof(err)), KH_OK);
        int len = snprintf(content, sizeof(content), "content of %s", items[i].signature);
        expect_content(items[i].path, (const uint8_t *)content, (size_t)len);
    }
    free(items);
    fx_done(&f);
}

static void vault_key_must_be_private_and_is_kept(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "k");
    free(tu_write(f.files, "k", "keep", 4));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);
    vault_close(f.v);
    f.v = NULL;

    char key[700], err[512] = "";
    snprintf(key, sizeof(key), "%s/key", f.vdir);
    assert_int_equal(chmod(key, 0640), 0);
    struct vault *v = NULL;
    assert_int_equal(vault_open(f.vdir, &v, err, sizeof(err)), KH_EINVAL);
    assert_null(v);
    assert_non_null(strstr(err, "0640"));
    assert_int_equal(chmod(key, 0604), 0);
    assert_int_equal(vault_open(f.vdir, &v, err, sizeof(err)), KH_EINVAL);
    assert_int_equal(chmod(key, 0600), 0);

    /* Reopened, the same key decrypts the entry, and ids do not repeat. */
    f.v = vault_open_ok(f.vdir);
    /* A second user (the quarantine command beside the daemon) may open it
     * too and sees the same entries; only a process alone tidies. */
    struct vault *second = NULL;
    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_open(f.vdir, &second, err, sizeof(err)), KH_OK);
    assert_int_equal(vault_list(second, &items, &n), KH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].id, e.id);
    free(items);
    vault_close(second);
    assert_int_equal(vault_restore(f.v, e.id, NULL, NULL, err, sizeof(err)), KH_OK);
    expect_content(path, (const uint8_t *)"keep", 4);
    struct vault_entry e2;
    quarantine_ok(&f, path, "Sig", &e2);
    assert_string_not_equal(e2.id, e.id);
    assert_true(strcmp(e2.id, e.id) > 0);

    /* A short key file is refused rather than used. */
    vault_close(f.v);
    f.v = NULL;
    assert_int_equal(truncate(key, 16), 0);
    assert_int_equal(vault_open(f.vdir, &v, err, sizeof(err)), KH_EFORMAT);
    free(path);
    fx_done(&f);
}

static void vault_damaged_metadata_is_skipped(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    char *path = file_path(&f, "ok");
    free(tu_write(f.files, "ok", "fine", 4));
    struct vault_entry e;
    quarantine_ok(&f, path, "Sig", &e);
    /* Broken entries beside it: not JSON, a wrong id, a traversal path, and
     * one whose content file is missing. */
    free(tu_write(f.vdir, "q-20200101-000001.json", "{\"format\":1,", 12));
    free(tu_write(f.vdir, "q-20200101-000001.bin", "x", 1));
    char json[700];
    snprintf(json, sizeof(json), "%s/%s.json", f.vdir, e.id);
    uint8_t *good = NULL;
    size_t glen = 0;
    assert_int_equal(khx_read_file(json, 1 << 16, &good, &glen), KH_OK);
    free(tu_write(f.vdir, "q-20200101-000002.json", good, glen)); /* records another id */
    free(tu_write(f.vdir, "q-20200101-000002.bin", "x", 1));
    free(tu_write(f.vdir, "..json", good, glen));
    char *moved = (char *)good + (strstr((char *)good, e.id) - (char *)good);
    memcpy(moved, "q-20200101-000003", strlen(e.id));             /* the same length */
    free(tu_write(f.vdir, "q-20200101-000003.json", good, glen)); /* no .bin */
    struct vault_entry *items = NULL;
    size_t n = 0;
    assert_int_equal(vault_list(f.v, &items, &n), KH_OK);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].id, e.id);
    free(items);
    char err[512] = "";
    assert_int_equal(vault_restore(f.v, "q-20200101-000001", NULL, NULL, err, sizeof(err)),
                     KH_EFORMAT);
    assert_int_equal(vault_delete(f.v, "q-20200101-000001", err, sizeof(err)), KH_OK);
    free(good);
    free(path);
    fx_done(&f);
}

static void vault_meta_parser_rejects_hostile_records(void **state)
{
    (void)state;
    const char *base = "\"format\":1,\"id\":\"q-20260101-000001\",\"uid\":0,\"gid\":0,"
                       "\"mode\":420,\"mtime\":1,\"size\":3,\"quarantined_at\":2,"
                       "\"sha256\":\"" /* 64 */
                       "0000000000000000000000000000000000000000000000000000000000000000\","
                       "\"md5\":\"00000000000000000000000000000000\",\"signature\":\"S\"";
    char buf[2048], err[256];
    struct vault_entry e;
    snprintf(buf, sizeof(buf), "{%s,\"path\":\"/a\"}", base);
    assert_int_equal(vault_meta_parse(buf, strlen(buf), &e, err, sizeof(err)), KH_OK);
    assert_string_equal(e.path, "/a");
    snprintf(buf, sizeof(buf), "{%s,\"path_hex\":\"2fff\"}", base);
    assert_int_equal(vault_meta_parse(buf, strlen(buf), &e, err, sizeof(err)), KH_OK);
    assert_string_equal(e.path, "/\xff");
    const char *tails[] = {
        ",\"path\":\"a\"}",                        /* relative */
        ",\"path_hex\":\"2f00\"}",                 /* NUL inside */
        ",\"path_hex\":\"2f0\"}",                  /* odd hex */
        ",\"path\":\"/a\",\"path_hex\":\"2f61\"}", /* both */
        "}",                                       /* neither */
        ",\"path\":\"/a\",\"mode\":4096}",         /* duplicate key */
        ",\"path\":5}",
    };
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        snprintf(buf, sizeof(buf), "{%s%s", base, tails[i]);
        assert_int_equal(vault_meta_parse(buf, strlen(buf), &e, err, sizeof(err)), KH_EFORMAT);
    }
    /* A 4096-byte path does not fit the entry. */
    char *huge = malloc(16384);
    int k = snprintf(huge, 16384, "{%s,\"path\":\"/", base);
    memset(huge + k, 'a', 4095);
    snprintf(huge + k + 4095, 16384 - (size_t)k - 4095, "\"}");
    assert_int_equal(vault_meta_parse(huge, strlen(huge), &e, err, sizeof(err)), KH_EFORMAT);
    free(huge);
    assert_int_equal(vault_meta_parse("[]", 2, &e, err, sizeof(err)), KH_EFORMAT);
    assert_int_equal(vault_meta_parse("", 0, &e, err, sizeof(err)), KH_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vault_quarantine_then_restore_gives_the_same_file),
        cmocka_unit_test(vault_content_is_encrypted_on_disk),
        cmocka_unit_test(vault_restore_never_overwrites),
        cmocka_unit_test(vault_restore_to_missing_folder_is_not_found),
        cmocka_unit_test(vault_restore_refuses_a_folder_replaced_by_a_symlink),
        cmocka_unit_test(vault_tampered_content_fails_and_stays),
        cmocka_unit_test(vault_delete_removes_the_entry),
        cmocka_unit_test(vault_replaced_file_is_not_quarantined),
        cmocka_unit_test(vault_ids_cannot_name_paths),
        cmocka_unit_test(vault_non_utf8_path_survives),
        cmocka_unit_test(vault_large_file_streams),
        cmocka_unit_test(vault_empty_and_chunk_sized_files_round_trip),
        cmocka_unit_test(vault_concurrent_quarantines_get_distinct_ids),
        cmocka_unit_test(vault_key_must_be_private_and_is_kept),
        cmocka_unit_test(vault_damaged_metadata_is_skipped),
        cmocka_unit_test(vault_meta_parser_rejects_hostile_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
