/*
 * The agent's reading of the policy a check-in carries (agent/policy.c):
 * defaults for what is absent, every field read, and a bad field named in the
 * error while the previous policy stays in force.
 */
#include "testutil.h"

#include <string.h>

#include "agent.h"

static json_t *parse_json(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    return j;
}

static void policy_defaults_protect_everything(void **state)
{
    (void)state;
    struct agent_policy p;
    agent_policy_default(&p);
    assert_true(p.rtp_enabled);
    assert_int_equal(p.nrtp_paths, 1);
    assert_string_equal(p.rtp_paths[0], "/");
    assert_int_equal(p.action, AGENT_ACT_QUARANTINE);
    assert_int_equal(p.rtp_timeout_ms, 5000);
    assert_int_equal(p.conn_interval_s, 60);
    assert_int_equal(p.nscheds, 0);
    agent_policy_free(&p);
}

static void policy_every_field_is_read(void **state)
{
    (void)state;
    struct agent_policy p;
    char err[256] = "";
    json_t *j = parse_json(
        "{\"rtp\":{\"enabled\":true,\"paths\":[\"/home\",\"/srv\"],\"excludes\":[\"/home/big\"],"
        "\"timeout_ms\":2500,\"action\":\"block\"},"
        "\"scheduled_scans\":[{\"name\":\"weekly\",\"paths\":[\"/\"],\"full\":true,"
        "\"days\":[\"sun\",\"wed\"],\"time\":\"02:30\"},{\"days\":[\"daily\"],\"time\":\"12:05\"}],"
        "\"scan\":{\"nice\":15,\"ionice_class\":\"best-effort\",\"max_filesize_mb\":20,"
        "\"archives\":false},\"connections\":{\"enabled\":false,\"interval_s\":30},"
        "\"update_interval_s\":600,\"quarantine_retention_days\":30}");
    assert_int_equal(agent_policy_parse(j, "abc123", &p, err, sizeof(err)), KH_OK);
    assert_string_equal(p.version, "abc123");
    assert_int_equal(p.nrtp_paths, 2);
    assert_string_equal(p.rtp_paths[1], "/srv");
    assert_int_equal(p.nrtp_excludes, 1);
    assert_int_equal(p.rtp_timeout_ms, 2500);
    assert_int_equal(p.action, AGENT_ACT_BLOCK);
    assert_int_equal(p.nscheds, 2);
    assert_string_equal(p.scheds[0].name, "weekly");
    assert_true(p.scheds[0].full);
    assert_int_equal(p.scheds[0].days, (1u << 0) | (1u << 3));
    assert_int_equal(p.scheds[0].minute, 150);
    assert_int_equal(p.scheds[1].days, 0x7f);
    assert_int_equal(p.scheds[1].minute, 12 * 60 + 5);
    assert_int_equal(p.nice, 15);
    assert_false(p.ionice_idle);
    assert_int_equal(p.max_filesize, 20u << 20);
    assert_false(p.archives);
    assert_false(p.conn_enabled);
    assert_int_equal(p.conn_interval_s, 30);
    assert_int_equal(p.update_interval_s, 600);
    assert_int_equal(p.retention_days, 30);
    agent_policy_free(&p);
    json_decref(j);
}

static void policy_bad_field_is_named_and_nothing_changes(void **state)
{
    (void)state;
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"{\"rtp\":{\"paths\":[\"relative\"]}}", "rtp.paths[0]"},
        {"{\"rtp\":{\"timeout_ms\":5}}", "rtp.timeout_ms"},
        {"{\"rtp\":{\"action\":\"delete\"}}", "rtp.action"},
        {"{\"scheduled_scans\":[{\"time\":\"25:00\"}]}", "scheduled_scans[0].time"},
        {"{\"scheduled_scans\":[{},{\"days\":[\"someday\"]}]}", "scheduled_scans[1].days"},
        {"{\"scan\":{\"nice\":40}}", "scan.nice"},
        {"{\"connections\":{\"interval_s\":0}}", "connections.interval_s"},
        {"[1,2]", "policy"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct agent_policy p;
        char err[256] = "";
        agent_policy_default(&p);
        json_t *j = parse_json(cases[i].json);
        assert_int_equal(agent_policy_parse(j, "v", &p, err, sizeof(err)), KH_EFORMAT);
        if (strstr(err, cases[i].field) == NULL)
            fail_msg("case %zu: '%s' does not name %s", i, err, cases[i].field);
        /* The policy in force is untouched. */
        assert_string_equal(p.version, "default");
        assert_int_equal(p.action, AGENT_ACT_QUARANTINE);
        agent_policy_free(&p);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(policy_defaults_protect_everything),
        cmocka_unit_test(policy_every_field_is_read),
        cmocka_unit_test(policy_bad_field_is_named_and_nothing_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
