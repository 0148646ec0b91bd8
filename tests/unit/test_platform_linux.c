/*
 * Tests of the Linux inventory and connection listing (agent/linux/
 * inventory.c, agent/linux/netconn.c): the inventory's fields agree with
 * what the system calls say; sockets this test opens on loopback appear with
 * the right ports, through netlink and through the /proc/net fallback alike;
 * their owner is this process with its executable's hash; and the /proc/net
 * line parser turns down malformed lines without harm.
 */
#include "testutil.h"

/* net/if.h (through ifaddrs users) must precede the kernel headers. */
#include <net/if.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "khx.h"
#include "platform.h"

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (khx_hexval((unsigned char)s[i]) < 0 || (s[i] >= 'A' && s[i] <= 'F'))
            return 0;
    return 1;
}

static void inventory_fields_are_filled_and_sane(void **state)
{
    (void)state;
    struct plat_inventory *inv = calloc(1, sizeof(*inv));
    assert_non_null(inv);
    int rc = plat_inventory(inv);
    assert_true(rc == KH_OK || rc == KH_ENOTFOUND);

    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
    assert_string_equal(inv->hostname, host);
    if (rc == KH_OK)
        assert_true(is_hex64(inv->machine_key));
    else
        printf("# no machine id on this system: machine_key is empty\n");

    struct utsname u;
    assert_int_equal(uname(&u), 0);
    assert_string_equal(inv->kernel, u.release);
    assert_string_equal(inv->arch, u.machine);
    assert_true(inv->os[0] != '\0');
    assert_true(inv->cpu[0] != '\0');
    assert_true(inv->cpus >= 1);
    assert_true(inv->mem_bytes > (1u << 20));
    assert_true(inv->nips <= PLAT_MAX_ADDRS && inv->nmacs <= PLAT_MAX_ADDRS);
    for (size_t i = 0; i < inv->nips; i++) {
        uint8_t a[16];
        int ok =
            inet_pton(AF_INET, inv->ips[i], a) == 1 || inet_pton(AF_INET6, inv->ips[i], a) == 1;
        assert_true(ok);
        assert_null(strchr(inv->ips[i], '%'));
        assert_string_not_equal(inv->ips[i], "127.0.0.1");
        assert_string_not_equal(inv->ips[i], "::1");
    }
    for (size_t i = 0; i < inv->nmacs; i++) {
        unsigned b[6];
        assert_int_equal(strlen(inv->macs[i]), 17);
        assert_int_equal(sscanf(inv->macs[i], "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3],
                                &b[4], &b[5]),
                         6);
        assert_string_not_equal(inv->macs[i], "00:00:00:00:00:00");
    }
    assert_true(inv->firewall >= -1 && inv->firewall <= 1);
    printf("# %s | %s | %s %s | %s x%u | %llu MiB | %zu addresses, %zu MACs | firewall %d\n",
           inv->hostname, inv->os, inv->kernel, inv->arch, inv->cpu, inv->cpus,
           (unsigned long long)(inv->mem_bytes >> 20), inv->nips, inv->nmacs, inv->firewall);
    /* Stable across calls: the key identifies the machine. */
    struct plat_inventory *again = calloc(1, sizeof(*again));
    assert_non_null(again);
    plat_inventory(again);
    assert_string_equal(inv->machine_key, again->machine_key);
    free(again);
    free(inv);
}

/* ------------------------------------------------------------------------ */
/* Firewall detection, in a private network namespace                        */
/* ------------------------------------------------------------------------ */

struct nlbuf {
    uint8_t b[4096];
    size_t len, msg;
};

static void nl_begin(struct nlbuf *nb, uint16_t type, uint16_t flags, uint8_t family, uint16_t res)
{
    nb->msg = nb->len;
    struct nlmsghdr *nh = (struct nlmsghdr *)(nb->b + nb->len);
    memset(nh, 0, NLMSG_LENGTH(sizeof(struct nfgenmsg)));
    nh->nlmsg_type = type;
    nh->nlmsg_flags = NLM_F_REQUEST | flags;
    nh->nlmsg_seq = (uint32_t)nb->len + 1;
    struct nfgenmsg *g = NLMSG_DATA(nh);
    g->nfgen_family = family;
    g->version = NFNETLINK_V0;
    g->res_id = htons(res);
    nb->len += NLMSG_LENGTH(sizeof(struct nfgenmsg));
    nh->nlmsg_len = (uint32_t)(nb->len - nb->msg);
}

static size_t nl_attr(struct nlbuf *nb, uint16_t type, const void *data, size_t n)
{
    size_t at = nb->len;
    struct nlattr *a = (struct nlattr *)(nb->b + nb->len);
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + n);
    memcpy(nb->b + nb->len + NLA_HDRLEN, data, n);
    nb->len += NLA_ALIGN(NLA_HDRLEN + n);
    ((struct nlmsghdr *)(nb->b + nb->msg))->nlmsg_len = (uint32_t)(nb->len - nb->msg);
    return at;
}

static void nl_str(struct nlbuf *nb, uint16_t type, const char *s)
{
    nl_attr(nb, type, s, strlen(s) + 1);
}

static void nl_u32(struct nlbuf *nb, uint16_t type, uint32_t v)
{
    v = htonl(v);
    nl_attr(nb, type, &v, 4);
}

/* Creates table "t" with chain "c" (a base chain on input when `policy` is
 * NF_ACCEPT or NF_DROP, a regular chain when it is -1) and, if `rule`, one
 * empty rule in it. Returns 0 when the kernel acknowledged every message. */
static int nft_make(int policy, int rule)
{
    const uint16_t nft = NFNL_SUBSYS_NFTABLES << 8;
    static struct nlbuf nb;
    memset(&nb, 0, sizeof(nb));
    nl_begin(&nb, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    nl_begin(&nb, nft | NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_ACK, NFPROTO_IPV4, 0);
    nl_str(&nb, NFTA_TABLE_NAME, "t");
    nl_begin(&nb, nft | NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK, NFPROTO_IPV4, 0);
    nl_str(&nb, NFTA_CHAIN_TABLE, "t");
    nl_str(&nb, NFTA_CHAIN_NAME, "c");
    if (policy >= 0) {
        uint8_t hook[16];
        uint32_t num = htonl(NF_INET_LOCAL_IN), prio = htonl(0);
        struct nlattr *a = (struct nlattr *)hook;
        a->nla_type = NFTA_HOOK_HOOKNUM;
        a->nla_len = 8;
        memcpy(hook + 4, &num, 4);
        a = (struct nlattr *)(hook + 8);
        a->nla_type = NFTA_HOOK_PRIORITY;
        a->nla_len = 8;
        memcpy(hook + 12, &prio, 4);
        nl_attr(&nb, NLA_F_NESTED | NFTA_CHAIN_HOOK, hook, sizeof(hook));
        nl_u32(&nb, NFTA_CHAIN_POLICY, (uint32_t)policy);
        nl_str(&nb, NFTA_CHAIN_TYPE, "filter");
    }
    if (rule) {
        nl_begin(&nb, nft | NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, NFPROTO_IPV4,
                 0);
        nl_str(&nb, NFTA_RULE_TABLE, "t");
        nl_str(&nb, NFTA_RULE_CHAIN, "c");
    }
    nl_begin(&nb, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);

    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (fd < 0 ||
        sendto(fd, nb.b, nb.len, 0, (struct sockaddr *)&sa, sizeof(sa)) != (ssize_t)nb.len)
        return -1;
    int acks = 0, want = rule ? 3 : 2, bad = 0;
    uint8_t reply[8192];
    while (acks < want && !bad) {
        ssize_t n = recv(fd, reply, sizeof(reply), 0);
        if (n <= 0)
            break;
        size_t len = (size_t)n;
        for (struct nlmsghdr *nh = (struct nlmsghdr *)reply; NLMSG_OK(nh, len);
             nh = NLMSG_NEXT(nh, len)) {
            if (nh->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = NLMSG_DATA(nh);
            if (e->error != 0)
                bad = 1;
            acks++;
        }
    }
    close(fd);
    return acks == want && !bad ? 0 : -1;
}

/* In a fresh network namespace: 1 = skip (no namespaces here), 0 = as
 * expected, anything else = which check failed. */
static int firewall_child(int policy, int rule)
{
    struct plat_inventory *inv = calloc(1, sizeof(*inv));
    if (inv == NULL || unshare(CLONE_NEWNET) != 0)
        return 1;
    plat_inventory(inv);
    if (inv->firewall != 0)
        return 10 + inv->firewall;
    if (nft_make(policy, rule) != 0)
        return 20;
    plat_inventory(inv);
    return inv->firewall == 1 ? 0 : 30 + inv->firewall;
}

static int run_firewall_child(int policy, int rule)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(firewall_child(policy, rule));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void inventory_firewall_sees_nftables_rules_and_drop_policies(void **state)
{
    (void)state;
    int rc = run_firewall_child(-1, 1); /* a rule in a regular chain */
    if (rc == 1) {
        printf("SKIP: cannot create a network namespace here\n");
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(run_firewall_child(NF_DROP, 0), 0); /* a drop policy, no rule */
    /* A base chain that accepts everything, without rules, is no firewall. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct plat_inventory *inv = calloc(1, sizeof(*inv));
        if (inv == NULL || unshare(CLONE_NEWNET) != 0 || nft_make(NF_ACCEPT, 0) != 0)
            _exit(2);
        plat_inventory(inv);
        _exit(inv->firewall == 0 ? 0 : 3);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Legacy iptables: the filter table, instantiated in a private namespace,
 * first as it comes (ACCEPT policies: no firewall) and then with a DROP
 * policy on INPUT set through IPT_SO_SET_REPLACE. */
static int iptables_child(void)
{
    struct plat_inventory *inv = calloc(1, sizeof(*inv));
    struct ipt_getinfo info;
    socklen_t len = sizeof(info);
    if (inv == NULL || unshare(CLONE_NEWNET) != 0)
        return 1;
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    memset(&info, 0, sizeof(info));
    snprintf(info.name, sizeof(info.name), "filter");
    if (fd < 0 || getsockopt(fd, IPPROTO_IP, IPT_SO_GET_INFO, &info, &len) != 0)
        return 1; /* no legacy iptables in this kernel */
    plat_inventory(inv);
    if (inv->firewall != 0)
        return 10 + inv->firewall;
    struct ipt_get_entries *ge = calloc(1, sizeof(*ge) + info.size);
    struct ipt_replace *rep = calloc(1, sizeof(*rep) + info.size);
    struct xt_counters *ctr = calloc(info.num_entries, sizeof(*ctr));
    if (ge == NULL || rep == NULL || ctr == NULL)
        return 20;
    memcpy(ge->name, info.name, sizeof(ge->name));
    ge->size = info.size;
    len = (socklen_t)(sizeof(*ge) + info.size);
    if (getsockopt(fd, IPPROTO_IP, IPT_SO_GET_ENTRIES, ge, &len) != 0)
        return 21;
    memcpy(rep->name, info.name, sizeof(rep->name));
    rep->valid_hooks = info.valid_hooks;
    rep->num_entries = info.num_entries;
    rep->size = info.size;
    memcpy(rep->hook_entry, info.hook_entry, sizeof(rep->hook_entry));
    memcpy(rep->underflow, info.underflow, sizeof(rep->underflow));
    rep->num_counters = info.num_entries;
    rep->counters = ctr;
    memcpy(rep->entries, ge->entrytable, info.size);
    uint8_t *at = (uint8_t *)rep->entries + info.underflow[NF_INET_LOCAL_IN];
    struct xt_standard_target *t =
        (struct xt_standard_target *)(at + ((struct ipt_entry *)at)->target_offset);
    t->verdict = -NF_DROP - 1;
    if (setsockopt(fd, IPPROTO_IP, IPT_SO_SET_REPLACE, rep, sizeof(*rep) + info.size) != 0)
        return 22;
    plat_inventory(inv);
    return inv->firewall == 1 ? 0 : 30 + inv->firewall;
}

static void inventory_firewall_sees_legacy_iptables_drop_policy(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(iptables_child());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 1) {
        printf("SKIP: no network namespace or no legacy iptables here\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */
/* ------------------------------------------------------------------------ */

/* Sockets the connection tests open on loopback. */
struct sockets {
    int listener, client, server, udp_a, udp_b, udp_unconnected;
    uint16_t lport, cport, ua_port, ub_port, unc_port;
    uint64_t client_ino, server_ino, udp_a_ino, udp_unc_ino, listener_ino;
};

static uint16_t port_of(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

static uint64_t inode_of(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return (uint64_t)st.st_ino;
}

static void open_sockets(struct sockets *s)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->listener = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->listener >= 0);
    assert_int_equal(bind(s->listener, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->listener, 4), 0);
    s->lport = port_of(s->listener);
    s->client = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = htons(s->lport);
    assert_int_equal(connect(s->client, (struct sockaddr *)&sa, sizeof(sa)), 0);
    s->server = accept(s->listener, NULL, NULL);
    assert_true(s->server >= 0);
    s->cport = port_of(s->client);

    struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    s->udp_a = socket(AF_INET, SOCK_DGRAM, 0);
    s->udp_b = socket(AF_INET, SOCK_DGRAM, 0);
    s->udp_unconnected = socket(AF_INET, SOCK_DGRAM, 0);
    assert_int_equal(bind(s->udp_b, (struct sockaddr *)&ua, sizeof(ua)), 0);
    assert_int_equal(bind(s->udp_unconnected, (struct sockaddr *)&ua, sizeof(ua)), 0);
    s->ub_port = port_of(s->udp_b);
    s->unc_port = port_of(s->udp_unconnected);
    ua.sin_port = htons(s->ub_port);
    assert_int_equal(connect(s->udp_a, (struct sockaddr *)&ua, sizeof(ua)), 0);
    s->ua_port = port_of(s->udp_a);

    s->client_ino = inode_of(s->client);
    s->server_ino = inode_of(s->server);
    s->udp_a_ino = inode_of(s->udp_a);
    s->udp_unc_ino = inode_of(s->udp_unconnected);
    s->listener_ino = inode_of(s->listener);
}

static void close_sockets(struct sockets *s)
{
    close(s->listener);
    close(s->client);
    close(s->server);
    close(s->udp_a);
    close(s->udp_b);
    close(s->udp_unconnected);
}

static const struct plat_conn *find(const struct plat_conn *c, size_t n, uint64_t inode)
{
    for (size_t i = 0; i < n; i++)
        if (c[i].inode == inode)
            return &c[i];
    return NULL;
}

static void check_loopback(const struct plat_conn *c, int proto, uint16_t lport, uint16_t rport)
{
    static const uint8_t lo[4] = {127, 0, 0, 1};
    assert_non_null(c);
    assert_int_equal(c->proto, proto);
    assert_int_equal(c->family, AF_INET);
    assert_int_equal(c->lport, lport);
    assert_int_equal(c->rport, rport);
    assert_memory_equal(c->laddr, lo, 4);
    assert_memory_equal(c->raddr, lo, 4);
    assert_int_equal(c->state, proto == IPPROTO_TCP ? 1 : 0); /* TCP_ESTABLISHED */
}

static void check_set(const struct plat_conn *c, size_t n, const struct sockets *s)
{
    check_loopback(find(c, n, s->client_ino), IPPROTO_TCP, s->cport, s->lport);
    check_loopback(find(c, n, s->server_ino), IPPROTO_TCP, s->lport, s->cport);
    check_loopback(find(c, n, s->udp_a_ino), IPPROTO_UDP, s->ua_port, s->ub_port);
    /* A listener and an unconnected UDP socket have no remote end. */
    assert_null(find(c, n, s->listener_ino));
    assert_null(find(c, n, s->udp_unc_ino));
}

static void connections_list_loopback_tcp_and_connected_udp(void **state)
{
    (void)state;
    struct sockets s;
    struct plat_conn *c = NULL;
    size_t n = 0;
    open_sockets(&s);
    assert_int_equal(plat_connections(&c, &n), 0);
    check_set(c, n, &s);
    free(c);
    close_sockets(&s);
}

static void connections_proc_fallback_gives_the_same_set(void **state)
{
    (void)state;
    struct sockets s;
    struct plat_conn *nl = NULL, *pr = NULL;
    size_t nn = 0, np = 0;
    open_sockets(&s);
    assert_int_equal(plat_connections(&nl, &nn), 0);
    assert_int_equal(plat_connections_proc(&pr, &np), 0);
    check_set(pr, np, &s);
    /* Every established socket known to both is described the same way
     * (other sockets on the machine may come and go between the calls). */
    size_t common = 0;
    for (size_t i = 0; i < nn; i++) {
        if (nl[i].inode == 0)
            continue;
        const struct plat_conn *p = find(pr, np, nl[i].inode);
        if (p == NULL || p->state != nl[i].state)
            continue;
        common++;
        assert_int_equal(p->proto, nl[i].proto);
        assert_int_equal(p->family, nl[i].family);
        assert_int_equal(p->lport, nl[i].lport);
        assert_int_equal(p->rport, nl[i].rport);
        assert_memory_equal(p->laddr, nl[i].laddr, 16);
        assert_memory_equal(p->raddr, nl[i].raddr, 16);
    }
    assert_true(common >= 3);
    free(nl);
    free(pr);
    close_sockets(&s);
}

static void socket_owner_is_this_process_with_executable_hash(void **state)
{
    (void)state;
    struct sockets s;
    open_sockets(&s);
    struct plat_process *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    assert_int_equal(plat_socket_owner(s.client_ino, p), 1);
    assert_int_equal(p->pid, getpid());

    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(k > 0);
    self[k] = '\0';
    assert_string_equal(p->exe, self);
    assert_true(is_hex64(p->sha256));
    uint8_t *data = NULL, d[32];
    size_t len = 0;
    char hex[65];
    assert_int_equal(khx_read_file(self, 1u << 30, &data, &len), 0);
    assert_int_equal(khx_sha256(data, len, d), 0);
    khx_hex_encode(d, sizeof(d), hex);
    free(data);
    assert_string_equal(p->sha256, hex);

    /* An inode nobody holds. */
    assert_int_equal(plat_socket_owner(UINT64_MAX - 7, p), 0);
    assert_int_equal(p->pid, 0);
    free(p);
    close_sockets(&s);
}

static void socket_owners_batch_maps_many_inodes_in_one_walk(void **state)
{
    (void)state;
    struct sockets s;
    open_sockets(&s);
    uint64_t inodes[5] = {s.client_ino, UINT64_MAX - 7, s.server_ino, s.udp_a_ino, s.client_ino};
    struct plat_process *p = calloc(5, sizeof(*p));
    assert_non_null(p);
    assert_int_equal(plat_socket_owners(inodes, 5, p), 4);
    for (size_t i = 0; i < 5; i++) {
        if (i == 1) {
            assert_int_equal(p[i].pid, 0);
            assert_string_equal(p[i].exe, "");
            continue;
        }
        assert_int_equal(p[i].pid, getpid());
        assert_string_equal(p[i].exe, p[0].exe);
        assert_string_equal(p[i].sha256, p[0].sha256);
        assert_true(is_hex64(p[i].sha256));
    }
    assert_int_equal(plat_socket_owners(inodes, 0, p), 0);
    assert_int_equal(plat_socket_owners(NULL, 1, p), KH_EINVAL);
    free(p);
    close_sockets(&s);
}

static int parse(const char *line, int proto, int family, struct plat_conn *c)
{
    return plat_proc_net_parse_line(line, strlen(line), proto, family, c);
}

/* The sample lines are as a little-endian kernel prints them. */
static void proc_net_parser_reads_valid_lines(void **state)
{
    (void)state;
    struct plat_conn c;
    assert_int_equal(parse("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
                           "retrnsmt   uid  timeout inode",
                           IPPROTO_TCP, AF_INET, &c),
                     0);
    assert_int_equal(parse("   1: 0100007F:1F90 0200A8C0:C350 01 00000000:00000000 00:00000000 "
                           "00000000  1000        0 12345 1 0000000000000000 20 4 30 10 -1",
                           IPPROTO_TCP, AF_INET, &c),
                     1);
    static const uint8_t lo[4] = {127, 0, 0, 1}, lan[4] = {192, 168, 0, 2};
    assert_memory_equal(c.laddr, lo, 4);
    assert_memory_equal(c.raddr, lan, 4);
    assert_int_equal(c.lport, 8080);
    assert_int_equal(c.rport, 50000);
    assert_int_equal(c.state, 1);
    assert_int_equal(c.inode, 12345);
    /* A listener is skipped. */
    assert_int_equal(parse("   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 "
                           "00000000     0        0 999 1 0000000000000000 100 0 0 10 0",
                           IPPROTO_TCP, AF_INET, &c),
                     0);
    /* IPv6 ::1 port 443 to 2001:db8::1 port 40000, and a mapped IPv4 pair. */
    assert_int_equal(parse("   2: 00000000000000000000000001000000:01BB "
                           "B80D0120000000000000000001000000:9C40 01 00000000:00000000 "
                           "00:00000000 00000000     0        0 777 1",
                           IPPROTO_TCP, AF_INET6, &c),
                     1);
    uint8_t a6[16];
    assert_int_equal(inet_pton(AF_INET6, "::1", a6), 1);
    assert_memory_equal(c.laddr, a6, 16);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", a6), 1);
    assert_memory_equal(c.raddr, a6, 16);
    assert_int_equal(c.lport, 443);
    assert_int_equal(c.rport, 40000);
    assert_int_equal(parse("   3: 0000000000000000FFFF00000100007F:0035 "
                           "0000000000000000FFFF00000100007F:D431 07 00000000:00000000 "
                           "00:00000000 00000000     0        0 4242 2",
                           IPPROTO_UDP, AF_INET6, &c),
                     1);
    assert_int_equal(c.family, AF_INET);
    assert_memory_equal(c.laddr, lo, 4);
    assert_int_equal(c.state, 0);
    assert_int_equal(c.rport, 0xD431);
}

static void proc_net_parser_rejects_garbage(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "   ",
        "garbage",
        "1: 0100007F:1F90",
        "   1: 0100007F:1F90 0200A8C0:C350 01 0 0 0 0 0 notanumber",
        "   1: 0100007G:1F90 0200A8C0:C350 01 0 0 0 0 0 1",
        "   1: 0100007F:1F9 0200A8C0:C350 01 0 0 0 0 0 1",
        "   1: 0100007F-1F90 0200A8C0:C350 01 0 0 0 0 0 1",
        "   1: 0100007F:1F90 0200A8C0:C350 1 0 0 0 0 0 1",
        "   1: 0100007F:1F90 0200A8C0:C350 ZZ 0 0 0 0 0 1",
        "   x: 0100007F:1F90 0200A8C0:C350 01 0 0 0 0 0 1",
        "   1 0100007F:1F90 0200A8C0:C350 01 0 0 0 0 0 1",
        "   1: 0100007F:1F90 0200A8C0:C350 01 0 0 0 0 0 99999999999999999999999",
        "   1: 00000000000000000000000001000000:01BB 0200A8C0:C350 01 0 0 0 0 0 1",
    };
    struct plat_conn c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], IPPROTO_TCP, AF_INET, &c), KH_EFORMAT);
    /* An IPv4 line read as IPv6, a wrong protocol or family argument. */
    const char *v4 = "   1: 0100007F:1F90 0200A8C0:C350 01 0 0 0 0 0 1";
    assert_int_equal(parse(v4, IPPROTO_TCP, AF_INET, &c), 1);
    assert_int_equal(parse(v4, IPPROTO_TCP, AF_INET6, &c), KH_EFORMAT);
    assert_int_equal(parse(v4, IPPROTO_ICMP, AF_INET, &c), KH_EFORMAT);
    assert_int_equal(parse(v4, IPPROTO_TCP, AF_UNIX, &c), KH_EFORMAT);

    /* Random bytes and every prefix of a valid line: never a crash, never a
     * read past the given length (the copy has no terminator). */
    unsigned seed = 12345;
    char buf[600];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            static const char alphabet[] = "0123456789ABCDEFabcdefxyz: \t-\n\0\xff";
            buf[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        }
        char *exact = malloc(len ? len : 1);
        memcpy(exact, buf, len);
        int rc =
            plat_proc_net_parse_line(exact, len, IPPROTO_TCP, round & 1 ? AF_INET : AF_INET6, &c);
        assert_true(rc == 0 || rc == 1 || rc == KH_EFORMAT);
        free(exact);
    }
    for (size_t cut = 0; cut <= strlen(v4); cut++) {
        char *exact = malloc(cut ? cut : 1);
        memcpy(exact, v4, cut);
        int rc = plat_proc_net_parse_line(exact, cut, IPPROTO_TCP, AF_INET, &c);
        assert_true(rc == KH_EFORMAT || cut == strlen(v4));
        free(exact);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inventory_fields_are_filled_and_sane),
        cmocka_unit_test(inventory_firewall_sees_nftables_rules_and_drop_policies),
        cmocka_unit_test(inventory_firewall_sees_legacy_iptables_drop_policy),
        cmocka_unit_test(connections_list_loopback_tcp_and_connected_udp),
        cmocka_unit_test(connections_proc_fallback_gives_the_same_set),
        cmocka_unit_test(socket_owner_is_this_process_with_executable_hash),
        cmocka_unit_test(socket_owners_batch_maps_many_inodes_in_one_walk),
        cmocka_unit_test(proc_net_parser_reads_valid_lines),
        cmocka_unit_test(proc_net_parser_rejects_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
