/*
 * Agent protection policies: the validator and the defaults of
 * server/policy.c on their own, then the three calls of
 * /agencies/{id}/policy (server/api_agency.c) and the check-in answer
 * (server/api_agent.c) against a real store holding a small tree:
 *
 *     P (top level) ── A ── A1 (machine M in A1)
 *                   └─ B
 *
 * with a province administrator, an officer of P, an officer of A and a
 * province auditor. Handlers are called directly with hand-built requests,
 * as test_dashboard_api.c does; what the router decides from the route
 * flags (auditors may not write) is checked on the route table itself.
 *
 * What is proved: every setting's bounds and the field named in each
 * refusal, unknown keys refused by name, the built-in defaults, inheritance
 * from the nearest agency with a policy (replacing, not merging), deleting
 * falls back to the parent's, check-in carries the policy in effect and a
 * version that changes exactly when the policy does, the roles and scope of
 * each call, and the audit rows. The store tests run on SQLite and, when
 * KHIEN_PG_URL names a server, again on PostgreSQL.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <khien/khien.h>

#include "api.h"
#include "policy.h"
#include "store/store.h"

#define M_ID "c0c0c0c0-0000-4000-8000-00000000000c"

/* ------------------------------------------------------------------------ */
/* The document alone.                                                       */
/* ------------------------------------------------------------------------ */

/* NULs are allowed here, although srv_body_json() refuses them, so that
 * the validator's own check is proved too. */
static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (j == NULL)
        fail_msg("test JSON does not parse: %s: %s", text, e.text);
    return j;
}

/* The document must be refused, naming `field`. */
static void refused(const char *text, const char *field)
{
    struct policy_error err;
    json_t *doc = parse(text);
    json_t *out = NULL;
    int r = policy_validate(doc, &err);

    if (r != KH_EINVAL)
        fail_msg("accepted, wanted a refusal of '%s': %s", field, text);
    if (strcmp(err.field, field) != 0)
        fail_msg("refused '%s' (%s), wanted '%s': %s", err.field, err.problem, field, text);
    assert_true(err.problem[0] != '\0');
    /* Completion refuses the same way. */
    assert_int_equal(policy_complete(doc, &out, &err), KH_EINVAL);
    assert_null(out);
    assert_string_equal(err.field, field);
    json_decref(doc);
}

static void accepted(const char *text)
{
    struct policy_error err;
    json_t *doc = parse(text);
    json_t *out = NULL;

    if (policy_validate(doc, &err) != 0)
        fail_msg("refused '%s' (%s): %s", err.field, err.problem, text);
    assert_int_equal(policy_complete(doc, &out, &err), KH_OK);
    json_decref(out);
    json_decref(doc);
}

static const json_t *at(const json_t *o, const char *path)
{
    const json_t *v = o;
    char key[64];

    /* "a.b.c" walks objects; a numeric part indexes an array. */
    while (*path != '\0') {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof(key), "%.*s", (int)n, path);
        if (json_is_array(v))
            v = json_array_get(v, strtoul(key, NULL, 10));
        else
            v = json_object_get(v, key);
        path += n + (path[n] == '.');
    }
    if (v == NULL)
        fail_msg("no %s", key);
    return v;
}

static json_int_t geti(const json_t *o, const char *path)
{
    const json_t *v = at(o, path);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", path);
    return json_integer_value(v);
}

static const char *gets(const json_t *o, const char *path)
{
    const json_t *v = at(o, path);
    if (!json_is_string(v))
        fail_msg("%s is not a string", path);
    return json_string_value(v);
}

static int getb(const json_t *o, const char *path)
{
    const json_t *v = at(o, path);
    if (!json_is_boolean(v))
        fail_msg("%s is not a boolean", path);
    return json_is_true(v);
}

/* The compact JSON of `j` (static buffer) for comparisons of lists. */
static const char *compact(const json_t *j)
{
    static char buf[4096];
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
    free(s);
    return buf;
}

static void default_policy_is_the_documented_one(void **state)
{
    json_t *d = policy_default();
    (void)state;

    assert_non_null(d);
    assert_true(getb(d, "rtp.enabled"));
    assert_string_equal(compact(at(d, "rtp.paths")), "[\"/\"]");
    assert_string_equal(compact(at(d, "rtp.excludes")), "[\"/proc\",\"/sys\",\"/dev\",\"/run\"]");
    assert_int_equal(geti(d, "rtp.timeout_ms"), 5000);
    assert_string_equal(gets(d, "rtp.action"), "quarantine");
    assert_int_equal(json_array_size(at(d, "scheduled_scans")), 1);
    assert_string_equal(gets(d, "scheduled_scans.0.name"), "Quét toàn bộ hằng tuần");
    assert_string_equal(compact(at(d, "scheduled_scans.0.paths")), "[\"/\"]");
    assert_true(getb(d, "scheduled_scans.0.full"));
    assert_string_equal(compact(at(d, "scheduled_scans.0.days")), "[\"sun\"]");
    assert_string_equal(gets(d, "scheduled_scans.0.time"), "02:30");
    assert_string_equal(compact(at(d, "scheduled_scans.0.excludes")), "[]");
    assert_int_equal(geti(d, "scan.nice"), 10);
    assert_string_equal(gets(d, "scan.ionice_class"), "idle");
    assert_int_equal(geti(d, "scan.max_filesize_mb"), 100);
    assert_true(getb(d, "scan.archives"));
    assert_true(getb(d, "connections.enabled"));
    assert_int_equal(geti(d, "connections.interval_s"), 60);
    assert_int_equal(geti(d, "update_interval_s"), 3600);
    assert_int_equal(geti(d, "quarantine_retention_days"), 90);
    assert_int_equal(json_object_size(d), 6);
    json_decref(d);
}

static void settings_left_out_take_their_defaults(void **state)
{
    struct policy_error err;
    json_t *empty = parse("{}"), *d = policy_default(), *out = NULL;
    json_t *doc = parse("{\"rtp\":{\"action\":\"block\"},\"scheduled_scans\":[{\"days\":[\"mon\","
                        "\"fri\"],\"time\":\"12:00\"}],\"scan\":{\"nice\":19}}");
    (void)state;

    assert_int_equal(policy_complete(empty, &out, &err), KH_OK);
    assert_true(json_equal(out, d));
    json_decref(out);

    assert_int_equal(policy_complete(doc, &out, &err), KH_OK);
    assert_string_equal(gets(out, "rtp.action"), "block");
    assert_true(getb(out, "rtp.enabled"));
    assert_string_equal(compact(at(out, "rtp.excludes")), "[\"/proc\",\"/sys\",\"/dev\",\"/run\"]");
    /* A scan entry's own defaults: the whole file system, not a full scan,
     * no name, nothing excluded. */
    assert_int_equal(json_array_size(at(out, "scheduled_scans")), 1);
    assert_string_equal(gets(out, "scheduled_scans.0.name"), "");
    assert_string_equal(compact(at(out, "scheduled_scans.0.paths")), "[\"/\"]");
    assert_false(getb(out, "scheduled_scans.0.full"));
    assert_string_equal(compact(at(out, "scheduled_scans.0.days")), "[\"mon\",\"fri\"]");
    assert_string_equal(compact(at(out, "scheduled_scans.0.excludes")), "[]");
    assert_int_equal(geti(out, "scan.nice"), 19);
    assert_string_equal(gets(out, "scan.ionice_class"), "idle");
    assert_int_equal(geti(out, "update_interval_s"), 3600);
    json_decref(out);
    json_decref(doc);

    /* An empty schedule is a schedule: no scans, not the default one. */
    doc = parse("{\"scheduled_scans\":[]}");
    assert_int_equal(policy_complete(doc, &out, &err), KH_OK);
    assert_int_equal(json_array_size(at(out, "scheduled_scans")), 0);
    json_decref(out);
    json_decref(doc);
    json_decref(empty);
    json_decref(d);
}

static void every_bound_is_checked_and_the_field_named(void **state)
{
    (void)state;
    /* Integers: just inside and just outside each end. */
    static const struct {
        const char *section, *name;
        long long min, max;
    } ints[] = {
        {"rtp", "timeout_ms", 100, 30000},      {"scan", "nice", 0, 19},
        {"scan", "max_filesize_mb", 1, 4096},   {"connections", "interval_s", 10, 3600},
        {NULL, "update_interval_s", 60, 86400}, {NULL, "quarantine_retention_days", 1, 3650},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        char doc[200], field[64];
        const long long values[] = {ints[i].min, ints[i].max, ints[i].min - 1, ints[i].max + 1};
        if (ints[i].section)
            snprintf(field, sizeof(field), "%s.%s", ints[i].section, ints[i].name);
        else
            snprintf(field, sizeof(field), "%s", ints[i].name);
        for (size_t k = 0; k < 4; k++) {
            if (ints[i].section)
                snprintf(doc, sizeof(doc), "{\"%s\":{\"%s\":%lld}}", ints[i].section, ints[i].name,
                         values[k]);
            else
                snprintf(doc, sizeof(doc), "{\"%s\":%lld}", ints[i].name, values[k]);
            if (k < 2)
                accepted(doc);
            else
                refused(doc, field);
        }
        /* Not an integer at all. */
        if (ints[i].section)
            snprintf(doc, sizeof(doc), "{\"%s\":{\"%s\":\"%lld\"}}", ints[i].section, ints[i].name,
                     ints[i].min);
        else
            snprintf(doc, sizeof(doc), "{\"%s\":%lld.5}", ints[i].name, ints[i].min);
        refused(doc, field);
    }

    /* Booleans are true or false, not 0/1, strings or null. */
    refused("{\"rtp\":{\"enabled\":1}}", "rtp.enabled");
    refused("{\"scan\":{\"archives\":\"true\"}}", "scan.archives");
    refused("{\"connections\":{\"enabled\":null}}", "connections.enabled");
    accepted("{\"rtp\":{\"enabled\":false},\"connections\":{\"enabled\":false}}");

    /* Choices. */
    accepted("{\"rtp\":{\"action\":\"quarantine\"}}");
    accepted("{\"rtp\":{\"action\":\"block\"}}");
    accepted("{\"rtp\":{\"action\":\"report\"}}");
    refused("{\"rtp\":{\"action\":\"delete\"}}", "rtp.action");
    refused("{\"rtp\":{\"action\":\"Block\"}}", "rtp.action");
    accepted("{\"scan\":{\"ionice_class\":\"best-effort\"}}");
    accepted("{\"scan\":{\"ionice_class\":\"idle\"}}");
    refused("{\"scan\":{\"ionice_class\":\"realtime\"}}", "scan.ionice_class");

    /* Sections must be objects, the schedule an array. */
    refused("{\"rtp\":true}", "rtp");
    refused("{\"scan\":[]}", "scan");
    refused("{\"connections\":null}", "connections");
    refused("{\"scheduled_scans\":{}}", "scheduled_scans");
    refused("{\"scheduled_scans\":[{\"days\":[\"sun\"],\"time\":\"01:00\"},7]}",
            "scheduled_scans[1]");
}

static void paths_are_absolute_bounded_and_clean(void **state)
{
    char *doc = malloc(80000);
    size_t n;
    (void)state;

    assert_non_null(doc);
    accepted("{\"rtp\":{\"paths\":[\"/home\",\"/srv/dữ liệu\"],\"excludes\":[]}}");
    refused("{\"rtp\":{\"paths\":[]}}", "rtp.paths");
    refused("{\"rtp\":{\"paths\":\"/\"}}", "rtp.paths");
    refused("{\"rtp\":{\"paths\":[\"home\"]}}", "rtp.paths[0]");
    refused("{\"rtp\":{\"paths\":[\"/a\",\"\"]}}", "rtp.paths[1]");
    refused("{\"rtp\":{\"paths\":[\"/a\",3]}}", "rtp.paths[1]");
    refused("{\"rtp\":{\"excludes\":[\"/a\",\"/b\",\"/c\\n\"]}}", "rtp.excludes[2]");
    refused("{\"rtp\":{\"excludes\":[\"/a\\u0000b\"]}}", "rtp.excludes[0]");
    refused("{\"rtp\":{\"excludes\":[\"/a\\u007f\"]}}", "rtp.excludes[0]");
    refused("{\"rtp\":{\"excludes\":[\"/a\\u0085\"]}}", "rtp.excludes[0]");
    refused("{\"scheduled_scans\":[{\"days\":[\"sun\"],\"time\":\"01:00\"},{\"days\":[\"sun\"],"
            "\"time\":\"01:00\",\"excludes\":[\"tmp\"]}]}",
            "scheduled_scans[1].excludes[0]");
    refused("{\"scheduled_scans\":[{\"days\":[\"sun\"],\"time\":\"01:00\",\"paths\":[]}]}",
            "scheduled_scans[0].paths");

    /* 64 paths are fine, 65 are not. */
    for (int count = 64; count <= 65; count++) {
        n = (size_t)snprintf(doc, 80000, "{\"rtp\":{\"excludes\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)snprintf(doc + n, 80000 - n, "%s\"/p%d\"", i ? "," : "", i);
        snprintf(doc + n, 80000 - n, "]}}");
        if (count == 64)
            accepted(doc);
        else
            refused(doc, "rtp.excludes");
    }

    /* A path of 4096 bytes is fine, 4097 is not. */
    for (int len = 4096; len <= 4097; len++) {
        n = (size_t)snprintf(doc, 80000, "{\"rtp\":{\"paths\":[\"/");
        memset(doc + n, 'a', (size_t)len - 1);
        n += (size_t)len - 1;
        snprintf(doc + n, 80000 - n, "\"]}}");
        if (len == 4096)
            accepted(doc);
        else
            refused(doc, "rtp.paths[0]");
    }

    /* The whole document is capped: 16 scans of 4 paths of 1,101 bytes
     * each keep every per-list limit but not the 64 KiB. */
    n = (size_t)snprintf(doc, 80000, "{\"scheduled_scans\":[");
    for (int s = 0; s < 16; s++) {
        n += (size_t)snprintf(doc + n, 80000 - n,
                              "%s{\"days\":[\"daily\"],\"time\":\"03:00\",\"paths\":[",
                              s ? "," : "");
        for (int p = 0; p < 4; p++) {
            n += (size_t)snprintf(doc + n, 80000 - n, "%s\"/", p ? "," : "");
            memset(doc + n, 'x', 1100);
            n += 1100;
            doc[n++] = '"';
        }
        n += (size_t)snprintf(doc + n, 80000 - n, "]}");
    }
    snprintf(doc + n, 80000 - n, "]}");
    refused(doc, "");
    free(doc);
}

static void scheduled_scans_are_checked_entry_by_entry(void **state)
{
    char doc[4096];
    size_t n;
    (void)state;

#define SCAN1(extra) "{\"scheduled_scans\":[{\"days\":[\"sun\"],\"time\":\"01:00\"},{" extra "}]}"
    accepted(SCAN1("\"days\":[\"daily\"],\"time\":\"00:00\""));
    accepted(
        SCAN1("\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"],"
              "\"time\":\"23:59\",\"name\":\"Buổi trưa\",\"full\":false,\"paths\":[\"/home\"]"));
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"24:00\""), "scheduled_scans[1].time");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"02:60\""), "scheduled_scans[1].time");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"2:30\""), "scheduled_scans[1].time");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"02:30:00\""), "scheduled_scans[1].time");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"02h30\""), "scheduled_scans[1].time");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":230"), "scheduled_scans[1].time");
    refused(SCAN1("\"days\":[\"sun\"]"), "scheduled_scans[1].time");
    refused(SCAN1("\"time\":\"02:30\""), "scheduled_scans[1].days");
    refused(SCAN1("\"days\":[],\"time\":\"02:30\""), "scheduled_scans[1].days");
    refused(SCAN1("\"days\":\"sun\",\"time\":\"02:30\""), "scheduled_scans[1].days");
    refused(SCAN1("\"days\":[\"sun\",\"mon\",\"sun\"],\"time\":\"02:30\""),
            "scheduled_scans[1].days[2]");
    refused(SCAN1("\"days\":[\"sunday\"],\"time\":\"02:30\""), "scheduled_scans[1].days[0]");
    refused(SCAN1("\"days\":[\"mon\",\"daily\"],\"time\":\"02:30\""), "scheduled_scans[1].days[1]");
    refused(SCAN1("\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\",\"mon\"],"
                  "\"time\":\"02:30\""),
            "scheduled_scans[1].days");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"02:30\",\"full\":\"yes\""),
            "scheduled_scans[1].full");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"02:30\",\"name\":\"a\\tb\""),
            "scheduled_scans[1].name");
    refused(SCAN1("\"days\":[\"sun\"],\"time\":\"02:30\",\"name\":7"), "scheduled_scans[1].name");
    /* A misspelt key of an entry is named with the entry. */
    refused(SCAN1("\"days\":[\"sun\"],\"tiem\":\"02:30\""), "scheduled_scans[1].tiem");

    /* Names up to 200 bytes. */
    for (int len = 200; len <= 201; len++) {
        n = (size_t)snprintf(doc, sizeof(doc),
                             "{\"scheduled_scans\":[{\"days\":[\"sun\"],\"time\":\"02:30\","
                             "\"name\":\"");
        memset(doc + n, 'n', (size_t)len);
        n += (size_t)len;
        snprintf(doc + n, sizeof(doc) - n, "\"}]}");
        if (len == 200)
            accepted(doc);
        else
            refused(doc, "scheduled_scans[0].name");
    }

    /* At most 16 scans. */
    for (int count = 16; count <= 17; count++) {
        n = (size_t)snprintf(doc, sizeof(doc), "{\"scheduled_scans\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)snprintf(doc + n, sizeof(doc) - n,
                                  "%s{\"days\":[\"daily\"],\"time\":\"%02d:00\"}", i ? "," : "", i);
        snprintf(doc + n, sizeof(doc) - n, "]}");
        if (count == 16)
            accepted(doc);
        else
            refused(doc, "scheduled_scans");
    }
#undef SCAN1
}

static void unknown_keys_are_refused_by_name(void **state)
{
    struct policy_error err;
    char doc[1024];
    json_t *j;
    (void)state;

    refused("{\"rtpp\":{}}", "rtpp");
    refused("{\"rtp\":{\"enable\":true}}", "rtp.enable");
    refused("{\"scan\":{\"nicee\":5}}", "scan.nicee");
    refused("{\"connections\":{\"interval\":60}}", "connections.interval");
    refused("{\"update_interval\":3600}", "update_interval");

    /* The message lists what would have been accepted. */
    j = parse("{\"scan\":{\"priority\":5}}");
    assert_int_equal(policy_validate(j, &err), KH_EINVAL);
    assert_string_equal(err.field, "scan.priority");
    assert_non_null(strstr(err.problem, "nice, ionice_class, max_filesize_mb, archives"));
    json_decref(j);

    /* A long key with non-ASCII and control characters is named in
     * printable ASCII, cut short, so the answer stays small valid JSON. */
    snprintf(doc, sizeof(doc), "{\"rtp\":{\"%s\\n%s\":1}}",
             "ậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậậ", "xxxxxxxxxxxxxxxxxxxx");
    j = parse(doc);
    assert_int_equal(policy_validate(j, &err), KH_EINVAL);
    assert_true(strncmp(err.field, "rtp.", 4) == 0);
    assert_true(strlen(err.field) <= 4 + 48);
    for (const char *p = err.field; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    json_decref(j);
}

static void policy_version_follows_the_content_only(void **state)
{
    struct policy_error err;
    json_t *a = parse("{\"scan\":{\"nice\":5,\"archives\":false},\"update_interval_s\":600}");
    json_t *b = parse("{\"update_interval_s\":600,\"scan\":{\"archives\":false,\"nice\":5}}");
    json_t *c = parse("{\"update_interval_s\":601,\"scan\":{\"archives\":false,\"nice\":5}}");
    json_t *ca = NULL, *cb = NULL, *cc = NULL, *d = policy_default();
    char va[17], vb[17], vc[17], vd[17];
    (void)state;

    assert_int_equal(policy_complete(a, &ca, &err), KH_OK);
    assert_int_equal(policy_complete(b, &cb, &err), KH_OK);
    assert_int_equal(policy_complete(c, &cc, &err), KH_OK);
    assert_int_equal(policy_version(ca, va), KH_OK);
    assert_int_equal(policy_version(cb, vb), KH_OK);
    assert_int_equal(policy_version(cc, vc), KH_OK);
    assert_int_equal(policy_version(d, vd), KH_OK);
    assert_int_equal(strlen(va), 16);
    assert_int_equal(strspn(va, "0123456789abcdef"), 16);
    /* The order the officer wrote the keys in does not matter. */
    assert_string_equal(va, vb);
    assert_string_not_equal(va, vc);
    assert_string_not_equal(va, vd);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(ca);
    json_decref(cb);
    json_decref(cc);
    json_decref(d);
}

/* ------------------------------------------------------------------------ */
/* With a store.                                                             */
/* ------------------------------------------------------------------------ */

static const char *pg_url;

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv srv;
    int64_t now;
    int64_t p, a, a1, b;
    struct srv_principal admin, officer_p, officer_a, auditor, machine;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, pg_url, 0)) == NULL)
        return 0;
    f->now = srv_now();
    f->srv.cfg.checkin_interval = 60;
    f->srv.cfg.offline_after = 180;
    f->p = tu_add_agency(f->db, 0, "P", NULL, f->now);
    f->a = tu_add_agency(f->db, f->p, "A", NULL, f->now);
    f->a1 = tu_add_agency(f->db, f->a, "A1", NULL, f->now);
    f->b = tu_add_agency(f->db, f->p, "B", NULL, f->now);
    tu_add_person(f->db, &f->admin, "admin", SRV_ROLE_ADMIN, 0, f->now);
    tu_add_person(f->db, &f->officer_p, "officer_p", SRV_ROLE_OFFICER, f->p, f->now);
    tu_add_person(f->db, &f->officer_a, "officer_a", SRV_ROLE_OFFICER, f->a, f->now);
    tu_add_person(f->db, &f->auditor, "auditor", SRV_ROLE_AUDITOR, 0, f->now);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, cert_sha256,"
                                 " enrolled_at, last_seen) VALUES ($1, $2, 'pc-a1', 'abc', $3, $3)",
                                 "tii", M_ID, f->a1, f->now),
                     0);
    snprintf(f->machine.machine_id, sizeof(f->machine.machine_id), "%s", M_ID);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->db);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static struct fixture *need_db(void **state)
{
    struct fixture *f = *state;
    if (f->db == NULL) {
        printf("SKIP: the store cannot be opened in this build\n");
        skip();
    }
    return f;
}

/* Runs `h` as `who` on agency `id` (0: no route parameter) with `body` and
 * returns the parsed answer, with the status in *status. */
static json_t *call(struct fixture *f, srv_handler h, const struct srv_principal *who,
                    const char *method, int64_t id, const char *body, unsigned *status)
{
    char param[32];
    snprintf(param, sizeof(param), "%lld", (long long)id);
    return tu_call_handler(&f->srv, f->db, h, who, method, id != 0 ? param : NULL, NULL, body, 1,
                           status);
}

static json_t *expect(struct fixture *f, srv_handler h, const struct srv_principal *who,
                      const char *method, int64_t id, const char *body, unsigned want)
{
    unsigned status = 0;
    json_t *j = call(f, h, who, method, id, body, &status);
    if (status != want) {
        char *text = json_dumps(j, JSON_COMPACT);
        fail_msg("%s agency %lld: status %u, wanted %u: %s", method, (long long)id, status, want,
                 text);
    }
    return j;
}

static json_t *get_policy(struct fixture *f, int64_t id)
{
    return expect(f, api_agency_policy_get, &f->auditor, "GET", id, NULL, 200);
}

static void put_policy(struct fixture *f, const struct srv_principal *who, int64_t id,
                       const char *doc)
{
    json_decref(expect(f, api_agency_policy_put, who, "PUT", id, doc, 200));
}

static void delete_policy(struct fixture *f, const struct srv_principal *who, int64_t id)
{
    json_decref(expect(f, api_agency_policy_delete, who, "DELETE", id, NULL, 200));
}

/* The complete policy a document means. */
static json_t *completed(const char *text)
{
    struct policy_error err;
    json_t *doc = parse(text), *out = NULL;
    assert_int_equal(policy_complete(doc, &out, &err), KH_OK);
    json_decref(doc);
    return out;
}

/* inherited_from as an id, 0 for null (the built-in default). */
static int64_t source_of(const json_t *view)
{
    const json_t *v = json_object_get(view, "inherited_from");
    if (json_is_null(v))
        return 0;
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static int64_t count_all(struct fixture *f, const char *sql)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(f->db, &n, sql, ""), STORE_ROW);
    return n;
}

static int64_t count(struct fixture *f, const char *sql, const char *arg)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(f->db, &n, sql, "t", arg), STORE_ROW);
    return n;
}

static void without_policies_every_agency_gets_the_default(void **state)
{
    struct fixture *f = need_db(state);
    json_t *view = get_policy(f, f->a1), *d = policy_default();
    char v[17];

    assert_true(json_is_null(json_object_get(view, "policy")));
    assert_int_equal(source_of(view), 0);
    assert_true(json_equal(json_object_get(view, "effective"), d));
    assert_int_equal(policy_version(d, v), KH_OK);
    assert_string_equal(gets(view, "policy_version"), v);
    assert_int_equal(geti(view, "agency_id"), f->a1);
    assert_true(json_is_null(json_object_get(view, "updated_by")));
    json_decref(view);
    json_decref(d);
}

static void the_nearest_policy_up_the_tree_applies_whole(void **state)
{
    struct fixture *f = need_db(state);
    static const char p_doc[] = "{\"rtp\":{\"action\":\"block\"},\"scan\":{\"nice\":5}}";
    static const char a_doc[] = "{\"scan\":{\"nice\":19},\"update_interval_s\":600}";
    json_t *view, *want;
    char *stored = NULL;

    /* The top-level agency's policy reaches its grandchild. */
    put_policy(f, &f->admin, f->p, p_doc);
    view = get_policy(f, f->a1);
    assert_true(json_is_null(json_object_get(view, "policy")));
    assert_int_equal(source_of(view), f->p);
    want = completed(p_doc);
    assert_true(json_equal(json_object_get(view, "effective"), want));
    json_decref(want);
    json_decref(view);

    /* A nearer one replaces it whole: A's machines do not keep P's "block",
     * they get the default action, since A's policy does not set one. */
    put_policy(f, &f->officer_a, f->a, a_doc);
    view = get_policy(f, f->a1);
    assert_int_equal(source_of(view), f->a);
    assert_string_equal(gets(view, "effective.rtp.action"), "quarantine");
    assert_int_equal(geti(view, "effective.scan.nice"), 19);
    assert_int_equal(geti(view, "effective.update_interval_s"), 600);
    json_decref(view);

    /* A's own view: its policy as it was sent, and its own id as the source. */
    view = get_policy(f, f->a);
    assert_int_equal(source_of(view), f->a);
    want = parse(a_doc);
    assert_true(json_equal(json_object_get(view, "policy"), want));
    json_decref(want);
    assert_string_equal(gets(view, "updated_by"), "officer_a");
    assert_true(geti(view, "updated_at") >= f->now);
    json_decref(view);

    /* B, beside A, still follows P. */
    view = get_policy(f, f->b);
    assert_int_equal(source_of(view), f->p);
    json_decref(view);

    /* Stored compact, as sent. */
    assert_int_equal(store_query_text(f->db, &stored,
                                      "SELECT policy FROM agency_policies WHERE agency_id = $1",
                                      "i", f->a),
                     STORE_ROW);
    assert_string_equal(stored, "{\"scan\":{\"nice\":19},\"update_interval_s\":600}");
    free(stored);

    /* Deleting A's policy: A1 inherits P's again; deleting P's: the
     * built-in default. */
    delete_policy(f, &f->officer_a, f->a);
    view = get_policy(f, f->a1);
    assert_int_equal(source_of(view), f->p);
    assert_string_equal(gets(view, "effective.rtp.action"), "block");
    json_decref(view);
    delete_policy(f, &f->admin, f->p);
    view = get_policy(f, f->a1);
    assert_int_equal(source_of(view), 0);
    json_decref(view);

    /* An empty policy is a policy: the defaults, whatever the parent says. */
    put_policy(f, &f->admin, f->p, p_doc);
    put_policy(f, &f->officer_a, f->a, "{}");
    view = get_policy(f, f->a1);
    assert_int_equal(source_of(view), f->a);
    assert_string_equal(gets(view, "effective.rtp.action"), "quarantine");
    json_decref(view);
}

/* Checks in as the machine and returns the answer. */
static json_t *checkin(struct fixture *f)
{
    return expect(f, api_agent_checkin, &f->machine, "POST", 0,
                  "{\"hostname\":\"pc-a1\",\"agent_version\":\"0.1.0\",\"rtp\":true}", 200);
}

static void checkin_carries_the_policy_and_its_version(void **state)
{
    struct fixture *f = need_db(state);
    static const char doc[] = "{\"rtp\":{\"timeout_ms\":2000},\"connections\":{\"enabled\":false}}";
    json_t *answer, *d = policy_default(), *want;
    char v_default[17], v1[17];

    assert_int_equal(policy_version(d, v_default), KH_OK);
    answer = checkin(f);
    assert_true(json_equal(json_object_get(answer, "policy"), d));
    assert_string_equal(gets(answer, "policy_version"), v_default);
    assert_int_equal(geti(answer, "checkin_interval"), 60);
    json_decref(answer);

    /* A policy on the parent of the machine's agency reaches it at once. */
    put_policy(f, &f->officer_a, f->a, doc);
    answer = checkin(f);
    want = completed(doc);
    assert_true(json_equal(json_object_get(answer, "policy"), want));
    snprintf(v1, sizeof(v1), "%s", gets(answer, "policy_version"));
    assert_string_not_equal(v1, v_default);
    json_decref(want);
    json_decref(answer);

    /* The same policy written again keeps its version; what the GET shows
     * is what the machine gets. */
    put_policy(f, &f->officer_a, f->a,
               "{\"connections\":{\"enabled\":false},\"rtp\":{\"timeout_ms\":2000}}");
    answer = checkin(f);
    assert_string_equal(gets(answer, "policy_version"), v1);
    json_decref(answer);
    answer = get_policy(f, f->a1);
    assert_string_equal(gets(answer, "policy_version"), v1);
    json_decref(answer);

    /* A change changes the version. */
    put_policy(f, &f->officer_a, f->a, "{\"rtp\":{\"timeout_ms\":2001}}");
    answer = checkin(f);
    assert_string_not_equal(gets(answer, "policy_version"), v1);
    assert_string_not_equal(gets(answer, "policy_version"), v_default);
    assert_int_equal(geti(answer, "policy.rtp.timeout_ms"), 2001);
    json_decref(answer);

    /* Back to the default when the policy goes. */
    delete_policy(f, &f->officer_a, f->a);
    answer = checkin(f);
    assert_string_equal(gets(answer, "policy_version"), v_default);
    json_decref(answer);

    /* A machine moved to B gets B's (P's) policy at its next check-in. */
    put_policy(f, &f->admin, f->p, "{\"update_interval_s\":7200}");
    assert_int_equal(store_execf(f->db, NULL, "UPDATE machines SET agency_id = $1 WHERE id = $2",
                                 "it", f->b, M_ID),
                     0);
    answer = checkin(f);
    assert_int_equal(geti(answer, "policy.update_interval_s"), 7200);
    json_decref(answer);
    json_decref(d);
}

static void a_damaged_stored_policy_is_left_out_of_checkin(void **state)
{
    struct fixture *f = need_db(state);
    json_t *answer;
    unsigned status = 0;

    /* Written behind the API's back: a setting the validator refuses. */
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO agency_policies (agency_id, policy, updated_at)"
                                 " VALUES ($1, '{\"scan\":{\"nice\":99}}', $2)",
                                 "ii", f->a, f->now),
                     0);
    answer = checkin(f);
    assert_null(json_object_get(answer, "policy"));
    assert_null(json_object_get(answer, "policy_version"));
    assert_int_equal(geti(answer, "tasks_pending"), 0);
    json_decref(answer);
    answer = call(f, api_agency_policy_get, &f->admin, "GET", f->a1, NULL, &status);
    assert_int_equal(status, 500);
    json_decref(answer);
}

static void a_bad_document_is_refused_with_the_field(void **state)
{
    struct fixture *f = need_db(state);
    json_t *answer;
    char *big;
    size_t n;

    answer = expect(f, api_agency_policy_put, &f->officer_a, "PUT", f->a,
                    "{\"scheduled_scans\":[{\"days\":[\"sun\"],\"time\":\"02:30\"},"
                    "{\"days\":[\"mon\"],\"time\":\"25:00\"}]}",
                    400);
    assert_string_equal(gets(answer, "error"), "field");
    assert_string_equal(gets(answer, "field"), "scheduled_scans[1].time");
    assert_non_null(strstr(gets(answer, "message"), "scheduled_scans[1].time"));
    json_decref(answer);

    answer = expect(f, api_agency_policy_put, &f->officer_a, "PUT", f->a,
                    "{\"rtp\":{\"enabeld\":false}}", 400);
    assert_string_equal(gets(answer, "field"), "rtp.enabeld");
    json_decref(answer);

    answer = expect(f, api_agency_policy_put, &f->officer_a, "PUT", f->a, "[1]", 400);
    assert_string_equal(gets(answer, "error"), "bad_request");
    json_decref(answer);

    /* Over 64 KiB: 413, like every other oversized document. */
    big = malloc(70000);
    assert_non_null(big);
    n = (size_t)snprintf(big, 70000, "{\"rtp\":{\"paths\":[");
    for (int i = 0; i < 17; i++) {
        n += (size_t)snprintf(big + n, 70000 - n, "%s\"/", i ? "," : "");
        memset(big + n, 'x', 4000);
        n += 4000;
        big[n++] = '"';
    }
    snprintf(big + n, 70000 - n, "]}}");
    answer = expect(f, api_agency_policy_put, &f->officer_a, "PUT", f->a, big, 413);
    json_decref(answer);
    free(big);

    /* Nothing was stored, nothing audited. */
    assert_int_equal(count_all(f, "SELECT COUNT(*) FROM agency_policies"), 0);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM audit WHERE action LIKE $1", "agency.policy%"),
                     0);
}

static void roles_and_scope_decide_who_may_change_a_policy(void **state)
{
    struct fixture *f = need_db(state);
    static const char doc[] = "{\"update_interval_s\":900}";
    const struct srv_route *route;
    char path[64];
    json_t *answer;

    /* The router refuses auditors on PUT and DELETE (SRV_WRITE); anyone
     * signed in may GET. */
    snprintf(path, sizeof(path), "/api/v1/agencies/%lld/policy", (long long)f->a);
    assert_non_null(route = srv_route_lookup("GET", path));
    assert_int_equal(route->flags, SRV_USER);
    assert_non_null(route = srv_route_lookup("PUT", path));
    assert_int_equal(route->flags, SRV_USER | SRV_WRITE);
    assert_non_null(route = srv_route_lookup("DELETE", path));
    assert_int_equal(route->flags, SRV_USER | SRV_WRITE);

    /* The top-level agency: the administrator only, even for P's officer. */
    answer = expect(f, api_agency_policy_put, &f->officer_p, "PUT", f->p, doc, 403);
    assert_string_equal(gets(answer, "error"), "forbidden");
    json_decref(answer);
    json_decref(expect(f, api_agency_policy_delete, &f->officer_p, "DELETE", f->p, NULL, 403));
    put_policy(f, &f->admin, f->p, doc);

    /* P's officer may set the policies of the agencies below P. */
    put_policy(f, &f->officer_p, f->b, doc);
    put_policy(f, &f->officer_p, f->a1, doc);
    delete_policy(f, &f->officer_p, f->a1);

    /* A's officer: A and below; B and P are outside its scope and answered
     * as if they did not exist, reads included. */
    put_policy(f, &f->officer_a, f->a, doc);
    put_policy(f, &f->officer_a, f->a1, doc);
    json_decref(expect(f, api_agency_policy_put, &f->officer_a, "PUT", f->b, doc, 404));
    json_decref(expect(f, api_agency_policy_put, &f->officer_a, "PUT", f->p, doc, 404));
    json_decref(expect(f, api_agency_policy_delete, &f->officer_a, "DELETE", f->b, NULL, 404));
    json_decref(expect(f, api_agency_policy_get, &f->officer_a, "GET", f->b, NULL, 404));
    json_decref(expect(f, api_agency_policy_get, &f->officer_a, "GET", f->a1, NULL, 200));
    json_decref(expect(f, api_agency_policy_get, &f->admin, "GET", 999999, NULL, 404));
    json_decref(expect(f, api_agency_policy_put, &f->admin, "PUT", 999999, doc, 404));

    /* B still has the policy A's officer could not delete. */
    answer = get_policy(f, f->b);
    assert_int_equal(source_of(answer), f->b);
    json_decref(answer);
}

static void every_change_is_audited(void **state)
{
    struct fixture *f = need_db(state);
    char target[40], *detail = NULL;

    snprintf(target, sizeof(target), "agency:%lld", (long long)f->a);
    put_policy(f, &f->officer_a, f->a, "{\"scan\":{\"nice\":3}}");
    put_policy(f, &f->officer_a, f->a, "{\"scan\":{\"nice\":4}}");
    delete_policy(f, &f->officer_a, f->a);
    /* Deleting what is not there changes nothing and is not recorded. */
    delete_policy(f, &f->officer_a, f->a);

    assert_int_equal(count(f,
                           "SELECT COUNT(*) FROM audit WHERE action = 'agency.policy.set'"
                           " AND username = 'officer_a' AND target = $1",
                           target),
                     2);
    assert_int_equal(count(f,
                           "SELECT COUNT(*) FROM audit WHERE action = 'agency.policy.delete'"
                           " AND target = $1",
                           target),
                     1);
    assert_int_equal(store_query_text(f->db, &detail,
                                      "SELECT detail FROM audit WHERE action ="
                                      " 'agency.policy.delete' AND target = $1",
                                      "t", target),
                     STORE_ROW);
    assert_string_equal(detail, "{\"previous\":{\"scan\":{\"nice\":4}}}");
    free(detail);
    assert_int_equal(store_query_text(f->db, &detail,
                                      "SELECT detail FROM audit WHERE action = 'agency.policy.set'"
                                      " AND target = $1 ORDER BY id LIMIT 1",
                                      "t", target),
                     STORE_ROW);
    assert_string_equal(detail, "{\"policy\":{\"scan\":{\"nice\":3}}}");
    free(detail);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(default_policy_is_the_documented_one),
        cmocka_unit_test(settings_left_out_take_their_defaults),
        cmocka_unit_test(every_bound_is_checked_and_the_field_named),
        cmocka_unit_test(paths_are_absolute_bounded_and_clean),
        cmocka_unit_test(scheduled_scans_are_checked_entry_by_entry),
        cmocka_unit_test(unknown_keys_are_refused_by_name),
        cmocka_unit_test(policy_version_follows_the_content_only),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(without_policies_every_agency_gets_the_default, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_nearest_policy_up_the_tree_applies_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(checkin_carries_the_policy_and_its_version, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_damaged_stored_policy_is_left_out_of_checkin, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_bad_document_is_refused_with_the_field, setup, teardown),
        cmocka_unit_test_setup_teardown(roles_and_scope_decide_who_may_change_a_policy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(every_change_is_audited, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("policy", plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
