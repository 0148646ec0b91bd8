/*
 * libFuzzer target for signed bundles (lib/common/bundle.c), the file every
 * agent downloads. Three things are checked on each input:
 *
 *   - the verifier, given the input as a bundle and a fixed trusted key,
 *     never crashes and never accepts it (the fuzzer cannot sign);
 *   - the manifest parser, given the input as JSON, never crashes, and
 *     what it accepts is within the documented ranges;
 *   - a bundle built around the input, its first part as the .kdb and the
 *     rest as the indicator list (none when the input is shorter than 2
 *     bytes or its first byte is even), verifies and yields both parts
 *     back, with every field as written.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "khx_bundle.h"

static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];

static void init_keys(void)
{
    static int done;
    if (done)
        return;
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, 0x4b, sizeof(seed));
    if (sodium_init() < 0 || crypto_sign_seed_keypair(pk, sk, seed) != 0)
        abort();
    done = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_bundle_manifest m;
    struct khx_buf buf;
    char why[256];
    size_t off = 0;

    init_keys();

    if (khx_bundle_verify(data, size, pk, &m, &off, why, sizeof(why)) == KH_OK)
        abort();

    if (khx_bundle_parse_manifest((const char *)data, size, &m, why, sizeof(why)) == KH_OK &&
        (m.format != KHX_BUNDLE_FORMAT || m.version < 0 || m.signatures < 0 ||
         m.kdb_size > (uint64_t)INT64_MAX || m.ioc_size > (uint64_t)INT64_MAX || m.indicators < 0 ||
         (m.ioc_size == 0 && m.indicators != 0) || strlen(m.key_id) != KHX_BUNDLE_KEY_ID_LEN))
        abort();

    size_t kdb_len = size >= 2 && (data[0] & 1) ? size / 2 : size, ioc_len = size - kdb_len;
    int64_t lines = ioc_len > 0 ? 1 + (int64_t)(ioc_len % 7) : 0;
    khx_buf_init(&buf, size + 1024);
    if (khx_bundle_build(data, kdb_len, ioc_len ? data + kdb_len : NULL, ioc_len, lines, 42,
                         1790000000, 3, sk, &buf) != KH_OK)
        abort();
    if (khx_bundle_verify(buf.data, buf.len, pk, &m, &off, why, sizeof(why)) != KH_OK ||
        m.version != 42 || m.created_at != 1790000000 || m.signatures != 3 ||
        m.kdb_size != kdb_len || m.ioc_size != ioc_len || m.indicators != lines ||
        off + size != buf.len || (size > 0 && memcmp(buf.data + off, data, size) != 0))
        abort();
    khx_buf_free(&buf);
    return 0;
}
