/*
 * The machine's inventory on Linux (plat_inventory, see agent/platform.h):
 * host name, a stable machine key, operating system, kernel, processor,
 * memory, addresses and whether a host firewall has rules loaded.
 *
 * Everything comes from system calls and files under /etc and /proc; no
 * program is run. The firewall check talks to the kernel directly: an
 * nftables dump over netlink (rules, and base chains whose policy drops),
 * then the legacy iptables tables named in /proc/net/ip{,6}_tables_names
 * through getsockopt (more entries than the built-in chains' policies, or a
 * policy that is not ACCEPT). Running `nft` or `iptables-save` would depend
 * on which tools are installed, on PATH and on their output format, and a
 * daemon that spawns programs needs a timeout and a reaper for each; the
 * kernel's answer is the same without any of that.
 */
/* net/if.h before the kernel headers, which then skip their copies of it. */
#include <net/if.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "khx.h"
#include "platform.h"

#define INV_LINE_MAX   1024
#define INV_NL_BUF     (64 * 1024)
#define INV_IPT_MAX    (64u << 20) /* largest legacy table read */
#define INV_NL_TIMEOUT 2           /* seconds a netlink reply may take */

/* Copies `n` bytes of s into dst[cap], trimmed of surrounding white space. */
static void copy_trimmed(char *dst, size_t cap, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Finds "key<sep>value" lines in a small text file; returns 1 with the
 * value (unquoted, trimmed) in out. Lines longer than INV_LINE_MAX are
 * skipped whole. */
static int file_value(const char *path, const char *key, char sep, char *out, size_t cap)
{
    char line[INV_LINE_MAX];
    size_t klen = strlen(key);
    int found = 0, skipping = 0;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        int complete = (n > 0 && line[n - 1] == '\n') || feof(f);
        if (skipping || !complete) {
            skipping = !complete; /* the rest of a long line is skipped too */
            continue;
        }
        if (strncmp(line, key, klen) != 0)
            continue;
        const char *p = line + klen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != sep)
            continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t vlen = strcspn(p, "\r\n");
        if (vlen >= 2 && (p[0] == '"' || p[0] == '\'') && p[vlen - 1] == p[0]) {
            p++;
            vlen -= 2;
        }
        copy_trimmed(out, cap, p, vlen);
        found = out[0] != '\0';
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------------------------ */
/* Machine key, operating system, processor                                  */
/* ------------------------------------------------------------------------ */

/* SHA-256 (hex) of the trimmed machine id; "" when there is none. */
static void machine_key(char out[65])
{
    static const char *const ids[] = {"/etc/machine-id", "/var/lib/dbus/machine-id",
                                      "/sys/class/dmi/id/product_uuid"};
    out[0] = '\0';
    for (size_t i = 0; i < KHX_ARRAY_LEN(ids); i++) {
        char buf[256], id[256];
        FILE *f = fopen(ids[i], "re");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        copy_trimmed(id, sizeof(id), buf, n);
        uint8_t d[32];
        if (id[0] == '\0' || khx_sha256(id, strlen(id), d) != 0)
            continue;
        khx_hex_encode(d, sizeof(d), out);
        return;
    }
}

static void os_name(char *out, size_t cap, const struct utsname *u)
{
    char name[128] = "", ver[128] = "";
    if (file_value("/etc/os-release", "PRETTY_NAME", '=', out, cap) ||
        file_value("/usr/lib/os-release", "PRETTY_NAME", '=', out, cap))
        return;
    if (file_value("/etc/os-release", "NAME", '=', name, sizeof(name))) {
        file_value("/etc/os-release", "VERSION", '=', ver, sizeof(ver));
        snprintf(out, cap, "%s%s%s", name, ver[0] ? " " : "", ver);
        return;
    }
    snprintf(out, cap, "%s", u->sysname);
}

/* The processor's name: x86 has "model name"; ARM boards name the board
 * ("Hardware") or only the implementer and part numbers; others "cpu". */
static void cpu_name(char *out, size_t cap, const char *arch)
{
    char impl[32] = "", part[32] = "";
    if (file_value("/proc/cpuinfo", "model name", ':', out, cap) ||
        file_value("/proc/cpuinfo", "Hardware", ':', out, cap) ||
        file_value("/proc/cpuinfo", "cpu model", ':', out, cap) ||
        file_value("/proc/cpuinfo", "cpu", ':', out, cap) ||
        file_value("/proc/cpuinfo", "uarch", ':', out, cap))
        return;
    if (file_value("/proc/cpuinfo", "CPU implementer", ':', impl, sizeof(impl))) {
        file_value("/proc/cpuinfo", "CPU part", ':', part, sizeof(part));
        snprintf(out, cap, "%s implementer %s part %s", arch, impl, part[0] ? part : "?");
        return;
    }
    snprintf(out, cap, "%s", arch);
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */
/* ------------------------------------------------------------------------ */

static int listed(char list[][64], size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

static int listed_mac(char list[][32], size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

static void addresses(struct plat_inventory *inv)
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (i->ifa_addr == NULL || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        char buf[64];
        int fam = i->ifa_addr->sa_family;
        if (fam == AF_INET || fam == AF_INET6) {
            /* inet_ntop never adds a "%scope" suffix to a link-local address. */
            const void *a = fam == AF_INET
                                ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                                : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
            if (inet_ntop(fam, a, buf, sizeof(buf)) == NULL || inv->nips >= PLAT_MAX_ADDRS ||
                listed(inv->ips, inv->nips, buf))
                continue;
            snprintf(inv->ips[inv->nips++], sizeof(inv->ips[0]), "%s", buf);
        } else if (fam == AF_PACKET) {
            const struct sockaddr_ll *ll = (const struct sockaddr_ll *)i->ifa_addr;
            int nonzero = 0;
            if (ll->sll_halen != 6)
                continue;
            for (int k = 0; k < 6; k++)
                nonzero |= ll->sll_addr[k];
            if (!nonzero)
                continue;
            snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", ll->sll_addr[0],
                     ll->sll_addr[1], ll->sll_addr[2], ll->sll_addr[3], ll->sll_addr[4],
                     ll->sll_addr[5]);
            if (inv->nmacs >= PLAT_MAX_ADDRS || listed_mac(inv->macs, inv->nmacs, buf))
                continue;
            snprintf(inv->macs[inv->nmacs++], sizeof(inv->macs[0]), "%.17s", buf);
        }
    }
    freeifaddrs(ifs);
}

/* ------------------------------------------------------------------------ */
/* Firewall: nftables over netlink                                           */
/* ------------------------------------------------------------------------ */

/* True when a NEWCHAIN message describes a base chain (it has a hook) whose
 * policy is not ACCEPT. The attributes are walked with their lengths
 * checked against the message. */
static int chain_drops(const struct nlmsghdr *nh)
{
    size_t off = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    int hook = 0, policy_drop = 0;
    if (nh->nlmsg_len < off)
        return 0;
    const uint8_t *p = (const uint8_t *)nh + NLMSG_ALIGN(off);
    size_t left = nh->nlmsg_len - NLMSG_ALIGN(off);
    while (left >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)p;
        if (a->nla_len < NLA_HDRLEN || a->nla_len > left)
            break;
        int type = a->nla_type & NLA_TYPE_MASK;
        if (type == NFTA_CHAIN_HOOK)
            hook = 1;
        if (type == NFTA_CHAIN_POLICY && a->nla_len >= NLA_HDRLEN + 4) {
            uint32_t v;
            memcpy(&v, p + NLA_HDRLEN, 4);
            policy_drop = ntohl(v) != NF_ACCEPT;
        }
        size_t step = NLA_ALIGN(a->nla_len);
        if (step >= left)
            break;
        p += step;
        left -= step;
    }
    return hook && policy_drop;
}

/* Dumps nftables objects of one kind. Returns 1 when one counts as a
 * firewall (any rule; a base chain that drops), 0 when none, -1 when the
 * kernel could not be asked. */
static int nft_dump(int msg, int newmsg)
{
    int r = -1, fd = -1;
    uint8_t *buf = NULL;
    struct {
        struct nlmsghdr nh;
        struct nfgenmsg g;
    } req;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct timeval tv = {.tv_sec = INV_NL_TIMEOUT};

    if ((fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER)) < 0)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = sizeof(req);
    req.nh.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | msg;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.nh.nlmsg_seq = 1;
    req.g.nfgen_family = AF_UNSPEC;
    req.g.version = NFNETLINK_V0;
    if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) != sizeof(req))
        goto out;
    if ((buf = malloc(INV_NL_BUF)) == NULL)
        goto out;
    int found = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, INV_NL_BUF, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        size_t len = (size_t)n;
        for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, len);
             nh = NLMSG_NEXT(nh, len)) {
            if (nh->nlmsg_seq != 1)
                continue;
            if (nh->nlmsg_type == NLMSG_DONE) {
                r = found;
                goto out;
            }
            if (nh->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(nh);
                /* No nftables in this kernel: nothing loaded there. */
                if (nh->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) &&
                    (e->error == -EOPNOTSUPP || e->error == -ENOENT ||
                     e->error == -EPROTONOSUPPORT))
                    r = 0;
                goto out;
            }
            if (nh->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | newmsg))
                found |= newmsg == NFT_MSG_NEWRULE ? 1 : chain_drops(nh);
        }
    }
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Firewall: legacy iptables                                                  */
/* ------------------------------------------------------------------------ */

/* Whether one legacy table holds more than its built-in chains' ACCEPT
 * policies. `v6` selects ip6tables, whose entries have a larger header. */
static int ipt_table_active(int v6, const char *name)
{
    int r = -1, fd = -1;
    struct ipt_get_entries *ge = NULL;
    struct ipt_getinfo info; /* ip6t_getinfo has the same layout */
    socklen_t len = sizeof(info);
    int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;

    memset(&info, 0, sizeof(info));
    snprintf(info.name, sizeof(info.name), "%s", name);
    if ((fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW)) < 0)
        goto out;
    if (getsockopt(fd, level, v6 ? IP6T_SO_GET_INFO : IPT_SO_GET_INFO, &info, &len) != 0)
        goto out;
    unsigned builtin = (unsigned)__builtin_popcount(info.valid_hooks);
    if (info.num_entries > builtin + 1) {
        r = 1;
        goto out;
    }
    if (info.size > INV_IPT_MAX)
        goto out;
    /* Only policies: one of them may drop. */
    size_t total = sizeof(*ge) + info.size;
    if ((ge = calloc(1, total)) == NULL)
        goto out;
    memcpy(ge->name, info.name, sizeof(ge->name));
    ge->size = info.size;
    len = (socklen_t)total;
    if (getsockopt(fd, level, v6 ? IP6T_SO_GET_ENTRIES : IPT_SO_GET_ENTRIES, ge, &len) != 0)
        goto out;
    const uint8_t *tab = (const uint8_t *)ge->entrytable;
    r = 0;
    for (unsigned h = 0; h < NF_INET_NUMHOOKS; h++) {
        if (!(info.valid_hooks & (1u << h)))
            continue;
        size_t at = info.underflow[h];
        uint16_t toff;
        size_t ehdr = v6 ? sizeof(struct ip6t_entry) : sizeof(struct ipt_entry);
        if (at > info.size || info.size - at < ehdr)
            continue;
        if (v6)
            toff = ((const struct ip6t_entry *)(tab + at))->target_offset;
        else
            toff = ((const struct ipt_entry *)(tab + at))->target_offset;
        if (toff > info.size - at || info.size - at - toff < sizeof(struct xt_standard_target))
            continue;
        const struct xt_standard_target *t = (const void *)(tab + at + toff);
        if (t->verdict != -NF_ACCEPT - 1)
            r = 1;
    }
out:
    free(ge);
    if (fd >= 0)
        close(fd);
    return r;
}

/* 1: a legacy table has rules or a non-ACCEPT policy; 0: none; -1: unknown. */
static int ipt_legacy(int v6)
{
    char line[64];
    int r = 0;
    FILE *f = fopen(v6 ? "/proc/net/ip6_tables_names" : "/proc/net/ip_tables_names", "re");
    if (f == NULL)
        return 0; /* the legacy module is not loaded: no tables */
    while (r != 1 && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || strlen(line) >= XT_TABLE_MAXNAMELEN)
            continue;
        int t = ipt_table_active(v6, line);
        if (t != 0)
            r = t; /* 1 ends the loop; -1 (unknown) stays unless a 1 follows */
    }
    fclose(f);
    return r;
}

static int firewall_state(void)
{
    int parts[4] = {nft_dump(NFT_MSG_GETRULE, NFT_MSG_NEWRULE), 0, 0, 0};
    if (parts[0] == 1)
        return 1;
    parts[1] = nft_dump(NFT_MSG_GETCHAIN, NFT_MSG_NEWCHAIN);
    parts[2] = ipt_legacy(0);
    parts[3] = ipt_legacy(1);
    int unknown = 0;
    for (size_t i = 0; i < KHX_ARRAY_LEN(parts); i++) {
        if (parts[i] == 1)
            return 1;
        unknown |= parts[i] < 0;
    }
    return unknown ? -1 : 0;
}

/* ------------------------------------------------------------------------ */

int plat_inventory(struct plat_inventory *inv)
{
    struct utsname u;
    struct sysinfo si;
    if (inv == NULL)
        return KH_EINVAL;
    memset(inv, 0, sizeof(*inv));
    if (gethostname(inv->hostname, sizeof(inv->hostname) - 1) != 0)
        inv->hostname[0] = '\0';
    if (uname(&u) == 0) {
        snprintf(inv->kernel, sizeof(inv->kernel), "%s", u.release);
        snprintf(inv->arch, sizeof(inv->arch), "%.63s", u.machine);
    } else {
        memset(&u, 0, sizeof(u));
        snprintf(u.sysname, sizeof(u.sysname), "Linux");
    }
    machine_key(inv->machine_key);
    os_name(inv->os, sizeof(inv->os), &u);
    cpu_name(inv->cpu, sizeof(inv->cpu), inv->arch);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    inv->cpus = n > 0 ? (unsigned)n : 1;
    if (sysinfo(&si) == 0)
        inv->mem_bytes = (uint64_t)si.totalram * (si.mem_unit ? si.mem_unit : 1);
    addresses(inv);
    inv->firewall = firewall_state();
    return inv->machine_key[0] ? KH_OK : KH_ENOTFOUND;
}
