/*
 * The `khien` command: reads the global options (--help, --version), then
 * hands the rest of the command line to the subcommand named by the first
 * operand (cmd_scan.c, cmd_db.c, ...). New subcommands are one row in the
 * `commands` table below. Names that are reserved for subcommands still to
 * come (server, agent, sensor, ...) get a message saying so instead of the
 * generic "unknown command", so that a user following newer documentation
 * learns that the binary is older rather than that they mistyped.
 *
 * The second half of the file holds the helpers declared in cli.h that more
 * than one subcommand uses.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef KHIEN_VERSION
#define KHIEN_VERSION NULL
#endif

const char *cli_progname = "khien";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"scan", cmd_scan, "Scan files and directories for malware (clamscan-compatible output)"},
    {"db", cmd_db, "Compile signature sources into a .kdb database, or describe one"},
    {"daemon", cmd_daemon, "Keep a database loaded and scan files named over a UNIX socket"},
    {"server", cmd_server, "Run the central management server and its web dashboard"},
    {"sensor", cmd_sensor, "Find machines that talk to malware command-and-control servers"},
    {"report", cmd_report,
     "Produce the quarterly infection report for the Ministry (PDF, CSV, XLSX)"},
};

/* Subcommands that later versions will add. They are listed here only so the
 * message for them can be precise; they do not appear in --help. */
static const char *const planned_commands[] = {"agent", "update", "quarantine"};

static void print_main_help(FILE *out)
{
    fputs("Usage: khien [--help] [--version] COMMAND [ARGS...]\n"
          "\n"
          "Khiên: open-source malware defence / nền tảng phòng chống mã độc mã nguồn mở.\n"
          "\n"
          "Commands:\n",
          out);
    for (size_t i = 0; i < KHX_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-6s  %s\n", commands[i].name, commands[i].summary);
    fputs("  help    Show the help of a command: khien help COMMAND\n"
          "\n"
          "Options:\n"
          "  -h, --help     Show this help and exit.\n"
          "  -V, --version  Show the version of khien and of libkhien, and exit.\n"
          "\n"
          "Run 'khien COMMAND --help' for the options of a command; docs/USAGE.md is the\n"
          "user guide.\n"
          "\n"
          "Exit status: each command documents its own. 'khien scan' follows clamscan:\n"
          "0 nothing found, 1 something found, 2 an error occurred. Bad usage exits 2.\n",
          out);
}

void cli_print_version(FILE *out)
{
    const char *own = KHIEN_VERSION;
    const char *lib = kh_version();
    fprintf(out, "khien %s (libkhien %s, functionality level %d)\n", own ? own : lib, lib,
            KH_FLEVEL);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < KHX_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int is_planned_command(const char *name)
{
    for (size_t i = 0; i < KHX_ARRAY_LEN(planned_commands); i++)
        if (strcmp(planned_commands[i], name) == 0)
            return 1;
    return 0;
}

/* Runs `cmd` with argv[0] replaced by "khien NAME" so that getopt's messages
 * and ours name the subcommand. The display name lives in static storage
 * because getopt may keep pointing at argv[0]. */
static int run_command(const struct command *cmd, int argc, char **argv)
{
    static char display[64];
    snprintf(display, sizeof(display), "khien %s", cmd->name);
    cli_progname = display;
    argv[0] = display;
    return cmd->run(argc, argv);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_main_help(stderr);
        return CLI_EXIT_ERROR;
    }
    const char *first = argv[1];
    if (strcmp(first, "-h") == 0 || strcmp(first, "--help") == 0) {
        print_main_help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(first, "-V") == 0 || strcmp(first, "--version") == 0) {
        cli_print_version(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(first, "help") == 0) {
        if (argc < 3) {
            print_main_help(stdout);
            return CLI_EXIT_OK;
        }
        const struct command *cmd = find_command(argv[2]);
        if (cmd == NULL) {
            cli_errorf("unknown command '%s'; run 'khien --help' for the list", argv[2]);
            return CLI_EXIT_ERROR;
        }
        /* Builds "NAME --help" in place of "help NAME". */
        static char help_opt[] = "--help";
        char *sub_argv[3] = {argv[2], help_opt, NULL};
        return run_command(cmd, 2, sub_argv);
    }
    if (first[0] == '-') {
        cli_errorf("unknown option '%s' before the command; run 'khien --help'", first);
        return CLI_EXIT_ERROR;
    }
    const struct command *cmd = find_command(first);
    if (cmd != NULL)
        return run_command(cmd, argc - 1, argv + 1);
    if (is_planned_command(first))
        cli_errorf("'%s' is planned but not available in khien %s; run 'khien --help' for "
                   "the commands this version has",
                   first, kh_version());
    else
        cli_errorf("unknown command '%s'; run 'khien --help' for the list of commands", first);
    return CLI_EXIT_ERROR;
}

/* ------------------------------------------------------------------------ */
/* Helpers shared by the subcommands (cli.h)                                 */
/* ------------------------------------------------------------------------ */

void cli_errorf(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", cli_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    char digits[32];
    uint64_t mult = 1, v;
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= sizeof(digits))
        return -1;
    switch (s[n - 1]) {
    case 'k':
    case 'K':
        mult = 1024;
        break;
    case 'm':
    case 'M':
        mult = 1024 * 1024;
        break;
    case 'g':
    case 'G':
        mult = 1024 * 1024 * 1024;
        break;
    default:
        break;
    }
    if (mult != 1)
        n--;
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (cli_parse_uint(digits, UINT64_MAX / mult, &v) != 0)
        return -1;
    *out = v * mult;
    return 0;
}

void cli_format_size(uint64_t v, char *out, size_t outlen)
{
    static const char suffix[] = "GMK";
    static const uint64_t unit[] = {1024ull * 1024 * 1024, 1024ull * 1024, 1024ull};
    for (size_t i = 0; i < KHX_ARRAY_LEN(unit); i++) {
        if (v != 0 && v % unit[i] == 0) {
            snprintf(out, outlen, "%llu%c", (unsigned long long)(v / unit[i]), suffix[i]);
            return;
        }
    }
    snprintf(out, outlen, "%llu", (unsigned long long)v);
}

void cli_format_bytes(uint64_t v, char *out, size_t outlen)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (v < 1024) {
        snprintf(out, outlen, "%llu B", (unsigned long long)v);
        return;
    }
    double d = (double)v / 1024.0;
    size_t i = 0;
    while (d >= 1024.0 && i + 1 < KHX_ARRAY_LEN(units)) {
        d /= 1024.0;
        i++;
    }
    snprintf(out, outlen, "%.1f %s", d, units[i]);
}

void cli_format_time(int64_t t, char *out, size_t outlen)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (outlen == 0)
        return;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "@%lld", (long long)t);
}

void cli_diag_print(void *ud, const char *source, unsigned line, const char *msg)
{
    struct cli_diag *d = ud;
    if (d == NULL)
        return;
    d->count++;
    if (!d->print)
        return;
    /* Signature text is hostile, and the library may quote it in `msg`. */
    cli_fput_escaped(stderr, source ? source : "?");
    if (line > 0)
        fprintf(stderr, ":%u", line);
    fputs(": ", stderr);
    cli_fput_escaped(stderr, msg ? msg : "problem");
    fputc('\n', stderr);
}

size_t cli_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
    if (avail == 0)
        return 0;
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

int cli_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0) {
        uint32_t cp;
        size_t n = cli_utf8_decode(p, left, &cp);
        if (n == 0)
            return 0;
        p += n;
        left -= n;
    }
    return 1;
}

int cli_buf_escaped(struct khx_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t left = strlen((const char *)p);
    int r = KH_OK;
    while (left > 0 && r == KH_OK) {
        uint32_t cp;
        size_t n = cli_utf8_decode(p, left, &cp);
        if (n == 0) {
            r = khx_buf_printf(b, "\\x%02x", p[0]);
            n = 1;
        } else if (cp < 0x20 || cp == 0x7f) {
            r = khx_buf_printf(b, "\\x%02x", (unsigned)cp);
        } else if (cp >= 0x80 && cp <= 0x9f) {
            /* C1 controls: some terminals treat U+009B as a command introducer. */
            for (size_t i = 0; i < n && r == KH_OK; i++)
                r = khx_buf_printf(b, "\\x%02x", p[i]);
        } else {
            r = khx_buf_append(b, p, n);
        }
        p += n;
        left -= n;
    }
    return r;
}

void cli_fput_escaped(FILE *f, const char *s)
{
    struct khx_buf b;
    khx_buf_init(&b, 1u << 20);
    if (cli_buf_escaped(&b, s) == KH_OK && b.len > 0)
        fwrite(b.data, 1, b.len, f);
    else if (b.len == 0 && s != NULL && *s != '\0')
        fputs("(unprintable)", f);
    khx_buf_free(&b);
}

json_t *cli_json_string(const char *s)
{
    static const unsigned char replacement[] = {0xef, 0xbf, 0xbd};
    if (s == NULL)
        s = "";
    if (cli_utf8_valid(s))
        return json_string(s);
    struct khx_buf b;
    json_t *j = NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    khx_buf_init(&b, left * 3 + 1);
    while (left > 0) {
        uint32_t cp;
        size_t n = cli_utf8_decode(p, left, &cp);
        int r = n ? khx_buf_append(&b, p, n) : khx_buf_append(&b, replacement, 3);
        if (r != KH_OK)
            goto out;
        if (n == 0)
            n = 1;
        p += n;
        left -= n;
    }
    j = json_stringn((const char *)b.data, b.len);
out:
    khx_buf_free(&b);
    return j;
}

int cli_run_sub(int argc, char **argv, const struct cli_sub *subs, size_t nsubs,
                void (*usage)(FILE *), const char *what, const char *expected)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_ERROR;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < nsubs; i++)
        if (strcmp(sub, subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    cli_errorf("unknown %s '%s'; expected %s", what, sub, expected);
    return CLI_EXIT_ERROR;
}
