/*
 * libFuzzer target for the compiled indicator store reader (lib/ioc/store.c).
 * A store is a local file, but a truncated or corrupt one (a full disk, a
 * bad copy, a hostile local user) must give an error, never a crash. On
 * each input:
 *
 *   - the bytes as they are go to ioc_store_open_mem();
 *   - then the same bytes with a valid magic, version, byte order and file
 *     size written over the header, so that the fuzzer spends its time on
 *     the section table and the sections rather than on the magic;
 *   - every store that opens answers address, address:port, domain, URL
 *     and fingerprint lookups, made from fixed values and from the input's
 *     own bytes, without reading outside the input (ASan checks).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <khien/khien.h>

#include "store.h"
#include "store_int.h"

static void probe(const struct ioc_store *s, const uint8_t *data, size_t len)
{
    static const char *const names[] = {"evil.example", "a.b.evil.example", "x.y", "EXAMPLE.com.",
                                        "a"};
    static const char *const urls[] = {"bad.example/gate.php?id=1", "http://bad.example/a/b/",
                                       "bad.example", "/"};
    struct ioc_hit h;
    uint8_t a4[4] = {203, 0, 113, 7}, a6[16] = {0x20, 0x01, 0x0d, 0xb8};
    ioc_store_match_addr(s, AF_INET, a4, 0, 1, &h);
    ioc_store_match_addr(s, AF_INET, a4, 443, 1, &h);
    ioc_store_match_addr(s, AF_INET6, a6, 0, 1, &h);
    ioc_store_match_addr(s, AF_INET6, a6, 443, 1, &h);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ioc_store_match_domain(s, names[i], strlen(names[i]), 1, &h);
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
        ioc_store_match_url(s, urls[i], strlen(urls[i]), 1, &h);
    ioc_store_match_fingerprint(s, IOC_JA3, "51c64c77e60f3980eea90869b68c58a8", 32, 1, &h);
    ioc_store_match_fingerprint(s, IOC_JA4, "t13d1516h2_8daaf6152771_e5627efa2ab1", 36, 1, &h);
    /* addresses and names taken from the input */
    for (size_t off = 0; off + 16 <= len && off < 4096; off += 61) {
        ioc_store_match_addr(s, AF_INET, data + off, (uint16_t)(data[off] << 8 | data[off + 1]), 0,
                             &h);
        ioc_store_match_addr(s, AF_INET6, data + off, 0, 0, NULL);
        ioc_store_match_domain(s, (const char *)data + off, 16, 0, &h);
        ioc_store_match_url(s, (const char *)data + off, 16, 0, &h);
        ioc_store_match_fingerprint(s, IOC_JA4, (const char *)data + off, 16, 0, &h);
    }
    struct ioc_store_info info;
    ioc_store_info(s, &info);
}

static void try_open(const uint8_t *data, size_t len)
{
    struct ioc_store *s = NULL;
    char err[256];
    if (ioc_store_open_mem(data, len, &s, err, sizeof(err)) == KH_OK) {
        probe(s, data, len);
        ioc_store_close(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the reader wants 8-byte alignment; a copy also gives ASan exact bounds */
    uint64_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    try_open((const uint8_t *)buf, size);
    if (size >= sizeof(struct store_header)) {
        struct store_header h;
        memcpy(&h, buf, sizeof(h));
        memcpy(h.magic, STORE_MAGIC, 8);
        h.version = STORE_VERSION;
        h.endian = STORE_ENDIAN;
        h.file_bytes = size;
        memcpy(buf, &h, sizeof(h));
        try_open((const uint8_t *)buf, size);
    }
    free(buf);
    return 0;
}
