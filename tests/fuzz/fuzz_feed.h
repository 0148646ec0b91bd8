/*
 * Shared body of the feed reader fuzz targets (tests/fuzz/fuzz_feed_*.c):
 * runs one reader over the input, copied into a buffer of exactly its size
 * so that any read past the end is caught, and checks every record it
 * produces — a known kind, a value within IOC_VALUE_MAX, category and
 * source words present, and a value that normalises to itself (so two feeds
 * writing one indicator differently always meet on one key).
 */
#ifndef KHIEN_FUZZ_FEED_H
#define KHIEN_FUZZ_FEED_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"

static int fuzz_feed_check(void *ctx, const struct ioc_record *r)
{
    char again[IOC_VALUE_MAX + 1], err[200];
    (void)ctx;
    if (r->kind < 0 || r->kind >= IOC_KIND_COUNT || r->value == NULL || r->category == NULL ||
        r->source == NULL || r->category[0] == '\0' || r->source[0] == '\0' || r->confidence > 100)
        abort();
    size_t n = strlen(r->value);
    if (n == 0 || n > IOC_VALUE_MAX || strlen(r->category) > IOC_WORD_MAX ||
        (r->family != NULL && strlen(r->family) > IOC_WORD_MAX))
        abort();
    int k = ioc_normalize_value(r->kind, r->value, n, again, err, sizeof(err));
    if (k != r->kind || strcmp(again, r->value) != 0)
        abort();
    return 0;
}

static void fuzz_feed_run(enum ioc_format fmt, const uint8_t *data, size_t size,
                          const struct ioc_read_opts *opts)
{
    char *copy = malloc(size ? size : 1);
    struct ioc_read_stats st;
    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    (void)ioc_read_feed(fmt, copy, size, opts, fuzz_feed_check, NULL, &st);
    if (st.records > size + 1 || memchr(st.first_error, '\0', sizeof(st.first_error)) == NULL)
        abort();
    free(copy);
}

#endif
