/*
 * gen_traffic: the sensor benchmark's synthetic world. Writes a classic
 * pcap of N Ethernet frames that look like an agency's uplink — DNS queries
 * and answers, TLS ClientHellos with SNI, HTTP requests, bulk TCP data and
 * ACKs between internal 10.x hosts and Internet addresses — and indicator
 * lists of M entries in Khiên's plain form (domains, IPv4, IP:port, CIDRs,
 * URLs) whose mix follows real feeds. One packet in `--hit-every` carries a
 * listed value, so the run finds hits at a known rate. Also writes the same
 * domains and addresses as an ndpiReader protocol file (`host:"x"@Malware`,
 * `ip:a.b.c.d/32@Malware`; at most --ndpi-max entries, because nDPI needs
 * about 1 KB per host rule) for the side-by-side run.
 *
 *   gen_traffic --packets N --indicators M --out DIR [--seed S] [--hit-every K]
 *
 * Everything derives from the seed: the same arguments give the same bytes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: fast, and good enough for traffic shapes. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static const char *const tlds[] = {"com", "net", "org", "info", "ru", "xyz", "top", "vn", "io"};
static const char *const words[] = {"update", "cdn",  "mail",  "secure", "login", "api",
                                    "static", "img",  "cloud", "data",   "files", "news",
                                    "portal", "shop", "bank",  "track",  "sync",  "dl"};

/* Domain i of the universe: listed domains are i < ndomains; traffic draws
 * from a larger range so most names miss. */
static void domain_name(uint64_t i, char out[128])
{
    uint64_t h = mix(i * 7919 + 17);
    snprintf(out, 128, "%s%llx-%s.%s", words[h % 18], (unsigned long long)(h >> 20) & 0xfffffff,
             words[(h >> 8) % 18], tlds[(h >> 16) % 9]);
}

/* Listed IPv4 address i: public space (avoids 10/8, 127/8, 0/8, 100.64/10,
 * 169.254/16, 172.16/12, 192.168/16 and 224/3). */
static uint32_t listed_ip(uint64_t i)
{
    uint32_t a = (uint32_t)mix(i * 104729 + 3);
    uint32_t first = 11 + (a >> 24) % 89; /* 11..99 */
    if (first == 100)
        first = 101;
    return (first << 24) | (a & 0xffffff);
}

struct counts {
    uint64_t domains, ips, ipports, cidrs, urls;
};

static void plan(uint64_t m, struct counts *c)
{
    c->domains = m * 70 / 100;
    c->ips = m * 15 / 100;
    c->ipports = m * 10 / 100;
    c->cidrs = m * 3 / 100;
    c->urls = m - c->domains - c->ips - c->ipports - c->cidrs;
}

static FILE *open_out(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "gen_traffic: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    return f;
}

static void ip_text(uint32_t ip, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

static void write_lists(const char *dir, uint64_t m, uint64_t ndpi_max)
{
    struct counts c;
    plan(m, &c);
    FILE *f = open_out(dir, "domains.txt");
    FILE *nd = open_out(dir, "ndpi-protos.txt");
    char name[128], ip[16];
    uint64_t nd_written = 0;
    fprintf(f, "# synthetic C2 domains for the sensor benchmark\n");
    for (uint64_t i = 0; i < c.domains; i++) {
        domain_name(i, name);
        fprintf(f, "%s c2 synthetic\n", name);
        if (nd_written < ndpi_max / 2) {
            fprintf(nd, "host:\"%s\"@Malware\n", name);
            nd_written++;
        }
    }
    fclose(f);
    f = open_out(dir, "ips.txt");
    for (uint64_t i = 0; i < c.ips; i++) {
        ip_text(listed_ip(i), ip);
        fprintf(f, "%s\n", ip);
        if (nd_written < ndpi_max) {
            fprintf(nd, "ip:%s/32@Malware\n", ip);
            nd_written++;
        }
    }
    fclose(f);
    fclose(nd);
    f = open_out(dir, "ipports.txt");
    for (uint64_t i = 0; i < c.ipports; i++) {
        ip_text(listed_ip(c.ips + i), ip);
        fprintf(f, "%s:%u\n", ip, 1024u + (unsigned)(mix(i) % 60000));
    }
    fclose(f);
    f = open_out(dir, "cidrs.txt");
    for (uint64_t i = 0; i < c.cidrs; i++) {
        uint32_t a = listed_ip(c.ips + c.ipports + i);
        unsigned len = 22 + (unsigned)(mix(i + 5) % 9); /* /22../30 */
        a &= len == 32 ? 0xffffffffu : ~((1u << (32 - len)) - 1);
        ip_text(a, ip);
        fprintf(f, "%s/%u\n", ip, len);
    }
    fclose(f);
    f = open_out(dir, "urls.txt");
    for (uint64_t i = 0; i < c.urls; i++) {
        domain_name(c.domains + 1000000000ull + i, name);
        fprintf(f, "http://%s/%s/%llx.php\n", name, words[i % 18],
                (unsigned long long)mix(i) & 0xffffff);
    }
    fclose(f);
}

/* ---- frames ---- */

static uint8_t frame[2048];

static size_t put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static uint16_t csum(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* Ethernet + IPv4 + TCP/UDP headers around payload pl (already at the right
 * offset); returns the frame length. */
static size_t wrap(int proto, uint32_t src, uint32_t dst, unsigned sport, unsigned dport, size_t pl,
                   unsigned tcp_flags)
{
    uint8_t *p = frame;
    memcpy(p, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00", 14);
    uint8_t *ip = p + 14;
    size_t l4 = proto == 6 ? 20 : 8;
    size_t tot = 20 + l4 + pl;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (unsigned)tot);
    ip[8] = 64;
    ip[9] = (uint8_t)proto;
    uint32_t s = htonl(src), d = htonl(dst);
    memcpy(ip + 12, &s, 4);
    memcpy(ip + 16, &d, 4);
    put16(ip + 10, csum(ip, 20));
    uint8_t *t = ip + 20;
    memset(t, 0, l4);
    put16(t, sport);
    put16(t + 2, dport);
    if (proto == 6) {
        uint32_t seq = htonl((uint32_t)rnd());
        memcpy(t + 4, &seq, 4);
        t[12] = 5 << 4;
        t[13] = (uint8_t)tcp_flags;
        put16(t + 14, 64240);
    } else {
        put16(t + 4, (unsigned)(8 + pl));
    }
    return 14 + tot;
}

static size_t dns_name(uint8_t *p, const char *name)
{
    size_t o = 0;
    const char *s = name;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        p[o++] = (uint8_t)l;
        memcpy(p + o, s, l);
        o += l;
        s += l + (dot ? 1 : 0);
    }
    p[o++] = 0;
    return o;
}

static size_t dns_packet(uint8_t *p, const char *name, int response, uint32_t answer)
{
    size_t o = 0;
    o += put16(p, (unsigned)(rnd() & 0xffff));
    o += put16(p + o, response ? 0x8180 : 0x0100);
    o += put16(p + o, 1);
    o += put16(p + o, response ? 1 : 0);
    o += put16(p + o, 0);
    o += put16(p + o, 0);
    o += dns_name(p + o, name);
    o += put16(p + o, 1);
    o += put16(p + o, 1);
    if (response) {
        o += put16(p + o, 0xc00c);
        o += put16(p + o, 1);
        o += put16(p + o, 1);
        o += put16(p + o, 0);
        o += put16(p + o, 300);
        o += put16(p + o, 4);
        uint32_t a = htonl(answer);
        memcpy(p + o, &a, 4);
        o += 4;
    }
    return o;
}

static size_t client_hello(uint8_t *p, const char *sni)
{
    static const uint16_t suites[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c,
                                      0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c};
    uint8_t ext[512];
    size_t e = 0, sl = strlen(sni);
    e += put16(ext + e, 0); /* server_name */
    e += put16(ext + e, (unsigned)(sl + 5));
    e += put16(ext + e, (unsigned)(sl + 3));
    ext[e++] = 0;
    e += put16(ext + e, (unsigned)sl);
    memcpy(ext + e, sni, sl);
    e += sl;
    static const uint8_t rest[] = {
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, /* groups */
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,                                     /* point formats */
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, /* sig algs */
        0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, 0x68, 0x32,                   /* alpn h2 */
        0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03,                   /* versions */
    };
    memcpy(ext + e, rest, sizeof(rest));
    e += sizeof(rest);
    uint8_t body[1024];
    size_t b = 0;
    b += put16(body, 0x0303);
    for (int i = 0; i < 32; i++)
        body[b++] = (uint8_t)rnd();
    body[b++] = 0;
    b += put16(body + b, (unsigned)(sizeof(suites)));
    for (size_t i = 0; i < sizeof(suites) / 2; i++)
        b += put16(body + b, suites[i]);
    body[b++] = 1;
    body[b++] = 0;
    b += put16(body + b, (unsigned)e);
    memcpy(body + b, ext, e);
    b += e;
    size_t o = 0;
    p[o++] = 22;
    o += put16(p + o, 0x0301);
    o += put16(p + o, (unsigned)(b + 4));
    p[o++] = 1;
    p[o++] = 0;
    o += put16(p + o, (unsigned)b);
    memcpy(p + o, body, b);
    return o + b;
}

struct pcap_hdr {
    uint32_t magic;
    uint16_t major, minor;
    int32_t zone;
    uint32_t sigfigs, snaplen, linktype;
};

int main(int argc, char **argv)
{
    uint64_t packets = 1000000, indicators = 1000000, seed = 1, hit_every = 1000, ndpi_max = 200000;
    const char *dir = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--packets") == 0)
            packets = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--indicators") == 0)
            indicators = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--hit-every") == 0)
            hit_every = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--ndpi-max") == 0)
            ndpi_max = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--out") == 0)
            dir = argv[i + 1];
    }
    if (dir == NULL || hit_every == 0 || indicators < 100) {
        fprintf(stderr, "usage: gen_traffic --packets N --indicators M (>= 100) --out DIR "
                        "[--seed S] [--hit-every K] [--ndpi-max N]\n");
        return 2;
    }
    mkdir(dir, 0755);
    rng_state = seed;
    write_lists(dir, indicators, ndpi_max);
    struct counts c;
    plan(indicators, &c);
    FILE *f = open_out(dir, "traffic.pcap");
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof(buf));
    struct pcap_hdr h = {0xa1b2c3d4, 2, 4, 0, 0, 65535, 1};
    fwrite(&h, sizeof(h), 1, f);
    uint32_t ts = 1795000000u, us = 0;
    uint64_t listed = 0;
    char name[128];
    for (uint64_t n = 0; n < packets; n++) {
        int hit = (n % hit_every) == hit_every / 2;
        uint32_t host = (10u << 24) | (uint32_t)(rnd() & 0xffff);
        /* Unlisted Internet addresses come from 101.0.0.0-126.255.255.255,
         * outside the listed space (11-99.x), so only planted packets hit. */
        uint32_t remote = ((101u + (uint32_t)(rnd() % 26)) << 24) | (uint32_t)(rnd() & 0xffffff);
        unsigned kind = (unsigned)(n % 20), sport = 1024 + (unsigned)(rnd() % 60000);
        if (hit) {
            listed++;
            kind = (unsigned)(listed % 4) * 2; /* DNS query, TLS, HTTP or data to a listed IP */
        }
        uint64_t di = hit ? rnd() % c.domains : c.domains + 1000000 + rnd() % (indicators * 10);
        domain_name(di, name);
        uint8_t *pl = frame + 14 + 20;
        size_t len;
        switch (kind) {
        case 0:
        case 1: /* DNS query / answer */
            len = wrap(17, kind ? remote : host, kind ? host : remote, kind ? 53 : sport,
                       kind ? sport : 53, dns_packet(pl + 8, name, kind == 1, remote), 0);
            break;
        case 2: /* TLS ClientHello */
            len = wrap(6, host, remote, sport, 443, client_hello(pl + 20, name), 0x18);
            break;
        case 4: { /* HTTP request */
            int k = snprintf((char *)pl + 20, 600,
                             "GET /index.php?id=%u HTTP/1.1\r\nHost: %s\r\nUser-Agent: "
                             "Mozilla/5.0\r\nAccept: */*\r\n\r\n",
                             (unsigned)(rnd() & 0xffff), name);
            len = wrap(6, host, remote, sport, 80, (size_t)k, 0x18);
            break;
        }
        case 6: /* data to an address (listed when hit) */
            if (hit)
                remote = listed_ip(rnd() % c.ips);
            /* fall through */
        default:
            if (kind % 3 == 0) { /* pure ACK */
                len = wrap(6, host, remote, sport, 443, 0, 0x10);
            } else { /* bulk TLS application data from the server */
                size_t pl_len = 600 + (size_t)(rnd() % 800);
                pl[20] = 23;
                pl[21] = 3;
                pl[22] = 3;
                put16(pl + 23, (unsigned)(pl_len - 5));
                memset(pl + 25, (int)(n & 0xff), pl_len - 5);
                len = wrap(6, remote, host, 443, sport, pl_len, 0x18);
            }
            break;
        }
        us += 1 + (uint32_t)(rnd() % 20);
        if (us >= 1000000) {
            ts++;
            us -= 1000000;
        }
        uint32_t rec[4] = {ts, us, (uint32_t)len, (uint32_t)len};
        fwrite(rec, sizeof(rec), 1, f);
        fwrite(frame, 1, len, f);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "gen_traffic: write failed: %s\n", strerror(errno));
        return 2;
    }
    printf("%llu packets (%llu carrying a listed value), %llu indicators in %s\n",
           (unsigned long long)packets, (unsigned long long)listed, (unsigned long long)indicators,
           dir);
    return 0;
}
