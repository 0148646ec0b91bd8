/*
 * libFuzzer target for the sensor's packet decoder (sensor/decode.c and the
 * parsers it calls). The first byte picks the link type, the rest is one
 * frame; a second frame is split off at a 0xFF 0xFE 0xFD marker so that
 * the TCP reassembly table sees follow-up segments on the same decoder.
 * Every observation handed to the callback must be well formed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

static const int link_types[] = {1, 12, 101, 228, 229, 113, 276, 0, 108};

static void check_obs(void *ctx, const struct sen_obs *o)
{
    (void)ctx;
    if (o->where < 0 || o->where >= SEN_WHERE_COUNT)
        abort();
    if (o->text != NULL && strlen(o->text) != o->text_len)
        abort();
    if (o->evidence != NULL)
        (void)strlen(o->evidence);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sen_decoder *d;
    struct sen_decoder_opts opts = {.max_flows = 64, .flow_buffer = 4096};
    const uint8_t *mark;
    uint8_t *copy;
    int lt;

    if (d == NULL && sen_decoder_new(&opts, check_obs, NULL, &d) != 0)
        abort();
    if (size < 1)
        return 0;
    lt = link_types[data[0] % (sizeof(link_types) / sizeof(link_types[0]))];
    data++;
    size--;
    mark = memmem(data, size, "\xff\xfe\xfd", 3);
    if (mark != NULL) {
        size_t n = (size_t)(mark - data);
        copy = malloc(n ? n : 1);
        memcpy(copy, data, n);
        sen_decode_packet(d, lt, copy, n, 1);
        free(copy);
        size -= n + 3;
        data = mark + 3;
    }
    /* A heap copy of exactly the frame, so that ASan sees any over-read. */
    copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    sen_decode_packet(d, lt, copy, size, 2);
    free(copy);
    sen_decoder_expire(d, 1000000000LL);
    return 0;
}
