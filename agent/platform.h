/*
 * The platform layer (plat_): everything the agent needs from the operating
 * system, behind one interface so that the rest of agent/ is portable. The
 * Linux implementation is in agent/linux/; docs/internals/agent-platform.md
 * says what a Windows port has to provide for each function (a minifilter
 * driver for real-time scanning, WMI/IP Helper for inventory and connections,
 * the Service Control Manager for the service).
 */
#ifndef KHIEN_AGENT_PLATFORM_H
#define KHIEN_AGENT_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------ */
/* Real-time protection                                                      */
/* ------------------------------------------------------------------------ */

enum plat_rtp_kind {
    PLAT_RTP_OPEN = 0,   /* a file is about to be opened (permission event) */
    PLAT_RTP_EXEC,       /* a file is about to be executed (permission event) */
    PLAT_RTP_CLOSE_WRITE /* a file opened for writing was closed (notification) */
};

enum plat_verdict { PLAT_ALLOW = 0, PLAT_DENY = 1 };

struct plat_rtp_event {
    int kind;         /* enum plat_rtp_kind */
    int fd;           /* read-only descriptor of the file, owned by the RTP layer; read
                       * the file through it (reads through it cause no new event),
                       * never by path from another process: that open would wait
                       * for this very decision until the timeout */
    pid_t pid;        /* the process that caused the event */
    const char *path; /* the file's path, resolved from fd; "" when the kernel cannot
                       * name it (deeper than PATH_MAX); may end in " (deleted)" */
};

/* Decides one event: called from the RTP layer's threads, concurrently. For a
 * permission event the return value is the answer, unless the timeout passed
 * first (then the open was already allowed and the answer is ignored). An
 * ALLOW is remembered by the kernel until the file is modified or the cache
 * is flushed: the same file is not decided again before that. */
typedef int (*plat_rtp_decide_fn)(void *ud, const struct plat_rtp_event *ev);
/* Called when a permission event was let through because deciding took longer
 * than the timeout (the decide call is still running). Called from the RTP
 * layer's watchdog thread, which checks the other timeouts meanwhile: keep
 * it short. */
typedef void (*plat_rtp_timeout_fn)(void *ud, const char *path, pid_t pid, unsigned waited_ms);

struct plat_rtp_opts {
    const char *const *paths; /* folders to protect (with everything below them) */
    size_t npaths;
    const char *const *excludes; /* path prefixes never scanned */
    size_t nexcludes;
    unsigned timeout_ms; /* longest an open waits for a verdict; 0 = 5000 */
    unsigned threads;    /* deciding threads; 0 = 4 */
    plat_rtp_decide_fn decide;
    plat_rtp_timeout_fn on_timeout; /* may be NULL */
    void *ud;
    int allow_children; /* 1: events caused by this process's direct children
                         * (the sandboxed worker) are allowed without a decision
                         * too (added for the Linux implementation) */
};

/* Counters since start. `cached` counts the clean verdicts remembered by the
 * kernel (the events it then does not send cannot be counted); `overflows`
 * counts events allowed undecided because the queue was full, plus kernel
 * queue overflows; `errors` counts events the layer could not handle
 * normally (each was allowed). */
struct plat_rtp_stats {
    uint64_t events, decided, denied, timeouts, cached, overflows, errors;
};

struct plat_rtp;

/* Starts watching. Fails with a message when the kernel or the process's
 * privileges do not allow it (fanotify needs CAP_SYS_ADMIN; KH_EUNSUPPORTED),
 * or a protected folder does not exist (KH_EINVAL). Events caused by this
 * process itself are always allowed without a decision. On Linux this raises
 * the process's descriptor limit (RLIMIT_NOFILE) to fit the pending events. */
int plat_rtp_start(const struct plat_rtp_opts *opts, struct plat_rtp **out, char *err,
                   size_t errlen);
/* Answers every pending permission event with ALLOW, stops the threads and
 * frees. Waits for decide calls already running to return. NULL-safe. */
void plat_rtp_stop(struct plat_rtp *r);
/* Forgets every "clean until modified" verdict (after a database update). */
void plat_rtp_flush_cache(struct plat_rtp *r);
void plat_rtp_stats(struct plat_rtp *r, struct plat_rtp_stats *st);

/* ------------------------------------------------------------------------ */
/* Inventory                                                                 */
/* ------------------------------------------------------------------------ */

#define PLAT_MAX_ADDRS 64

struct plat_inventory {
    char hostname[256];
    char machine_key[65]; /* SHA-256 hex of the OS's machine id (/etc/machine-id) */
    char os[256];         /* "Debian GNU/Linux 12 (bookworm)" */
    char kernel[256];     /* "6.1.0-26-amd64" */
    char arch[64];        /* "x86_64" */
    char cpu[256];        /* model name */
    unsigned cpus;
    uint64_t mem_bytes;
    size_t nips, nmacs;
    char ips[PLAT_MAX_ADDRS][64]; /* non-loopback addresses, IPv4 and IPv6 */
    char macs[PLAT_MAX_ADDRS][32];
    int firewall; /* 1: a host firewall has rules loaded, 0: none, -1: unknown */
};

/* Fills *inv. Returns KH_ENOTFOUND (with every other field filled) when the
 * machine has no machine id to derive machine_key from. */
int plat_inventory(struct plat_inventory *inv);

/* ------------------------------------------------------------------------ */
/* Live connections                                                          */
/* ------------------------------------------------------------------------ */

struct plat_conn {
    int proto;  /* IPPROTO_TCP or IPPROTO_UDP */
    int family; /* AF_INET or AF_INET6 */
    uint8_t laddr[16], raddr[16];
    uint16_t lport, rport; /* host order */
    int state;             /* TCP state as the kernel numbers it; 0 for UDP */
    uint64_t inode;        /* socket inode, to find the owning process */
};

/* Lists the machine's TCP and UDP sockets that have a remote address (TCP
 * in any state but LISTEN, connected UDP; a socket with remote port 0 has
 * none). IPv4-mapped IPv6 pairs are reported as IPv4. *out is malloc'd,
 * owned by the caller (NULL when *n is 0). */
int plat_connections(struct plat_conn **out, size_t *n);

struct plat_process {
    pid_t pid;
    char exe[4096];  /* "" when unknown (a kernel thread, the process has gone) */
    char sha256[65]; /* of the executable, "" when it could not be read */
};

/* Finds the process owning socket `inode` (scans /proc/<pid>/fd on Linux).
 * Returns 1 with *p filled, 0 when no process has it. */
int plat_socket_owner(uint64_t inode, struct plat_process *p);

/* The batch form (added for the Linux implementation): finds the owners of
 * n sockets in one walk of /proc, hashing each executable once. out[i] is
 * for inodes[i]; out[i].pid is 0 when no process has it. Returns how many
 * were found, or a negative kh_err. n is at most PLAT_MAX_OWNERS. */
#define PLAT_MAX_OWNERS 65536
int plat_socket_owners(const uint64_t *inodes, size_t n, struct plat_process *out);

/* Linux only, exposed for the tests and the fuzz target: the /proc/net
 * fallback of plat_connections, and its parser of one line of
 * /proc/net/{tcp,tcp6,udp,udp6}. The parser returns 1 with *c filled for a
 * socket plat_connections reports, 0 for one it skips (a listener, an
 * unconnected UDP socket, the header line) and KH_EFORMAT for a malformed
 * line. */
int plat_connections_proc(struct plat_conn **out, size_t *n);
int plat_proc_net_parse_line(const char *line, size_t len, int proto, int family,
                             struct plat_conn *c);

#endif
