/*
 * `khien daemon`: a long-lived scanner on a UNIX socket, in the spirit of
 * clamd. It keeps one database loaded (kh_service) and scans the files that
 * clients name; `RELOAD` or SIGHUP swaps in the database file again (for
 * example after an update replaced it) while scans continue.
 *
 * Protocol: one command per line, each answered by lines ending in "\n".
 *   PING               -> "PONG"
 *   VERSION            -> "khien <version> db <generation> <signatures>"
 *   SCAN <path>        -> "<path>: <Name> FOUND" per detection (WARNING for
 *                         notices), then "<path>: OK" when nothing was found,
 *                         or "<path>: <reason> ERROR"
 *   RELOAD             -> "RELOADED <generation>" or "ERROR <reason>"
 *   SHUTDOWN           -> "BYE", and the daemon exits
 * Every answer ends with a line holding only "." so a client knows where it
 * stops. Requests are limited to 4 KiB; connections to 64 at a time.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define REQUEST_MAX     4096
#define CONNECTIONS_MAX 64

struct daemon {
    kh_service *svc;
    const char *db;
    int listen_fd;
    atomic_int connections;
    atomic_int shutdown;
};

static volatile sig_atomic_t reload_requested;
static volatile sig_atomic_t stop_requested;

static void on_hup(int sig)
{
    (void)sig;
    reload_requested = 1;
}

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void print_help(FILE *out)
{
    fputs("Usage: khien daemon --db FILE.kdb --socket PATH [OPTIONS]\n"
          "\n"
          "Keeps a signature database loaded and scans the files clients name over a UNIX\n"
          "socket, as clamd does. The database can be replaced while scans continue:\n"
          "write the new .kdb over FILE (atomically, as 'khien db compile' does) and send\n"
          "RELOAD or SIGHUP.\n"
          "\n"
          "Options:\n"
          "  -d, --db FILE        The .kdb database (required).\n"
          "  -s, --socket PATH    The UNIX socket to listen on (required; replaced if it\n"
          "                       exists). Mode 0660.\n"
          "  -z, --allmatch       Report every matching signature.\n"
          "  -h, --help           Show this help and exit.\n"
          "\n"
          "Protocol (one command per line; every answer ends with a line \".\"):\n"
          "  PING          PONG\n"
          "  VERSION       khien VERSION db GENERATION SIGNATURES\n"
          "  SCAN PATH     'PATH: NAME FOUND' per detection, else 'PATH: OK'\n"
          "  RELOAD        RELOADED GENERATION\n"
          "  SHUTDOWN      BYE\n"
          "\n"
          "Exit status: 0 after SHUTDOWN, SIGTERM or SIGINT; 2 if it cannot start.\n",
          out);
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

static int sendf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sendf(int fd, const char *fmt, ...)
{
    char line[REQUEST_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return send_all(fd, line, KHX_MIN((size_t)n, sizeof(line) - 1));
}

struct scan_reply {
    int fd;
    const char *path;
    unsigned found;
};

static int on_detection(void *ud, const struct kh_detection *d)
{
    struct scan_reply *r = ud;
    int malware = d->severity == KH_SEV_MALWARE;
    r->found += malware;
    if (d->inner_path)
        sendf(r->fd, "%s!%s: %s %s\n", r->path, d->inner_path, d->name,
              malware ? "FOUND" : "WARNING");
    else
        sendf(r->fd, "%s: %s %s\n", r->path, d->name, malware ? "FOUND" : "WARNING");
    return 0;
}

static void do_reload(struct daemon *dm, int fd)
{
    char err[512] = "";
    int r = kh_service_reload(dm->svc, dm->db, err, sizeof(err));
    struct kh_db_info info;
    uint64_t gen = 0;
    kh_service_info(dm->svc, &info, &gen);
    if (fd < 0) {
        if (r != KH_OK)
            cli_errorf("reload of %s failed: %s", dm->db, err[0] ? err : kh_strerror(r));
        else
            fprintf(stderr, "%s: reloaded %s (generation %llu)\n", cli_progname, dm->db,
                    (unsigned long long)gen);
        return;
    }
    if (r != KH_OK)
        sendf(fd, "ERROR %s\n", err[0] ? err : kh_strerror(r));
    else
        sendf(fd, "RELOADED %llu\n", (unsigned long long)gen);
}

/* Handles one request line; returns 1 when the connection should close. */
static int handle(struct daemon *dm, int fd, char *line)
{
    if (strcmp(line, "PING") == 0) {
        sendf(fd, "PONG\n");
    } else if (strcmp(line, "VERSION") == 0) {
        struct kh_db_info info;
        uint64_t gen = 0, sigs = 0;
        kh_service_info(dm->svc, &info, &gen);
        for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
            sigs += k == KH_SIG_ALLOW ? 0 : info.counts[k];
        sendf(fd, "khien %s db %llu %llu\n", kh_version(), (unsigned long long)gen,
              (unsigned long long)sigs);
    } else if (strncmp(line, "SCAN ", 5) == 0 && line[5] != '\0') {
        struct scan_reply rep = {fd, line + 5, 0};
        struct kh_scan_result res;
        int r = kh_service_scan_file(dm->svc, rep.path, on_detection, &rep, &res);
        if (r != KH_OK && r != KH_EABORTED)
            sendf(fd, "%s: %s ERROR\n", rep.path,
                  r == KH_ENOTFOUND ? "No such file" : kh_strerror(r));
        else if (rep.found == 0)
            sendf(fd, "%s: OK\n", rep.path);
    } else if (strcmp(line, "RELOAD") == 0) {
        do_reload(dm, fd);
    } else if (strcmp(line, "SHUTDOWN") == 0) {
        sendf(fd, "BYE\n.\n");
        atomic_store(&dm->shutdown, 1);
        shutdown(dm->listen_fd, SHUT_RDWR);
        return 1;
    } else {
        sendf(fd, "ERROR unknown command (PING, VERSION, SCAN path, RELOAD, SHUTDOWN)\n");
    }
    sendf(fd, ".\n");
    return 0;
}

struct conn {
    struct daemon *dm;
    int fd;
};

static void *serve(void *arg)
{
    struct conn *c = arg;
    char buf[REQUEST_MAX + 1];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(c->fd, buf + have, REQUEST_MAX - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        char *nl;
        int close_now = 0;
        while (!close_now && (nl = memchr(buf, '\n', have)) != NULL) {
            *nl = '\0';
            if (nl > buf && nl[-1] == '\r')
                nl[-1] = '\0';
            close_now = handle(c->dm, c->fd, buf);
            size_t used = (size_t)(nl - buf) + 1;
            memmove(buf, nl + 1, have - used);
            have -= used;
        }
        if (close_now)
            break;
        if (have == REQUEST_MAX) {
            sendf(c->fd, "ERROR request longer than %d bytes\n.\n", REQUEST_MAX);
            break;
        }
    }
    close(c->fd);
    atomic_fetch_sub(&c->dm->connections, 1);
    free(c);
    return NULL;
}

static int listen_on(const char *path)
{
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        cli_errorf("socket path too long: %s", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cli_errorf("socket: %s", strerror(errno));
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    unlink(path);
    mode_t old = umask(0117);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r != 0 || listen(fd, 16) != 0) {
        cli_errorf("%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int cmd_daemon(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"socket", required_argument, NULL, 's'},
        {"allmatch", no_argument, NULL, 'z'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct daemon dm;
    memset(&dm, 0, sizeof(dm));
    const char *sock = NULL;
    struct kh_scan_opts so;
    kh_scan_opts_default(&so);
    int c;
    while ((c = getopt_long(argc, argv, "d:s:zh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dm.db = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'z':
            so.allmatch = 1;
            break;
        case 'h':
            print_help(stdout);
            return CLI_EXIT_OK;
        default:
            fprintf(stderr, "Try '%s --help' for more information.\n", cli_progname);
            return CLI_EXIT_ERROR;
        }
    }
    if (dm.db == NULL || sock == NULL || optind != argc) {
        cli_errorf("--db and --socket are required, and nothing else");
        return CLI_EXIT_ERROR;
    }
    char err[512] = "";
    int r = kh_service_new(dm.db, &so, &dm.svc, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s: %s", dm.db, err[0] ? err : kh_strerror(r));
        return CLI_EXIT_ERROR;
    }
    if ((dm.listen_fd = listen_on(sock)) < 0) {
        kh_service_free(dm.svc);
        return CLI_EXIT_ERROR;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "%s: listening on %s with %s\n", cli_progname, sock, dm.db);

    while (!atomic_load(&dm.shutdown) && !stop_requested) {
        if (reload_requested) {
            reload_requested = 0;
            do_reload(&dm, -1);
        }
        /* accept() returns EINTR on a signal, so SIGHUP is seen at once. */
        int fd = accept4(dm.listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (atomic_fetch_add(&dm.connections, 1) >= CONNECTIONS_MAX) {
            sendf(fd, "ERROR too many connections\n.\n");
            close(fd);
            atomic_fetch_sub(&dm.connections, 1);
            continue;
        }
        struct conn *cn = malloc(sizeof(*cn));
        pthread_t t;
        if (cn == NULL) {
            close(fd);
            atomic_fetch_sub(&dm.connections, 1);
            continue;
        }
        cn->dm = &dm;
        cn->fd = fd;
        if (pthread_create(&t, NULL, serve, cn) != 0) {
            close(fd);
            free(cn);
            atomic_fetch_sub(&dm.connections, 1);
            continue;
        }
        pthread_detach(t);
    }
    close(dm.listen_fd);
    unlink(sock);
    /* Let running requests finish before the service goes away. */
    for (int i = 0; i < 600 && atomic_load(&dm.connections) > 0; i++)
        usleep(50000);
    if (atomic_load(&dm.connections) == 0)
        kh_service_free(dm.svc);
    return CLI_EXIT_OK;
}
