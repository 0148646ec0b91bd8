/*
 * Agency address ranges and C&C hits (c2.h): parsing and normalising CIDRs,
 * the longest-range lookup of an address, the checks of a "c2_hit" event
 * and the row it becomes. Validation is a pure function of one JSON value,
 * so fuzz_events reaches it through srv_ingest_validate_event(); storing
 * runs inside ingest.c's batch transaction.
 */
#include "c2.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Addresses and ranges.                                                     */
/* ------------------------------------------------------------------------ */

int c2_addr_parse(const char *text, uint8_t addr[16], size_t *len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    size_t n = text != NULL ? strlen(text) : 0;

    /* inet_pton reads a NUL-terminated string of its own size: anything
     * longer is not an address, and a zone ("fe80::1%eth0") is not ours. */
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, text, n + 1);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *len = 4;
        return 4;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *len = 16;
        return 6;
    }
    return 0;
}

int c2_range_parse(const char *text, struct c2_range *out, char *err, size_t errlen)
{
    char addr_text[INET6_ADDRSTRLEN + 1], shown[INET6_ADDRSTRLEN];
    const char *slash;
    size_t alen, n = text != NULL ? strlen(text) : 0;
    unsigned max, prefix;

    memset(out, 0, sizeof(*out));
    if (n == 0 || n > INET6_ADDRSTRLEN + 4) {
        snprintf(err, errlen, "is not an address range (like 10.1.2.0/24 or 2001:db8::/48)");
        return -1;
    }
    slash = strchr(text, '/');
    alen = slash != NULL ? (size_t)(slash - text) : n;
    if (alen == 0 || alen >= sizeof(addr_text)) {
        snprintf(err, errlen, "is not an address range (like 10.1.2.0/24 or 2001:db8::/48)");
        return -1;
    }
    memcpy(addr_text, text, alen);
    addr_text[alen] = '\0';
    out->family = c2_addr_parse(addr_text, out->first, &out->addr_len);
    if (out->family == 0) {
        snprintf(err, errlen, "does not start with an IPv4 or IPv6 address");
        return -1;
    }
    max = out->family == 4 ? 32 : 128;
    prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        /* One to three digits, no sign, no spaces: strtoul would accept
         * " +24" and "024" alike. */
        if (*p == '\0' || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p) ||
            (p[0] == '0' && p[1] != '\0')) {
            snprintf(err, errlen, "has a prefix length that is not a number from 0 to %u", max);
            return -1;
        }
        prefix = (unsigned)strtoul(p, NULL, 10);
        if (prefix > max) {
            snprintf(err, errlen, "has a prefix length over %u", max);
            return -1;
        }
    }
    out->prefix = prefix;
    /* Clear the host bits into first, set them into last. */
    for (size_t i = 0; i < out->addr_len; i++) {
        unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
        out->first[i] &= mask;
        out->last[i] = (uint8_t)(out->first[i] | (uint8_t)~mask);
    }
    if (inet_ntop(out->family == 4 ? AF_INET : AF_INET6, out->first, shown, sizeof(shown)) ==
        NULL) {
        snprintf(err, errlen, "cannot be written back");
        return -1;
    }
    snprintf(out->text, sizeof(out->text), "%s/%u", shown, prefix);
    return 0;
}

int c2_agency_for_addr(struct store_db *db, const uint8_t *addr, size_t len, int64_t *agency_id)
{
    struct store_stmt *st = NULL;
    int r;

    /* (family, first_addr) is indexed; the ranges starting at or below the
     * address are few per province, and the longest holding it wins. */
    if ((r = store_prepare(db,
                           "SELECT agency_id FROM agency_networks WHERE family = $1"
                           " AND first_addr <= $2 AND last_addr >= $2"
                           " ORDER BY prefix_len DESC LIMIT 1",
                           &st)) < 0)
        return r;
    if ((r = store_bind_int(st, 1, len == 4 ? 4 : 6)) < 0 ||
        (r = store_bind_blob(st, 2, addr, len)) < 0)
        goto out;
    r = store_step(st);
    if (r == STORE_ROW)
        *agency_id = store_col_int(st, 0);
out:
    store_finalize(st);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The checks of a c2_hit event.                                             */
/* ------------------------------------------------------------------------ */

static int fail(char *msg, size_t msglen, const char *text)
{
    if (msglen > 0)
        snprintf(msg, msglen, "%s", text);
    return -1;
}

/* A JSON string without NUL or control characters, 1..max bytes (0..max
 * when `may_be_empty`); NULL otherwise. */
static const char *text_field(const json_t *v, size_t max, int may_be_empty)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (s == NULL || strlen(s) != n || n > max || (n == 0 && !may_be_empty))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return NULL;
    return s;
}

/* A lowercase word of [a-z0-9._-], 1..max bytes. */
static int word_field(const json_t *v, size_t max)
{
    const char *s = text_field(v, max, 0);

    if (s == NULL)
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
              *s == '-'))
            return 0;
    return 1;
}

static int two_digits(const char *p, int *out)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return 0;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 1;
}

/* "2026-11-21T18:08:42Z", with optional fraction of up to 9 digits and "Z"
 * or "+HH:MM"/"-HH:MM", to Unix seconds; or an integer of Unix seconds.
 * Returns 0, or -1 when it is neither or outside 2000..2100. */
static int parse_time(const json_t *v, int64_t *out)
{
    const char *s = json_string_value(v);
    int y1, y2, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    struct tm tm;
    int64_t t;
    size_t i = 19;

    if (json_is_integer(v)) {
        t = json_integer_value(v);
        goto check;
    }
    if (s == NULL || json_string_length(v) < 20 || json_string_length(v) > 40 ||
        strlen(s) != json_string_length(v))
        return -1;
    if (!two_digits(s, &y1) || !two_digits(s + 2, &y2) || s[4] != '-' || !two_digits(s + 5, &mo) ||
        s[7] != '-' || !two_digits(s + 8, &d) || (s[10] != 'T' && s[10] != 't') ||
        !two_digits(s + 11, &h) || s[13] != ':' || !two_digits(s + 14, &mi) || s[16] != ':' ||
        !two_digits(s + 17, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (s[i] == '.') {
        size_t digits = strspn(s + i + 1, "0123456789");
        if (digits == 0 || digits > 9)
            return -1;
        i += 1 + digits;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        sign = s[i] == '+' ? 1 : -1;
        if (!two_digits(s + i + 1, &oh) || s[i + 3] != ':' || !two_digits(s + i + 4, &om) ||
            oh > 23 || om > 59)
            return -1;
        i += 6;
    } else {
        return -1;
    }
    if (s[i] != '\0')
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y1 * 100 + y2 - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = (int64_t)timegm(&tm) - sign * (int64_t)(oh * 3600 + om * 60);
check:
    if (t < 946684800LL || t > 4102444800LL)
        return -1;
    *out = t;
    return 0;
}

static const char *const indicator_kinds[] = {"ip",  "cidr", "ip_port", "domain",
                                              "url", "ja3",  "ja4",     NULL};

static int validate_sources(const json_t *sources, char *msg, size_t msglen)
{
    const json_t *s;
    size_t i;

    if (!json_is_array(sources) || json_array_size(sources) == 0 ||
        json_array_size(sources) > C2_SOURCES_MAX)
        return fail(msg, msglen, "indicator.sources: must be an array of 1 to 32 sources");
    json_array_foreach(sources, i, s)
    {
        const json_t *conf = json_object_get(s, "confidence"), *exp = json_object_get(s, "expires");
        if (!json_is_object(s))
            return fail(msg, msglen, "indicator.sources[]: each source must be an object");
        if (text_field(json_object_get(s, "source"), C2_WORD_MAX, 0) == NULL)
            return fail(msg, msglen,
                        "indicator.sources[].source: must be a string of 1 to 64 printable bytes");
        if (json_object_get(s, "category") != NULL &&
            text_field(json_object_get(s, "category"), C2_WORD_MAX, 1) == NULL)
            return fail(msg, msglen, "indicator.sources[].category: at most 64 printable bytes");
        if (json_object_get(s, "family") != NULL && !json_is_null(json_object_get(s, "family")) &&
            text_field(json_object_get(s, "family"), C2_WORD_MAX, 1) == NULL)
            return fail(msg, msglen, "indicator.sources[].family: at most 64 printable bytes");
        if (conf != NULL && !json_is_null(conf) &&
            (!json_is_integer(conf) || json_integer_value(conf) < 0 ||
             json_integer_value(conf) > 100))
            return fail(msg, msglen, "indicator.sources[].confidence: an integer from 0 to 100");
        if (exp != NULL && !json_is_null(exp) && !json_is_integer(exp) &&
            text_field(exp, 40, 0) == NULL)
            return fail(msg, msglen, "indicator.sources[].expires: null, a time or Unix seconds");
    }
    return 0;
}

/* The optional 5-tuple: proto a word, addresses parse, ports 0..65535. */
static int validate_tuple(const json_t *ev, char *msg, size_t msglen)
{
    static const char *const addrs[] = {"src_ip", "dest_ip"};
    static const char *const ports[] = {"src_port", "dest_port"};
    const json_t *v;

    if ((v = json_object_get(ev, "proto")) != NULL && !json_is_null(v) && !word_field(v, 16))
        return fail(msg, msglen, "proto: must be a lowercase word such as tcp or udp");
    for (size_t i = 0; i < 2; i++) {
        uint8_t a[16];
        size_t len;
        if ((v = json_object_get(ev, addrs[i])) == NULL || json_is_null(v))
            continue;
        if (text_field(v, 64, 0) == NULL || c2_addr_parse(json_string_value(v), a, &len) == 0) {
            snprintf(msg, msglen, "%s: must be an IPv4 or IPv6 address", addrs[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < 2; i++) {
        if ((v = json_object_get(ev, ports[i])) == NULL || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535) {
            snprintf(msg, msglen, "%s: must be an integer from 0 to 65535", ports[i]);
            return -1;
        }
    }
    return 0;
}

int c2_validate_hit(const json_t *ev, char *msg, size_t msglen)
{
    const json_t *ind = json_object_get(ev, "indicator"), *v;
    const char *kind;
    int64_t first = 0, last = 0;
    uint8_t addr[16];
    size_t len;

    if (text_field(json_object_get(ev, "host"), 64, 0) == NULL ||
        c2_addr_parse(json_string_value(json_object_get(ev, "host")), addr, &len) == 0)
        return fail(msg, msglen, "host: must be the internal host's IPv4 or IPv6 address");
    if (!word_field(json_object_get(ev, "where"), 32))
        return fail(msg, msglen, "where: must be a word such as dns.query, tls.sni or ip.dst");
    if (!json_is_object(ind))
        return fail(msg, msglen, "indicator: must be an object with value, kind and sources");
    if (text_field(json_object_get(ind, "value"), C2_INDICATOR_MAX, 0) == NULL)
        return fail(msg, msglen, "indicator.value: must be a string of 1 to 2048 printable bytes");
    kind = json_string_value(json_object_get(ind, "kind"));
    for (size_t i = 0; kind != NULL && indicator_kinds[i] != NULL; i++)
        if (strcmp(kind, indicator_kinds[i]) == 0)
            goto kind_ok;
    return fail(msg, msglen, "indicator.kind: must be ip, cidr, ip_port, domain, url, ja3 or ja4");
kind_ok:
    if (validate_sources(json_object_get(ind, "sources"), msg, msglen) != 0)
        return -1;
    v = json_object_get(ev, "count");
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return fail(msg, msglen, "count: must be an integer of at least 1");
    if (parse_time(json_object_get(ev, "first_seen"), &first) != 0)
        return fail(msg, msglen, "first_seen: must be an RFC 3339 time (or Unix seconds)");
    if (parse_time(json_object_get(ev, "last_seen"), &last) != 0)
        return fail(msg, msglen, "last_seen: must be an RFC 3339 time (or Unix seconds)");
    if (last < first)
        return fail(msg, msglen, "last_seen: must not be before first_seen");
    if ((v = json_object_get(ev, "category")) != NULL && !json_is_null(v) &&
        text_field(v, C2_WORD_MAX, 1) == NULL)
        return fail(msg, msglen, "category: at most 64 printable bytes");
    if ((v = json_object_get(ev, "observed")) != NULL && !json_is_null(v) &&
        text_field(v, C2_OBSERVED_MAX, 1) == NULL)
        return fail(msg, msglen, "observed: at most 2048 printable bytes");
    if ((v = json_object_get(ev, "evidence")) != NULL && !json_is_null(v) &&
        text_field(v, C2_EVIDENCE_MAX, 1) == NULL)
        return fail(msg, msglen, "evidence: at most 4096 printable bytes");
    if ((v = json_object_get(ev, "sensor")) != NULL && !json_is_null(v) &&
        text_field(v, C2_SENSOR_NAME_MAX, 1) == NULL)
        return fail(msg, msglen, "sensor: at most 255 printable bytes");
    if ((v = json_object_get(ev, "input")) != NULL && !json_is_null(v) &&
        text_field(v, 32, 1) == NULL)
        return fail(msg, msglen, "input: at most 32 printable bytes");
    if ((v = json_object_get(ev, "agency_id")) != NULL && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) < 0))
        return fail(msg, msglen, "agency_id: must be a non-negative integer or null");
    if ((v = json_object_get(ev, "agency_code")) != NULL && !json_is_null(v) &&
        text_field(v, C2_WORD_MAX, 1) == NULL)
        return fail(msg, msglen, "agency_code: at most 64 printable bytes");
    return validate_tuple(ev, msg, msglen);
}

/* ------------------------------------------------------------------------ */
/* Storing a hit.                                                            */
/* ------------------------------------------------------------------------ */

static const char *str_or(const json_t *o, const char *name, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s != NULL ? s : dflt;
}

/* The hit's category: the event's own, else the first source's, else
 * "malware" (the indicator lists' default). */
static const char *hit_category(const json_t *ev)
{
    const char *c = json_string_value(json_object_get(ev, "category"));
    const json_t *first =
        json_array_get(json_object_get(json_object_get(ev, "indicator"), "sources"), 0);

    if (c == NULL || c[0] == '\0')
        c = json_string_value(json_object_get(first, "category"));
    return c != NULL && c[0] != '\0' ? c : "malware";
}

/* The agency a hit is filed under (c2.h). */
static int hit_agency(struct store_db *db, int64_t machine_agency, const json_t *ev,
                      int64_t *agency_id)
{
    uint8_t addr[16];
    size_t len = 0;
    int64_t sent = json_integer_value(json_object_get(ev, "agency_id")), found = 0;
    int r;

    *agency_id = machine_agency;
    if (c2_addr_parse(str_or(ev, "host", ""), addr, &len) == 0)
        return 0;
    r = c2_agency_for_addr(db, addr, len, &found);
    if (r < 0)
        return r;
    if (r == STORE_ROW) {
        *agency_id = found;
        return 0;
    }
    if (sent <= 0 || sent == machine_agency)
        return 0;
    /* The sensor's word counts only inside its own part of the tree. */
    r = store_query_int(db, &found,
                        "SELECT a.id FROM agencies a, agencies m WHERE a.id = $1 AND m.id = $2"
                        " AND a.path LIKE m.path || '%'",
                        "ii", sent, machine_agency);
    if (r < 0)
        return r;
    if (r == STORE_ROW)
        *agency_id = found;
    return 0;
}

#define HIT_INSERT                                                                                 \
    "INSERT INTO c2_hits (event_id, machine_id, agency_id, host, indicator, kind, category,"       \
    " sources, seen_in, observed, proto, src_ip, src_port, dest_ip, dest_port, hit_count,"         \
    " first_seen, last_seen, evidence, input, sensor, received_at) VALUES ($1, $2, $3, $4, $5,"    \
    " $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"            \
    " ON CONFLICT (machine_id, event_id) DO NOTHING"

int c2_store_hit(struct store_db *db, const char *machine_id, int64_t machine_agency,
                 const json_t *ev, int64_t now)
{
    const json_t *ind = json_object_get(ev, "indicator");
    struct store_stmt *st = NULL;
    char *sources = NULL, *host = NULL;
    int64_t agency_id = machine_agency, first = 0, last = 0;
    uint8_t addr[16];
    size_t len = 0;
    char shown[INET6_ADDRSTRLEN];
    int r, k = 1;

    if ((r = hit_agency(db, machine_agency, ev, &agency_id)) < 0)
        goto out;
    if (parse_time(json_object_get(ev, "first_seen"), &first) != 0 ||
        parse_time(json_object_get(ev, "last_seen"), &last) != 0) {
        r = STORE_EINVAL;
        goto out;
    }
    /* The host is kept in its canonical text so that "distinct hosts"
     * counts 2001:db8::1 and 2001:DB8:0::1 once. */
    if (c2_addr_parse(str_or(ev, "host", ""), addr, &len) != 0 &&
        inet_ntop(len == 4 ? AF_INET : AF_INET6, addr, shown, sizeof(shown)) != NULL)
        host = strdup(shown);
    sources = json_dumps(json_object_get(ind, "sources"), JSON_COMPACT);
    if (sources == NULL || host == NULL) {
        r = STORE_ENOMEM;
        goto out;
    }
    if ((r = store_prepare(db, HIT_INSERT, &st)) < 0)
        goto out;
    if ((r = store_bind_text(st, k++, str_or(ev, "id", ""))) < 0 ||
        (r = store_bind_text(st, k++, machine_id)) < 0 ||
        (r = store_bind_int(st, k++, agency_id)) < 0 || (r = store_bind_text(st, k++, host)) < 0 ||
        (r = store_bind_text(st, k++, str_or(ind, "value", ""))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ind, "kind", ""))) < 0 ||
        (r = store_bind_text(st, k++, hit_category(ev))) < 0 ||
        (r = store_bind_text(st, k++, sources)) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "where", ""))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "observed", ""))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "proto", ""))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "src_ip", ""))) < 0 ||
        (r = store_bind_int(st, k++, json_integer_value(json_object_get(ev, "src_port")))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "dest_ip", ""))) < 0 ||
        (r = store_bind_int(st, k++, json_integer_value(json_object_get(ev, "dest_port")))) < 0 ||
        (r = store_bind_int(st, k++, json_integer_value(json_object_get(ev, "count")))) < 0 ||
        (r = store_bind_int(st, k++, first)) < 0 || (r = store_bind_int(st, k++, last)) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "evidence", ""))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "input", ""))) < 0 ||
        (r = store_bind_text(st, k++, str_or(ev, "sensor", ""))) < 0 ||
        (r = store_bind_int(st, k++, now)) < 0)
        goto out;
    r = store_step(st);
    r = r < 0 ? r : 0;
out:
    store_finalize(st);
    free(sources);
    free(host);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The ranges for a sensor.                                                  */
/* ------------------------------------------------------------------------ */

int c2_networks_for_sensor(struct store_db *db, json_t **out)
{
    struct store_stmt *st = NULL;
    json_t *list = json_array(), *item;
    int r;

    if (list == NULL)
        return STORE_ENOMEM;
    r = store_prepare(db,
                      "SELECT n.cidr, n.agency_id, a.code FROM agency_networks n"
                      " JOIN agencies a ON a.id = n.agency_id ORDER BY n.family, n.first_addr,"
                      " n.prefix_len",
                      &st);
    while (r >= 0 && (r = store_step(st)) == STORE_ROW) {
        item = json_pack("{s:s, s:I, s:s}", "cidr", store_col_text(st, 0), "agency_id",
                         (json_int_t)store_col_int(st, 1), "agency_code", store_col_text(st, 2));
        if (item == NULL || json_array_append_new(list, item) != 0)
            r = STORE_ENOMEM;
    }
    store_finalize(st);
    if (r < 0) {
        json_decref(list);
        return r;
    }
    *out = list;
    return 0;
}
