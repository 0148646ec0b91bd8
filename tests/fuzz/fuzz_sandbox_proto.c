/*
 * libFuzzer target for the sandbox wire format (lib/sandbox/proto.c): the
 * agent's decoder of worker answers (what a compromised worker controls) and
 * the worker's decoder of requests. Whatever a decoder accepts must satisfy
 * the guarantees the agent relies on (strings terminated inside their
 * arrays, counts within bounds) and must encode back to the same bytes.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

static void check_result(const struct sbx_result *r)
{
    if (r->ndetections > SBX_MAX_DETECTIONS)
        abort();
    for (uint32_t i = 0; i < r->ndetections; i++) {
        if (memchr(r->det[i].name, '\0', sizeof(r->det[i].name)) == NULL ||
            memchr(r->det[i].inner_path, '\0', sizeof(r->det[i].inner_path)) == NULL)
            abort();
        if (r->det[i].kind < 0 || r->det[i].kind >= KH_SIG_KIND_COUNT)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sbx_answer a;
    static uint8_t again[SBX_MSG_MAX];
    char err[256];

    memset(&a, 0, sizeof(a));
    if (sbx_proto_decode_answer(data, size, &a, err, sizeof(err)) == 0) {
        if (a.type == SBX_MSG_RESULT)
            check_result(&a.result);
        if (a.type == SBX_MSG_ERROR && memchr(a.msg, '\0', sizeof(a.msg)) == NULL)
            abort();
        /* The encoding is canonical: decoding then encoding gives the
         * record back, byte for byte. */
        size_t n = sbx_proto_encode_answer(&a, again, sizeof(again));
        if (n != size || memcmp(again, data, size) != 0)
            abort();
    }

    struct sbx_request rq;
    if (sbx_proto_decode_request(data, size, &rq, err, sizeof(err)) == 0) {
        if (memchr(rq.name, '\0', sizeof(rq.name)) == NULL || rq.id == 0)
            abort();
        size_t n = sbx_proto_encode_request(&rq, again, sizeof(again));
        if (n != size || memcmp(again, data, size) != 0)
            abort();
    }
    return 0;
}
