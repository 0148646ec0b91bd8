/*
 * khien-capture-probe: opens one sensor source (sensor/source.h) and prints
 * what it captured as JSON — the frame count, bytes, kernel drops, and a
 * short hash of every frame, sorted — so the live-capture test
 * (tests/integration/sensor_live.sh) can check that libpcap and AF_PACKET
 * capture deliver exactly the frames that reading the pcap file gives.
 * `khien sensor run` replaces it in that test once it exists.
 *
 *   khien-capture-probe --kind pcap|live|afpacket --path FILE|IFACE
 *       [--bpf FILTER] [--fanout N] [--count N] [--linger MS] [--timeout S]
 *       [--ready FILE]
 *
 * A live capture ends --linger milliseconds (default 0) after --count frames
 * arrived — so frames beyond the expected ones are seen too — or after
 * --timeout seconds (default 30); --ready names a file created once the
 * capture is running.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"
#include "source.h"

#define MAX_FRAMES 1000000

struct probe {
    pthread_mutex_t lock;
    char (*hashes)[17];
    size_t n;
    unsigned long long want;
    volatile int done;
    struct sen_source *src;
    unsigned long long ticks;
    unsigned long long per_worker[64];
};

static void on_frame(void *ctx, unsigned worker, int linktype, const uint8_t *pkt, size_t caplen,
                     int64_t ts_us)
{
    struct probe *p = ctx;
    uint8_t h[32];
    (void)linktype;
    (void)ts_us;
    khx_sha256(pkt, caplen, h);
    pthread_mutex_lock(&p->lock);
    if (worker < 64)
        p->per_worker[worker]++;
    if (p->n < MAX_FRAMES) {
        khx_hex_encode(h, 8, p->hashes[p->n]);
        p->n++;
    }
    if (p->want > 0 && p->n >= p->want)
        p->done = 1;
    pthread_mutex_unlock(&p->lock);
}

static void on_tick(void *ctx, unsigned worker, int64_t now_us)
{
    struct probe *p = ctx;
    (void)worker;
    (void)now_us;
    pthread_mutex_lock(&p->lock);
    p->ticks++;
    pthread_mutex_unlock(&p->lock);
}

static int cmp_hash(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int main(int argc, char **argv)
{
    struct sen_source_opts o;
    struct probe p;
    const char *kind = "pcap", *ready = NULL;
    unsigned timeout_s = 30, linger_ms = 0;
    char err[512] = "";
    memset(&o, 0, sizeof(o));
    memset(&p, 0, sizeof(p));
    pthread_mutex_init(&p.lock, NULL);
    o.promisc = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--kind") == 0)
            kind = argv[i + 1];
        else if (strcmp(argv[i], "--path") == 0)
            o.path = argv[i + 1];
        else if (strcmp(argv[i], "--bpf") == 0)
            o.bpf = argv[i + 1];
        else if (strcmp(argv[i], "--fanout") == 0)
            o.fanout = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--count") == 0)
            p.want = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--linger") == 0)
            linger_ms = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--ready") == 0)
            ready = argv[i + 1];
        else {
            fprintf(stderr, "khien-capture-probe: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    o.kind = strcmp(kind, "live") == 0       ? SEN_SRC_PCAP_LIVE
             : strcmp(kind, "afpacket") == 0 ? SEN_SRC_AFPACKET
             : strcmp(kind, "pcap") == 0     ? SEN_SRC_PCAP_FILE
                                             : -1;
    if (o.path == NULL || o.kind < 0) {
        fprintf(stderr,
                "usage: khien-capture-probe --kind pcap|live|afpacket --path P "
                "[--bpf F] [--fanout N] [--count N] [--linger MS] [--timeout S] [--ready FILE]\n");
        return 2;
    }
    if ((p.hashes = calloc(MAX_FRAMES, sizeof(*p.hashes))) == NULL)
        return 1;
    struct sen_source_cb cb = {&p, on_frame, NULL, NULL, on_tick};
    if (sen_source_open(&o, &cb, &p.src, err, sizeof(err)) != KH_OK ||
        sen_source_start(p.src, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "khien-capture-probe: %s\n", err);
        sen_source_free(p.src);
        free(p.hashes);
        return 1;
    }
    if (ready != NULL) {
        FILE *f = fopen(ready, "w");
        if (f != NULL)
            fclose(f);
    }
    if (o.kind != SEN_SRC_PCAP_FILE) {
        time_t end = time(NULL) + timeout_s;
        while (!p.done && time(NULL) < end)
            usleep(20000);
        if (p.done)
            usleep(linger_ms * 1000u);
        sen_source_stop(p.src);
    }
    int r = sen_source_wait(p.src);
    struct sen_source_stats st;
    sen_source_stats(p.src, &st);
    sen_source_free(p.src);
    qsort(p.hashes, p.n, sizeof(*p.hashes), cmp_hash);
    printf("{\"frames\":%llu,\"bytes\":%llu,\"kernel_drops\":%llu,\"read_errors\":%llu,"
           "\"ticks\":%llu,\"workers\":[",
           (unsigned long long)st.frames, (unsigned long long)st.bytes,
           (unsigned long long)st.kernel_drops, (unsigned long long)st.read_errors, p.ticks);
    for (unsigned i = 0; i < (o.fanout ? o.fanout : 1) && i < 64; i++)
        printf("%s%llu", i ? "," : "", p.per_worker[i]);
    printf("],\"hashes\":[");
    for (size_t i = 0; i < p.n; i++)
        printf("%s\"%s\"", i ? "," : "", p.hashes[i]);
    printf("]}\n");
    free(p.hashes);
    if (r != KH_OK)
        fprintf(stderr, "khien-capture-probe: %s\n", st.last_error);
    return r == KH_OK ? 0 : 1;
}
