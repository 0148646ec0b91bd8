/*
 * Database updates (agent/update.c): a signed bundle is unpacked into its
 * own version folder and made current by one symlink rename; the version it
 * replaces is kept for rollback and older ones go. Tampered bundles (a byte
 * changed in the database, the manifest or the signature), bundles signed by
 * another key, truncated ones and ones not newer than the installed version
 * are refused with nothing switched and nothing left behind; an interrupted
 * install is cleaned up by the next one; a plain .kdb can stand in as
 * version 0.
 */
#include "testutil.h"

#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <khien/khien.h>

#include "khx.h"
#include "khx_bundle.h"
#include "update.h"

struct fixture {
    uint8_t pk[32], sk[64];
    uint8_t *kdb;
    size_t kdb_len;
    char dir[512];    /* scratch: bundle files */
    char dbdir[1024]; /* the database folder under test */
};

/* Compiles a one-line .hdb with the real builder. */
static void make_kdb(uint8_t **kdb, size_t *len)
{
    static const char hdb[] = "44d88612fea8a8f36de82e1278abb02f:68:Khien.Test.Update\n";
    kh_builder *b = NULL;
    void *img = NULL;
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    assert_int_equal(kh_builder_add_mem(b, "test.hdb", hdb, strlen(hdb)), KH_OK);
    assert_int_equal(kh_builder_compile(b, &img, len), KH_OK);
    kh_builder_free(b);
    *kdb = img;
}

#define TEST_IOCS "203.0.113.7 c2 test\n198.51.100.0/24 distribution test\n"

/* The one place a test bundle is made: version N around the fixture's
 * .kdb, signed with `sk`, written to dir/bundle-<N>.bin (returned,
 * malloc'd), with a two-line indicator section. */
static char *write_bundle(struct fixture *f, int64_t version, const uint8_t sk[64])
{
    struct khx_buf b;
    char name[64];
    khx_buf_init(&b, 1u << 30);
    assert_int_equal(khx_bundle_build(f->kdb, f->kdb_len, (const uint8_t *)TEST_IOCS,
                                      strlen(TEST_IOCS), 2, version, 1790000000 + version, 1, sk,
                                      &b),
                     KH_OK);
    snprintf(name, sizeof(name), "bundle-%" PRId64 ".bin", version);
    char *path = tu_write(f->dir, name, b.data, b.len);
    khx_buf_free(&b);
    return path;
}

/* Unpacks and switches to version N (signed with the fixture's key). */
static void install(struct fixture *f, int64_t version, int64_t min_version)
{
    struct update_db db;
    char err[256] = "";
    char *path = write_bundle(f, version, f->sk);
    int r = update_unpack(path, f->pk, f->dbdir, min_version, &db, err, sizeof(err));
    if (r != KH_OK)
        fail_msg("unpack of version %" PRId64 ": %s", version, err);
    assert_int_equal(db.version, version);
    assert_int_equal(update_switch(f->dbdir, version, err, sizeof(err)), KH_OK);
    free(path);
}

/* The names in the database folder, sorted, comma-separated. */
static void listing(const char *dir, char *out, size_t cap)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    size_t used = 0;
    out[0] = '\0';
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.')
            used +=
                (size_t)snprintf(out + used, cap - used, "%s%s", used ? "," : "", names[i]->d_name);
        free(names[i]);
    }
    free(names);
}

static void read_link_at(const char *dir, const char *name, char *out, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ssize_t n = readlink(path, out, cap - 1);
    out[n < 0 ? 0 : n] = '\0';
}

static void assert_file_equals(const char *path, const uint8_t *data, size_t len)
{
    uint8_t *got = NULL;
    size_t got_len = 0;
    assert_int_equal(khx_read_file(path, 1u << 30, &got, &got_len), KH_OK);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, data, len);
    free(got);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || sodium_init() < 0)
        return -1;
    crypto_sign_keypair(f->pk, f->sk);
    make_kdb(&f->kdb, &f->kdb_len);
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    snprintf(f->dbdir, sizeof(f->dbdir), "%s/db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->kdb);
    free(f);
    return 0;
}

static void update_unpack_then_switch_makes_the_version_current(void **state)
{
    struct fixture *f = *state;
    struct update_db db, cur;
    char err[256] = "", list[512];
    char *path = write_bundle(f, 1, f->sk);

    assert_int_equal(update_current(f->dbdir, &cur), KH_OK);
    assert_int_equal(cur.version, 0);
    assert_string_equal(cur.kdb_path, "");

    assert_int_equal(update_unpack(path, f->pk, f->dbdir, 0, &db, err, sizeof(err)), KH_OK);
    assert_int_equal(db.version, 1);
    assert_int_equal(db.created_at, 1790000001);
    assert_int_equal(db.signatures, 1);
    assert_int_equal(db.indicators, 2);
    assert_non_null(strstr(db.ioc_path, "/v1/iocs.txt"));
    assert_file_equals(db.ioc_path, (const uint8_t *)TEST_IOCS, strlen(TEST_IOCS));
    assert_file_equals(db.kdb_path, f->kdb, f->kdb_len);

    /* Unpacked is not switched. */
    assert_int_equal(update_current(f->dbdir, &cur), KH_OK);
    assert_int_equal(cur.version, 0);

    assert_int_equal(update_switch(f->dbdir, 1, err, sizeof(err)), KH_OK);
    assert_int_equal(update_current(f->dbdir, &cur), KH_OK);
    assert_int_equal(cur.version, 1);
    assert_string_equal(cur.kdb_path, db.kdb_path);
    listing(f->dbdir, list, sizeof(list));
    assert_string_equal(list, "current,v1");

    /* A database the engine opens. */
    kh_engine *e = NULL;
    assert_int_equal(kh_engine_open(cur.kdb_path, &e, err, sizeof(err)), KH_OK);
    kh_engine_free(e);
    free(path);
}

static void update_second_switch_keeps_previous_and_rollback_returns_to_it(void **state)
{
    struct fixture *f = *state;
    struct update_db db;
    char err[256] = "", target[64], list[512];

    install(f, 1, 0);
    install(f, 2, 1);
    read_link_at(f->dbdir, "current", target, sizeof(target));
    assert_string_equal(target, "v2");
    read_link_at(f->dbdir, "previous", target, sizeof(target));
    assert_string_equal(target, "v1");

    assert_int_equal(update_rollback(f->dbdir, &db, err, sizeof(err)), KH_OK);
    assert_int_equal(db.version, 1);
    assert_file_equals(db.kdb_path, f->kdb, f->kdb_len);
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_int_equal(db.version, 1);
    /* The version rolled back from is gone, and is no rollback target. */
    listing(f->dbdir, list, sizeof(list));
    assert_string_equal(list, "current,v1");
    err[0] = '\0';
    assert_int_equal(update_rollback(f->dbdir, &db, err, sizeof(err)), KH_ENOTFOUND);
    assert_non_null(strstr(err, "no previous version"));
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_int_equal(db.version, 1);
}

static void update_rollback_without_previous_is_not_found(void **state)
{
    struct fixture *f = *state;
    struct update_db db;
    char err[256] = "";
    assert_int_equal(update_rollback(f->dbdir, &db, err, sizeof(err)), KH_ENOTFOUND);
    install(f, 4, 0);
    assert_int_equal(update_rollback(f->dbdir, &db, err, sizeof(err)), KH_ENOTFOUND);
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_int_equal(db.version, 4);
}

static void update_three_versions_leave_current_and_previous(void **state)
{
    struct fixture *f = *state;
    char list[512];
    install(f, 1, 0);
    install(f, 2, 1);
    install(f, 3, 2);
    listing(f->dbdir, list, sizeof(list));
    assert_string_equal(list, "current,previous,v2,v3");
}

/* Installs version 1, then offers `bundle` (min_version 1) and checks that
 * it is refused with `want`, that err has `why` in it, and that nothing
 * changed in the database folder. */
static void assert_refused(struct fixture *f, const char *bundle, const uint8_t *pk, int want,
                           const char *why)
{
    struct update_db db;
    char err[256] = "", before[512], after[512];
    listing(f->dbdir, before, sizeof(before));
    int r = update_unpack(bundle, pk, f->dbdir, 1, &db, err, sizeof(err));
    if (r != want)
        fail_msg("expected %s, got %s (%s)", kh_strerror(want), kh_strerror(r), err);
    if (strstr(err, why) == NULL)
        fail_msg("message '%s' does not say '%s'", err, why);
    listing(f->dbdir, after, sizeof(after));
    assert_string_equal(after, before);
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_int_equal(db.version, 1);
}

/* Writes dir/name: the bundle of version 2 with the byte at `at` changed. */
static char *tampered(struct fixture *f, const char *name, size_t at)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char *good = write_bundle(f, 2, f->sk);
    assert_int_equal(khx_read_file(good, 1u << 30, &data, &len), KH_OK);
    assert_true(at < len);
    data[at] ^= 0x01;
    char *path = tu_write(f->dir, name, data, len);
    free(data);
    free(good);
    return path;
}

static void update_tampered_bundles_are_refused(void **state)
{
    struct fixture *f = *state;
    install(f, 1, 0);

    /* Where the parts are, from the real bundle. */
    uint8_t *data = NULL;
    size_t len = 0, off = 0;
    struct khx_bundle_manifest m;
    char *good = write_bundle(f, 2, f->sk);
    assert_int_equal(khx_read_file(good, 1u << 30, &data, &len), KH_OK);
    assert_int_equal(khx_bundle_verify(data, len, f->pk, &m, &off, NULL, 0), KH_OK);
    /* The second digit of created_at (7 becomes 6): the manifest stays valid JSON, but is not the
     * one signed. */
    const char *at = memmem(data, off, "\"created_at\":", 13);
    assert_non_null(at);
    size_t in_manifest = (size_t)(at - (const char *)data) + 14;
    size_t in_signature = off - 10;
    size_t in_kdb = off + f->kdb_len / 2;
    free(data);
    free(good);

    char *p = tampered(f, "kdb.bin", in_kdb);
    assert_refused(f, p, f->pk, KH_ESIGNATURE, "SHA-256");
    free(p);
    p = tampered(f, "manifest.bin", in_manifest);
    assert_refused(f, p, f->pk, KH_ESIGNATURE, "signature");
    free(p);
    p = tampered(f, "signature.bin", in_signature);
    assert_refused(f, p, f->pk, KH_ESIGNATURE, "signature");
    free(p);
}

static void update_bundle_signed_by_another_key_is_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t pk2[32], sk2[64];
    install(f, 1, 0);
    crypto_sign_keypair(pk2, sk2);
    char *p = write_bundle(f, 2, sk2);
    assert_refused(f, p, f->pk, KH_ESIGNATURE, "trusted key");
    free(p);
}

static void update_truncated_bundle_is_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t *data = NULL;
    size_t len = 0;
    install(f, 1, 0);
    char *good = write_bundle(f, 2, f->sk);
    assert_int_equal(khx_read_file(good, 1u << 30, &data, &len), KH_OK);
    char *p = tu_write(f->dir, "short.bin", data, len - 1);
    assert_refused(f, p, f->pk, KH_EFORMAT, "truncated");
    free(p);
    p = tu_write(f->dir, "empty.bin", "", 0);
    assert_refused(f, p, f->pk, KH_EFORMAT, "bad magic");
    free(p);
    free(data);
    free(good);
}

static void update_version_not_newer_is_refused(void **state)
{
    struct fixture *f = *state;
    install(f, 1, 0);
    char *same = write_bundle(f, 1, f->sk);
    assert_refused(f, same, f->pk, KH_EINVAL, "bundle version 1 is not newer than installed 1");
    free(same);

    /* With 3 installed, 2 is older. */
    install(f, 3, 1);
    struct update_db db;
    char err[256] = "", before[512], after[512];
    char *older = write_bundle(f, 2, f->sk);
    listing(f->dbdir, before, sizeof(before));
    assert_int_equal(update_unpack(older, f->pk, f->dbdir, 3, &db, err, sizeof(err)), KH_EINVAL);
    assert_string_equal(err, "bundle version 2 is not newer than installed 3");
    listing(f->dbdir, after, sizeof(after));
    assert_string_equal(after, before);
    free(older);
}

static void update_interrupted_install_is_cleaned(void **state)
{
    struct fixture *f = *state;
    struct update_db db;
    char err[256] = "", list[512], path[PATH_MAX];
    install(f, 1, 0);

    /* A crash while staging version 2 left v2.tmp; one while staging a
     * version never offered again left v9.tmp; one between unpack and
     * switch left a complete v5 that is now stale. */
    snprintf(path, sizeof(path), "%s/v2.tmp", f->dbdir);
    assert_int_equal(mkdir(path, 0755), 0);
    free(tu_write(path, "db.kdb", "partial", 7));
    snprintf(path, sizeof(path), "%s/v9.tmp", f->dbdir);
    assert_int_equal(mkdir(path, 0755), 0);
    free(tu_write(path, "junk", "x", 1));

    char *b2 = write_bundle(f, 2, f->sk);
    assert_int_equal(update_unpack(b2, f->pk, f->dbdir, 1, &db, err, sizeof(err)), KH_OK);
    assert_file_equals(db.kdb_path, f->kdb, f->kdb_len);
    listing(f->dbdir, list, sizeof(list));
    assert_string_equal(list, "current,v1,v2,v9.tmp");

    /* The same version unpacked again replaces the folder in one step. */
    snprintf(path, sizeof(path), "%s/v2", f->dbdir);
    free(tu_write(path, "stray", "x", 1));
    assert_int_equal(update_unpack(b2, f->pk, f->dbdir, 1, &db, err, sizeof(err)), KH_OK);
    snprintf(path, sizeof(path), "%s/v2/stray", f->dbdir);
    assert_int_not_equal(access(path, F_OK), 0);

    /* The switch removes what is neither current nor previous. */
    assert_int_equal(update_switch(f->dbdir, 2, err, sizeof(err)), KH_OK);
    listing(f->dbdir, list, sizeof(list));
    assert_string_equal(list, "current,previous,v1,v2");
    free(b2);
}

static void update_switch_to_a_version_not_unpacked_is_not_found(void **state)
{
    struct fixture *f = *state;
    struct update_db db;
    char err[256] = "";
    install(f, 1, 0);
    assert_int_equal(update_switch(f->dbdir, 7, err, sizeof(err)), KH_ENOTFOUND);
    assert_non_null(strstr(err, "not unpacked"));
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_int_equal(db.version, 1);
}

static void update_current_refuses_a_link_outside_the_folder(void **state)
{
    struct fixture *f = *state;
    struct update_db db;
    char path[PATH_MAX];
    assert_int_equal(mkdir(f->dbdir, 0755), 0);
    snprintf(path, sizeof(path), "%s/current", f->dbdir);
    assert_int_equal(symlink("../../etc", path), 0);
    assert_int_equal(update_current(f->dbdir, &db), KH_EFORMAT);
}

static void update_install_local_stands_in_as_version_zero(void **state)
{
    struct fixture *f = *state;
    struct update_db db;
    char err[256] = "", target[64];
    char *kdb = tu_write(f->dir, "local.kdb", f->kdb, f->kdb_len);

    assert_int_equal(update_install_local(f->dbdir, kdb, err, sizeof(err)), KH_OK);
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_int_equal(db.version, 0);
    assert_file_equals(db.kdb_path, f->kdb, f->kdb_len);
    /* Installing it again (a new --db) replaces it in place. */
    assert_int_equal(update_install_local(f->dbdir, kdb, err, sizeof(err)), KH_OK);
    assert_int_equal(update_current(f->dbdir, &db), KH_OK);
    assert_file_equals(db.kdb_path, f->kdb, f->kdb_len);

    /* The first bundle from a server replaces it and keeps it as previous. */
    install(f, 1, 0);
    read_link_at(f->dbdir, "previous", target, sizeof(target));
    assert_string_equal(target, "v0");

    char missing[PATH_MAX];
    snprintf(missing, sizeof(missing), "%s/absent.kdb", f->dir);
    assert_int_equal(update_install_local(f->dbdir, missing, err, sizeof(err)), KH_ENOTFOUND);
    free(kdb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(update_unpack_then_switch_makes_the_version_current, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            update_second_switch_keeps_previous_and_rollback_returns_to_it, setup, teardown),
        cmocka_unit_test_setup_teardown(update_rollback_without_previous_is_not_found, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(update_three_versions_leave_current_and_previous, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(update_tampered_bundles_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(update_bundle_signed_by_another_key_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(update_truncated_bundle_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(update_version_not_newer_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(update_interrupted_install_is_cleaned, setup, teardown),
        cmocka_unit_test_setup_teardown(update_switch_to_a_version_not_unpacked_is_not_found, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(update_current_refuses_a_link_outside_the_folder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(update_install_local_stands_in_as_version_zero, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
