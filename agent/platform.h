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
    PLAT_RTP_OPEN = 0,  /* a file is about to be opened (permission event) */
    PLAT_RTP_EXEC,      /* a file is about to be executed (permission event) */
    PLAT_RTP_CLOSE_WRITE /* a file opened for writing was closed (notification) */
};

enum plat_verdict { PLAT_ALLOW = 0, PLAT_DENY = 1 };

struct plat_rtp_event {
    int kind;          /* enum plat_rtp_kind */
    int fd;            /* read-only descriptor of the file, owned by the RTP layer */
    pid_t pid;         /* the process that caused the event */
    const char *path;  /* the file's path, resolved from fd */
};

/* Decides one event: called from the RTP layer's threads, concurrently. For a
 * permission event the return value is the answer, unless the timeout passed
 * first (then the open was already allowed and the answer is ignored). */
typedef int (*plat_rtp_decide_fn)(void *ud, const struct plat_rtp_event *ev);
/* Called when a permission event was let through because deciding took longer
 * than the timeout (the decide call is still running). */
typedef void (*plat_rtp_timeout_fn)(void *ud, const char *path, pid_t pid, unsigned waited_ms);

struct plat_rtp_opts {
    const char *const *paths;    /* folders to protect (with everything below them) */
    size_t npaths;
    const char *const *excludes; /* path prefixes never scanned */
    size_t nexcludes;
    unsigned timeout_ms;         /* longest an open waits for a verdict; 0 = 5000 */
    unsigned threads;            /* deciding threads; 0 = 4 */
    plat_rtp_decide_fn decide;
    plat_rtp_timeout_fn on_timeout; /* may be NULL */
    void *ud;
};

struct plat_rtp_stats {
    uint64_t events, decided, denied, timeouts, cached, overflows, errors;
};

struct plat_rtp;

/* Starts watching. Fails with a message when the kernel or the process's
 * privileges do not allow it (fanotify needs CAP_SYS_ADMIN). Events caused by
 * this process itself are always allowed without a decision. */
int plat_rtp_start(const struct plat_rtp_opts *opts, struct plat_rtp **out, char *err,
                   size_t errlen);
/* Answers every pending permission event with ALLOW, stops the threads and frees. NULL-safe. */
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
    int firewall;         /* 1: a host firewall has rules loaded, 0: none, -1: unknown */
};

int plat_inventory(struct plat_inventory *inv);

/* ------------------------------------------------------------------------ */
/* Live connections                                                          */
/* ------------------------------------------------------------------------ */

struct plat_conn {
    int proto;            /* IPPROTO_TCP or IPPROTO_UDP */
    int family;           /* AF_INET or AF_INET6 */
    uint8_t laddr[16], raddr[16];
    uint16_t lport, rport; /* host order */
    int state;            /* TCP state as the kernel numbers it; 0 for UDP */
    uint64_t inode;       /* socket inode, to find the owning process */
};

/* Lists the machine's TCP and UDP sockets that have a remote address (TCP
 * in any state but LISTEN, connected UDP). *out is malloc'd, owned by the
 * caller. */
int plat_connections(struct plat_conn **out, size_t *n);

struct plat_process {
    pid_t pid;
    char exe[4096];     /* "" when unknown (a kernel thread, the process has gone) */
    char sha256[65];    /* of the executable, "" when it could not be read */
};

/* Finds the process owning socket `inode` (scans /proc/<pid>/fd on Linux).
 * Returns 1 with *p filled, 0 when no process has it. */
int plat_socket_owner(uint64_t inode, struct plat_process *p);

#endif
