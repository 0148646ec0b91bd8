/*
 * Fuzz target: every line-oriented signature loader, through the public
 * builder API. The first byte chooses the source type; the rest is the file.
 * Whatever the input, loading and compiling must not crash, leak or hang.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <khien/khien.h>

static const char *const names[] = {"f.hdb", "f.hsb",    "f.mdb", "f.msb", "f.imp",
                                    "f.fp",  "f.sfp",    "f.ndb", "f.ldb", "f.ign2",
                                    "f.yar", "f.sha256", "f.cvd", "f.cld"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *name = names[data[0] % (sizeof(names) / sizeof(names[0]))];
    struct kh_build_opts o = {.skip_cvd_verify = data[0] & 0x80};
    kh_builder *b = NULL;
    if (kh_builder_new(&o, &b) != KH_OK)
        return 0;
    kh_builder_add_mem(b, name, data + 1, size - 1);
    void *img = NULL;
    size_t len = 0;
    if (kh_builder_compile(b, &img, &len) == KH_OK) {
        kh_engine *e = NULL;
        if (kh_engine_open_image(img, len, &e, NULL, 0) == KH_OK)
            kh_engine_free(e);
    }
    kh_builder_free(b);
    return 0;
}
