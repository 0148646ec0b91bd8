/*
 * libFuzzer target for indicator lists (lib/ioc/ioc.c), which come from
 * third-party feeds through the server and are read again by every agent.
 * On each input:
 *
 *   - ioc_set_load() never crashes, and the set it builds answers address
 *     and domain lookups made of the input's bytes and lines;
 *   - for each of the first lines that ioc_normalize_line() accepts,
 *     normalising the result again changes nothing, and a set loaded from
 *     that one line holds one indicator that matches its own value.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <khien/khien.h>

#include "ioc.h"
#include "khx.h"

#define CHECKED_LINES 32

/* Looks the canonical value `v` up in `s` the way an agent would see it on
 * the wire; returns 1 when it matches an entry with that same value. */
static int matches_itself(const struct ioc_set *s, const char *v)
{
    char addr[300];
    uint8_t a[16];
    unsigned port = 0;
    struct ioc_match m;
    int family, ok;
    const char *slash = strchr(v, '/'), *colon = strchr(v, ':');

    snprintf(addr, sizeof(addr), "%s", v);
    if (v[0] == '[') {
        char *close = strchr(addr, ']');
        if (close == NULL || sscanf(close + 1, ":%u", &port) != 1)
            return 0;
        *close = '\0';
        memmove(addr, addr + 1, strlen(addr));
        family = AF_INET6;
    } else if (slash != NULL) {
        addr[slash - v] = '\0';
        family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    } else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
        addr[colon - v] = '\0';
        port = (unsigned)atoi(colon + 1);
        family = AF_INET;
    } else if (colon != NULL) {
        family = AF_INET6;
    } else if (inet_pton(AF_INET, v, a) == 1) {
        family = AF_INET;
    } else {
        return ioc_match_domain(s, v, &m) && strcmp(m.value, v) == 0;
    }
    if (inet_pton(family, addr, a) != 1)
        return 0;
    ok = ioc_match_addr(s, family, a, (uint16_t)port, &m);
    return ok && strcmp(m.value, v) == 0;
}

static void check_line(const char *line, size_t n)
{
    char out[IOC_NORMALIZED_MAX], again[IOC_NORMALIZED_MAX], err[256];
    struct ioc_set *s = NULL;
    size_t bad = 0, counts[IOC_KIND_COUNT], total = 0;

    if (ioc_normalize_line(line, n, out, sizeof(out), err, sizeof(err)) != 1)
        return;
    if (ioc_normalize_line(out, strlen(out), again, sizeof(again), err, sizeof(err)) != 1 ||
        strcmp(out, again) != 0)
        abort();
    if (ioc_set_load(out, strlen(out), 0, &s, &bad, err, sizeof(err)) != KH_OK || bad != 0)
        abort();
    ioc_set_counts(s, counts);
    for (int k = 0; k < IOC_KIND_COUNT; k++)
        total += counts[k];
    *strchr(out, ' ') = '\0';
    if (total != 1 || !matches_itself(s, out))
        abort();
    ioc_set_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct ioc_set *s = NULL;
    struct khx_lines it;
    struct ioc_match m;
    const char *line;
    size_t n, bad = 0;
    char err[256], name[300];

    if (ioc_set_load(text, size, 1000, &s, &bad, err, sizeof(err)) == KH_OK) {
        for (size_t i = 0; i + 16 <= size && i < 1024; i += 4) {
            uint16_t port = (uint16_t)(data[i] << 8 | data[i + 1]);
            ioc_match_addr(s, AF_INET, data + i, port, &m);
            ioc_match_addr(s, AF_INET6, data + i, port, &m);
            ioc_match_addr(s, AF_INET6, data + i, 0, NULL);
        }
        khx_lines_init(&it, text, size);
        while (khx_lines_next(&it, &line, &n) && it.lineno <= 256) {
            memcpy(name, line, KHX_MIN(n, sizeof(name) - 1));
            name[KHX_MIN(n, sizeof(name) - 1)] = '\0';
            if (ioc_match_domain(s, name, &m) && m.kind != IOC_DOMAIN)
                abort();
        }
        ioc_set_free(s);
    }

    khx_lines_init(&it, text, size);
    while (khx_lines_next(&it, &line, &n) && it.lineno <= CHECKED_LINES)
        check_line(line, n);
    return 0;
}
