/*
 * libFuzzer target for ClamAV containers (lib/engine/cvd.c): the 512-byte
 * header, the tar body (plain or gzip'd), the .info manifest and the two RSA
 * signature decoders. Opening without verification lets mutated bodies reach
 * the tar and manifest parsers; opening as a CLD with verification runs the
 * .info DSIG decoder on whatever the manifest holds.
 */
#include "cvd.h"

#include <stdint.h>
#include <string.h>

static int touch_member(void *ud, const char *name, const uint8_t *data, size_t len)
{
    volatile uint8_t *sink = ud;
    *sink ^= (uint8_t)name[0];
    if (len > 0)
        *sink ^= data[len - 1];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct khx_cvd_header h;
    volatile uint8_t sink = 0;

    memset(&h, 0, sizeof(h));
    (void)khx_cvd_parse_header(data, size, &h, err, sizeof(err));
    (void)khx_cvd_open(data, size, KHX_CVD_NO_VERIFY, NULL, &h, touch_member, (void *)&sink, err,
                       sizeof(err));
    (void)khx_cvd_open(data, size, KHX_CVD_IS_CLD, NULL, &h, touch_member, (void *)&sink, err,
                       sizeof(err));

    /* The signature decoders on a short prefix taken as a dsig string. */
    if (size > 0 && size < 400) {
        char dsig[400];
        uint8_t digest[32] = {0};
        memcpy(dsig, data, size);
        dsig[size] = '\0';
        (void)khx_versig_md5(dsig, "3e249e00076b0b15bb54ced37be880c7", NULL);
        (void)khx_versig2(dsig, digest, &khx_clamav_info_key);
    }
    return 0;
}
