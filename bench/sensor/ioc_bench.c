/*
 * ioc_bench: how fast the compiled indicator store (lib/ioc/store.h) builds,
 * how big it is against the list files it came from, and how long lookups
 * take, for issue 6's targets (10 M indicators loaded in < 2 s, store <= 1.5x
 * the list files, >= 1 M packets/s per core).
 *
 *   ioc_bench [-n COUNT] [-d DIR] [-q QUERIES] [-k]
 *
 * It writes COUNT synthetic indicators (a mix like real feeds: 70 %
 * domains, 15 % IPv4, 10 % IPv4:port, 3 % CIDR, 2 % URL) as plain list
 * files into DIR (default: a temporary folder, removed afterwards unless
 * -k), then times reading those files into a builder, writing the store and
 * opening it, and prints the size ratio, the process memory and the time
 * per lookup for hits and misses of each kind. The values are a function of
 * their index, so hit queries are regenerated rather than kept.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <khien/khien.h>

#include "khx.h"
#include "store.h"

#define LINE_MAX_LEN 1100

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A bijection on 32 bits (so distinct indexes give distinct addresses). */
static uint32_t perm32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static int bogon(uint32_t a)
{
    unsigned t = a >> 24;
    return t == 0 || t == 10 || t == 127 || t >= 224 || (a & 0xffc00000u) == 0x64400000u ||
           (a & 0xffff0000u) == 0xa9fe0000u || (a & 0xfff00000u) == 0xac100000u ||
           (a & 0xffff0000u) == 0xc0a80000u;
}

static const char *const tlds[] = {"com", "net", "org", "info", "ru",
                                   "xyz", "top", "io",  "cn",   "de"};

/* Domain number i of family `salt`: "<letters>-<base36 i>.<tld>", with a
 * subdomain one time in four. */
static size_t gen_domain(uint64_t i, uint64_t salt, char *out)
{
    uint64_t r = mix64(i * 31 + salt);
    size_t n = 0;
    if ((r & 3) == 0) {
        static const char *const subs[] = {"www", "cdn", "api", "mail", "update", "static"};
        n += (size_t)sprintf(out, "%s.", subs[(r >> 2) % 6]);
    }
    unsigned letters = 4 + (unsigned)((r >> 8) % 8);
    for (unsigned k = 0; k < letters; k++)
        out[n++] = (char)('a' + (mix64(r + k) % 26));
    out[n++] = '-';
    char tmp[16];
    size_t t = 0;
    uint64_t x = i;
    do {
        unsigned d = (unsigned)(x % 36);
        tmp[t++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        x /= 36;
    } while (x != 0);
    while (t > 0)
        out[n++] = tmp[--t];
    n += (size_t)sprintf(out + n, ".%s", tlds[(r >> 20) % 10]);
    return n;
}

/* IPv4 number i of family salt, skipping bogons (returns 0 for those). */
static uint32_t gen_v4(uint64_t i, uint32_t salt)
{
    uint32_t a = perm32((uint32_t)i ^ salt);
    return bogon(a) ? 0 : a;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this (single-threaded) process: the box is shared, so wall
 * time measures the neighbours as much as the store. Both are printed. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rss(const char *label)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    if (f == NULL)
        return;
    printf("%-28s", label);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0 || strncmp(line, "RssAnon:", 8) == 0 ||
            strncmp(line, "RssFile:", 8) == 0 || strncmp(line, "VmHWM:", 6) == 0) {
            line[strcspn(line, "\n")] = '\0';
            char *v = line + strcspn(line, " \t");
            printf("  %.*s%s", (int)strcspn(line, ":"), line, v);
        }
    printf("\n");
    fclose(f);
}

/* The share of each kind, per 100. */
enum { N_DOM = 70, N_V4 = 15, N_V4P = 10, N_CIDR = 3, N_URL = 2 };

struct gen {
    size_t ndom, nv4, nv4p, ncidr, nurl;
};

static int write_lists(const char *dir, size_t n, struct gen *g, uint64_t *bytes)
{
    char path[4096], v[LINE_MAX_LEN];
    FILE *f;
    g->ndom = n * N_DOM / 100;
    g->nv4 = n * N_V4 / 100;
    g->nv4p = n * N_V4P / 100;
    g->ncidr = n * N_CIDR / 100;
    g->nurl = n - g->ndom - g->nv4 - g->nv4p - g->ncidr;
    *bytes = 0;
#define OPEN(name)                                                                                 \
    do {                                                                                           \
        snprintf(path, sizeof(path), "%s/%s", dir, name);                                          \
        if ((f = fopen(path, "w")) == NULL)                                                        \
            return -1;                                                                             \
    } while (0)
#define CLOSE()                                                                                    \
    do {                                                                                           \
        *bytes += (uint64_t)ftell(f);                                                              \
        if (fclose(f) != 0)                                                                        \
            return -1;                                                                             \
    } while (0)
    OPEN("domains.txt");
    for (size_t i = 0; i < g->ndom; i++) {
        size_t l = gen_domain(i, 1, v);
        v[l++] = '\n';
        fwrite(v, 1, l, f);
    }
    CLOSE();
    OPEN("ipv4.txt");
    for (size_t i = 0; i < g->nv4; i++) {
        uint32_t a = gen_v4(i, 0x1234), na = htonl(a);
        if (a == 0)
            continue;
        inet_ntop(AF_INET, &na, v, sizeof(v));
        fprintf(f, "%s\n", v);
    }
    CLOSE();
    OPEN("ipport.txt");
    for (size_t i = 0; i < g->nv4p; i++) {
        uint32_t a = gen_v4(i, 0x5678), na = htonl(a);
        if (a == 0)
            continue;
        inet_ntop(AF_INET, &na, v, sizeof(v));
        fprintf(f, "%s:%u\n", v, 1024 + (unsigned)(i % 60000));
    }
    CLOSE();
    OPEN("cidr.txt");
    for (size_t i = 0; i < g->ncidr; i++) {
        /* like firehol and iprep lists: half /24, a tenth /16../20, the rest /21../29 */
        unsigned r = (unsigned)(mix64(i) % 100);
        unsigned len = r < 50 ? 24 : r < 60 ? 16 + r % 5 : 21 + r % 9;
        uint32_t a = gen_v4(i, 0x9abc);
        if (a == 0)
            continue;
        uint32_t na = htonl(a & (~0u << (32 - len)));
        inet_ntop(AF_INET, &na, v, sizeof(v));
        fprintf(f, "%s/%u\n", v, len);
    }
    CLOSE();
    OPEN("urls.txt");
    for (size_t i = 0; i < g->nurl; i++) {
        size_t l = gen_domain(i, 7, v);
        fprintf(f, "%.*s/wp-content/%llx/load.php\n", (int)l, v,
                (unsigned long long)(mix64(i) & 0xffffff));
    }
    CLOSE();
    return 0;
#undef OPEN
#undef CLOSE
}

/* Reads one list through the feed reader the sensor uses (ioc_read_path:
 * normalisation and all), so read+add is what `khien sensor compile` pays. */
static int load_list(struct ioc_builder *b, const char *dir, const char *name, int kind,
                     size_t *bad)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct ioc_read_opts ro = {
        .source = name, .category = kind == IOC_URL ? "distribution" : "c2", .confidence = 50};
    struct ioc_read_stats st;
    memset(&st, 0, sizeof(st));
    int rc = ioc_read_path(path, IOC_FMT_PLAIN, &ro, ioc_builder_add_fn, b, &st);
    *bad += st.rejected;
    return rc;
}

static volatile size_t sink;

/* Times `count` lookups of prepared queries; returns ns per lookup. */
enum qkind { Q_ADDR, Q_DOMAIN, Q_URL };

struct query {
    uint8_t addr[4];
    uint16_t port;
    const char *name;
    size_t len;
};

static double run(const struct ioc_store *s, enum qkind k, const struct query *q, size_t n,
                  int want_hit, size_t *hits)
{
    struct ioc_hit h;
    size_t found = 0;
    double t0 = cpu_s();
    for (size_t i = 0; i < n; i++) {
        int r;
        if (k == Q_ADDR)
            r = ioc_store_match_addr(s, AF_INET, q[i].addr, q[i].port, 1, want_hit ? &h : NULL);
        else if (k == Q_DOMAIN)
            r = ioc_store_match_domain(s, q[i].name, q[i].len, 1, want_hit ? &h : NULL);
        else
            r = ioc_store_match_url(s, q[i].name, q[i].len, 1, want_hit ? &h : NULL);
        found += r == IOC_MATCH;
    }
    double t = cpu_s() - t0;
    sink += found;
    *hits = found;
    return t * 1e9 / (double)n;
}

static void addr_queries(struct query *q, size_t n, size_t range, uint32_t salt, int port_mode,
                         int hit)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t a;
        size_t idx;
        for (uint64_t j = i;; j += n) {
            idx = (size_t)(mix64(j * 7 + salt) % range);
            a = hit ? gen_v4(idx, salt) : perm32((uint32_t)mix64(j + 99));
            if (a != 0 && (hit || !bogon(a)))
                break;
        }
        uint32_t na = htonl(a);
        memcpy(q[i].addr, &na, 4);
        q[i].port = port_mode ? (uint16_t)(1024 + idx % 60000) : 0;
    }
}

int main(int argc, char **argv)
{
    size_t n = 1000000, nq = 1000000, bad = 0;
    const char *dir = NULL;
    int keep = 0, opt;
    char tmpl[] = "/tmp/ioc_bench.XXXXXX", err[256] = "";
    while ((opt = getopt(argc, argv, "n:d:q:k")) != -1) {
        if (opt == 'n')
            n = strtoul(optarg, NULL, 10);
        else if (opt == 'd')
            dir = optarg;
        else if (opt == 'q')
            nq = strtoul(optarg, NULL, 10);
        else if (opt == 'k')
            keep = 1;
        else {
            fprintf(stderr, "usage: ioc_bench [-n COUNT] [-d DIR] [-q QUERIES] [-k]\n");
            return 2;
        }
    }
    if (dir == NULL && (dir = mkdtemp(tmpl)) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    mkdir(dir, 0755);
    struct gen g;
    uint64_t text_bytes;
    double t0 = now_s();
    if (write_lists(dir, n, &g, &text_bytes) != 0) {
        fprintf(stderr, "ioc_bench: writing lists in %s: %s\n", dir, strerror(errno));
        return 1;
    }
    printf("generated %zu indicators (%zu domains, %zu ipv4, %zu ipv4:port, %zu cidr, %zu url) "
           "in %.2f s: %.1f MB of list files in %s\n",
           n, g.ndom, g.nv4, g.nv4p, g.ncidr, g.nurl, now_s() - t0, (double)text_bytes / 1e6, dir);

    char store_path[4200];
    snprintf(store_path, sizeof(store_path), "%s/indicators.store", dir);
    struct ioc_builder *b = NULL;
    struct ioc_build_stats st;
    struct ioc_store *s = NULL;
    double ta = now_s(), ca = cpu_s();
    if (ioc_builder_new(NULL, &b) != KH_OK)
        return 1;
    static const struct {
        const char *name;
        int kind;
    } lists[] = {{"domains.txt", IOC_DOMAIN},
                 {"ipv4.txt", IOC_IP},
                 {"ipport.txt", IOC_IP_PORT},
                 {"cidr.txt", IOC_CIDR},
                 {"urls.txt", IOC_URL}};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        if (load_list(b, dir, lists[i].name, lists[i].kind, &bad) != KH_OK) {
            fprintf(stderr, "ioc_bench: loading %s failed\n", lists[i].name);
            return 1;
        }
    double tb = now_s(), cb = cpu_s();
    rss("after reading lists:");
    if (ioc_builder_write(b, store_path, &st, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "ioc_bench: %s\n", err);
        return 1;
    }
    double tc = now_s(), cc = cpu_s();
    rss("after writing:");
    ioc_builder_free(b);
    double td = now_s(), cd = cpu_s();
    if (ioc_store_open(store_path, &s, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "ioc_bench: %s\n", err);
        return 1;
    }
    double te = now_s(), ce = cpu_s();
    printf("wall: read+add %.3f s, write %.3f s, free builder %.3f s, open %.3f s: total %.3f s\n",
           tb - ta, tc - tb, td - tc, te - td, te - ta);
    printf("cpu:  read+add %.3f s, write %.3f s, free builder %.3f s, open %.3f s: total %.3f s\n",
           cb - ca, cc - cb, cd - cc, ce - cd, ce - ca);
    printf("store: %zu indicators (%zu merged, %zu dropped, %zu bad lines), %.1f MB = %.2fx the "
           "list files\n",
           st.indicators, st.merged, st.allowlisted, bad, (double)st.file_bytes / 1e6,
           (double)st.file_bytes / (double)text_bytes);
    rss("after open:");

    struct query *q = calloc(nq, sizeof(*q));
    char *names = malloc(nq * 300);
    size_t hits;
    double ns;
    if (q == NULL || names == NULL)
        return 1;
    addr_queries(q, nq, g.nv4, 0x1234, 0, 1);
    ns = run(s, Q_ADDR, q, nq, 1, &hits);
    printf("ipv4 hit          %7.1f ns/lookup cpu (%zu/%zu matched)\n", ns, hits, nq);
    addr_queries(q, nq, g.nv4, 0x1234, 0, 0);
    ns = run(s, Q_ADDR, q, nq, 0, &hits);
    double v4miss = ns;
    printf("ipv4 miss         %7.1f ns/lookup cpu (%zu/%zu matched)\n", ns, hits, nq);
    addr_queries(q, nq, g.nv4p, 0x5678, 1, 1);
    ns = run(s, Q_ADDR, q, nq, 1, &hits);
    printf("ipv4:port hit     %7.1f ns/lookup cpu (%zu/%zu matched)\n", ns, hits, nq);
    for (size_t i = 0; i < nq; i++) {
        uint64_t idx = mix64(i) % g.ndom;
        q[i].name = names + i * 300;
        q[i].len = gen_domain(idx, 1, names + i * 300);
    }
    ns = run(s, Q_DOMAIN, q, nq, 1, &hits);
    printf("domain hit        %7.1f ns/lookup cpu (%zu/%zu matched)\n", ns, hits, nq);
    for (size_t i = 0; i < nq; i++) {
        uint64_t idx = mix64(i) % g.ndom;
        char *p = names + i * 300;
        size_t l = (size_t)sprintf(p, "a.b.");
        q[i].len = l + gen_domain(idx, 1, p + l);
    }
    ns = run(s, Q_DOMAIN, q, nq, 1, &hits);
    printf("domain parent hit %7.1f ns/lookup cpu (%zu/%zu matched, 2 labels below)\n", ns, hits,
           nq);
    for (size_t i = 0; i < nq; i++) {
        char *p = names + i * 300;
        size_t l = (size_t)sprintf(p, "www.");
        q[i].len = l + gen_domain(mix64(i), 3, p + l);
    }
    ns = run(s, Q_DOMAIN, q, nq, 0, &hits);
    double dmiss = ns;
    printf("domain miss       %7.1f ns/lookup cpu (%zu/%zu matched, www.<name>.<tld>)\n", ns, hits,
           nq);
    for (size_t i = 0; i < nq; i++) {
        uint64_t idx = mix64(i) % g.nurl;
        char *p = names + i * 300;
        size_t l = gen_domain(idx, 7, p);
        q[i].len = l + (size_t)sprintf(p + l, "/wp-content/%llx/load.php?id=%zu",
                                       (unsigned long long)(mix64(idx) & 0xffffff), i);
    }
    ns = run(s, Q_URL, q, nq, 1, &hits);
    printf("url hit           %7.1f ns/lookup cpu (%zu/%zu matched, with a query string)\n", ns,
           hits, nq);
    for (size_t i = 0; i < nq; i++) {
        char *p = names + i * 300;
        size_t l = gen_domain(mix64(i), 9, p);
        q[i].len = l + (size_t)sprintf(p + l, "/index.php?page=%zu", i);
    }
    ns = run(s, Q_URL, q, nq, 0, &hits);
    printf("url miss          %7.1f ns/lookup cpu (%zu/%zu matched)\n", ns, hits, nq);
    double per_pkt = 2 * v4miss + 0.1 * dmiss;
    printf("per packet (2 ipv4 misses + 0.1 domain miss): %.1f ns = %.1f M lookups-packets/s per "
           "core\n",
           per_pkt, 1e3 / per_pkt);
    free(q);
    free(names);
    ioc_store_close(s);
    if (!keep) {
        static const char *const files[] = {"domains.txt", "ipv4.txt", "ipport.txt",
                                            "cidr.txt",    "urls.txt", "indicators.store"};
        char path[4200];
        for (size_t i = 0; i < 6; i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }
    return (int)(sink & 0);
}
