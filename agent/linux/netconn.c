/*
 * Live connections on Linux (plat_connections, plat_socket_owner(s), see
 * agent/platform.h): which TCP and UDP sockets talk to a remote address,
 * and which process, running which executable, owns each.
 *
 * Sockets come from the kernel's socket diagnostics over netlink
 * (NETLINK_SOCK_DIAG, one dump per protocol and family), which is exact
 * and cheap; when that is not available (an old or stripped kernel, a
 * seccomp policy) the same list is parsed from /proc/net/{tcp,tcp6,udp,udp6}.
 * Both paths end in conn_keep, so they report the same set. Replies and
 * lines are checked against their lengths before any field is read.
 *
 * Owners are found by walking /proc/<pid>/fd for "socket:[inode]" links.
 * The batch form walks /proc once for any number of sockets and hashes each
 * executable once (through /proc/<pid>/exe, so that a binary deleted after
 * it started still hashes), which is what the agent's periodic check uses.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "khx.h"
#include "platform.h"

#define CONN_MAX         (1u << 20) /* sockets reported at most */
#define CONN_NL_BUF      (64 * 1024)
#define CONN_NL_TIMEOUT  2            /* seconds a netlink reply may take */
#define CONN_LINE_MAX    512          /* a /proc/net line is about 150 bytes */
#define OWNER_HASH_MAX   (512u << 20) /* executables larger than this are not hashed */
#define OWNER_EXE_CACHE  256          /* executables hashed per walk, remembered */
#define TCP_STATE_LISTEN 10

/* ------------------------------------------------------------------------ */
/* Common                                                                    */
/* ------------------------------------------------------------------------ */

/* Decides whether a socket is reported and normalises it: IPv4 addresses
 * mapped into IPv6 (::ffff:a.b.c.d) become plain IPv4, UDP has no state. */
static int conn_keep(struct plat_conn *c)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->proto == IPPROTO_TCP && c->state == TCP_STATE_LISTEN)
        return 0;
    if (c->rport == 0)
        return 0; /* no remote end: unconnected UDP, a TCP socket bound but never connected */
    if (c->proto == IPPROTO_UDP)
        c->state = 0;
    if (c->family == AF_INET6 && memcmp(c->laddr, mapped, 12) == 0 &&
        memcmp(c->raddr, mapped, 12) == 0) {
        c->family = AF_INET;
        memmove(c->laddr, c->laddr + 12, 4);
        memmove(c->raddr, c->raddr + 12, 4);
        memset(c->laddr + 4, 0, 12);
        memset(c->raddr + 4, 0, 12);
    }
    return 1;
}

static int conn_push(struct khx_vec *v, const struct plat_conn *c)
{
    struct plat_conn *slot = khx_vec_push(v);
    if (slot == NULL)
        return v->len >= v->max ? KH_ELIMIT : KH_ENOMEM;
    *slot = *c;
    return KH_OK;
}

/* ------------------------------------------------------------------------ */
/* /proc/net parser                                                          */
/* ------------------------------------------------------------------------ */

/* Parses exactly n hex digits as an unsigned value. */
static int hex_field(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 16)
        return KH_EFORMAT;
    for (size_t i = 0; i < n; i++) {
        int d = khx_hexval((unsigned char)s[i]);
        if (d < 0)
            return KH_EFORMAT;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return KH_OK;
}

/* "0100007F:0035": the address as the kernel prints it (each 32-bit word of
 * the network-order address as a host-order number, %08X) and the port. */
static int addr_port(const char *s, size_t n, int family, uint8_t addr[16], uint16_t *port)
{
    size_t alen = family == AF_INET ? 8 : 32;
    uint64_t v;
    if (n != alen + 5 || s[alen] != ':')
        return KH_EFORMAT;
    memset(addr, 0, 16);
    for (size_t w = 0; w < alen / 8; w++) {
        if (hex_field(s + w * 8, 8, &v) != 0)
            return KH_EFORMAT;
        uint32_t word = (uint32_t)v;
        memcpy(addr + w * 4, &word, 4);
    }
    if (hex_field(s + alen + 1, 4, &v) != 0)
        return KH_EFORMAT;
    *port = (uint16_t)v;
    return KH_OK;
}

int plat_proc_net_parse_line(const char *line, size_t len, int proto, int family,
                             struct plat_conn *c)
{
    /* "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
     * inode ..." */
    const char *tok[12];
    size_t tlen[12], nt = 0;
    uint64_t v;
    if (line == NULL || c == NULL || (family != AF_INET && family != AF_INET6) ||
        (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || len > CONN_LINE_MAX)
        return KH_EFORMAT;
    for (size_t i = 0; i < len && nt < KHX_ARRAY_LEN(tok);) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i >= len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        tok[nt] = line + start;
        tlen[nt++] = i - start;
    }
    if (nt >= 1 && tlen[0] == 2 && memcmp(tok[0], "sl", 2) == 0)
        return 0; /* the header */
    if (nt < 10 || tlen[0] < 2 || tok[0][tlen[0] - 1] != ':' ||
        khx_parse_u64(tok[0], tlen[0] - 1, &v) != 0)
        return KH_EFORMAT;
    memset(c, 0, sizeof(*c));
    c->proto = proto;
    c->family = family;
    if (addr_port(tok[1], tlen[1], family, c->laddr, &c->lport) != 0 ||
        addr_port(tok[2], tlen[2], family, c->raddr, &c->rport) != 0 ||
        hex_field(tok[3], tlen[3], &v) != 0 || tlen[3] != 2)
        return KH_EFORMAT;
    c->state = (int)v;
    if (khx_parse_u64(tok[9], tlen[9], &c->inode) != 0)
        return KH_EFORMAT;
    return conn_keep(c);
}

static int proc_net_file(const char *path, int proto, int family, struct khx_vec *v)
{
    char line[CONN_LINE_MAX + 2];
    int rc = KH_OK, skipping = 0;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return errno == ENOENT ? KH_OK : KH_EIO; /* no IPv6 in this kernel */
    while (rc == KH_OK && fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        int complete = (n > 0 && line[n - 1] == '\n') || feof(f);
        if (skipping || !complete) {
            skipping = !complete;
            continue;
        }
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        struct plat_conn c;
        if (plat_proc_net_parse_line(line, n, proto, family, &c) == 1)
            rc = conn_push(v, &c);
    }
    fclose(f);
    return rc;
}

int plat_connections_proc(struct plat_conn **out, size_t *n)
{
    static const struct {
        const char *path;
        int proto, family;
    } files[] = {{"/proc/net/tcp", IPPROTO_TCP, AF_INET},
                 {"/proc/net/tcp6", IPPROTO_TCP, AF_INET6},
                 {"/proc/net/udp", IPPROTO_UDP, AF_INET},
                 {"/proc/net/udp6", IPPROTO_UDP, AF_INET6}};
    int rc = KH_EINVAL;
    struct khx_vec v;
    khx_vec_init(&v, sizeof(struct plat_conn), CONN_MAX);
    if (out == NULL || n == NULL)
        goto out;
    for (size_t i = 0; i < KHX_ARRAY_LEN(files); i++)
        if ((rc = proc_net_file(files[i].path, files[i].proto, files[i].family, &v)) != 0)
            goto out;
    *out = v.items;
    *n = v.len;
    v.items = NULL;
    rc = KH_OK;
out:
    khx_vec_free(&v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Netlink socket diagnostics                                                */
/* ------------------------------------------------------------------------ */

/* One dump. Returns 0, or KH_EUNSUPPORTED when the kernel refuses the
 * request (the caller then falls back to /proc), or another error. */
static int diag_dump(int fd, int proto, int family, uint32_t seq, struct khx_vec *v, uint8_t *buf)
{
    struct {
        struct nlmsghdr nh;
        struct inet_diag_req_v2 req;
    } msg;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    memset(&msg, 0, sizeof(msg));
    msg.nh.nlmsg_len = sizeof(msg);
    msg.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.nh.nlmsg_seq = seq;
    msg.req.sdiag_family = (uint8_t)family;
    msg.req.sdiag_protocol = (uint8_t)proto;
    /* TCP: every state but LISTEN (states are numbered 1..12); UDP: all. */
    msg.req.idiag_states = proto == IPPROTO_TCP ? (0x1FFEu & ~(1u << TCP_STATE_LISTEN)) : ~0u;
    if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) != sizeof(msg))
        return KH_EUNSUPPORTED;
    for (;;) {
        struct iovec iov = {buf, CONN_NL_BUF};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &mh, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (mh.msg_flags & MSG_TRUNC))
            return KH_EIO;
        size_t len = (size_t)n;
        for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len);
             nh = NLMSG_NEXT(nh, len)) {
            if (nh->nlmsg_seq != seq)
                continue;
            if (nh->nlmsg_type == NLMSG_DONE)
                return KH_OK;
            if (nh->nlmsg_type == NLMSG_ERROR)
                return KH_EUNSUPPORTED;
            if (nh->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                continue;
            const struct inet_diag_msg *d = NLMSG_DATA(nh);
            if (d->idiag_family != family)
                continue;
            struct plat_conn c = {.proto = proto, .family = family, .state = d->idiag_state};
            size_t alen = family == AF_INET ? 4 : 16;
            memcpy(c.laddr, d->id.idiag_src, alen);
            memcpy(c.raddr, d->id.idiag_dst, alen);
            c.lport = ntohs(d->id.idiag_sport);
            c.rport = ntohs(d->id.idiag_dport);
            c.inode = d->idiag_inode;
            int rc;
            if (conn_keep(&c) && (rc = conn_push(v, &c)) != 0)
                return rc;
        }
    }
}

int plat_connections(struct plat_conn **out, size_t *n)
{
    static const int combos[4][2] = {{IPPROTO_TCP, AF_INET},
                                     {IPPROTO_TCP, AF_INET6},
                                     {IPPROTO_UDP, AF_INET},
                                     {IPPROTO_UDP, AF_INET6}};
    int rc = KH_EINVAL, fd = -1;
    uint8_t *buf = NULL;
    struct khx_vec v;
    struct timeval tv = {.tv_sec = CONN_NL_TIMEOUT};
    khx_vec_init(&v, sizeof(struct plat_conn), CONN_MAX);
    if (out == NULL || n == NULL)
        goto out;
    rc = KH_ENOMEM;
    if ((buf = malloc(CONN_NL_BUF)) == NULL)
        goto out;
    fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        rc = KH_EUNSUPPORTED;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (size_t i = 0; i < 4; i++) {
        rc = diag_dump(fd, combos[i][0], combos[i][1], (uint32_t)i + 1, &v, buf);
        /* A kernel without IPv6 refuses that family only. */
        if (rc == KH_EUNSUPPORTED && combos[i][1] == AF_INET6)
            rc = KH_OK;
        if (rc != 0)
            goto out;
    }
    *out = v.items;
    *n = v.len;
    v.items = NULL;
    rc = KH_OK;
out:
    khx_vec_free(&v);
    free(buf);
    if (fd >= 0)
        close(fd);
    if (rc == KH_EUNSUPPORTED || rc == KH_EIO)
        return plat_connections_proc(out, n);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Owners                                                                    */
/* ------------------------------------------------------------------------ */

struct inode_ix {
    uint64_t inode;
    size_t idx;
};

static int ix_cmp(const void *a, const void *b)
{
    const struct inode_ix *x = a, *y = b;
    return x->inode < y->inode ? -1 : x->inode > y->inode;
}

struct exe_hash {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char hex[65];
};

/* Hashes the executable of `pid` through /proc/<pid>/exe, remembering it by
 * device, inode, size and time so that one binary is read once per walk. */
static void exe_sha256(pid_t pid, char out[65], struct exe_hash *cache, size_t *ncache)
{
    char path[64];
    struct stat st;
    EVP_MD_CTX *ctx = NULL;
    uint8_t *buf = NULL;
    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > OWNER_HASH_MAX)
        goto out;
    for (size_t i = 0; i < *ncache; i++) {
        const struct exe_hash *h = &cache[i];
        if (h->dev == st.st_dev && h->ino == st.st_ino && h->size == st.st_size &&
            h->mtime.tv_sec == st.st_mtim.tv_sec && h->mtime.tv_nsec == st.st_mtim.tv_nsec) {
            memcpy(out, h->hex, 65);
            goto out;
        }
    }
    enum { CHUNK = 256 * 1024 };
    uint8_t d[32];
    unsigned dlen = 0;
    uint64_t total = 0;
    if ((buf = malloc(CHUNK)) == NULL || (ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > OWNER_HASH_MAX || EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            goto out;
    }
    if (EVP_DigestFinal_ex(ctx, d, &dlen) != 1 || dlen != sizeof(d))
        goto out;
    khx_hex_encode(d, sizeof(d), out);
    if (*ncache < OWNER_EXE_CACHE) {
        struct exe_hash *h = &cache[(*ncache)++];
        h->dev = st.st_dev;
        h->ino = st.st_ino;
        h->size = st.st_size;
        h->mtime = st.st_mtim;
        memcpy(h->hex, out, 65);
    }
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
}

/* "socket:[12345]" -> 12345 */
static int socket_link_inode(const char *s, size_t n, uint64_t *ino)
{
    if (n < 10 || memcmp(s, "socket:[", 8) != 0 || s[n - 1] != ']')
        return 0;
    return khx_parse_u64(s + 8, n - 9, ino) == 0;
}

/* Fills the owner of every socket in `ix` (sorted by inode) that `pid` holds.
 * Returns how many were newly found. */
static size_t scan_pid(pid_t pid, const struct inode_ix *ix, size_t n, struct plat_process *out,
                       struct exe_hash *cache, size_t *ncache)
{
    char path[64], link[64];
    size_t found = 0;
    const struct plat_process *first = NULL; /* this process's first socket found */
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t ino;
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        ssize_t k = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
        if (k <= 0 || !socket_link_inode(link, (size_t)k, &ino))
            continue;
        struct inode_ix key = {ino, 0};
        const struct inode_ix *hit = bsearch(&key, ix, n, sizeof(*ix), ix_cmp);
        if (hit == NULL)
            continue;
        /* Equal inodes sit together; fill every request for this one. */
        while (hit > ix && hit[-1].inode == ino)
            hit--;
        for (; hit < ix + n && hit->inode == ino; hit++) {
            struct plat_process *p = &out[hit->idx];
            if (p->pid != 0)
                continue;
            if (first == NULL) {
                char exe[64];
                snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
                ssize_t m = readlink(exe, p->exe, sizeof(p->exe) - 1);
                p->exe[m > 0 ? m : 0] = '\0';
                exe_sha256(pid, p->sha256, cache, ncache);
                first = p;
            } else {
                memcpy(p->exe, first->exe, sizeof(p->exe));
                memcpy(p->sha256, first->sha256, sizeof(p->sha256));
            }
            p->pid = pid;
            found++;
        }
    }
    closedir(d);
    return found;
}

int plat_socket_owners(const uint64_t *inodes, size_t n, struct plat_process *out)
{
    int rc = KH_EINVAL;
    struct inode_ix *ix = NULL;
    struct exe_hash *cache = NULL;
    size_t ncache = 0, found = 0;
    DIR *proc = NULL;
    if ((n > 0 && (inodes == NULL || out == NULL)) || n > PLAT_MAX_OWNERS)
        goto out;
    rc = KH_OK;
    if (n == 0)
        goto out;
    memset(out, 0, n * sizeof(*out));
    rc = KH_ENOMEM;
    if ((ix = malloc(n * sizeof(*ix))) == NULL ||
        (cache = malloc(OWNER_EXE_CACHE * sizeof(*cache))) == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        ix[i] = (struct inode_ix){inodes[i], i};
    qsort(ix, n, sizeof(*ix), ix_cmp);
    rc = KH_EIO;
    if ((proc = opendir("/proc")) == NULL)
        goto out;
    struct dirent *e;
    while (found < n && (e = readdir(proc)) != NULL) {
        char *end;
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid > INT_MAX)
            continue;
        found += scan_pid((pid_t)pid, ix, n, out, cache, &ncache);
    }
    rc = KH_OK;
out:
    if (proc)
        closedir(proc);
    free(ix);
    free(cache);
    return rc < 0 ? rc : (int)KHX_MIN(found, (size_t)INT_MAX);
}

int plat_socket_owner(uint64_t inode, struct plat_process *p)
{
    if (p == NULL)
        return KH_EINVAL;
    int rc = plat_socket_owners(&inode, 1, p);
    return rc < 0 ? rc : p->pid != 0;
}
