/*
 * libFuzzer target for the log readers (sensor/log*.c), which read lines
 * that any host on the network can put in a syslog stream. The first byte
 * picks the format (every one, auto included); the rest is split into
 * lines that one reader reads in turn, so stateful formats (Zeek's #fields
 * header, auto mode's last format, Unbound's query/reply choice) see
 * sequences. Each observation is checked for the invariants the detector
 * relies on: a known place, text with its length, evidence of at most
 * 512 bytes, and an address family that matches the address kind.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "logs.h"

static volatile unsigned text_sum;

static void check(void *ctx, const struct sen_obs *o)
{
    (void)ctx;
    if (o->where < 0 || o->where >= SEN_WHERE_COUNT)
        abort();
    if (o->text != NULL) {
        /* Reading every byte lets ASan catch a length that overruns. */
        for (size_t i = 0; i < o->text_len; i++)
            text_sum += (unsigned char)o->text[i];
        if (o->text_len == 0)
            abort();
    } else if (o->addr_family != AF_INET && o->addr_family != AF_INET6) {
        abort();
    }
    if (o->evidence != NULL && strlen(o->evidence) > 512)
        abort();
    if (o->input == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sen_log_reader *r = NULL;
    struct sen_log_stats st;
    const char *p, *end;

    if (size < 1)
        return 0;
    if (sen_log_reader_new((enum sen_log_format)(data[0] % SEN_LOG_COUNT), NULL, &r) != 0)
        return 0;
    p = (const char *)data + 1;
    end = (const char *)data + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        int rc = sen_log_line(r, p, n, check, NULL);
        if (rc < -1 || rc > 1)
            abort();
        p += n + 1;
    }
    sen_log_stats(r, &st);
    if (st.ignored + st.malformed > st.lines)
        abort();
    if (st.malformed > 0 && st.first_error[0] == '\0')
        abort();
    sen_log_reader_free(r);
    return 0;
}
