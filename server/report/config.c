/*
 * The report keys of the server's configuration file (struct
 * srv_report_config in server.h): the index, the quarterly report's
 * deadline, the province's identity, sharing with the national malware
 * monitoring system and federation with a parent server. config.c hands
 * every key it does not know to srv_report_config_set(), so one file keeps
 * the syntax and this one the meaning. docs/SERVER.md lists every key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* The default index (report/index.h): the share of managed machines that
 * were infected, weighted most, then machines not updated and agency
 * addresses seen talking to C&C per 100 managed machines, and what is
 * missing from coverage and sharing. 0 is clean, 100 is the worst. */
#define DEFAULT_FORMULA                                                                            \
    "min(100, 60*infected_rate + 15*stale_rate + 10*min(1, c2_hosts/max(1, managed)) + "           \
    "10*(1 - coverage) + 5*(1 - sharing_uptime))"

void srv_report_config_defaults(struct srv_report_config *c)
{
    memset(c, 0, sizeof(*c));
    c->utc_offset = 7 * 3600;
    c->stale_days = 15;
    snprintf(c->index_formula, sizeof(c->index_formula), "%s", DEFAULT_FORMULA);
    c->deadline_day = 20;
    c->reminder_day = 1;
    snprintf(c->product_name, sizeof(c->product_name), "Khien");
    c->share_interval = 86400;
    c->share_retry = 600;
    c->parent_interval = 3600;
}

static int copy(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

static int parse_day(const char *v, unsigned *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 1 || n > 28)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* "+07:00", "-03:30", "+7", "0", "UTC". */
static int parse_offset(const char *v, int *out)
{
    if (strcmp(v, "UTC") == 0 || strcmp(v, "Z") == 0) {
        *out = 0;
        return 0;
    }
    int sign = 1;
    if (*v == '+' || *v == '-')
        sign = *v++ == '-' ? -1 : 1;
    char *end;
    long h = strtol(v, &end, 10), m = 0;
    if (end == v || h < 0 || h > 14)
        return -1;
    if (*end == ':') {
        const char *mv = end + 1;
        m = strtol(mv, &end, 10);
        if (end != mv + 2 || m < 0 || m > 59)
            return -1;
    }
    if (*end != '\0')
        return -1;
    *out = sign * (int)(h * 3600 + m * 60);
    return 0;
}

#define STR(key, field)                                                                            \
    if (strcmp(k, key) == 0)                                                                       \
        return copy(c->field, sizeof(c->field), v);

int srv_report_config_set(struct srv_report_config *c, const char *k, const char *v)
{
    if (strcmp(k, "report_utc_offset") == 0)
        return parse_offset(v, &c->utc_offset);
    if (strcmp(k, "index_stale_days") == 0) {
        char *end;
        long n = strtol(v, &end, 10);
        if (end == v || *end != '\0' || n < 1 || n > 365)
            return -1;
        c->stale_days = (unsigned)n;
        return 0;
    }
    if (strcmp(k, "index_formula") == 0)
        return v[0] == '\0' ? -1 : copy(c->index_formula, sizeof(c->index_formula), v);
    if (strcmp(k, "report_deadline_day") == 0)
        return parse_day(v, &c->deadline_day);
    if (strcmp(k, "report_reminder_day") == 0)
        return parse_day(v, &c->reminder_day);
    STR("org_id", org_id)
    STR("org_name", org_name)
    STR("org_address", org_address)
    STR("org_email", org_email)
    STR("org_phone", org_phone)
    STR("org_fax", org_fax)
    STR("org_website", org_website)
    STR("org_place", org_place)
    STR("product_name", product_name)
    STR("share_url", share_url)
    STR("share_pkcs12", share_pkcs12)
    STR("share_pkcs12_pass_file", share_pkcs12_pass_file)
    STR("share_pkcs11_module", share_pkcs11_module)
    STR("share_pkcs11_key", share_pkcs11_key)
    STR("share_pkcs11_pin_file", share_pkcs11_pin_file)
    STR("share_cert", share_cert)
    STR("share_ca", share_ca)
    STR("share_reject_text", share_reject_text)
    STR("parent_url", parent_url)
    STR("parent_token_file", parent_token_file)
    STR("parent_ca", parent_ca)
    if (strcmp(k, "share_interval") == 0)
        return srv_parse_duration(v, &c->share_interval) != 0 || c->share_interval < 60 ? -1 : 0;
    if (strcmp(k, "share_retry") == 0)
        return srv_parse_duration(v, &c->share_retry) != 0 || c->share_retry < 1 ? -1 : 0;
    if (strcmp(k, "parent_interval") == 0)
        return srv_parse_duration(v, &c->parent_interval) != 0 || c->parent_interval < 10 ? -1 : 0;
    return -2;
}
