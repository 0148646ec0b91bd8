/*
 * libFuzzer target for what the agent's HTTPS client (agent/client.c) reads
 * from the network before any certificate is in place: the answer to
 * POST /enroll, and the Retry-After header of any answer. On each input:
 *
 *   - the enrollment answer parser never crashes; when it accepts, every
 *     field is within its documented bounds (a NUL-terminated machine id of
 *     UUID characters, PEM texts that start as certificates and are at most
 *     64 KiB, an interval of 1 s to a day), and when it refuses, it hands
 *     out nothing and says why;
 *   - the Retry-After parser never crashes and never answers more than a
 *     day.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <khien/khien.h>

#include "client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct enroll_result res;
    char *cert = NULL, *ca = NULL, err[256] = "";

    int r =
        client_parse_enroll_answer((const char *)data, size, &res, &cert, &ca, err, sizeof(err));
    if (r == KH_OK) {
        size_t n = strnlen(res.machine_id, sizeof(res.machine_id));
        if (n == 0 || n >= sizeof(res.machine_id))
            abort();
        for (size_t i = 0; i < n; i++) {
            char c = res.machine_id[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-'))
                abort();
        }
        if (strnlen(res.key_id, sizeof(res.key_id)) >= sizeof(res.key_id) ||
            strnlen(res.bundle_key, sizeof(res.bundle_key)) >= sizeof(res.bundle_key) ||
            strnlen(res.agency_code, sizeof(res.agency_code)) >= sizeof(res.agency_code) ||
            strnlen(res.agency_name, sizeof(res.agency_name)) >= sizeof(res.agency_name))
            abort();
        if (res.checkin_interval < 1 || res.checkin_interval > 86400)
            abort();
        if (cert == NULL || ca == NULL || strlen(cert) > 64 * 1024 || strlen(ca) > 64 * 1024 ||
            strncmp(cert, "-----BEGIN CERTIFICATE-----", 27) != 0 ||
            strncmp(ca, "-----BEGIN CERTIFICATE-----", 27) != 0)
            abort();
    } else if (cert != NULL || ca != NULL || (r == KH_EFORMAT && err[0] == '\0')) {
        abort();
    }
    free(cert);
    free(ca);

    if (client_parse_retry_after((const char *)data, size, 1795000000) > 86400)
        abort();
    return 0;
}
