/*
 * libFuzzer target for file typing, both normalisers and the container walk
 * (lib/engine/filetype.c, normalize.c, container.c, and mime.c through the
 * KHX_FT_MAIL dispatch).
 *
 * The input is typed and normalised as a whole; containers are walked with
 * small limits, and every extracted member is typed, normalised and (two
 * levels deep at most) walked again, as the scanner does. The first byte
 * also picks a container reader to force onto the rest of the input, so each
 * libarchive reader sees malformed data even without a matching magic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_walk.h"

static void exercise(const uint8_t *data, size_t len)
{
    uint8_t *out = malloc(len ? len : 1);
    if (out == NULL)
        return;
    khx_normalize_ascii(data, len, out);
    khx_normalize_html(data, len, out);
    free(out);
}

static void on_issue(void *ud, const char *name, int issue, const char *detail)
{
    char heur[96];
    khx_walk_issue_name(issue, KHX_FT_ZIP, heur, sizeof(heur));
    fuzz_on_issue(ud, name, issue, detail);
    fuzz_touch_str(heur);
}

static int on_member(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct fuzz_ctx *ctx = ud;
    fuzz_touch_str(name);
    enum khx_ftype t = khx_filetype(data, len);
    exercise(data, len);
    if (khx_ftype_is_container(t) && ctx->depth < 2) {
        struct khx_walk_cb cb = {on_member, on_issue, ctx};
        ctx->depth++;
        khx_container_walk(data, len, t, ctx->lim, ctx->total, &cb);
        ctx->depth--;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_walk_limits lim = fuzz_walk_limits(32);
    uint64_t total = 0;
    struct fuzz_ctx ctx = {&lim, &total, 0};
    struct khx_walk_cb cb = {on_member, on_issue, &ctx};

    enum khx_ftype t = khx_filetype(data, size);
    khx_ftype_name(t);
    khx_ftype_cltype(t);
    exercise(data, size);
    if (khx_ftype_is_container(t))
        khx_container_walk(data, size, t, &lim, &total, &cb);

    if (size > 1) {
        enum khx_ftype forced =
            (enum khx_ftype)(KHX_FT_ZIP + data[0] % (KHX_FT_MAIL - KHX_FT_ZIP + 1));
        total = 0;
        khx_container_walk(data + 1, size - 1, forced, &lim, &total, &cb);
    }
    return 0;
}
