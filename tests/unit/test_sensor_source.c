/*
 * Tests of the sensor's sources (sensor/source.h): a pcap file read through a
 * BPF filter, on the calling thread and in the source's thread; a truncated
 * record counted, not fatal; syslog over UDP and TCP (newline framing and
 * RFC 6587 octet counting, several clients) on loopback; a followed log file
 * through appends, a rename rotation and a truncation; and the NetFlow
 * collector receiving a datagram with its sender's address. Live capture is
 * tested by tests/integration/sensor_live.sh (it needs root).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "khx.h"
#include "source.h"
#include "testutil.h"

#define MAX_LINES 64

struct sink {
    pthread_mutex_t lock;
    unsigned frames, ticks, datagrams;
    unsigned linktype;
    char lines[MAX_LINES][256];
    char peers[MAX_LINES][64];
    unsigned nlines;
    uint8_t dgram[2048];
    size_t dgram_len;
    int dgram_family;
    uint8_t dgram_addr[16];
};

static void sink_init(struct sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
}

static void on_frame(void *ctx, unsigned worker, int linktype, const uint8_t *pkt, size_t caplen,
                     int64_t ts_us)
{
    struct sink *s = ctx;
    (void)worker;
    (void)pkt;
    (void)caplen;
    (void)ts_us;
    pthread_mutex_lock(&s->lock);
    s->frames++;
    s->linktype = (unsigned)linktype;
    pthread_mutex_unlock(&s->lock);
}

static void on_line(void *ctx, unsigned worker, const char *peer, const char *line, size_t len)
{
    struct sink *s = ctx;
    (void)worker;
    pthread_mutex_lock(&s->lock);
    if (s->nlines < MAX_LINES) {
        snprintf(s->lines[s->nlines], sizeof(s->lines[0]), "%.*s", (int)KHX_MIN(len, 250u), line);
        snprintf(s->peers[s->nlines], sizeof(s->peers[0]), "%s", peer);
        s->nlines++;
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_dgram(void *ctx, unsigned worker, int family, const uint8_t *addr,
                     const uint8_t *buf, size_t len, int64_t ts_us)
{
    struct sink *s = ctx;
    (void)worker;
    (void)ts_us;
    pthread_mutex_lock(&s->lock);
    s->datagrams++;
    s->dgram_family = family;
    memcpy(s->dgram_addr, addr, family == AF_INET ? 4 : 16);
    s->dgram_len = KHX_MIN(len, sizeof(s->dgram));
    memcpy(s->dgram, buf, s->dgram_len);
    pthread_mutex_unlock(&s->lock);
}

static void on_tick(void *ctx, unsigned worker, int64_t now)
{
    struct sink *s = ctx;
    (void)worker;
    (void)now;
    pthread_mutex_lock(&s->lock);
    s->ticks++;
    pthread_mutex_unlock(&s->lock);
}

static const struct sen_source_cb *cb_of(struct sink *s)
{
    static __thread struct sen_source_cb cb;
    cb = (struct sen_source_cb){s, on_frame, on_line, on_dgram, on_tick};
    return &cb;
}

/* Waits (at most 10 s: a bound for a broken source, not a timing assertion)
 * until the sink has `n` lines. */
static unsigned wait_lines(struct sink *s, unsigned n)
{
    unsigned have = 0;
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&s->lock);
        have = s->nlines;
        pthread_mutex_unlock(&s->lock);
        if (have >= n)
            break;
        usleep(10000);
    }
    return have;
}

/* ---- a pcap written here: UDP and TCP frames, a second apart ---- */

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* host order, with the matching magic */
}

static size_t frame(uint8_t *f, int tcp, unsigned i)
{
    memset(f, 0, 64);
    memset(f, 0x02, 12);
    f[12] = 0x08;
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    ip[3] = 40;
    ip[8] = 64;
    ip[9] = tcp ? 6 : 17;
    ip[12] = 10, ip[15] = (uint8_t)i;
    ip[16] = 192, ip[17] = 0, ip[18] = 2, ip[19] = 1;
    ip[20] = 0x9c, ip[21] = (uint8_t)i; /* source port */
    ip[23] = tcp ? 80 : 53;
    return 14 + 40;
}

static char *write_pcap(const char *dir, unsigned udp, unsigned tcp, int truncate_last)
{
    uint8_t buf[8192];
    size_t len = 24;
    memset(buf, 0, 24);
    put32(buf, 0xa1b2c3d4);
    buf[4] = 2, buf[6] = 4;
    put32(buf + 16, 65535);
    put32(buf + 20, 1);
    for (unsigned i = 0; i < udp + tcp; i++) {
        size_t fl = frame(buf + len + 16, i >= udp, i);
        put32(buf + len, 1700000000u + i);
        put32(buf + len + 4, 0);
        put32(buf + len + 8, (uint32_t)fl);
        put32(buf + len + 12, (uint32_t)fl);
        len += 16 + fl;
    }
    if (truncate_last)
        len -= 10;
    return tu_write(dir, "t.pcap", buf, len);
}

static void pcap_file_through_a_bpf_filter_gives_only_matching_frames(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char *path = write_pcap(dir, 5, 3, 0);
    char err[256] = "";
    struct sink s;
    struct sen_source_stats st;

    sink_init(&s);
    assert_int_equal(sen_source_read_pcap(path, "udp port 53", cb_of(&s), &st, err, sizeof(err)),
                     KH_OK);
    assert_int_equal(s.frames, 5);
    assert_int_equal(st.frames, 5);
    assert_int_equal(s.linktype, 1); /* DLT_EN10MB */
    /* Eight seconds of packet time: the file's clock ticks. */
    assert_true(s.ticks >= 4);

    /* The same through a threaded source, other filter. */
    sink_init(&s);
    struct sen_source_opts o = {.kind = SEN_SRC_PCAP_FILE, .path = path, .bpf = "tcp"};
    struct sen_source *src = NULL;
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_start(src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_wait(src), KH_OK);
    sen_source_stats(src, &st);
    assert_int_equal(s.frames, 3);
    assert_int_equal(st.frames, 3);
    assert_int_equal(st.read_errors, 0);
    sen_source_free(src);

    /* A filter that does not compile, a file that is not a capture. */
    o.bpf = "tcp port";
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_EINVAL);
    assert_non_null(strstr(err, "filter"));
    char *bad = tu_write(dir, "bad.pcap", "not a capture at all", 20);
    o.path = bad;
    o.bpf = NULL;
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_EFORMAT);
    free(bad);
    free(path);
    tu_rmtree(dir);
}

static void truncated_pcap_record_is_counted_not_fatal(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char *path = write_pcap(dir, 4, 0, 1);
    char err[256] = "";
    struct sink s;
    struct sen_source_stats st;
    sink_init(&s);
    assert_int_equal(sen_source_read_pcap(path, NULL, cb_of(&s), &st, err, sizeof(err)), KH_OK);
    assert_int_equal(s.frames, 3);
    assert_int_equal(st.read_errors, 1);
    assert_true(st.last_error[0] != '\0');
    free(path);
    tu_rmtree(dir);
}

/* ---- syslog ---- */

static struct sen_source *listen_on(int kind, struct sink *s, int *port)
{
    char err[256] = "";
    struct sen_source *src = NULL;
    struct sen_source_opts o = {.kind = kind, .path = "127.0.0.1:0"};
    assert_int_equal(sen_source_open(&o, cb_of(s), &src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_start(src, err, sizeof(err)), KH_OK);
    *port = sen_source_local_port(src);
    assert_true(*port > 0);
    return src;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void syslog_udp_gives_one_line_per_datagram_with_its_peer(void **state)
{
    (void)state;
    struct sink s;
    int port;
    sink_init(&s);
    struct sen_source *src = listen_on(SEN_SRC_SYSLOG_UDP, &s, &port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = loopback(port);
    const char *msgs[] = {"<13>Nov 21 10:00:00 fw kernel: IN=eth0 SRC=10.0.0.2\n",
                          "<14>no newline here", "<15>crlf\r\n"};
    for (int i = 0; i < 3; i++)
        sendto(fd, msgs[i], strlen(msgs[i]), 0, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    assert_int_equal(wait_lines(&s, 3), 3);
    assert_string_equal(s.lines[0], "<13>Nov 21 10:00:00 fw kernel: IN=eth0 SRC=10.0.0.2");
    assert_string_equal(s.lines[1], "<14>no newline here");
    assert_string_equal(s.lines[2], "<15>crlf");
    assert_string_equal(s.peers[0], "127.0.0.1");
    struct sen_source_stats st;
    sen_source_stats(src, &st);
    assert_int_equal(st.lines, 3);
    sen_source_free(src);
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static int has_line(struct sink *s, const char *text)
{
    for (unsigned i = 0; i < s->nlines; i++)
        if (strcmp(s->lines[i], text) == 0)
            return 1;
    return 0;
}

static void syslog_tcp_takes_newline_and_octet_counted_frames_from_many_clients(void **state)
{
    (void)state;
    struct sink s;
    int port;
    sink_init(&s);
    struct sen_source *src = listen_on(SEN_SRC_SYSLOG_TCP, &s, &port);
    int a = tcp_connect(port), b = tcp_connect(port);
    /* Newline framing, one message split over two sends. */
    send_all(a, "<13>first line\n<13>sec");
    /* Octet counting: the count covers exactly the message, which may hold a newline. */
    send_all(b, "14 <14>octet one\n13 <14>octet tw");
    usleep(50000);
    send_all(a, "ond line\n");
    send_all(b, "o");
    assert_int_equal(wait_lines(&s, 4), 4);
    /* A client that closes after a last line without its newline. */
    send_all(a, "<13>last words");
    close(a);
    assert_int_equal(wait_lines(&s, 5), 5);
    /* A broken count closes that client only. */
    send_all(b, "99999999 <14>too long\n");
    int c = tcp_connect(port);
    send_all(c, "<13>still listening\n");
    assert_int_equal(wait_lines(&s, 6), 6);
    pthread_mutex_lock(&s.lock);
    assert_true(has_line(&s, "<13>first line"));
    assert_true(has_line(&s, "<13>second line"));
    assert_true(has_line(&s, "<14>octet one"));
    assert_true(has_line(&s, "<14>octet two"));
    assert_true(has_line(&s, "<13>last words"));
    assert_true(has_line(&s, "<13>still listening"));
    assert_string_equal(s.peers[0], "127.0.0.1");
    pthread_mutex_unlock(&s.lock);
    struct sen_source_stats st;
    sen_source_stats(src, &st);
    assert_int_equal(st.read_errors, 1);
    close(b);
    close(c);
    sen_source_free(src);
}

/* ---- followed files ---- */

static void append(const char *path, const char *mode, const char *text)
{
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void followed_log_survives_append_rotation_and_truncation(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    char path[512], rotated[512], err[256] = "";
    struct sink s;
    struct sen_source *src = NULL;
    snprintf(path, sizeof(path), "%s/query.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/query.log.1", dir);
    append(path, "w", "one\ntwo\n");
    sink_init(&s);
    struct sen_source_opts o = {.kind = SEN_SRC_LOG_FILE, .path = path};
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_start(src, err, sizeof(err)), KH_OK);
    assert_int_equal(wait_lines(&s, 2), 2);
    /* An append, with a line written in two pieces. */
    append(path, "a", "three\nfo");
    assert_int_equal(wait_lines(&s, 3), 3);
    append(path, "a", "ur\n");
    assert_int_equal(wait_lines(&s, 4), 4);
    /* Rotation: the old file gets a last line after the rename, then a new file. */
    assert_int_equal(rename(path, rotated), 0);
    append(rotated, "a", "five\n");
    append(path, "w", "six, a longer line in the new file\n");
    assert_int_equal(wait_lines(&s, 6), 6);
    /* Truncation in place (copytruncate) with shorter content. */
    append(path, "w", "7\n");
    assert_int_equal(wait_lines(&s, 7), 7);
    sen_source_free(src);
    const char *want[] = {
        "one", "two", "three", "four", "five", "six, a longer line in the new file", "7"};
    assert_int_equal(s.nlines, 7);
    for (int i = 0; i < 7; i++)
        assert_string_equal(s.lines[i], want[i]);
    assert_string_equal(s.peers[0], path);

    /* Without follow the file is read once, a last partial line included. */
    append(path, "w", "a\nb");
    sink_init(&s);
    o.no_follow = 1;
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_start(src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_wait(src), KH_OK);
    assert_int_equal(s.nlines, 2);
    assert_string_equal(s.lines[1], "b");
    sen_source_free(src);

    /* A line over 64 KiB is skipped and counted; the next one still comes. */
    {
        size_t big = 70000;
        char *text = malloc(big + 32);
        assert_non_null(text);
        memcpy(text, "before\n", 7);
        memset(text + 7, 'x', big);
        memcpy(text + 7 + big, "\nafter\n", 8);
        free(tu_write(dir, "query.log", text, 7 + big + 7));
        free(text);
    }
    sink_init(&s);
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_start(src, err, sizeof(err)), KH_OK);
    assert_int_equal(sen_source_wait(src), KH_OK);
    struct sen_source_stats st;
    sen_source_stats(src, &st);
    assert_int_equal(s.nlines, 2);
    assert_string_equal(s.lines[0], "before");
    assert_string_equal(s.lines[1], "after");
    assert_int_equal(st.read_errors, 1);
    sen_source_free(src);

    o.path = "/nonexistent/khien.log";
    assert_int_not_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_OK);
    assert_non_null(strstr(err, "/nonexistent/khien.log"));
    tu_rmtree(dir);
}

static void netflow_collector_passes_the_datagram_and_exporter(void **state)
{
    (void)state;
    struct sink s;
    int port;
    sink_init(&s);
    struct sen_source *src = listen_on(SEN_SRC_NETFLOW, &s, &port);
    uint8_t v5[24 + 48];
    memset(v5, 0, sizeof(v5));
    v5[1] = 5;
    v5[3] = 1;
    for (size_t i = 24; i < sizeof(v5); i++)
        v5[i] = (uint8_t)i;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = loopback(port);
    sendto(fd, v5, sizeof(v5), 0, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&s.lock);
        unsigned n = s.datagrams;
        pthread_mutex_unlock(&s.lock);
        if (n > 0)
            break;
        usleep(10000);
    }
    sen_source_free(src);
    assert_int_equal(s.datagrams, 1);
    assert_int_equal(s.dgram_len, sizeof(v5));
    assert_memory_equal(s.dgram, v5, sizeof(v5));
    assert_int_equal(s.dgram_family, AF_INET);
    const uint8_t lo[4] = {127, 0, 0, 1};
    assert_memory_equal(s.dgram_addr, lo, 4);
}

static void listener_with_a_bad_address_is_refused(void **state)
{
    (void)state;
    struct sink s;
    char err[256] = "";
    struct sen_source *src = NULL;
    sink_init(&s);
    struct sen_source_opts o = {.kind = SEN_SRC_SYSLOG_UDP, .path = "no-port-here"};
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_EINVAL);
    assert_null(src);
    o.path = "999.1.1.1:514";
    assert_int_equal(sen_source_open(&o, cb_of(&s), &src, err, sizeof(err)), KH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pcap_file_through_a_bpf_filter_gives_only_matching_frames),
        cmocka_unit_test(truncated_pcap_record_is_counted_not_fatal),
        cmocka_unit_test(syslog_udp_gives_one_line_per_datagram_with_its_peer),
        cmocka_unit_test(syslog_tcp_takes_newline_and_octet_counted_frames_from_many_clients),
        cmocka_unit_test(followed_log_survives_append_rotation_and_truncation),
        cmocka_unit_test(netflow_collector_passes_the_datagram_and_exporter),
        cmocka_unit_test(listener_with_a_bad_address_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
