/*
 * Fuzz target for the syslog-over-TCP framing (sensor/source_lines.c,
 * sen_src_tcp_frames): RFC 6587 octet counting and newline framing from an
 * untrusted sender, fed in chunks the way recv() may cut them. The input's
 * bytes are the stream; each chunk's size comes from the previous chunk's
 * first byte, so the fuzzer explores the cuts too. Every delivered line must
 * be within the line cap.
 */
#include <stdlib.h>
#include <string.h>

#include "source_int.h"

#define MIN_SZ(a, b) ((a) < (b) ? (a) : (b))

static size_t delivered;

static void on_line(void *ctx, unsigned worker, const char *peer, const char *line, size_t len)
{
    (void)ctx;
    (void)worker;
    (void)peer;
    if (len > SRC_LINE_MAX || (len > 0 && line == NULL))
        abort();
    delivered += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sen_source src;
    static uint8_t *buf;
    static int ready;
    if (!ready) {
        pthread_mutex_init(&src.lock, NULL);
        src.path = (char *)"fuzz:514";
        src.cb.line = on_line;
        buf = malloc(SRC_TCP_BUF);
        ready = 1;
    }
    size_t len = 0, pos = 0;
    int skipping = 0;
    size_t chunk = 1;
    while (pos < size) {
        size_t room = SRC_TCP_BUF - len;
        size_t n = MIN_SZ(chunk, MIN_SZ(room, size - pos));
        if (n == 0)
            abort(); /* the framing must always leave room */
        memcpy(buf + len, data + pos, n);
        chunk = (size_t)data[pos] * 37 + 1;
        len += n;
        pos += n;
        if (sen_src_tcp_frames(&src, "192.0.2.1", buf, &len, &skipping) != 0) {
            len = 0;
            skipping = 0;
        }
        if (len > SRC_TCP_BUF)
            abort();
    }
    return 0;
}
