/*
 * `khien-agent`: the endpoint agent's command line. `enroll` joins the
 * machine to a management server, `run` is the daemon (systemd runs it:
 * packaging/khien-agent.service), `status` says how protection stands, and
 * `quarantine` lists, restores and deletes quarantined files locally. The
 * same program is also the sandboxed scan worker when started with the
 * hidden first argument SBX_WORKER_ARG (lib/sandbox/sandbox.h).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "khx.h"
#include "vault.h"

#define DEFAULT_STATE "/var/lib/khien-agent"

static void usage(FILE *out)
{
    fputs("Usage: khien-agent COMMAND [OPTIONS]\n"
          "\n"
          "The Khiên endpoint agent: real-time protection, scans, quarantine and\n"
          "automatic signature updates, managed from a Khiên server.\n"
          "Tác tử đầu cuối Khiên: bảo vệ thời gian thực, quét, cách ly và cập nhật\n"
          "mẫu nhận diện tự động, quản lý tập trung từ máy chủ Khiên.\n"
          "\n"
          "Commands:\n"
          "  enroll --server URL --token TOKEN [--ca FILE]\n"
          "                     join this machine to the server with an enrollment token\n"
          "                     from the dashboard (Agencies > Enrollment). --ca names the\n"
          "                     server's CA certificate; without it the system's trusted\n"
          "                     CAs are used. Enrolling again keeps the machine's identity.\n"
          "  run [--watch DIR]... [--no-rtp] [--db FILE.kdb] [--checkin SECONDS]\n"
          "                     the daemon, in the foreground (systemd starts it). --watch\n"
          "                     protects only DIR instead of the policy's folders; --db uses\n"
          "                     a local database instead of the server's bundles.\n"
          "  status [--json]    whether the daemon runs, protection, database, last\n"
          "                     check-in and scan, events waiting. Exit 0 when running.\n"
          "  quarantine list [--json]\n"
          "  quarantine restore ID [--to PATH]\n"
          "  quarantine delete ID\n"
          "                     manage quarantined files (the daemon need not run).\n"
          "                     A restored file is added to this machine's allowlist.\n"
          "  version            print the version\n"
          "\n"
          "Common option:\n"
          "  --state DIR        the agent's state folder (default " DEFAULT_STATE ")\n"
          "\n"
          "Files in the state folder: agent.json (identity), agent.key/agent.crt/ca.crt\n"
          "(credentials, 0600), db/ (signature databases, current and previous),\n"
          "spool/ (events not yet acknowledged by the server), quarantine/ (encrypted\n"
          "files and their metadata), status.json, policy.json, allow.txt.\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage error, 3 (status) not running.\n",
          out);
}

static const char *state_dir = DEFAULT_STATE;

/* Creates `dir` and its missing parents. */
static int mkdir_p(const char *dir, mode_t mode)
{
    char p[4096];
    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
        return KH_EINVAL;
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return KH_EIO;
        *s = '/';
    }
    return mkdir(p, mode) == 0 || errno == EEXIST ? KH_OK : KH_EIO;
}

static int cmd_enroll(int argc, char **argv)
{
    static const struct option lo[] = {
        {"server", required_argument, 0, 's'}, {"token", required_argument, 0, 't'},
        {"ca", required_argument, 0, 'c'},     {"machine-key", required_argument, 0, 'k'},
        {"state", required_argument, 0, 'S'},  {0, 0, 0, 0}};
    const char *server = NULL, *token = NULL, *ca = NULL, *mkey = NULL;
    char err[1024];
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'c':
            ca = optarg;
            break;
        case 'k':
            mkey = optarg;
            break;
        case 'S':
            state_dir = optarg;
            break;
        default:
            return 2;
        }
    }
    if (server == NULL || token == NULL) {
        fprintf(stderr, "khien-agent enroll: --server and --token are required\n");
        return 2;
    }
    if (strncmp(server, "https://", 8) != 0) {
        fprintf(stderr, "khien-agent enroll: --server must be an https:// URL\n");
        return 2;
    }
    if (mkdir_p(state_dir, 0700) != KH_OK) {
        fprintf(stderr, "khien-agent enroll: cannot create %s\n", state_dir);
        return 1;
    }
    if (agent_enroll(state_dir, server, token, ca, mkey, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "khien-agent enroll: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option lo[] = {
        {"watch", required_argument, 0, 'w'}, {"no-rtp", no_argument, 0, 'n'},
        {"db", required_argument, 0, 'd'},    {"checkin", required_argument, 0, 'i'},
        {"state", required_argument, 0, 'S'}, {0, 0, 0, 0}};
    const char *watch[AGENT_PATHS_MAX];
    struct agent_opts o;
    int c;
    memset(&o, 0, sizeof(o));
    o.watch = watch;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (o.nwatch == AGENT_PATHS_MAX || optarg[0] != '/') {
                fprintf(stderr, "khien-agent run: --watch takes up to %d absolute paths\n",
                        AGENT_PATHS_MAX);
                return 2;
            }
            watch[o.nwatch++] = optarg;
            break;
        case 'n':
            o.no_rtp = 1;
            break;
        case 'd':
            o.db_file = optarg;
            break;
        case 'i':
            o.checkin_s = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            state_dir = optarg;
            break;
        default:
            return 2;
        }
    }
    if (mkdir_p(state_dir, 0700) != KH_OK) {
        fprintf(stderr, "khien-agent run: cannot create %s\n", state_dir);
        return 1;
    }
    o.state_dir = state_dir;
    return agent_run(&o);
}

static int cmd_status(int argc, char **argv)
{
    static const struct option lo[] = {
        {"json", no_argument, 0, 'j'}, {"state", required_argument, 0, 'S'}, {0, 0, 0, 0}};
    int c, as_json = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j':
            as_json = 1;
            break;
        case 'S':
            state_dir = optarg;
            break;
        default:
            return 2;
        }
    }
    return agent_status(state_dir, as_json);
}

static int cmd_quarantine(int argc, char **argv)
{
    static const struct option lo[] = {{"json", no_argument, 0, 'j'},
                                       {"to", required_argument, 0, 't'},
                                       {"state", required_argument, 0, 'S'},
                                       {0, 0, 0, 0}};
    const char *to = NULL;
    int c, as_json = 0, rc = 1;
    char dir[4200], err[1024] = "";
    struct vault *v = NULL;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'j':
            as_json = 1;
            break;
        case 't':
            to = optarg;
            break;
        case 'S':
            state_dir = optarg;
            break;
        default:
            return 2;
        }
    }
    const char *sub = optind < argc ? argv[optind] : NULL;
    const char *id = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (sub == NULL || (strcmp(sub, "list") != 0 && id == NULL)) {
        fprintf(stderr, "khien-agent quarantine: list | restore ID | delete ID\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/quarantine", state_dir);
    if (vault_open(dir, &v, err, sizeof(err)) != KH_OK) {
        fprintf(stderr, "khien-agent quarantine: %s\n", err);
        return 1;
    }
    struct vault_entry *items = NULL, e;
    size_t n = 0;
    if (vault_list(v, &items, &n) != KH_OK) {
        fprintf(stderr, "khien-agent quarantine: cannot list %s\n", dir);
        goto out;
    }
    if (strcmp(sub, "list") == 0) {
        json_t *arr = as_json ? json_array() : NULL;
        if (!as_json)
            printf("%-20s %-19s %10s  %-32s %s\n", "ID", "WHEN / LÚC", "BYTES", "DETECTION",
                   "ORIGINAL PATH / ĐƯỜNG DẪN GỐC");
        for (size_t i = 0; i < n; i++) {
            char when[32];
            struct tm tm;
            time_t t = (time_t)items[i].quarantined_at;
            localtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
            if (as_json)
                json_array_append_new(
                    arr, json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:I,s:i,s:i,s:i}", "id", items[i].id,
                                   "path", items[i].path, "signature", items[i].signature, "size",
                                   (json_int_t)items[i].size, "sha256", items[i].sha256, "md5",
                                   items[i].md5, "quarantined_at",
                                   (json_int_t)items[i].quarantined_at, "uid", (int)items[i].uid,
                                   "gid", (int)items[i].gid, "mode", (int)items[i].mode));
            else
                printf("%-20s %-19s %10llu  %-32s %s\n", items[i].id, when,
                       (unsigned long long)items[i].size, items[i].signature, items[i].path);
        }
        if (as_json) {
            json_dumpf(arr, stdout, JSON_INDENT(2));
            putchar('\n');
            json_decref(arr);
        }
        rc = 0;
    } else if (strcmp(sub, "restore") == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(items[i].id, id) == 0)
                agent_allow_add(state_dir, items[i].sha256);
        if (vault_restore(v, id, to, &e, err, sizeof(err)) != KH_OK) {
            fprintf(stderr, "khien-agent quarantine restore: %s\n", err);
            goto out;
        }
        printf("restored %s to %s\n", id, to ? to : e.path);
        rc = 0;
    } else if (strcmp(sub, "delete") == 0) {
        if (vault_delete(v, id, err, sizeof(err)) != KH_OK) {
            fprintf(stderr, "khien-agent quarantine delete: %s\n", err);
            goto out;
        }
        printf("deleted %s\n", id);
        rc = 0;
    } else {
        fprintf(stderr, "khien-agent quarantine: unknown subcommand '%s'\n", sub);
        rc = 2;
    }
out:
    free(items);
    vault_close(v);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], SBX_WORKER_ARG) == 0)
        return sbx_worker_main(argc, argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    argc--;
    argv++;
    optind = 1;
    if (strcmp(cmd, "enroll") == 0)
        return cmd_enroll(argc, argv);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc, argv);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc, argv);
    if (strcmp(cmd, "quarantine") == 0)
        return cmd_quarantine(argc, argv);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("khien-agent %s (engine %s)\n", KHIEN_VERSION, kh_version());
        return 0;
    }
    fprintf(stderr, "khien-agent: unknown command '%s' (try --help)\n", cmd);
    return 2;
}
