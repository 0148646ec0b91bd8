/*
 * libFuzzer target for the e-mail walker (lib/engine/mime.c).
 *
 * The input is walked as a message with small limits; every decoded member
 * is typed and, if it is mail again (a forwarded message, an attached
 * .eml), walked in turn, two levels deep at most, as the scanner would. A
 * second walk starts the input with an mbox "From " line and multipart
 * headers, so that the splitter, the decoders and the name parsers see the
 * fuzzer's bytes without it having to find those headers first.
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
    if (khx_filetype(data, len) == KHX_FT_MAIL && ctx->depth < 2) {
        struct khx_walk_cb cb = {on_member, fuzz_on_issue, ctx};
        ctx->depth++;
        khx_mail_walk(data, len, ctx->lim, ctx->total, &cb);
        ctx->depth--;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct khx_walk_limits lim = fuzz_walk_limits(64);
    uint64_t total = 0;
    struct fuzz_ctx ctx = {&lim, &total, 0};
    struct khx_walk_cb cb = {on_member, fuzz_on_issue, &ctx};
    khx_mail_walk(data, size, &lim, &total, &cb);

    static const char head[] = "From a@b Thu Jan  1 00:00:00 2024\n"
                               "Content-Type: multipart/mixed; boundary=\"=b\"\n\n--=b\n";
    uint8_t *buf = malloc(sizeof(head) - 1 + size);
    if (buf == NULL)
        return 0;
    memcpy(buf, head, sizeof(head) - 1);
    if (size > 0)
        memcpy(buf + sizeof(head) - 1, data, size);
    total = 0;
    khx_mail_walk(buf, sizeof(head) - 1 + size, &lim, &total, &cb);
    free(buf);
    return 0;
}
