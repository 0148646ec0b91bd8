/*
 * The server side of the network sensor: agency address ranges
 * (server/c2.c, /agencies/{id}/networks and /networks in api_c2.c), the
 * "c2_hit" events that sensors post through the ordinary event batch
 * (ingest.c), the dashboard's hit list and summary, and the ranges a sensor
 * gets at check-in (api_agent.c). The store tests use a small tree:
 *
 *     P ── A ── A1        sensor S enrolled in A
 *       └─ B
 *
 * with a province administrator, officers of A and of B and a province
 * auditor; handlers are called directly with hand-built requests, as
 * test_policy.c does. They run on SQLite and, when KHIEN_PG_URL names a
 * server, again on PostgreSQL.
 *
 * What is proved: CIDRs are parsed and normalised and bad ones refused;
 * every field of a hit is checked and named; ranges are replaced as a
 * whole, listed and scoped; a range overlapping another agency's is refused
 * with 409 unless it nests along the tree; a hit is filed under the agency
 * of the longest range holding its host, whatever the sensor said, and the
 * sensor's own word counts only inside its subtree; a valid hit is stored
 * once, an invalid one is rejected by index; an officer sees only its own
 * subtree's hits; the cursor walks every hit once; the summary equals a
 * recount; a sensor's check-in brings every range and marks it a sensor.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "c2.h"
#include "ingest.h"
#include "store/store.h"

#define S_ID "5e5e5e5e-0000-4000-8000-00000000005e"

/* ------------------------------------------------------------------------ */
/* Without a store.                                                          */
/* ------------------------------------------------------------------------ */

static void parsed(const char *in, const char *want, unsigned prefix)
{
    struct c2_range g;
    char err[128] = "";

    if (c2_range_parse(in, &g, err, sizeof(err)) != 0)
        fail_msg("refused %s: %s", in, err);
    assert_string_equal(g.text, want);
    assert_int_equal(g.prefix, prefix);
}

static void refused_range(const char *in)
{
    struct c2_range g;
    char err[128] = "";

    if (c2_range_parse(in, &g, err, sizeof(err)) == 0)
        fail_msg("accepted %s as %s", in, g.text);
    assert_true(err[0] != '\0');
}

static void ranges_are_normalised_and_bad_ones_refused(void **state)
{
    struct c2_range g;
    char err[64];
    (void)state;

    parsed("10.1.2.0/24", "10.1.2.0/24", 24);
    parsed("10.1.2.77/24", "10.1.2.0/24", 24);
    parsed("10.1.2.77", "10.1.2.77/32", 32);
    parsed("0.0.0.0/0", "0.0.0.0/0", 0);
    parsed("172.16.255.255/12", "172.16.0.0/12", 12);
    parsed("2001:DB8:0:0::1/32", "2001:db8::/32", 32);
    parsed("2001:db8::1", "2001:db8::1/128", 128);
    parsed("2001:db8:abcd:12ff::/57", "2001:db8:abcd:1280::/57", 57);
    refused_range("");
    refused_range("10.1.2/24");
    refused_range("10.1.2.0/33");
    refused_range("2001:db8::/129");
    refused_range("10.1.2.0/");
    refused_range("10.1.2.0/ 24");
    refused_range("10.1.2.0/+24");
    refused_range("10.1.2.0/024");
    refused_range("evil.example");
    refused_range("10.1.2.0/24/8");
    refused_range("fe80::1%eth0/64");

    /* First and last address bound the range, byte by byte. */
    assert_int_equal(c2_range_parse("10.1.2.77/23", &g, err, sizeof(err)), 0);
    assert_int_equal(g.addr_len, 4);
    assert_memory_equal(g.first, "\x0a\x01\x02\x00", 4);
    assert_memory_equal(g.last, "\x0a\x01\x03\xff", 4);
}

/* A valid hit as sensor/output.h writes it, as a JSON object; `patch`
 * (may be NULL) is merged over it. */
static json_t *hit(const char *id, const char *host, const char *patch)
{
    json_error_t e;
    json_t *ev = json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:s, s:s, s:{s:s, s:s, s:[{s:s, s:s, s:s, s:I, s:n}]},"
        " s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:s}",
        "type", "c2_hit", "id", id, "at", (json_int_t)1800000000, "first_seen",
        "2027-01-15T08:00:00.250000Z", "last_seen", "2027-01-15T08:05:00Z", "count", (json_int_t)3,
        "host", host, "where", "dns.query", "observed", "a.evil.example", "indicator", "kind",
        "domain", "value", "evil.example", "sources", "source", "maltrail", "category", "c2",
        "family", "sofacy", "confidence", (json_int_t)80, "expires", "category", "c2", "proto",
        "udp", "src_ip", host, "src_port", (json_int_t)1030, "dest_ip", "10.0.0.53", "dest_port",
        (json_int_t)53, "evidence", "A? a.evil.example", "input", "pcap", "sensor", "sensor-1");
    assert_non_null(ev);
    if (patch != NULL) {
        json_t *p = json_loads(patch, JSON_ALLOW_NUL, &e);
        if (p == NULL)
            fail_msg("bad patch %s: %s", patch, e.text);
        json_object_update(ev, p);
        json_decref(p);
    }
    return ev;
}

/* The hit with `patch` must be refused, the message naming `field`. */
static void hit_refused(const char *patch, const char *field)
{
    json_t *ev = hit("h1", "10.1.2.3", patch);
    char msg[200] = "";

    if (srv_ingest_validate_event(ev, msg, sizeof(msg)) == 0)
        fail_msg("accepted %s", patch);
    if (strncmp(msg, field, strlen(field)) != 0)
        fail_msg("%s: refused with '%s', wanted field %s", patch, msg, field);
    json_decref(ev);
}

static void hit_accepted(const char *patch)
{
    json_t *ev = hit("h1", "10.1.2.3", patch);
    char msg[200] = "";

    if (srv_ingest_validate_event(ev, msg, sizeof(msg)) != 0)
        fail_msg("refused %s: %s", patch ? patch : "(the plain hit)", msg);
    json_decref(ev);
}

static void every_field_of_a_hit_is_checked_and_named(void **state)
{
    (void)state;
    hit_accepted(NULL);
    hit_accepted("{\"host\":\"2001:db8::5\",\"src_ip\":\"2001:db8::5\",\"dest_ip\":\"2001:db8::"
                 "53\"}");
    hit_accepted("{\"first_seen\":\"2027-01-15T10:00:00+02:00\",\"last_seen\":1800000000}");
    hit_accepted("{\"agency_id\":7,\"agency_code\":\"SO-TTTT\"}");
    hit_accepted("{\"agency_id\":null,\"proto\":null,\"src_ip\":null,\"dest_port\":null}");
    hit_accepted("{\"indicator\":{\"kind\":\"ip_port\",\"value\":\"198.51.100.7:443\","
                 "\"sources\":[{\"source\":\"ipsum\"}]}}");

    hit_refused("{\"host\":\"pc-01\"}", "host");
    hit_refused("{\"host\":null}", "host");
    hit_refused("{\"host\":\"10.1.2.3\\u0000\"}", "host");
    hit_refused("{\"where\":\"DNS query\"}", "where");
    hit_refused("{\"where\":\"\"}", "where");
    hit_refused("{\"indicator\":\"evil.example\"}", "indicator");
    hit_refused("{\"indicator\":{\"kind\":\"domain\",\"sources\":[{\"source\":\"x\"}]}}",
                "indicator.value");
    hit_refused(
        "{\"indicator\":{\"kind\":\"hash\",\"value\":\"x\",\"sources\":[{\"source\":\"x\"}]}}",
        "indicator.kind");
    hit_refused("{\"indicator\":{\"kind\":\"domain\",\"value\":\"x\",\"sources\":[]}}",
                "indicator.sources");
    hit_refused("{\"indicator\":{\"kind\":\"domain\",\"value\":\"x\"}}", "indicator.sources");
    hit_refused("{\"indicator\":{\"kind\":\"domain\",\"value\":\"x\",\"sources\":[{}]}}",
                "indicator.sources[].source");
    hit_refused("{\"indicator\":{\"kind\":\"domain\",\"value\":\"x\",\"sources\":[{\"source\":"
                "\"x\",\"confidence\":101}]}}",
                "indicator.sources[].confidence");
    hit_refused("{\"count\":0}", "count");
    hit_refused("{\"count\":\"3\"}", "count");
    hit_refused("{\"first_seen\":\"yesterday\"}", "first_seen");
    hit_refused("{\"first_seen\":\"2027-01-15 08:00:00Z\"}", "first_seen");
    hit_refused("{\"first_seen\":\"2027-13-15T08:00:00Z\"}", "first_seen");
    hit_refused("{\"last_seen\":\"1999-01-15T08:00:00Z\"}", "last_seen");
    hit_refused("{\"last_seen\":\"2027-01-15T07:59:59Z\"}", "last_seen");
    hit_refused("{\"src_ip\":\"10.1.2\"}", "src_ip");
    hit_refused("{\"dest_port\":65536}", "dest_port");
    hit_refused("{\"proto\":\"UDP\"}", "proto");
    hit_refused("{\"evidence\":\"line\\nbreak\"}", "evidence");
    hit_refused("{\"agency_id\":-1}", "agency_id");
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
    struct srv_principal admin, officer_a, officer_b, auditor, sensor;
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
    tu_add_person(f->db, &f->officer_a, "officer_a", SRV_ROLE_OFFICER, f->a, f->now);
    tu_add_person(f->db, &f->officer_b, "officer_b", SRV_ROLE_OFFICER, f->b, f->now);
    tu_add_person(f->db, &f->auditor, "auditor", SRV_ROLE_AUDITOR, 0, f->now);
    assert_int_equal(store_execf(f->db, NULL,
                                 "INSERT INTO machines (id, agency_id, hostname, cert_sha256,"
                                 " enrolled_at, last_seen) VALUES ($1, $2, 'sensor-1', 'abc', $3,"
                                 " $3)",
                                 "tii", S_ID, f->a, f->now),
                     0);
    snprintf(f->sensor.machine_id, sizeof(f->sensor.machine_id), "%s", S_ID);
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

/* Runs `h` as `who` with route parameter `id` (0: none), query and body,
 * and fails unless the status is `want`. */
static json_t *expect(struct fixture *f, srv_handler h, const struct srv_principal *who,
                      const char *method, int64_t id, const char *query, const char *body,
                      unsigned want)
{
    char param[32];
    unsigned status = 0;
    json_t *j;

    snprintf(param, sizeof(param), "%lld", (long long)id);
    j = tu_call_handler(&f->srv, f->db, h, who, method, id != 0 ? param : NULL, query, body, 1,
                        &status);
    if (status != want) {
        char *text = json_dumps(j, JSON_COMPACT);
        fail_msg("%s %lld ?%s: status %u, wanted %u: %s", method, (long long)id, query ? query : "",
                 status, want, text);
    }
    return j;
}

static void put_networks(struct fixture *f, const struct srv_principal *who, int64_t agency,
                         const char *body, unsigned want)
{
    json_decref(expect(f, api_agency_networks_put, who, "PUT", agency, NULL, body, want));
}

static const char *compact(const json_t *j)
{
    static char buf[8192];
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
    free(s);
    return buf;
}

/* The CIDRs of a GET /agencies/{id}/networks answer, space-separated. */
static const char *cidrs(const json_t *answer)
{
    static char buf[1024];
    const json_t *item;
    size_t i, n = 0;

    buf[0] = '\0';
    json_array_foreach(json_object_get(answer, "items"), i, item) n +=
        (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "",
                         json_string_value(json_object_get(item, "cidr")));
    return buf;
}

static void networks_are_replaced_listed_and_scoped(void **state)
{
    struct fixture *f = need_db(state);
    json_t *j;

    put_networks(f, &f->officer_a, f->a,
                 "{\"networks\":[{\"cidr\":\"10.1.0.7/16\",\"note\":\"Tòa nhà chính\"},"
                 "\"2001:DB8:1::/48\"]}",
                 200);
    j = expect(f, api_agency_networks_get, &f->auditor, "GET", f->a, NULL, NULL, 200);
    assert_string_equal(cidrs(j), "10.1.0.0/16 2001:db8:1::/48");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "items"), 0), "note")),
        "Tòa nhà chính");
    json_decref(j);

    /* PUT replaces the whole list. */
    put_networks(f, &f->officer_a, f->a, "{\"networks\":[\"10.1.0.0/16\",\"10.9.0.0/16\"]}", 200);
    j = expect(f, api_agency_networks_get, &f->officer_a, "GET", f->a, NULL, NULL, 200);
    assert_string_equal(cidrs(j), "10.1.0.0/16 10.9.0.0/16");
    json_decref(j);

    /* Out of scope: B's officer can neither read nor write A's ranges. */
    json_decref(expect(f, api_agency_networks_get, &f->officer_b, "GET", f->a, NULL, NULL, 404));
    put_networks(f, &f->officer_b, f->a, "{\"networks\":[]}", 404);
    /* Auditors are kept out by the route's write flag. */
    assert_true((srv_route_lookup("PUT", "/api/v1/agencies/3/networks")->flags & SRV_WRITE) != 0);
    assert_true((srv_route_lookup("GET", "/api/v1/networks")->flags & SRV_ADMIN) != 0);

    /* A bad entry is named and nothing changes. */
    j = expect(f, api_agency_networks_put, &f->officer_a, "PUT", f->a, NULL,
               "{\"networks\":[\"10.1.0.0/16\",\"10.1.0/33\"]}", 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "networks[1]");
    json_decref(j);
    j = expect(f, api_agency_networks_put, &f->officer_a, "PUT", f->a, NULL,
               "{\"networks\":[\"10.1.0.0/16\",\"10.1.0.9/16\"]}", 400);
    assert_non_null(strstr(compact(j), "listed twice"));
    json_decref(j);
    json_decref(expect(f, api_agency_networks_put, &f->officer_a, "PUT", f->a, NULL,
                       "{\"networks\":\"10.1.0.0/16\"}", 400));

    /* The administrator's list holds every agency's ranges. */
    put_networks(f, &f->admin, f->b, "{\"networks\":[\"10.2.0.0/16\"]}", 200);
    j = expect(f, api_networks_list, &f->admin, "GET", 0, NULL, NULL, 200);
    assert_string_equal(cidrs(j), "10.1.0.0/16 10.2.0.0/16 10.9.0.0/16");
    json_decref(j);

    /* Every change is audited. */
    int64_t n = 0;
    assert_int_equal(store_query_int(f->db, &n,
                                     "SELECT count(*) FROM audit WHERE action = "
                                     "'agency.networks.set'",
                                     ""),
                     STORE_ROW);
    assert_int_equal(n, 3);

    /* An empty list removes them all. */
    put_networks(f, &f->officer_a, f->a, "{\"networks\":[]}", 200);
    j = expect(f, api_agency_networks_get, &f->officer_a, "GET", f->a, NULL, NULL, 200);
    assert_string_equal(cidrs(j), "");
    json_decref(j);
}

static void a_range_overlapping_another_agency_is_refused_with_409(void **state)
{
    struct fixture *f = need_db(state);
    json_t *j;

    put_networks(f, &f->admin, f->a, "{\"networks\":[\"10.1.0.0/16\"]}", 200);
    /* B, beside A, may not take part of A's range, all of it, or more. */
    j = expect(f, api_agency_networks_put, &f->admin, "PUT", f->b, NULL,
               "{\"networks\":[\"10.2.0.0/16\",\"10.1.2.0/24\"]}", 409);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "conflict");
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")),
                           "10.1.2.0/24 overlaps 10.1.0.0/16 of agency A"));
    json_decref(j);
    put_networks(f, &f->admin, f->b, "{\"networks\":[\"10.1.0.0/16\"]}", 409);
    put_networks(f, &f->admin, f->b, "{\"networks\":[\"10.0.0.0/8\"]}", 409);
    /* The refusal changed nothing of B's. */
    j = expect(f, api_agency_networks_get, &f->admin, "GET", f->b, NULL, NULL, 200);
    assert_string_equal(cidrs(j), "");
    json_decref(j);

    /* Along the tree ranges may nest: A1 inside A's, P around both. */
    put_networks(f, &f->officer_a, f->a1, "{\"networks\":[\"10.1.2.0/24\"]}", 200);
    put_networks(f, &f->admin, f->p, "{\"networks\":[\"10.0.0.0/8\"]}", 200);
    /* But a child may not hold a range wider than its parent's. */
    put_networks(f, &f->officer_a, f->a1, "{\"networks\":[\"10.0.0.0/15\"]}", 409);
    /* Apart ranges are fine for anyone. */
    put_networks(f, &f->officer_b, f->b, "{\"networks\":[\"10.2.0.0/16\"]}", 200);
}

/* Posts one batch as the sensor and returns the report. */
static json_t *post(struct fixture *f, json_t *events)
{
    json_t *report = json_object();
    assert_int_equal(srv_ingest_events(f->db, S_ID, events, f->now, report), 0);
    json_decref(events);
    return report;
}

static int64_t agency_of(struct fixture *f, const char *event_id)
{
    int64_t id = 0;
    assert_int_equal(store_query_int(f->db, &id,
                                     "SELECT agency_id FROM c2_hits WHERE event_id = $1", "t",
                                     event_id),
                     STORE_ROW);
    return id;
}

/* The ranges of the tree used below. */
static void province_ranges(struct fixture *f)
{
    put_networks(f, &f->admin, f->p, "{\"networks\":[\"10.0.0.0/8\"]}", 200);
    put_networks(f, &f->admin, f->a, "{\"networks\":[\"10.1.0.0/16\",\"2001:db8:a::/48\"]}", 200);
    put_networks(f, &f->admin, f->a1, "{\"networks\":[\"10.1.2.0/24\",\"2001:db8:a:1::/64\"]}",
                 200);
    put_networks(f, &f->admin, f->b, "{\"networks\":[\"10.2.0.0/16\"]}", 200);
}

static void hits_are_filed_under_the_longest_range(void **state)
{
    struct fixture *f = need_db(state);
    char patch[64];
    json_t *batch = json_array(), *report;

    province_ranges(f);
    json_array_append_new(batch, hit("in-a1", "10.1.2.5", NULL));
    json_array_append_new(batch, hit("in-a", "10.1.9.9", NULL));
    /* The sensor is A's, but the host's range says B. */
    json_array_append_new(batch, hit("in-b", "10.2.0.7", NULL));
    json_array_append_new(batch, hit("in-p", "10.3.0.1", NULL));
    json_array_append_new(batch, hit("in-a1-v6", "2001:db8:a:1::99", NULL));
    json_array_append_new(batch, hit("in-a-v6", "2001:db8:a:2::1", NULL));
    /* No range holds the host: the sensor's word counts inside its own
     * subtree (A1 is below A), not outside it (B), and else its agency. */
    snprintf(patch, sizeof(patch), "{\"agency_id\":%lld}", (long long)f->a1);
    json_array_append_new(batch, hit("said-a1", "192.168.1.1", patch));
    snprintf(patch, sizeof(patch), "{\"agency_id\":%lld}", (long long)f->b);
    json_array_append_new(batch, hit("said-b", "192.168.1.2", patch));
    json_array_append_new(batch, hit("said-none", "192.168.1.3", NULL));
    /* The sensor's word does not override a range. */
    json_array_append_new(batch, hit("said-b-in-a1", "10.1.2.6", patch));
    report = post(f, batch);
    assert_int_equal(json_integer_value(json_object_get(report, "accepted")), 10);
    json_decref(report);

    assert_int_equal(agency_of(f, "in-a1"), f->a1);
    assert_int_equal(agency_of(f, "in-a"), f->a);
    assert_int_equal(agency_of(f, "in-b"), f->b);
    assert_int_equal(agency_of(f, "in-p"), f->p);
    assert_int_equal(agency_of(f, "in-a1-v6"), f->a1);
    assert_int_equal(agency_of(f, "in-a-v6"), f->a);
    assert_int_equal(agency_of(f, "said-a1"), f->a1);
    assert_int_equal(agency_of(f, "said-b"), f->a);
    assert_int_equal(agency_of(f, "said-none"), f->a);
    assert_int_equal(agency_of(f, "said-b-in-a1"), f->a1);

    /* The lookup helper on its own. */
    uint8_t addr[16];
    size_t len = 0;
    int64_t agency = 0;
    assert_int_equal(c2_addr_parse("10.1.2.255", addr, &len), 4);
    assert_int_equal(c2_agency_for_addr(f->db, addr, len, &agency), STORE_ROW);
    assert_int_equal(agency, f->a1);
    assert_int_equal(c2_addr_parse("11.0.0.1", addr, &len), 4);
    assert_int_equal(c2_agency_for_addr(f->db, addr, len, &agency), STORE_DONE);
}

static void a_hit_is_stored_once_and_a_bad_one_rejected_by_index(void **state)
{
    struct fixture *f = need_db(state);
    json_t *batch = json_array(), *report;
    struct store_stmt *st = NULL;

    json_array_append_new(batch, hit("ok-1", "10.1.2.5", NULL));
    json_array_append_new(batch, hit("bad-1", "10.1.2.6", "{\"count\":0}"));
    report = post(f, batch);
    assert_int_equal(json_integer_value(json_object_get(report, "accepted")), 1);
    assert_int_equal(json_integer_value(json_object_get(report, "duplicates")), 0);
    assert_string_equal(compact(json_object_get(report, "rejected")),
                        "[{\"index\":1,\"id\":\"bad-1\",\"message\":\"count: must be an integer"
                        " of at least 1\"}]");
    json_decref(report);

    /* The same id again is a duplicate and adds no row. */
    batch = json_array();
    json_array_append_new(batch, hit("ok-1", "10.1.2.5", "{\"count\":9}"));
    report = post(f, batch);
    assert_int_equal(json_integer_value(json_object_get(report, "accepted")), 0);
    assert_int_equal(json_integer_value(json_object_get(report, "duplicates")), 1);
    json_decref(report);

    assert_int_equal(store_queryf(f->db, &st,
                                  "SELECT machine_id, host, indicator, kind, category, sources,"
                                  " seen_in, observed, proto, src_ip, src_port, dest_ip,"
                                  " dest_port, hit_count, first_seen, last_seen, evidence, input,"
                                  " sensor, received_at FROM c2_hits",
                                  ""),
                     STORE_ROW);
    assert_string_equal(store_col_text(st, 0), S_ID);
    assert_string_equal(store_col_text(st, 1), "10.1.2.5");
    assert_string_equal(store_col_text(st, 2), "evil.example");
    assert_string_equal(store_col_text(st, 3), "domain");
    assert_string_equal(store_col_text(st, 4), "c2");
    assert_string_equal(store_col_text(st, 5), "[{\"source\":\"maltrail\",\"category\":\"c2\","
                                               "\"family\":\"sofacy\",\"confidence\":80,"
                                               "\"expires\":null}]");
    assert_string_equal(store_col_text(st, 6), "dns.query");
    assert_string_equal(store_col_text(st, 7), "a.evil.example");
    assert_string_equal(store_col_text(st, 8), "udp");
    assert_string_equal(store_col_text(st, 9), "10.1.2.5");
    assert_int_equal(store_col_int(st, 10), 1030);
    assert_string_equal(store_col_text(st, 11), "10.0.0.53");
    assert_int_equal(store_col_int(st, 12), 53);
    assert_int_equal(store_col_int(st, 13), 3);
    assert_int_equal(store_col_int(st, 14), 1800000000);
    assert_int_equal(store_col_int(st, 15), 1800000000 + 300);
    assert_string_equal(store_col_text(st, 16), "A? a.evil.example");
    assert_string_equal(store_col_text(st, 17), "pcap");
    assert_string_equal(store_col_text(st, 18), "sensor-1");
    assert_int_equal(store_col_int(st, 19), f->now);
    assert_int_equal(store_step(st), STORE_DONE);
    store_finalize(st);

    /* The event itself is kept like every other. */
    int64_t n = 0;
    assert_int_equal(
        store_query_int(f->db, &n, "SELECT count(*) FROM events WHERE type = 'c2_hit'", ""),
        STORE_ROW);
    assert_int_equal(n, 1);
}

/* Posts `n` hits spread over the tree's ranges, with varied hosts,
 * indicators and times. */
static void seed_hits(struct fixture *f, int n)
{
    static const char *const hosts[] = {"10.1.2.5", "10.1.2.6", "10.1.9.9",
                                        "10.2.0.7", "10.2.0.8", "10.3.0.1"};
    static const char *const values[] = {"evil.example", "bad.example", "198.51.100.7"};
    json_t *batch = json_array(), *report;

    for (int i = 0; i < n; i++) {
        char id[32], patch[300];
        snprintf(id, sizeof(id), "seed-%d", i);
        /* Every fifth is outside the last 30 days. */
        long long last = (long long)(i % 5 == 4 ? f->now - 40 * 86400 : f->now - i * 60);
        snprintf(patch, sizeof(patch),
                 "{\"first_seen\":%lld,\"last_seen\":%lld,\"count\":%d,\"indicator\":{\"kind\":"
                 "\"%s\",\"value\":\"%s\",\"sources\":[{\"source\":\"test\"}]}}",
                 last - 10, last, 1 + i % 4, i % 3 == 2 ? "ip" : "domain", values[i % 3]);
        json_array_append_new(batch, hit(id, hosts[i % 6], patch));
    }
    report = post(f, batch);
    assert_int_equal(json_integer_value(json_object_get(report, "accepted")), n);
    json_decref(report);
}

/* Every hit id in the list as `who` sees it with `query`, walking the
 * cursor `limit` at a time; fails on a repeat. Returns the count. */
static int walk(struct fixture *f, const struct srv_principal *who, const char *query, int limit,
                int64_t only_agency_outside)
{
    char q[256], cursor[64] = "";
    int seen = 0;
    int64_t prev_seen = INT64_MAX, prev_id = INT64_MAX;

    for (;;) {
        json_t *j, *item;
        size_t i;
        snprintf(q, sizeof(q), "limit=%d%s%s%s%s", limit, query[0] ? "&" : "", query,
                 cursor[0] ? "&cursor=" : "", cursor);
        j = expect(f, api_c2_hits_list, who, "GET", 0, q, NULL, 200);
        json_array_foreach(json_object_get(j, "items"), i, item)
        {
            int64_t ls = json_integer_value(json_object_get(item, "last_seen"));
            int64_t id = json_integer_value(json_object_get(item, "id"));
            /* Newest first, strictly: no repeats across pages. */
            assert_true(ls < prev_seen || (ls == prev_seen && id < prev_id));
            prev_seen = ls;
            prev_id = id;
            if (only_agency_outside != 0)
                assert_int_not_equal(
                    json_integer_value(json_object_get(json_object_get(item, "agency"), "id")),
                    only_agency_outside);
            seen++;
        }
        assert_true(json_array_size(json_object_get(j, "items")) <= (size_t)limit);
        if (json_is_null(json_object_get(j, "next_cursor"))) {
            json_decref(j);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s",
                 json_string_value(json_object_get(j, "next_cursor")));
        json_decref(j);
    }
    return seen;
}

static void officers_see_only_their_subtree_and_the_cursor_walks_all(void **state)
{
    struct fixture *f = need_db(state);
    char q[64];
    json_t *j;

    province_ranges(f);
    seed_hits(f, 30);
    /* Each of the six hosts has five hits: 10.1.2.x are A1's (10),
     * 10.1.9.9 A's (5), 10.2.x B's (10) and 10.3.0.1 P's (5). */
    assert_int_equal(walk(f, &f->admin, "", 7, 0), 30);
    assert_int_equal(walk(f, &f->auditor, "", 30, 0), 30);
    assert_int_equal(walk(f, &f->officer_a, "", 4, f->b), 15);
    assert_int_equal(walk(f, &f->officer_b, "", 4, f->a), 10);
    snprintf(q, sizeof(q), "agency=%lld", (long long)f->a1);
    assert_int_equal(walk(f, &f->officer_a, q, 3, 0), 10);
    /* Time bounds on last_seen. */
    snprintf(q, sizeof(q), "since=%lld", (long long)(f->now - 30 * 86400));
    assert_int_equal(walk(f, &f->admin, q, 50, 0), 24);
    snprintf(q, sizeof(q), "until=%lld", (long long)(f->now - 30 * 86400));
    assert_int_equal(walk(f, &f->admin, q, 50, 0), 6);

    /* Another subtree's agency is not found, and bad parameters are named. */
    snprintf(q, sizeof(q), "agency=%lld", (long long)f->b);
    json_decref(expect(f, api_c2_hits_list, &f->officer_a, "GET", 0, q, NULL, 404));
    json_decref(expect(f, api_c2_hits_summary, &f->officer_a, "GET", 0, q, NULL, 404));
    j = expect(f, api_c2_hits_list, &f->admin, "GET", 0, "cursor=12x", NULL, 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "cursor");
    json_decref(j);
    json_decref(expect(f, api_c2_hits_list, &f->admin, "GET", 0, "limit=501", NULL, 400));
    json_decref(expect(f, api_c2_hits_summary, &f->admin, "GET", 0, "days=0", NULL, 400));

    /* One item in full. */
    j = expect(f, api_c2_hits_list, &f->officer_b, "GET", 0, "limit=1", NULL, 200);
    json_t *item = json_array_get(json_object_get(j, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "where")), "dns.query");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(item, "reported_by"), "hostname")),
        "sensor-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(item, "agency"), "code")),
                        "B");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(item, "tuple"), "dest_port")), 53);
    assert_true(json_is_array(json_object_get(json_object_get(item, "indicator"), "sources")));
    json_decref(j);
}

/* A recount of one agency's figures over the last `days` days. */
static void recount(struct fixture *f, int64_t agency, int64_t since, int64_t *hits, int64_t *hosts,
                    int64_t *indicators, int64_t *last)
{
    struct store_stmt *st = NULL;
    assert_int_equal(store_queryf(f->db, &st,
                                  "SELECT count(*), count(DISTINCT host), count(DISTINCT"
                                  " indicator), max(last_seen) FROM c2_hits WHERE agency_id = $1"
                                  " AND last_seen >= $2",
                                  "ii", agency, since),
                     STORE_ROW);
    *hits = store_col_int(st, 0);
    *hosts = store_col_int(st, 1);
    *indicators = store_col_int(st, 2);
    *last = store_col_int(st, 3);
    store_finalize(st);
}

static void the_summary_equals_a_recount(void **state)
{
    struct fixture *f = need_db(state);
    json_t *j, *row;
    size_t i;
    int64_t total = 0, since;

    province_ranges(f);
    seed_hits(f, 30);
    j = expect(f, api_c2_hits_summary, &f->admin, "GET", 0, "days=30", NULL, 200);
    since = json_integer_value(json_object_get(j, "since"));
    assert_true(since >= f->now - 30 * 86400 && since <= srv_now() - 30 * 86400);
    assert_true(json_array_size(json_object_get(j, "agencies")) > 0);
    json_array_foreach(json_object_get(j, "agencies"), i, row)
    {
        int64_t hits, hosts, indicators, last;
        int64_t id = json_integer_value(json_object_get(json_object_get(row, "agency"), "id"));
        recount(f, id, since, &hits, &hosts, &indicators, &last);
        assert_int_equal(json_integer_value(json_object_get(row, "hits")), hits);
        assert_int_equal(json_integer_value(json_object_get(row, "hosts")), hosts);
        assert_int_equal(json_integer_value(json_object_get(row, "indicators")), indicators);
        assert_int_equal(json_integer_value(json_object_get(row, "last_seen")), last);
        total += hits;
    }
    assert_int_equal(total, 24);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "totals"), "hits")), 24);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "totals"), "indicators")), 3);
    /* Top indicators: sorted by hits, summing to the total. */
    total = 0;
    json_int_t prev = INT64_MAX;
    json_array_foreach(json_object_get(j, "top_indicators"), i, row)
    {
        json_int_t h = json_integer_value(json_object_get(row, "hits"));
        assert_true(h <= prev);
        prev = h;
        total += h;
    }
    assert_int_equal(total, 24);
    json_decref(j);

    /* An officer's summary holds its subtree only. */
    j = expect(f, api_c2_hits_summary, &f->officer_b, "GET", 0, NULL, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "agencies")), 1);
    row = json_array_get(json_object_get(j, "agencies"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(row, "agency"), "code")),
                        "B");
    json_decref(j);
}

/* What an officer did about a contact is kept on every hit of it (same
 * host, indicator and agency), only inside the officer's scope. */
static void what_was_done_covers_the_whole_contact(void **state)
{
    struct fixture *f = need_db(state);
    int64_t id = 0, other = 0, n = 0;
    char body[160];
    json_t *j;

    province_ranges(f);
    seed_hits(f, 30);
    /* 10.1.2.5 (A1) met evil.example five times. */
    assert_int_equal(store_query_int(f->db, &id,
                                     "SELECT min(id) FROM c2_hits WHERE host = '10.1.2.5'"
                                     " AND indicator = 'evil.example'",
                                     ""),
                     STORE_ROW);
    snprintf(body, sizeof(body), "{\"status\":\"resolved\",\"note\":\"Đã cách ly máy, cài lại\"}");
    json_decref(expect(f, api_c2_hits_status, &f->officer_b, "POST", id, NULL, body, 404));
    json_decref(expect(f, api_c2_hits_status, &f->officer_a, "POST", id, NULL,
                       "{\"status\":\"fixed\"}", 400));
    json_decref(expect(f, api_c2_hits_status, &f->officer_a, "POST", id, NULL,
                       "{\"status\":\"resolved\",\"same_contact\":1}", 400));
    j = expect(f, api_c2_hits_status, &f->officer_a, "POST", id, NULL, body, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "changed")), 5);
    json_decref(j);
    store_query_int(f->db, &n,
                    "SELECT count(*) FROM c2_hits WHERE status = 'resolved' AND host = '10.1.2.5'"
                    " AND status_note = 'Đã cách ly máy, cài lại' AND status_by IS NOT NULL",
                    "");
    assert_int_equal(n, 5);
    store_query_int(f->db, &n, "SELECT count(*) FROM c2_hits WHERE status = 'new'", "");
    assert_int_equal(n, 25);

    /* The list shows it; one hit alone may be changed back. */
    j = expect(f, api_c2_hits_list, &f->admin, "GET", 0, "limit=500", NULL, 200);
    size_t i, resolved = 0;
    json_t *item;
    json_array_foreach(json_object_get(j, "items"), i, item)
    {
        if (strcmp(json_string_value(json_object_get(item, "status")), "resolved") == 0) {
            resolved++;
            other = json_integer_value(json_object_get(item, "id"));
        }
    }
    json_decref(j);
    assert_int_equal(resolved, 5);
    j = expect(f, api_c2_hits_status, &f->admin, "POST", other, NULL,
               "{\"status\":\"acknowledged\",\"same_contact\":false}", 200);
    assert_int_equal(json_integer_value(json_object_get(j, "changed")), 1);
    json_decref(j);
    store_query_int(f->db, &n, "SELECT count(*) FROM audit WHERE action = 'c2_hit.status'", "");
    assert_int_equal(n, 2);
}

static void a_sensor_checkin_brings_every_range(void **state)
{
    struct fixture *f = need_db(state);
    char *role = NULL;
    json_t *j, *n;

    province_ranges(f);
    /* An agent's check-in has no ranges. */
    j = expect(f, api_agent_checkin, &f->sensor, "POST", 0, NULL, "{\"hostname\":\"sensor-1\"}",
               200);
    assert_null(json_object_get(j, "networks"));
    json_decref(j);

    j = expect(f, api_agent_checkin, &f->sensor, "POST", 0, NULL,
               "{\"hostname\":\"sensor-1\",\"role\":\"sensor\"}", 200);
    n = json_object_get(j, "networks");
    assert_int_equal(json_array_size(n), 6);
    assert_string_equal(json_string_value(json_object_get(json_array_get(n, 0), "cidr")),
                        "10.0.0.0/8");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(n, 0), "agency_id")), f->p);
    assert_string_equal(json_string_value(json_object_get(json_array_get(n, 0), "agency_code")),
                        "P");
    json_decref(j);
    assert_int_equal(
        store_query_text(f->db, &role, "SELECT role FROM machines WHERE id = $1", "t", S_ID),
        STORE_ROW);
    assert_string_equal(role, "sensor");
    free(role);

    /* Once a sensor, later check-ins without the field still get them, and
     * the machine list says what it is. */
    j = expect(f, api_agent_checkin, &f->sensor, "POST", 0, NULL, "{\"hostname\":\"sensor-1\"}",
               200);
    assert_int_equal(json_array_size(json_object_get(j, "networks")), 6);
    json_decref(j);
    j = expect(f, api_machines_list, &f->admin, "GET", 0, NULL, NULL, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "items"), 0), "role")),
        "sensor");
    json_decref(j);

    j = expect(f, api_agent_checkin, &f->sensor, "POST", 0, NULL, "{\"role\":\"router\"}", 400);
    assert_string_equal(json_string_value(json_object_get(j, "field")), "role");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(ranges_are_normalised_and_bad_ones_refused),
        cmocka_unit_test(every_field_of_a_hit_is_checked_and_named),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(networks_are_replaced_listed_and_scoped, setup, teardown),
        cmocka_unit_test_setup_teardown(a_range_overlapping_another_agency_is_refused_with_409,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(hits_are_filed_under_the_longest_range, setup, teardown),
        cmocka_unit_test_setup_teardown(a_hit_is_stored_once_and_a_bad_one_rejected_by_index, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(officers_see_only_their_subtree_and_the_cursor_walks_all,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_summary_equals_a_recount, setup, teardown),
        cmocka_unit_test_setup_teardown(what_was_done_covers_the_whole_contact, setup, teardown),
        cmocka_unit_test_setup_teardown(a_sensor_checkin_brings_every_range, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("c2", plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
