/*
 * libFuzzer target for the embedded-object search (lib/engine/embedded.c).
 *
 * The input is searched as a non-container object with small limits, and
 * every object found is typed and, when it is a container, walked, as the
 * scanner does with them; embedded PE images are searched again, one level
 * deep. A second search runs on the input placed after a few bytes of
 * padding, so that an input starting with a signature is seen at a
 * non-zero offset too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_walk.h"

static int on_member(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct fuzz_ctx *ctx = ud;
    fuzz_touch_str(name);
    fuzz_touch_bytes(data, len);
    enum khx_ftype t = khx_filetype(data, len);
    if (ctx->depth < 1) {
        struct khx_walk_cb cb = {on_member, fuzz_on_issue, ctx};
        ctx->depth++;
        if (khx_ftype_is_container(t))
            khx_container_walk(data, len, t, ctx->lim, ctx->total, &cb);
        else
            khx_embedded_walk(data, len, t, ctx->lim, ctx->total, &cb);
        ctx->depth--;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_walk_limits lim = fuzz_walk_limits(32);
    uint64_t total = 0;
    struct fuzz_ctx ctx = {&lim, &total, 0};
    struct khx_walk_cb cb = {on_member, fuzz_on_issue, &ctx};
    khx_embedded_walk(data, size, khx_filetype(data, size), &lim, &total, &cb);

    uint8_t *buf = malloc(size + 7);
    if (buf == NULL)
        return 0;
    memset(buf, 0xAA, 7);
    if (size > 0)
        memcpy(buf + 7, data, size);
    total = 0;
    khx_embedded_walk(buf, size + 7, KHX_FT_BINARY, &lim, &total, &cb);
    free(buf);
    return 0;
}
