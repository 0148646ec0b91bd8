/*
 * Connections to known-bad infrastructure: every `connections.interval_s`
 * the agent lists the machine's live TCP and UDP connections (platform
 * layer) and looks each remote address up in the indicator set that came
 * with the current bundle. A match is reported with the process that owns
 * the socket (pid, executable, its SHA-256) once per connection per hour.
 *
 * Domain indicators are not resolved here on purpose: resolving a C2 domain
 * from an agency machine would itself look like infection to the Ministry's
 * and the province's DNS monitoring. The sensor matches domains in DNS
 * traffic instead.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "ioc.h"
#include "khx.h"
#include "platform.h"

#define SEEN_SLOTS    1024
#define SEEN_WINDOW_S 3600

struct seen {
    uint64_t key;
    int64_t at;
};

static uint64_t conn_key(const struct plat_conn *c)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *p = c->raddr;
    for (int i = 0; i < 16; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    h = (h ^ c->rport) * 1099511628211ull;
    h = (h ^ c->lport) * 1099511628211ull;
    return (h ^ c->inode) * 1099511628211ull;
}

static void report(struct agent *a, const struct plat_conn *c, const struct ioc_match *m)
{
    char lip[INET6_ADDRSTRLEN], rip[INET6_ADDRSTRLEN];
    struct plat_process proc;
    memset(&proc, 0, sizeof(proc));
    inet_ntop(c->family, c->laddr, lip, sizeof(lip));
    inet_ntop(c->family, c->raddr, rip, sizeof(rip));
    int owned = plat_socket_owner(c->inode, &proc) == 1;
    json_t *ev =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:s,s:s,s:s}", "type", "connection", "proto",
                  c->proto == IPPROTO_TCP ? "tcp" : "udp", "remote_ip", rip, "remote_port",
                  (int)c->rport, "local_ip", lip, "local_port", (int)c->lport, "indicator",
                  m->value, "category", m->category, "source", m->source, "seen_in", "ip.dst");
    if (ev != NULL && owned) {
        json_object_set_new(ev, "pid", json_integer(proc.pid));
        json_object_set_new(ev, "exe", json_string(proc.exe));
        json_object_set_new(ev, "exe_sha256", json_string(proc.sha256));
    }
    if (ev != NULL)
        agent_emit(a, ev);
    json_decref(ev);
    agent_log(a, "connection to %s:%u (%s, %s) by pid %d %s", rip, c->rport, m->category, m->source,
              owned ? (int)proc.pid : 0, owned ? proc.exe : "");
}

/* One pass over the connections; returns the number reported. */
static int check_once(struct agent *a, struct seen *seen)
{
    struct plat_conn *conns = NULL;
    size_t n = 0;
    int reported = 0;
    if (plat_connections(&conns, &n) != KH_OK)
        return 0;
    int64_t now = (int64_t)(khx_now_ms() / 1000);
    pthread_mutex_lock(&a->lock);
    struct ioc_set *set = a->iocs;
    for (size_t i = 0; set != NULL && i < n; i++) {
        struct ioc_match m;
        if (!ioc_match_addr(set, conns[i].family, conns[i].raddr, conns[i].rport, &m))
            continue;
        uint64_t key = conn_key(&conns[i]);
        struct seen *s = &seen[key % SEEN_SLOTS];
        if (s->key == key && now - s->at < SEEN_WINDOW_S)
            continue;
        s->key = key;
        s->at = now;
        /* The set may be replaced by an update while we report: copy the match. */
        char value[256], cat[72], src[72];
        snprintf(value, sizeof(value), "%s", m.value);
        snprintf(cat, sizeof(cat), "%s", m.category);
        snprintf(src, sizeof(src), "%s", m.source);
        struct ioc_match copy = {m.kind, value, cat, src};
        pthread_mutex_unlock(&a->lock);
        report(a, &conns[i], &copy);
        reported++;
        pthread_mutex_lock(&a->lock);
        set = a->iocs;
    }
    pthread_mutex_unlock(&a->lock);
    free(conns);
    return reported;
}

void *agent_netwatch_thread(void *arg)
{
    struct agent *a = arg;
    struct seen *seen = calloc(SEEN_SLOTS, sizeof(*seen));
    if (seen == NULL)
        return NULL;
    uint64_t next = 0;
    while (!atomic_load(&a->stop)) {
        pthread_mutex_lock(&a->lock);
        int on = a->policy.conn_enabled;
        unsigned interval = a->policy.conn_interval_s ? a->policy.conn_interval_s : 60;
        pthread_mutex_unlock(&a->lock);
        uint64_t now = khx_now_ms();
        if (on && now >= next) {
            check_once(a, seen);
            next = now + interval * 1000ull;
        }
        usleep(200 * 1000);
    }
    free(seen);
    return NULL;
}
