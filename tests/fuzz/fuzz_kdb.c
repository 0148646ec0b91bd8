/*
 * Fuzz target: the .kdb loader. A valid image with every section kind is
 * built once; each input is a list of (offset, byte) patches applied to a
 * copy, after which the checksum is recomputed so that the loader's record
 * checks (not just the checksum) see the damage. Opening must fail cleanly
 * or succeed with an engine that can scan.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

static uint8_t *base;
static size_t base_len;
/* PCRE2, libyara and Hyperscan trust their own serialized forms (a damaged
 * one can assert, leak or worse). The image's SHA-256, and the signed update
 * bundle around it, protect those sections; the fuzzer patches only the
 * records our own loader must check. */
struct range {
    size_t lo, hi;
};
static struct range opaque[8];
static unsigned nopaque;

static int in_opaque(size_t at)
{
    for (unsigned i = 0; i < nopaque; i++)
        if (at >= opaque[i].lo && at < opaque[i].hi)
            return 1;
    return 0;
}

static void build_base(void)
{
    static const char *const srcs[][2] = {
        {"a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Eicar.Hdb\n"
                  "44d88612fea8a8f36de82e1278abb02f:*:Eicar.Any:73\n"},
        {"a.mdb", "512:23db1dd3f77fae25610b6a32701313ae:Sect\n"},
        {"a.imp", "98c88d882f01a3f6ac1e5f7dfd761624:39:Imp\n"},
        {"a.fp", "aa15bcf478d165efd2065190eb473bcb:544:Allowed\n"},
        {"a.ndb", "Body.Any:0:*:4549434152{1-3}5354414e44415244\nBody.Ep:1:EP+0,8:5589e5\n"
                  "Body.Eof:0:EOF-2:482a\nBody.Ascii:7:*:68656c6c6f\n"},
        {"a.ldb", "Ldb.One;Engine:51-255,Target:0;0&1;4549434152;482b\n"
                  "Ldb.Pcre;Engine:81-255,Target:0;0&1;4549434152;0/TEST-FILE/\n"
                  "Ldb.Zero;Engine:51-255,Target:0;0=0;7a7a7a7a\n"},
        {"a.yar", "rule R { strings: $a = \"EICAR\" condition: $a }\n"},
    };
    kh_builder *b = NULL;
    if (kh_builder_new(NULL, &b) != KH_OK)
        abort();
    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++)
        kh_builder_add_mem(b, srcs[i][0], srcs[i][1], strlen(srcs[i][1]));
    void *img;
    if (kh_builder_compile(b, &img, &base_len) != KH_OK)
        abort();
    base = img;
    kh_builder_free(b);
    const struct kdb_header *h = (const void *)base;
    const struct kdb_section *secs = (const void *)(base + sizeof(*h));
    /* The section table too: a patched entry could point an opaque section
     * at other bytes. */
    opaque[nopaque].lo = sizeof(*h);
    opaque[nopaque].hi = sizeof(*h) + h->nsections * sizeof(*secs);
    nopaque++;
    for (uint32_t i = 0; i < h->nsections; i++) {
        uint32_t id = secs[i].id;
        if ((id == KDB_SEC_BLOBS || id == KDB_SEC_YARA ||
             (id >= KDB_SEC_HS_BASE && id < KDB_SEC_HS_BASE + KDB_VIEW_COUNT)) &&
            nopaque < 8) {
            opaque[nopaque].lo = secs[i].offset;
            opaque[nopaque].hi = secs[i].offset + secs[i].length;
            nopaque++;
        }
    }
}

static int count_hit(void *ud, const struct kh_detection *d)
{
    (void)d;
    ++*(unsigned *)ud;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (base == NULL)
        build_base();
    uint8_t *img = malloc(base_len);
    if (img == NULL)
        return 0;
    memcpy(img, base, base_len);
    /* Patches of 5 bytes: 4-byte little-endian offset, 1 byte value. */
    for (size_t i = 0; i + 5 <= size; i += 5) {
        uint32_t off = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
                       (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
        size_t at = off % base_len;
        if (in_opaque(at))
            continue;
        img[at] = data[i + 4];
    }
    if (base_len > sizeof(struct kdb_header))
        khx_sha256(img + sizeof(struct kdb_header), base_len - sizeof(struct kdb_header),
                   ((struct kdb_header *)img)->sha256);
    kh_engine *e = NULL;
    char err[256];
    if (kh_engine_open_image(img, base_len, &e, err, sizeof(err)) == KH_OK) {
        kh_scanner *s = NULL;
        if (kh_scanner_new(e, NULL, &s) == KH_OK) {
            static const char eicar[] =
                "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
            unsigned hits = 0;
            kh_scan_mem(s, eicar, sizeof(eicar) - 1, "x", count_hit, &hits, NULL);
            kh_scanner_free(s);
        }
        kh_engine_free(e);
    }
    return 0;
}
