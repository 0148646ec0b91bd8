/* One-shot message digests and the monotonic clock; see khx.h. */
#include "khx.h"

#include <time.h>

#include <openssl/evp.h>

static int digest(const EVP_MD *md, const void *data, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, md, NULL) == 1 ? KH_OK : KH_ENOMEM;
}

int khx_md5(const void *data, size_t len, uint8_t out[16])
{
    return digest(EVP_md5(), data, len, out);
}

int khx_sha1(const void *data, size_t len, uint8_t out[20])
{
    return digest(EVP_sha1(), data, len, out);
}

int khx_sha256(const void *data, size_t len, uint8_t out[32])
{
    return digest(EVP_sha256(), data, len, out);
}

uint64_t khx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
