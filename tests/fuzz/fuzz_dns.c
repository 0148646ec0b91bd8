/*
 * libFuzzer target for the sensor's DNS message parser (sensor/app_dns.c,
 * sen_dns_parse): hostile messages with compression loops, long names and
 * lying counts. Every name it reports must fit the 253-character limit of
 * dotted text and contain no NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

static void check_obs(void *ctx, const struct sen_obs *o)
{
    (void)ctx;
    if (o->where != SEN_DNS_QUERY && o->where != SEN_DNS_ANSWER)
        abort();
    if (o->text != NULL && (strlen(o->text) != o->text_len || o->text_len > 253))
        abort();
    if (o->evidence == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sen_tuple t = {0};
    uint8_t *copy = malloc(size ? size : 1);

    memcpy(copy, data, size);
    (void)sen_dns_parse(copy, size, &t, 0, "fuzz", check_obs, NULL);
    free(copy);
    return 0;
}
