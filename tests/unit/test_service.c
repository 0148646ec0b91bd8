/*
 * The long-lived scanning service: scans from several threads while the
 * database is swapped back and forth; every scan sees exactly one complete
 * database, a failed reload keeps the current one, and after a reload new
 * scans use the new database.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <khien/khien.h>

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

static char *make_db(const char *dir, const char *file, const char *ndb)
{
    kh_builder *b = NULL;
    assert_int_equal(kh_builder_new(NULL, &b), KH_OK);
    assert_int_equal(kh_builder_add_mem(b, "s.ndb", ndb, strlen(ndb)), KH_OK);
    char *path = malloc(strlen(dir) + strlen(file) + 2);
    sprintf(path, "%s/%s", dir, file);
    assert_int_equal(kh_builder_write(b, path), KH_OK);
    kh_builder_free(b);
    return path;
}

struct seen {
    char name[64];
    unsigned n;
};

static int on_hit(void *ud, const struct kh_detection *d)
{
    struct seen *s = ud;
    snprintf(s->name, sizeof(s->name), "%s", d->name);
    s->n++;
    return 0;
}

struct worker {
    kh_service *svc;
    atomic_int *stop;
    atomic_uint scans;
    unsigned one, two, bad;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    while (!atomic_load(w->stop)) {
        struct seen s = {"", 0};
        int r = kh_service_scan_mem(w->svc, eicar, 68, "x", on_hit, &s, NULL);
        w->scans++;
        if (r != KH_OK || s.n != 1)
            w->bad++;
        else if (strcmp(s.name, "Db.One") == 0)
            w->one++;
        else if (strcmp(s.name, "Db.Two") == 0)
            w->two++;
        else
            w->bad++;
    }
    return NULL;
}

static void service_reload_while_scanning(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tmp);
    char *one = make_db(dir, "one.kdb", "Db.One:0:*:4549434152\n");
    char *two = make_db(dir, "two.kdb", "Db.Two:0:*:5354414e44415244\n");

    kh_service *svc = NULL;
    char err[256];
    assert_int_equal(kh_service_new(one, NULL, &svc, err, sizeof(err)), KH_OK);
    atomic_int stop = 0;
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        atomic_init(&w[i].scans, 0);
        w[i].svc = svc;
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    /* Reload only once every worker is scanning, and give them time to scan
     * between reloads, so that scans really overlap the swaps. */
    for (int i = 0; i < 4; i++)
        while (atomic_load(&w[i].scans) == 0)
            usleep(1000);
    for (int k = 0; k < 40; k++) {
        assert_int_equal(kh_service_reload(svc, (k % 2) ? one : two, err, sizeof(err)), KH_OK);
        usleep(2000);
    }
    /* A failed reload leaves the current database (one.kdb) in place. */
    assert_int_not_equal(kh_service_reload(svc, "/nonexistent.kdb", err, sizeof(err)), KH_OK);
    atomic_store(&stop, 1);
    unsigned scans = 0, ones = 0, twos = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        scans += atomic_load(&w[i].scans);
        ones += w[i].one;
        twos += w[i].two;
        bad += w[i].bad;
    }
    print_message("scans %u: one %u, two %u, bad %u\n", scans, ones, twos, bad);
    assert_int_equal(bad, 0);
    assert_true(ones > 0 && twos > 0); /* both databases were seen */

    struct seen s = {"", 0};
    assert_int_equal(kh_service_scan_mem(svc, eicar, 68, "x", on_hit, &s, NULL), KH_OK);
    assert_string_equal(s.name, "Db.One");
    uint64_t gen = 0;
    struct kh_db_info info;
    assert_int_equal(kh_service_info(svc, &info, &gen), KH_OK);
    assert_int_equal(gen, 40);
    assert_int_equal(kh_service_reload(svc, two, err, sizeof(err)), KH_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(kh_service_scan_mem(svc, eicar, 68, "x", on_hit, &s, NULL), KH_OK);
    assert_string_equal(s.name, "Db.Two");
    kh_service_free(svc);
    free(one);
    free(two);
    tu_rmtree(dir);
}

/* Overwriting the live database in place (as `cp new.kdb live.kdb` does)
 * must not crash the scanner: the engine copies its image to memory when the
 * writer opens the file, and keeps scanning with the old database. */
static void service_survives_in_place_overwrite(void **state)
{
    (void)state;
    const char *tmp = tu_mkdtemp();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", tmp);
    char *one = make_db(dir, "one.kdb", "Db.One:0:*:4549434152\n");
    kh_service *svc = NULL;
    char err[256];
    assert_int_equal(kh_service_new(one, NULL, &svc, err, sizeof(err)), KH_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = fopen(one, "w"); /* truncates the mapped file */
        if (f == NULL)
            _exit(1);
        fputs("garbage", f);
        _exit(fclose(f) == 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct seen s = {"", 0};
    assert_int_equal(kh_service_scan_mem(svc, eicar, 68, "x", on_hit, &s, NULL), KH_OK);
    assert_string_equal(s.name, "Db.One");
    /* The garbage is refused on reload and the old database stays. */
    assert_int_not_equal(kh_service_reload(svc, one, err, sizeof(err)), KH_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(kh_service_scan_mem(svc, eicar, 68, "x", on_hit, &s, NULL), KH_OK);
    assert_string_equal(s.name, "Db.One");
    kh_service_free(svc);
    free(one);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(service_reload_while_scanning),
        cmocka_unit_test(service_survives_in_place_overwrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
