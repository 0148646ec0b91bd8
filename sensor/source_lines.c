/*
 * Line and datagram sources (source_lines.c): log files the sensor follows,
 * a syslog listener over UDP and TCP, and the NetFlow/IPFIX collector. Each
 * runs one thread that polls with a timeout, so tick() is called about once
 * a second on the wall clock even when nothing arrives.
 *
 * Followed files are read from the start, then followed like `tail -F`: an
 * append is read within a quarter second; a rename rotation (the path now
 * names another inode) is noticed, the old file is read to its end and the
 * new one opened from its start; a truncation (the file is shorter than what
 * was read) starts again from the beginning. A line is at most 64 KiB; a
 * longer one is skipped and counted.
 *
 * Syslog over UDP: one datagram is one line (a trailing newline is removed).
 * Over TCP (RFC 6587): many clients at once; a frame that starts with a digit
 * is octet-counted ("LEN SP MSG"), otherwise the message ends at a newline.
 * The peer's address is passed with each line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "khx.h"
#include "source_int.h"

#define FILE_POLL_MS  250
#define TICK_US       1000000
#define TCP_MAX_PEERS 256
#define DGRAM_MAX     65536

struct lines_state {
    int fd;    /* the file or the listening socket */
    dev_t dev; /* the followed file's identity */
    ino_t ino;
    off_t offset; /* bytes of the current file consumed */
    uint8_t *buf; /* partial line (files) or datagram buffer */
    size_t len;
    int skipping; /* inside an over-long line: drop until its newline */
};

static void lines_close(struct sen_source *src)
{
    struct lines_state *s = src->kind_state;
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
    free(s);
    src->kind_state = NULL;
}

static void deliver(struct sen_source *src, const char *peer, const uint8_t *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    atomic_fetch_add(&src->lines, 1);
    if (src->cb.line != NULL)
        src->cb.line(src->cb.ctx, 0, peer, (const char *)p, n);
}

/* Waits up to ms for fd (may be -1) or the stop pipe; returns 1 when fd is readable. */
static int wait_fd(struct sen_source *src, int fd, int ms)
{
    struct pollfd pf[2] = {{src->wake[0], POLLIN, 0}, {fd, POLLIN, 0}};
    int rc = poll(pf, fd >= 0 ? 2 : 1, ms);
    return rc > 0 && fd >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR));
}

static void maybe_tick(struct sen_source *src, int64_t *next)
{
    int64_t now = sen_src_wall_us();
    if (now >= *next) {
        *next = now + TICK_US;
        if (src->cb.tick != NULL)
            src->cb.tick(src->cb.ctx, 0, now);
    }
}

/* ------------------------------------------------------------------------ */
/* Followed files                                                            */
/* ------------------------------------------------------------------------ */

/* Splits what is buffered into lines; keeps a partial last line. */
static void file_split(struct sen_source *src, struct lines_state *s)
{
    size_t start = 0;
    for (size_t i = 0; i < s->len; i++) {
        if (s->buf[i] != '\n')
            continue;
        if (s->skipping)
            s->skipping = 0;
        else
            deliver(src, src->path, s->buf + start, i - start);
        start = i + 1;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    if (s->len >= SRC_LINE_MAX) {
        if (!s->skipping)
            sen_src_note(src, "%s: a line longer than %u bytes was skipped", src->path,
                         SRC_LINE_MAX);
        s->skipping = 1;
        s->len = 0;
    }
}

/* Reads what the file has now; returns bytes read (0 at its end, -1 on error). */
static ssize_t file_drain(struct sen_source *src, struct lines_state *s)
{
    ssize_t total = 0;
    for (;;) {
        ssize_t n = read(s->fd, s->buf + s->len, SRC_LINE_MAX - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sen_src_note(src, "%s: read: %s", src->path, strerror(errno));
            return -1;
        }
        if (n == 0)
            return total;
        s->len += (size_t)n;
        s->offset += n;
        total += n;
        file_split(src, s);
        if (atomic_load(&src->stop))
            return total;
    }
}

static void file_flush_partial(struct sen_source *src, struct lines_state *s)
{
    if (s->len > 0 && !s->skipping)
        deliver(src, src->path, s->buf, s->len);
    s->len = 0;
    s->skipping = 0;
}

static int file_open_at_start(struct sen_source *src, struct lines_state *s, char *err,
                              size_t errlen)
{
    struct stat st;
    int fd = open(src->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        khx_errf(err, errlen, "%s: %s", src->path, strerror(errno));
        return errno == ENOENT ? KH_ENOTFOUND : KH_EIO;
    }
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        khx_errf(err, errlen, "%s: not a readable file", src->path);
        close(fd);
        return KH_EIO;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->offset = 0;
    s->len = 0;
    s->skipping = 0;
    return KH_OK;
}

static void *file_thread(void *arg)
{
    struct src_worker *w = arg;
    struct sen_source *src = w->src;
    struct lines_state *s = src->kind_state;
    int64_t next_tick = sen_src_wall_us() + TICK_US;
    char err[256];
    while (!atomic_load(&src->stop)) {
        ssize_t n = file_drain(src, s);
        maybe_tick(src, &next_tick);
        if (n > 0)
            continue;
        if (src->opts.no_follow) {
            file_flush_partial(src, s);
            break;
        }
        struct stat cur, path_st;
        if (fstat(s->fd, &cur) == 0 && cur.st_size < s->offset) {
            /* Truncated in place (copytruncate): start again at the top. */
            lseek(s->fd, 0, SEEK_SET);
            s->offset = 0;
            s->len = 0;
            s->skipping = 0;
            continue;
        }
        if (stat(src->path, &path_st) == 0 &&
            (path_st.st_ino != s->ino || path_st.st_dev != s->dev)) {
            /* Rotated by rename: finish the old file, then take the new one. */
            file_drain(src, s);
            file_flush_partial(src, s);
            if (file_open_at_start(src, s, err, sizeof(err)) != KH_OK)
                sen_src_note(src, "%s", err);
            continue;
        }
        wait_fd(src, -1, FILE_POLL_MS);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Datagram listeners: syslog over UDP and NetFlow                           */
/* ------------------------------------------------------------------------ */

static void addr_of(const struct sockaddr_storage *ss, int *family, const uint8_t **addr,
                    char peer[46])
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        *family = AF_INET6;
        *addr = s6->sin6_addr.s6_addr;
        /* A v4-mapped sender on a dual-stack socket is shown as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            *family = AF_INET;
            *addr = s6->sin6_addr.s6_addr + 12;
        }
    } else {
        *family = AF_INET;
        *addr = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    }
    if (inet_ntop(*family, *addr, peer, 46) == NULL)
        strcpy(peer, "-");
}

static void *dgram_thread(void *arg)
{
    struct src_worker *w = arg;
    struct sen_source *src = w->src;
    struct lines_state *s = src->kind_state;
    int64_t next_tick = sen_src_wall_us() + TICK_US;
    int netflow = src->opts.kind == SEN_SRC_NETFLOW;
    while (!atomic_load(&src->stop)) {
        if (!wait_fd(src, s->fd, 1000)) {
            maybe_tick(src, &next_tick);
            continue;
        }
        for (int i = 0; i < 64 && !atomic_load(&src->stop); i++) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            ssize_t n = recvfrom(s->fd, s->buf, DGRAM_MAX, MSG_DONTWAIT | MSG_TRUNC,
                                 (struct sockaddr *)&ss, &sl);
            if (n < 0)
                break;
            int family = 0;
            const uint8_t *addr = NULL;
            char peer[46];
            addr_of(&ss, &family, &addr, peer);
            if ((size_t)n > DGRAM_MAX) {
                sen_src_note(src, "%s: a datagram of %zd bytes from %s was cut", src->path, n,
                             peer);
                n = DGRAM_MAX;
            }
            if (netflow) {
                atomic_fetch_add(&src->datagrams, 1);
                if (src->cb.datagram != NULL)
                    src->cb.datagram(src->cb.ctx, 0, family, addr, s->buf, (size_t)n,
                                     sen_src_wall_us());
            } else {
                deliver(src, peer, s->buf, (size_t)n);
            }
        }
        maybe_tick(src, &next_tick);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Syslog over TCP                                                           */
/* ------------------------------------------------------------------------ */

struct tcp_peer {
    int fd;
    char addr[46];
    uint8_t *buf;
    size_t len;
    int skipping; /* newline framing: inside an over-long line */
};

static void peer_drop(struct tcp_peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    free(p->buf);
    memset(p, 0, sizeof(*p));
    p->fd = -1;
}

int sen_src_tcp_frames(struct sen_source *src, const char *peer, uint8_t *buf, size_t *len,
                       int *skipping)
{
    size_t pos = 0;
    while (pos < *len) {
        const uint8_t *b = buf + pos;
        size_t avail = *len - pos;
        if (*skipping) {
            const uint8_t *nl = memchr(b, '\n', avail);
            if (nl == NULL) {
                pos = *len;
                break;
            }
            *skipping = 0;
            pos += (size_t)(nl - b) + 1;
            continue;
        }
        if (b[0] >= '1' && b[0] <= '9') {
            /* Octet counting: digits, one space, then exactly that many bytes. */
            size_t i = 0, n = 0;
            while (i < avail && i < OCTET_DIGITS && b[i] >= '0' && b[i] <= '9')
                n = n * 10 + (size_t)(b[i++] - '0');
            if (i == avail)
                break; /* the length is not complete yet */
            if (b[i] != ' ' || n > SRC_LINE_MAX) {
                sen_src_note(src, "%s: %s sent a bad octet count: connection closed", src->path,
                             peer);
                return -1;
            }
            if (avail < i + 1 + n)
                break;
            deliver(src, peer, b + i + 1, n);
            pos += i + 1 + n;
            continue;
        }
        if (b[0] == '\n' || b[0] == '\r') { /* stray line ends between frames */
            pos++;
            continue;
        }
        const uint8_t *nl = memchr(b, '\n', avail);
        if (nl != NULL && (size_t)(nl - b) > SRC_LINE_MAX) {
            /* The buffer holds a few bytes more than a line (an octet
             * count's prefix): a line just over the cap can end in it. */
            sen_src_note(src, "%s: %s sent a line longer than %u bytes: skipped", src->path, peer,
                         SRC_LINE_MAX);
            pos += (size_t)(nl - b) + 1;
            continue;
        }
        if (nl == NULL) {
            if (avail >= SRC_LINE_MAX) {
                sen_src_note(src, "%s: %s sent a line longer than %u bytes: skipped", src->path,
                             peer, SRC_LINE_MAX);
                *skipping = 1;
                pos = *len;
            }
            break;
        }
        deliver(src, peer, b, (size_t)(nl - b));
        pos += (size_t)(nl - b) + 1;
    }
    memmove(buf, buf + pos, *len - pos);
    *len -= pos;
    return 0;
}

static void tcp_accept(struct sen_source *src, struct lines_state *s, struct tcp_peer *peers)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(s->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    for (int i = 0; i < TCP_MAX_PEERS; i++) {
        if (peers[i].fd >= 0)
            continue;
        /* The frame buffer holds the longest frame plus its length prefix. */
        if ((peers[i].buf = malloc(SRC_TCP_BUF)) == NULL)
            break;
        int family;
        const uint8_t *addr;
        addr_of(&ss, &family, &addr, peers[i].addr);
        peers[i].fd = fd;
        return;
    }
    sen_src_note(src, "%s: more than %d syslog clients: one refused", src->path, TCP_MAX_PEERS);
    close(fd);
}

static void *tcp_thread(void *arg)
{
    struct src_worker *w = arg;
    struct sen_source *src = w->src;
    struct lines_state *s = src->kind_state;
    int64_t next_tick = sen_src_wall_us() + TICK_US;
    struct tcp_peer *peers = calloc(TCP_MAX_PEERS, sizeof(*peers));
    struct pollfd *pf = calloc(TCP_MAX_PEERS + 2, sizeof(*pf));
    int idx[TCP_MAX_PEERS + 2];
    if (peers == NULL || pf == NULL) {
        sen_src_fail(src, KH_ENOMEM, "%s: out of memory", src->path);
        goto out;
    }
    for (int i = 0; i < TCP_MAX_PEERS; i++)
        peers[i].fd = -1;
    while (!atomic_load(&src->stop)) {
        int n = 0;
        pf[n++] = (struct pollfd){src->wake[0], POLLIN, 0};
        pf[n++] = (struct pollfd){s->fd, POLLIN, 0};
        for (int i = 0; i < TCP_MAX_PEERS; i++)
            if (peers[i].fd >= 0) {
                idx[n] = i;
                pf[n++] = (struct pollfd){peers[i].fd, POLLIN, 0};
            }
        int rc = poll(pf, (nfds_t)n, 1000);
        if (rc > 0 && (pf[1].revents & POLLIN))
            tcp_accept(src, s, peers);
        for (int k = 2; rc > 0 && k < n; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct tcp_peer *p = &peers[idx[k]];
            size_t room = SRC_TCP_BUF - p->len;
            if (room == 0) { /* cannot happen with the framing rules; never spin on it */
                sen_src_note(src, "%s: %s: frame buffer full: connection closed", src->path,
                             p->addr);
                peer_drop(p);
                continue;
            }
            ssize_t got = recv(p->fd, p->buf + p->len, room, 0);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) {
                /* The sender closed: a last line without its newline still counts. */
                if (p->len > 0 && !p->skipping && !(p->buf[0] >= '1' && p->buf[0] <= '9'))
                    deliver(src, p->addr, p->buf, p->len);
                else if (p->len > 0 && !p->skipping)
                    sen_src_note(src, "%s: %s closed in the middle of a frame", src->path, p->addr);
                peer_drop(p);
                continue;
            }
            p->len += (size_t)got;
            if (sen_src_tcp_frames(src, p->addr, p->buf, &p->len, &p->skipping) != 0)
                peer_drop(p);
        }
        maybe_tick(src, &next_tick);
    }
out:
    for (int i = 0; peers != NULL && i < TCP_MAX_PEERS; i++)
        if (peers[i].fd >= 0)
            peer_drop(&peers[i]);
    free(peers);
    free(pf);
    return NULL;
}

/* ------------------------------------------------------------------------ */

int sen_src_lines_open(struct sen_source *src, char *err, size_t errlen)
{
    struct lines_state *s = calloc(1, sizeof(*s));
    int r = KH_ENOMEM;
    int kind = src->opts.kind;
    if (s == NULL)
        return KH_ENOMEM;
    s->fd = -1;
    if ((s->buf = malloc(kind == SEN_SRC_LOG_FILE ? SRC_LINE_MAX : DGRAM_MAX)) == NULL)
        goto out;
    if (kind == SEN_SRC_LOG_FILE) {
        r = file_open_at_start(src, s, err, errlen);
        src->kind_run = file_thread;
    } else {
        r = sen_src_bind(src->path, kind == SEN_SRC_SYSLOG_TCP ? SOCK_STREAM : SOCK_DGRAM, &s->fd,
                         err, errlen);
        src->kind_run = kind == SEN_SRC_SYSLOG_TCP ? tcp_thread : dgram_thread;
        if (r == KH_OK) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0)
                src->listen_port =
                    ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    if (r != KH_OK)
        goto out;
    src->kind_state = s;
    src->kind_close = lines_close;
    src->nworkers = 1;
    s = NULL;
    r = KH_OK;
out:
    if (s != NULL) {
        if (s->fd >= 0)
            close(s->fd);
        free(s->buf);
        free(s);
    }
    return r;
}
