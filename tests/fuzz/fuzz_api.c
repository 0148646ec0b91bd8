/*
 * libFuzzer target for the management server's whole HTTP API: every input
 * becomes one request that goes through the real router (router.c), the real
 * authentication (auth.c) and the real handlers (api_*.c) against a real
 * SQLite store, as http.c would hand it over once libmicrohttpd has collected
 * it. Only the connection is missing: r->conn is NULL, so the query string and
 * the headers come from r->query_string and r->fake_headers (reply.c).
 *
 * The store is seeded once: an agency tree (province 1, department 2 under
 * it, agency 3 under that, agency 4 beside the department), an administrator,
 * an officer of the department, an auditor, each with an API token, a session
 * cookie for the administrator and the officer, an enrollment token, three
 * machines (one the fuzzed agent speaks as, one outside the officer's scope,
 * one retired), tasks, events, detections, a signature source and one
 * published bundle; signature files for sources on the "server" are in the
 * temporary folder, which an input names as @DIR@ in its body. The seeded
 * database file is copied aside and put back (the pool's only connection
 * closed first) before any run that follows a successful change or a sign-in
 * attempt, and at least every RESET_EVERY runs (KHIEN_FUZZ_API_RESET sets
 * that; 1 restores before every run). So nearly every input meets the seeded
 * state: a crash replays from its file alone, coverage means the same from
 * run to run, and nothing fuzzing adds (rows, revoked tokens, a retired
 * agent, a locked sign-in) piles up.
 *
 * Input layout (seeds in tests/fuzz/corpus/fuzz_api/ are readable text):
 *   byte 0   route: srv_routes[b % (n + 4)], or for the last 4 values a raw
 *            path (line 5) with a method from byte 2. Seeds are keyed by the
 *            route's index, so adding a route shifts them to other routes
 *            (still valid inputs).
 *   byte 1   caller, b % 10: 0 admin token, 1 officer token, 2 auditor
 *            token, 3 the agent, 4 nobody, 5 admin cookie with the CSRF
 *            header, 6 officer cookie without it, 7 the retired machine,
 *            8 an agent whose certificate CN is line 7, 9 line 7 as the
 *            Authorization header (or, when it starts "Cookie:", as the
 *            Cookie header with the administrator's CSRF header).
 *   byte 2   bit 0x80: replace the route's method with methods[b & 7].
 *   then lines ending in '\n': 0 query string, 1-4 the route's {} segments,
 *   5 raw path, 6 If-None-Match (absent when empty), 7 the raw credential;
 *   the rest of the input is the request body.
 *
 * After each request the response must hold together: a status in 200..599,
 * at most 8 headers without CR or LF, no body on 204/304, a file of the size
 * announced, every application/json body valid JSON (errors with an "error"
 * word), and the database connection back in the pool. A 2xx must also be
 * one the caller may have: no user route for an agent or nobody, no agent
 * route for a person, no change by the auditor or through a cookie without
 * its CSRF header, no administrator route for the officer, and no read of
 * the officer's that shows the machine outside its agencies. A violation
 * traps. With KHIEN_FUZZ_API_TRAP_5XX
 * set, any 5xx traps too: hostile input should never make the server fail
 * (set to 2, it lets through the "out of memory" reply that srv_reply_json
 * falls back to when json_pack refuses a message, for example one quoting a
 * path that is not UTF-8).
 * KHIEN_FUZZ_API_VERBOSE prints each request's method, path and answer.
 *
 * Argon2id at the interactive limits costs about 64 MiB and tens of
 * milliseconds per password, which would make sign-ins and user changes a
 * thousand times slower than every other route. This file therefore defines
 * crypto_pwhash_str() itself, with libsodium's minimum limits: the server's
 * code runs unchanged, and verification reads the limits from the hash.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "api.h"
#include "auth.h"
#include "bundle.h"
#include "pki.h"
#include "server.h"
#include "server_int.h"
#include "store/store.h"

#define RESET_EVERY 2000

#define MACHINE_AGENT   "a1a1a1a1-0000-4000-8000-000000000001"
#define MACHINE_OTHER   "b2b2b2b2-0000-4000-8000-000000000002"
#define MACHINE_RETIRED "c3c3c3c3-0000-4000-8000-000000000003"
#define CERT_AGENT      "1111111111111111111111111111111111111111111111111111111111111111"
#define CERT_RETIRED    "3333333333333333333333333333333333333333333333333333333333333333"

#define HEX64(c)       c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define TOKEN_ADMIN    "kht_" HEX64("a1")
#define TOKEN_OFFICER  "kht_" HEX64("b2")
#define TOKEN_AUDITOR  "kht_" HEX64("c3")
#define COOKIE_ADMIN   "khs_" HEX64("d4")
#define COOKIE_OFFICER "khs_" HEX64("e5")
#define CSRF_ADMIN     HEX64("f6")
#define CSRF_OFFICER   HEX64("07")
#define ENROLL_TOKEN   "khe_" HEX64("18")
#define PASSWORD       "fuzz-password-1"

#define LINES     8
#define FIELD_MAX 2048
#define PARAM_MAX 200
#define PATH_CAP  1200

static const char *const methods[8] = {"GET",    "POST",    "PUT",  "PATCH",
                                       "DELETE", "OPTIONS", "HEAD", "BREW"};

static struct srv server;
static char dir[256], db_path[300], seed_path[300];
static int ready, trap_5xx, verbose;
static unsigned long since_reset, reset_every = RESET_EVERY;
static int dirty; /* the last request changed what the next one would see */

/* ------------------------------------------------------------------------ */
/* Fast password hashing (see the top of the file).                          */
/* ------------------------------------------------------------------------ */

int crypto_pwhash_str(char out[crypto_pwhash_STRBYTES], const char *const passwd,
                      unsigned long long passwdlen, unsigned long long opslimit, size_t memlimit)
{
    (void)opslimit;
    (void)memlimit;
    return crypto_pwhash_argon2id_str(out, passwd, passwdlen, crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                      crypto_pwhash_argon2id_MEMLIMIT_MIN);
}

/* ------------------------------------------------------------------------ */
/* The temporary folder.                                                     */
/* ------------------------------------------------------------------------ */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs at exit, and before giving up: safe to call twice. */
static void cleanup(void)
{
    srv_pool_free(server.pool);
    server.pool = NULL;
    srv_signer_free(server.signer);
    server.signer = NULL;
    srv_pki_free(server.pki);
    server.pki = NULL;
    if (dir[0] != '\0')
        remove_tree(dir);
    dir[0] = '\0';
}

/* A crash ends the process without running cleanup(), so each run's folder
 * carries its pid and the next start removes those of processes gone. */
static void remove_stale_folders(const char *base)
{
    static const char prefix[] = "khien-fuzz-api-";
    DIR *d = opendir(base);
    struct dirent *de;
    char path[400];

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        long pid;
        if (strncmp(de->d_name, prefix, sizeof(prefix) - 1) != 0)
            continue;
        pid = strtol(de->d_name + sizeof(prefix) - 1, NULL, 10);
        if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
            snprintf(path, sizeof(path), "%s/%s", base, de->d_name);
            remove_tree(path);
        }
    }
    closedir(d);
}

static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, r = -1;
    ssize_t n;

    if (in < 0)
        goto out;
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        goto out;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            goto out;
    if (n < 0)
        goto out;
    r = 0;
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return r;
}

/* The database files besides the main one (WAL mode), removed whenever no
 * connection is open so that a copied main file is the whole database. */
static void remove_db_side_files(void)
{
    char side[320];
    snprintf(side, sizeof(side), "%s-wal", db_path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", db_path);
    unlink(side);
}

static int open_pool(void)
{
    char url[400], err[256];
    snprintf(url, sizeof(url), "sqlite://%s", db_path);
    if (srv_pool_new(url, 1, &server.pool, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_api: pool: %s\n", err);
        return -1;
    }
    return 0;
}

/* Puts the seeded database back and forgets cached bundle files, whose
 * version numbers would otherwise name other bundles after the restore. */
static void reset_store(void)
{
    char cache[300];
    srv_pool_free(server.pool);
    server.pool = NULL;
    remove_db_side_files();
    if (copy_file(seed_path, db_path) != 0 || open_pool() != 0) {
        fprintf(stderr, "fuzz_api: cannot restore the seeded database: %s\n", strerror(errno));
        cleanup();
        abort();
    }
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    remove_tree(cache);
}

/* ------------------------------------------------------------------------ */
/* The seeded state.                                                         */
/* ------------------------------------------------------------------------ */

static int add_agency(struct store_db *db, int64_t id, int64_t parent, const char *path,
                      const char *code, const char *kind, int64_t now)
{
    if (parent == 0)
        return store_execf(db, NULL,
                           "INSERT INTO agencies (id, path, code, name, kind, expected_machines,"
                           " created_at) VALUES ($1, $2, $3, $3, $4, 5, $5)",
                           "ittti", id, path, code, kind, now);
    return store_execf(db, NULL,
                       "INSERT INTO agencies (id, parent_id, path, code, name, kind,"
                       " expected_machines, created_at) VALUES ($1, $2, $3, $4, $4, $5, 3, $6)",
                       "iittti", id, parent, path, code, kind, now);
}

static int add_token(struct store_db *db, int64_t user, const char *token)
{
    char hash[65], prefix[13];
    srv_sha256_hex(token, hash);
    snprintf(prefix, sizeof(prefix), "%.12s", token);
    return store_execf(db, NULL,
                       "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at)"
                       " VALUES ($1, 'fuzz', $2, $3, $4)",
                       "itti", user, hash, prefix, srv_now());
}

static int add_session(struct store_db *db, int64_t user, const char *cookie, const char *csrf)
{
    char hash[65];
    int64_t now = srv_now();
    srv_sha256_hex(cookie, hash);
    return store_execf(db, NULL,
                       "INSERT INTO sessions (id, user_id, csrf, remote, created_at, expires_at)"
                       " VALUES ($1, $2, $3, '127.0.0.1', $4, $5)",
                       "titii", hash, user, csrf, now, now + (int64_t)10 * 365 * 86400);
}

static int add_machine(struct store_db *db, const char *id, int64_t agency, const char *host,
                       const char *cert, int retired, int64_t now)
{
    return store_execf(db, NULL,
                       "INSERT INTO machines (id, agency_id, hostname, os, ips, db_version,"
                       " rtp, inventory, machine_key, cert_serial, cert_sha256, enrolled_at,"
                       " last_seen, retired) VALUES ($1, $2, $3, 'Debian GNU/Linux 12',"
                       " '10.0.0.1 fe80::1', 1, 1, '{\"cpus\":4}', $4, '01', $5, $6, $6, $7)",
                       "titttii", id, agency, host, host, cert, now, (int64_t)retired);
}

static int add_detection(struct store_db *db, const char *event, const char *machine,
                         int64_t agency, const char *status, int64_t at)
{
    return store_execf(db, NULL,
                       "INSERT INTO detections (event_id, machine_id, agency_id, path, sha256,"
                       " signature, family, action, detected_at, received_at, status, status_at)"
                       " VALUES ($1, $2, $3, '/home/u/eicar.com', '275a021bbfb6489e54d471899f7db9d1"
                       "663fc695ec2fe2a2c4538aabf651fd0f', 'Eicar-Test-Signature', 'Eicar',"
                       " 'quarantined', $4, $4, $5, $4)",
                       "ttiit", event, machine, agency, at, status);
}

/* Everything the routes need to find something: see the top of the file. */
static int seed(struct store_db *db)
{
    static const char hdb[] = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n";
    char err[512], hash[65];
    int64_t now = srv_now(), admin = 0, officer = 0, auditor = 0, version = 0;

    if (add_agency(db, 1, 0, "/1/", "P", "province", now) < 0 ||
        add_agency(db, 2, 1, "/1/2/", "D", "department", now) < 0 ||
        add_agency(db, 3, 2, "/1/2/3/", "A", "agency", now) < 0 ||
        add_agency(db, 4, 1, "/1/4/", "B", "district", now) < 0)
        return -1;
    if (srv_user_create(db, "admin", "Admin", PASSWORD, SRV_ROLE_ADMIN, 0, &admin) != 0 ||
        srv_user_create(db, "officer", "Officer", PASSWORD, SRV_ROLE_OFFICER, 2, &officer) != 0 ||
        srv_user_create(db, "auditor", "Auditor", PASSWORD, SRV_ROLE_AUDITOR, 0, &auditor) != 0)
        return -1;
    if (add_token(db, admin, TOKEN_ADMIN) < 0 || add_token(db, officer, TOKEN_OFFICER) < 0 ||
        add_token(db, auditor, TOKEN_AUDITOR) < 0 ||
        add_session(db, admin, COOKIE_ADMIN, CSRF_ADMIN) < 0 ||
        add_session(db, officer, COOKIE_OFFICER, CSRF_OFFICER) < 0)
        return -1;
    srv_sha256_hex(ENROLL_TOKEN, hash);
    if (store_execf(db, NULL,
                    "INSERT INTO enroll_tokens (agency_id, token_hash, prefix, note, expires_at,"
                    " max_uses, created_by, created_at) VALUES (3, $1, 'khe_18181818', 'fuzz',"
                    " $2, 0, $3, $4)",
                    "tiii", hash, now + (int64_t)10 * 365 * 86400, admin, now) < 0)
        return -1;
    if (add_machine(db, MACHINE_AGENT, 3, "pc-agent", CERT_AGENT, 0, now) < 0 ||
        add_machine(db, MACHINE_OTHER, 4, "pc-other", HEX64("22"), 0, now - 86400) < 0 ||
        add_machine(db, MACHINE_RETIRED, 3, "pc-retired", CERT_RETIRED, 1, now - 99 * 86400) < 0)
        return -1;
    if (store_execf(db, NULL,
                    "INSERT INTO tasks (id, machine_id, kind, args, state, created_by, created_at)"
                    " VALUES (1, $1, 'scan', '{\"paths\":[\"/home\"]}', 'pending', $2, $3),"
                    " (2, $1, 'update', '{}', 'sent', $2, $3),"
                    " (3, $4, 'scan', '{\"full\":true}', 'pending', $2, $3)",
                    "tiit", MACHINE_AGENT, admin, now, MACHINE_OTHER) < 0)
        return -1;
    if (store_execf(db, NULL,
                    "INSERT INTO events (event_id, machine_id, type, at, received_at, data)"
                    " VALUES ('ev-1', $1, 'scan_finished', $2, $2, '{\"files\":3}')",
                    "ti", MACHINE_AGENT, now) < 0)
        return -1;
    if (add_detection(db, "ev-2", MACHINE_AGENT, 3, "new", now - 60) < 0 ||
        add_detection(db, "ev-3", MACHINE_OTHER, 4, "acknowledged", now - 3 * 86400) < 0 ||
        add_detection(db, "ev-4", MACHINE_AGENT, 3, "resolved", now - 40 * 86400) < 0)
        return -1;
    if (store_execf(db, NULL,
                    "INSERT INTO sig_sources (kind, name, path, content, enabled, created_by,"
                    " created_at) VALUES ('hashlist', 'eicar.hdb', '', $1, 1, $2, $3)",
                    "tii", hdb, admin, now) < 0)
        return -1;
    if (srv_bundle_publish(&server, db, admin, &version, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_api: publish: %s\n", err);
        return -1;
    }
    return 0;
}

static int write_text(const char *sub, const char *text)
{
    char path[400];
    int fd, r = -1;

    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return -1;
    if (write(fd, text, strlen(text)) == (ssize_t)strlen(text))
        r = 0;
    close(fd);
    return r;
}

/* Files and a folder on the "server" that a signature source may name
 * (inputs write their folder as @DIR@): a hash list, YARA rules, and a
 * mirror folder such as freshclam keeps. */
static int write_sig_files(void)
{
    static const struct {
        const char *name, *text;
    } files[] = {
        {"sigs/extra.hdb", "275a021bbfb6489e54d471899f7db9d1:4:Fuzz.Extra\n"},
        {"sigs/rules.yar", "rule fuzz_rule { strings: $a = \"fuzzfuzz\" condition: $a }\n"},
        {"mirror/main.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Mirror.A\n"},
        {"mirror/daily.ndb", "Mirror.B:0:*:66757a7a797a7a\n"},
    };
    char sub[400];

    snprintf(sub, sizeof(sub), "%s/sigs", dir);
    if (mkdir(sub, 0700) != 0)
        return -1;
    snprintf(sub, sizeof(sub), "%s/mirror", dir);
    if (mkdir(sub, 0700) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (write_text(files[i].name, files[i].text) != 0)
            return -1;
    return 0;
}

static void init(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    const char *env;
    char err[512] = "";
    struct store_db *db = NULL;

    ready = -1;
    if ((env = getenv("KHIEN_FUZZ_API_RESET")) != NULL && strtoul(env, NULL, 10) > 0)
        reset_every = strtoul(env, NULL, 10);
    if ((env = getenv("KHIEN_FUZZ_API_TRAP_5XX")) != NULL)
        trap_5xx = strcmp(env, "2") == 0 ? 2 : 1;
    verbose = getenv("KHIEN_FUZZ_API_VERBOSE") != NULL;
    base = base != NULL ? base : "/tmp";
    remove_stale_folders(base);
    snprintf(dir, sizeof(dir), "%s/khien-fuzz-api-%ld-XXXXXX", base, (long)getpid());
    if (mkdtemp(dir) == NULL) {
        snprintf(err, sizeof(err), "cannot create %s: %s", dir, strerror(errno));
        dir[0] = '\0';
        goto fail;
    }
    atexit(cleanup);
    snprintf(db_path, sizeof(db_path), "%s/f.db", dir);
    snprintf(seed_path, sizeof(seed_path), "%s/seed.db", dir);
    if (srv_config_load(&server.cfg, dir, NULL, "127.0.0.1:8443", err, sizeof(err)) != 0 ||
        srv_pki_init_dir(dir, NULL, NULL, NULL, err, sizeof(err)) != 0 ||
        srv_pki_open(dir, &server.pki, err, sizeof(err)) != 0 ||
        srv_signer_init_dir(dir, err, sizeof(err)) != 0 ||
        srv_signer_open(dir, &server.signer, err, sizeof(err)) != 0)
        goto fail;
    if (write_sig_files() != 0) {
        snprintf(err, sizeof(err), "cannot write signature files: %s", strerror(errno));
        goto fail;
    }
    snprintf(server.cfg.database, sizeof(server.cfg.database), "sqlite://%s", db_path);
    if (open_pool() != 0)
        goto fail;
    if ((db = srv_pool_get(server.pool)) == NULL) {
        snprintf(err, sizeof(err), "no database connection");
        goto fail;
    }
    if (store_migrate(db) != 0 || seed(db) != 0) {
        snprintf(err, sizeof(err), "seeding: %s", store_errmsg(db));
        srv_pool_put(server.pool, db);
        goto fail;
    }
    srv_pool_put(server.pool, db);
    /* Closing the only connection folds the WAL into the main file. */
    srv_pool_free(server.pool);
    server.pool = NULL;
    remove_db_side_files();
    if (copy_file(db_path, seed_path) != 0 || open_pool() != 0) {
        snprintf(err, sizeof(err), "cannot copy the seeded database");
        goto fail;
    }
    ready = 1;
    return;
fail:
    fprintf(stderr, "fuzz_api: setup failed: %s\n", err);
    cleanup();
    abort();
}

/* ------------------------------------------------------------------------ */
/* Decoding an input into a request.                                         */
/* ------------------------------------------------------------------------ */

/* Copies the next '\n'-terminated line (without it) into out, at most cap - 1
 * bytes of it; a NUL inside simply ends the string early. */
static void take_line(const uint8_t **p, size_t *n, char *out, size_t cap)
{
    const uint8_t *nl = memchr(*p, '\n', *n);
    size_t len = nl ? (size_t)(nl - *p) : *n;
    size_t keep = len < cap - 1 ? len : cap - 1;

    memcpy(out, *p, keep);
    out[keep] = '\0';
    *p += nl ? len + 1 : len;
    *n -= nl ? len + 1 : len;
}

/* Writes `pattern` with each "{}" replaced by the next of params. */
static void build_path(const char *pattern, char params[4][FIELD_MAX], char *out, size_t cap)
{
    size_t o = 0;
    unsigned k = 0;

    for (const char *s = pattern; *s && o + 1 < cap; s++) {
        if (s[0] == '{' && s[1] == '}') {
            const char *v = k < 4 ? params[k] : "";
            size_t len = strnlen(v, PARAM_MAX);
            k++;
            if (len > cap - 1 - o)
                len = cap - 1 - o;
            memcpy(out + o, v, len);
            o += len;
            s++;
            continue;
        }
        out[o++] = *s;
    }
    out[o] = '\0';
}

/* The body, NUL-terminated as http.c hands it to handlers, with each
 * "@DIR@" replaced by the temporary folder so that an input can name the
 * signature files init() put there. *n is the length in and out. */
static uint8_t *body_with_dir(const uint8_t *p, size_t *n)
{
    static const char mark[] = "@DIR@";
    const size_t mlen = sizeof(mark) - 1, dlen = strlen(dir);
    size_t marks = 0, o = 0;
    uint8_t *body;

    for (const uint8_t *m = p; (m = memmem(m, *n - (size_t)(m - p), mark, mlen)) != NULL; m += mlen)
        marks++;
    if ((body = malloc(*n + marks * dlen + 1)) == NULL)
        return NULL;
    for (size_t i = 0; i < *n;) {
        if (*n - i >= mlen && memcmp(p + i, mark, mlen) == 0) {
            memcpy(body + o, dir, dlen);
            o += dlen;
            i += mlen;
        } else {
            body[o++] = p[i++];
        }
    }
    body[o] = '\0';
    *n = o;
    return body;
}

struct input {
    char lines[LINES][FIELD_MAX];
    char path[PATH_CAP];
    char cookie[FIELD_MAX + 32];
    const char *headers[11];
};

static void add_fake_header(struct input *in, unsigned *nh, const char *name, const char *value)
{
    if (*nh + 2 < sizeof(in->headers) / sizeof(in->headers[0])) {
        in->headers[(*nh)++] = name;
        in->headers[(*nh)++] = value;
    }
}

/* Who an input speaks as (byte 1 modulo CALLERS). */
enum caller {
    CALLER_ADMIN,
    CALLER_OFFICER,
    CALLER_AUDITOR,
    CALLER_AGENT,
    CALLER_NOBODY,
    CALLER_ADMIN_COOKIE,
    CALLER_OFFICER_COOKIE_NO_CSRF,
    CALLER_RETIRED_AGENT,
    CALLER_AGENT_RAW_CN,
    CALLER_RAW,
    CALLERS
};

/* Sets the caller's credentials on r: see the top of the file. */
static void set_caller(struct srv_req *r, struct input *in, unsigned *nh, enum caller caller)
{
    const char *cred = in->lines[7];

    switch (caller) {
    case CALLER_ADMIN:
        add_fake_header(in, nh, "Authorization", "Bearer " TOKEN_ADMIN);
        break;
    case CALLER_OFFICER:
        add_fake_header(in, nh, "Authorization", "Bearer " TOKEN_OFFICER);
        break;
    case CALLER_AUDITOR:
        add_fake_header(in, nh, "Authorization", "Bearer " TOKEN_AUDITOR);
        break;
    case CALLER_AGENT:
        r->client_cert_ok = 1;
        snprintf(r->client_cn, sizeof(r->client_cn), "%s", MACHINE_AGENT);
        snprintf(r->client_cert_sha256, sizeof(r->client_cert_sha256), "%s", CERT_AGENT);
        break;
    case CALLER_NOBODY:
        break;
    case CALLER_ADMIN_COOKIE:
        add_fake_header(in, nh, "Cookie", SRV_SESSION_COOKIE "=" COOKIE_ADMIN);
        add_fake_header(in, nh, SRV_CSRF_HEADER, CSRF_ADMIN);
        break;
    case CALLER_OFFICER_COOKIE_NO_CSRF:
        add_fake_header(in, nh, "Cookie", "theme=dark; " SRV_SESSION_COOKIE "=" COOKIE_OFFICER);
        break;
    case CALLER_RETIRED_AGENT:
        r->client_cert_ok = 1;
        snprintf(r->client_cn, sizeof(r->client_cn), "%s", MACHINE_RETIRED);
        snprintf(r->client_cert_sha256, sizeof(r->client_cert_sha256), "%s", CERT_RETIRED);
        break;
    case CALLER_AGENT_RAW_CN:
        r->client_cert_ok = 1;
        snprintf(r->client_cn, sizeof(r->client_cn), "%s", cred);
        snprintf(r->client_cert_sha256, sizeof(r->client_cert_sha256), "%s", CERT_AGENT);
        break;
    case CALLER_RAW:
    case CALLERS:
        if (strncmp(cred, "Cookie:", 7) == 0) {
            snprintf(in->cookie, sizeof(in->cookie), "%s", cred + 7);
            add_fake_header(in, nh, "Cookie", in->cookie);
            add_fake_header(in, nh, SRV_CSRF_HEADER, CSRF_ADMIN);
        } else if (cred[0] != '\0') {
            add_fake_header(in, nh, "Authorization", cred);
        }
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* What every response must satisfy.                                         */
/* ------------------------------------------------------------------------ */

static void check_response(const struct srv_req *r)
{
    const struct srv_resp *p = &r->resp;
    const char *data = p->body != NULL ? p->body : p->static_body;

    if (p->status < 200 || p->status > 599)
        __builtin_trap();
    if (trap_5xx && p->status >= 500 &&
        !(trap_5xx == 2 && p->static_body != NULL && strstr(p->static_body, "out of memory")))
        __builtin_trap();
    if (r->db != NULL) /* the connection went back to the pool */
        __builtin_trap();
    if (p->nheaders > sizeof(p->headers) / sizeof(p->headers[0]))
        __builtin_trap();
    for (unsigned i = 0; i < p->nheaders; i++) {
        const struct srv_header *h = &p->headers[i];
        /* A CR or LF would let a request split the response. */
        if (h->name == NULL || h->value == NULL || h->name[0] == '\0' ||
            strpbrk(h->name, "\r\n: ") != NULL || strpbrk(h->value, "\r\n") != NULL)
            __builtin_trap();
    }
    if (p->body != NULL && p->static_body != NULL)
        __builtin_trap();
    if (p->has_fd) {
        struct stat st;
        if (p->fd < 0 || data != NULL || fstat(p->fd, &st) != 0 ||
            (uint64_t)st.st_size != p->fd_size || lseek(p->fd, 0, SEEK_CUR) != 0)
            __builtin_trap();
        return;
    }
    if ((p->status == 204 || p->status == 304) && (data != NULL || p->body_len != 0))
        __builtin_trap();
    if (data == NULL && p->body_len != 0)
        __builtin_trap();
    if (p->content_type != NULL && strcmp(p->content_type, "application/json") == 0) {
        json_t *j = json_loadb(data, p->body_len, 0, NULL);
        if (j == NULL)
            __builtin_trap();
        /* Errors say what went wrong in a fixed shape. */
        if (p->status >= 400 && !json_is_string(json_object_get(j, "error")))
            __builtin_trap();
        json_decref(j);
    } else if (p->status >= 200 && p->status < 300 && p->status != 204 && data == NULL &&
               strncmp(r->path, "/api/", 5) == 0) {
        /* A 2xx API answer other than 204 carries something. */
        __builtin_trap();
    }
}

/* Who may get a 2xx: the route's flags against the caller's credentials,
 * and the officer's scope (agencies 2 and 3) against the seeded machine of
 * agency 4, whose id and host name no read of the officer's may show. Every
 * run that can see this state starts from the seed (see the top). */
static void check_access(const struct srv_req *r, enum caller caller)
{
    const struct srv_route *route = srv_route_lookup(r->method, r->path);
    const char *data = r->resp.body;
    unsigned flags = route != NULL ? route->flags : 0;
    int user = caller == CALLER_ADMIN || caller == CALLER_OFFICER || caller == CALLER_AUDITOR ||
               caller == CALLER_ADMIN_COOKIE || caller == CALLER_OFFICER_COOKIE_NO_CSRF;
    int officer = caller == CALLER_OFFICER || caller == CALLER_OFFICER_COOKIE_NO_CSRF;
    int safe = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;

    if (r->resp.status < 200 || r->resp.status >= 300 || caller == CALLER_RAW)
        return;
    if ((flags & SRV_USER) && !user)
        __builtin_trap();
    if ((flags & SRV_AGENT) && caller != CALLER_AGENT && caller != CALLER_AGENT_RAW_CN)
        __builtin_trap();
    if ((flags & SRV_WRITE) && caller == CALLER_AUDITOR)
        __builtin_trap();
    if ((flags & SRV_ADMIN) && (officer || caller == CALLER_AUDITOR))
        __builtin_trap();
    if ((flags & SRV_USER) && caller == CALLER_OFFICER_COOKIE_NO_CSRF && !safe)
        __builtin_trap();
    if (officer && safe && data != NULL &&
        (memmem(data, r->resp.body_len, MACHINE_OTHER, strlen(MACHINE_OTHER)) != NULL ||
         memmem(data, r->resp.body_len, "pc-other", 8) != NULL))
        __builtin_trap();
}

static void free_response(struct srv_req *r)
{
    free(r->resp.body);
    if (r->resp.has_fd)
        close(r->resp.fd);
    for (unsigned i = 0; i < r->resp.nheaders; i++) {
        free(r->resp.headers[i].name);
        free(r->resp.headers[i].value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct input in; /* 20 KiB: kept off libFuzzer's stack */
    struct srv_req r;
    unsigned nh = 0;
    uint8_t *body = NULL;

    if (ready == 0)
        init();
    if (size < 3)
        return 0;
    if (dirty || since_reset >= reset_every) {
        reset_store();
        dirty = 0;
        since_reset = 0;
    }
    since_reset++;

    size_t nroutes = srv_nroutes, pick = data[0] % (nroutes + 4);
    enum caller caller = (enum caller)(data[1] % CALLERS);
    unsigned flags = data[2];
    const uint8_t *p = data + 3;
    size_t n = size - 3;

    memset(&in, 0, sizeof(in));
    for (unsigned i = 0; i < LINES; i++)
        take_line(&p, &n, in.lines[i], sizeof(in.lines[i]));
    /* The body is NUL-terminated, as http.c hands it to handlers. */
    if ((body = body_with_dir(p, &n)) == NULL)
        return 0;

    memset(&r, 0, sizeof(r));
    r.srv = &server;
    r.resp.fd = -1;
    snprintf(r.remote, sizeof(r.remote), "127.0.0.1");
    if (pick < nroutes) {
        r.method = srv_routes[pick].method;
        build_path(srv_routes[pick].pattern, &in.lines[1], in.path, sizeof(in.path));
    } else {
        r.method = methods[flags & 7];
        snprintf(in.path, sizeof(in.path), "%s", in.lines[5]);
    }
    if (flags & 0x80)
        r.method = methods[flags & 7];
    r.path = in.path;
    r.query_string = in.lines[0];
    r.body = body;
    r.body_len = n;
    set_caller(&r, &in, &nh, caller);
    if (in.lines[6][0] != '\0')
        add_fake_header(&in, &nh, "If-None-Match", in.lines[6]);
    in.headers[nh] = NULL;
    r.fake_headers = in.headers;

    srv_dispatch(&r);
    if (verbose) {
        const char *shown = r.resp.body ? r.resp.body : r.resp.static_body;
        int len = shown != NULL && r.resp.body_len < 300 ? (int)r.resp.body_len : 300;
        fprintf(stderr, "fuzz_api: %s %s -> %u %.*s\n", r.method, r.path, r.resp.status,
                shown != NULL ? len : 0, shown != NULL ? shown : "");
    }
    check_response(&r);
    check_access(&r, caller);
    /* A successful change (GET /agent/tasks marks tasks sent), or any
     * sign-in attempt (failures count towards a lockout), makes the next run
     * start from the seed again; reads and refused changes leave at most an
     * audit row or a timestamp behind. */
    const struct srv_route *route = srv_route_lookup(r.method, r.path);
    srv_handler handler = route != NULL ? route->handler : NULL;
    if ((r.resp.status < 300 && ((strcmp(r.method, "GET") != 0 && strcmp(r.method, "HEAD") != 0) ||
                                 handler == api_agent_tasks)) ||
        handler == api_login)
        dirty = 1;
    free_response(&r);
    free(body);
    return 0;
}
