/*
 * `khien server`: the central management server's command line.
 *
 *   init    creates a data folder: configuration file, CA and server
 *           certificate, bundle-signing key, database with its schema, and a
 *           first administrator whose generated password is printed once
 *   run     runs the server in the foreground (systemd: packaging/)
 *   passwd  gives a user a new generated password (for a lost admin password)
 *
 * The server itself lives in server/; this file only parses options and
 * prints what a person setting it up needs to see.
 */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "bundle.h"
#include "cli.h"
#include "pki.h"
#include "server.h"
#include "server_int.h"

static void usage(FILE *out)
{
    fputs("Usage: khien server init --data DIR [OPTIONS]\n"
          "       khien server run --data DIR [--config FILE] [--listen ADDR:PORT]\n"
          "       khien server passwd --data DIR USERNAME\n"
          "\n"
          "The central management server: agencies, machines, detections, signature\n"
          "bundles, users and the web dashboard, over HTTPS with mutual TLS for agents.\n"
          "Máy chủ quản lý tập trung: đơn vị, máy trạm, phát hiện mã độc, gói chữ ký,\n"
          "người dùng và bảng điều khiển web.\n"
          "\n"
          "init options:\n"
          "  --data DIR           Folder for keys, certificates, configuration and the\n"
          "                       SQLite database (created, mode 0700).\n"
          "  --database URL       sqlite:///PATH (default DIR/khien.db) or\n"
          "                       postgresql://USER@HOST:PORT/DB.\n"
          "  --listen ADDR:PORT   Address to listen on (default 0.0.0.0:8443).\n"
          "  --public-url URL     How agents and browsers reach the server\n"
          "                       (default https://HOSTNAME:PORT).\n"
          "  --names LIST         Comma-separated DNS names and IPs for the generated\n"
          "                       server certificate (default localhost,127.0.0.1,HOSTNAME).\n"
          "  --cert FILE --key FILE\n"
          "                       Use this server certificate and key instead of\n"
          "                       generating one (client certificates still use our CA).\n"
          "  --admin NAME         Name of the first administrator (default admin).\n"
          "\n"
          "run options:\n"
          "  --config FILE        Configuration file (default DIR/khien-server.conf).\n"
          "  --listen ADDR:PORT   Overrides the configuration's listen address.\n"
          "\n"
          "init prints the administrator's password once, on a line\n"
          "'admin password: ...'. Exit status: 0 success, 2 error.\n"
          "See docs/SERVER.md for the configuration keys and deployment.\n",
          out);
}

static int write_config(const char *path, const char *database, const char *listen,
                        const char *public_url, const char *cert, const char *key)
{
    FILE *f = fopen(path, "wx");
    if (f == NULL)
        return errno == EEXIST ? 0 : -1;
    fprintf(f, "# Khiên server configuration; see docs/SERVER.md for every key.\n"
               "# Cấu hình máy chủ Khiên; xem docs/SERVER.md.\n");
    if (database != NULL)
        fprintf(f, "database = %s\n", database);
    fprintf(f, "listen = %s\n", listen != NULL ? listen : "0.0.0.0:8443");
    if (public_url != NULL)
        fprintf(f, "public_url = %s\n", public_url);
    if (cert != NULL)
        fprintf(f, "tls_cert = %s\ntls_key = %s\n", cert, key);
    fprintf(f, "# threads = 16\n# max_body = 8M\n# max_upload = 256M\n# keep_bundles = 5\n"
               "# session_ttl = 8h\n# checkin_interval = 60s\n# offline_after = 180s\n"
               "# cert_days = 825\n");
    return fclose(f) == 0 ? 0 : -1;
}

int cli_server_config(const char *data, const char *config, const char *listen,
                      struct srv_config *cfg)
{
    char abs[PATH_MAX], path[PATH_MAX + 32], err[512];
    if (realpath(data, abs) == NULL) {
        cli_errorf("cannot resolve %s: %s (run 'khien server init' first)", data, strerror(errno));
        return -1;
    }
    data = abs;
    if (config == NULL) {
        snprintf(path, sizeof(path), "%s/khien-server.conf", data);
        if (access(path, F_OK) == 0)
            config = path;
    }
    if (srv_config_load(cfg, data, config, listen, err, sizeof(err)) != 0) {
        cli_errorf("%s", err);
        return -1;
    }
    return 0;
}

static int server_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},   {"database", required_argument, NULL, 'D'},
        {"listen", required_argument, NULL, 'l'}, {"public-url", required_argument, NULL, 'u'},
        {"names", required_argument, NULL, 'n'},  {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},    {"admin", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *data = NULL, *database = NULL, *listen = NULL, *public_url = NULL;
    const char *names = NULL, *cert = NULL, *key = NULL, *admin = "admin";
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'D':
            database = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'u':
            public_url = optarg;
            break;
        case 'n':
            names = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'a':
            admin = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            usage(stderr);
            return CLI_EXIT_ERROR;
        }
    }
    if (data == NULL || optind != argc || (cert == NULL) != (key == NULL)) {
        cli_errorf("init needs --data DIR, and --cert and --key together; see --help");
        return CLI_EXIT_ERROR;
    }
    if (mkdir(data, 0700) != 0 && errno != EEXIST) {
        cli_errorf("cannot create %s: %s", data, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    char abs[1024], conf[1100], err[512], host[256] = "localhost", namebuf[600];
    if (realpath(data, abs) == NULL) {
        cli_errorf("cannot resolve %s: %s", data, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    snprintf(conf, sizeof(conf), "%s/khien-server.conf", abs);
    if (write_config(conf, database, listen, public_url, cert, key) != 0) {
        cli_errorf("cannot write %s: %s", conf, strerror(errno));
        return CLI_EXIT_ERROR;
    }
    struct srv_config cfg;
    if (cli_server_config(abs, conf, NULL, &cfg) != 0)
        return CLI_EXIT_ERROR;
    if (names == NULL) {
        gethostname(host, sizeof(host) - 1);
        snprintf(namebuf, sizeof(namebuf), "localhost,127.0.0.1,::1,%s", host);
        names = namebuf;
    }
    if (srv_pki_init_dir(abs, names, cert, key, err, sizeof(err)) != 0 ||
        srv_signer_init_dir(abs, err, sizeof(err)) != 0) {
        cli_errorf("%s", err);
        return CLI_EXIT_ERROR;
    }
    struct store_db *db = NULL;
    int rc = CLI_EXIT_ERROR;
    if (store_open(cfg.database, &db, err, sizeof(err)) != 0) {
        cli_errorf("database: %s", err);
        goto out;
    }
    int mr = store_migrate(db);
    if (mr != 0) {
        cli_errorf("database migration failed: %s: %s", store_strerror(mr), store_errmsg(db));
        goto out;
    }
    int64_t users = 0;
    if (store_query_int(db, &users, "SELECT count(*) FROM users", "") < 0) {
        cli_errorf("database: %s", store_errmsg(db));
        goto out;
    }
    printf("Initialised %s\n  configuration: %s\n  dashboard:     %s/\n", abs, conf,
           cfg.public_url);
    if (users == 0) {
        char password[17];
        int64_t id;
        srv_random_password(password, sizeof(password));
        if (srv_user_create(db, admin, "Administrator", password, SRV_ROLE_ADMIN, 0, &id) != 0) {
            cli_errorf("cannot create the administrator: %s", store_errmsg(db));
            goto out;
        }
        printf("  admin user:    %s\nadmin password: %s\n"
               "(shown once; change it after logging in / chỉ hiển thị một lần)\n",
               admin, password);
        explicit_bzero(password, sizeof(password));
    } else {
        printf("  users exist already; 'khien server passwd' resets a password\n");
    }
    rc = CLI_EXIT_OK;
out:
    store_close(db);
    return rc;
}

static int server_run(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *data = NULL, *config = NULL, *listen = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            usage(stderr);
            return CLI_EXIT_ERROR;
        }
    }
    if (data == NULL || optind != argc) {
        cli_errorf("run needs --data DIR; see --help");
        return CLI_EXIT_ERROR;
    }
    struct srv_config cfg;
    if (cli_server_config(data, config, listen, &cfg) != 0)
        return CLI_EXIT_ERROR;
    return srv_run(&cfg) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

static int server_passwd(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *data = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            usage(stderr);
            return CLI_EXIT_ERROR;
        }
    }
    if (data == NULL || optind + 1 != argc) {
        cli_errorf("passwd needs --data DIR and a user name; see --help");
        return CLI_EXIT_ERROR;
    }
    struct srv_config cfg;
    char err[512], password[17], hash[128];
    struct store_db *db = NULL;
    int64_t changed = 0;
    int rc = CLI_EXIT_ERROR;
    if (cli_server_config(data, NULL, NULL, &cfg) != 0)
        return CLI_EXIT_ERROR;
    if (store_open(cfg.database, &db, err, sizeof(err)) != 0) {
        cli_errorf("database: %s", err);
        return CLI_EXIT_ERROR;
    }
    srv_random_password(password, sizeof(password));
    if (srv_password_hash(password, hash) != 0 ||
        store_execf(db, &changed,
                    "UPDATE users SET password_hash = $1, disabled = 0 WHERE username = $2", "tt",
                    hash, argv[optind]) != 0) {
        cli_errorf("database: %s", store_errmsg(db));
        goto out;
    }
    if (changed != 1) {
        cli_errorf("no user named '%s'", argv[optind]);
        goto out;
    }
    /* Existing sessions of that user end with the old password. */
    store_execf(db, NULL,
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)",
                "t", argv[optind]);
    printf("%s password: %s\n", argv[optind], password);
    rc = CLI_EXIT_OK;
out:
    explicit_bzero(password, sizeof(password));
    store_close(db);
    return rc;
}

int cmd_server(int argc, char **argv)
{
    static const struct cli_sub subs[] = {
        {"init", server_init}, {"run", server_run}, {"passwd", server_passwd}};
    return cli_run_sub(argc, argv, subs, sizeof(subs) / sizeof(subs[0]), usage, "server command",
                       "init, run or passwd");
}
