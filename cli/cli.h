/*
 * Shared declarations of the `khien` command line. main.c dispatches the first
 * argument to one cmd_*.c file per subcommand and also holds the few helpers
 * that more than one subcommand needs: messages on standard error, parsing of
 * numbers and sizes, the signature-diagnostic printer, and the escaping that
 * keeps hostile file names, member names and signature names from forging
 * output lines or sending escape sequences to a terminal.
 *
 * Names here carry a `cli_` prefix (or `cmd_` for a subcommand's entry point);
 * everything else in the cli/ files is static.
 */
#ifndef KHIEN_CLI_H
#define KHIEN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include <khien/khien.h>

#include "khx.h"

/* Exit codes shared by every subcommand; `khien scan` follows clamscan. */
enum cli_exit {
    CLI_EXIT_OK = 0, /* nothing found, or the command succeeded */
    CLI_EXIT_FOUND =
        1, /* scan: something was found; db compile: --strict and a source had errors */
    CLI_EXIT_ERROR = 2, /* an error occurred, including bad usage */
};

/* Each subcommand receives its own argument vector: argv[0] is the command's
 * display name ("khien scan") so that getopt's own messages name it, and the
 * options and operands follow. Returns an exit code from enum cli_exit. */
int cmd_scan(int argc, char **argv);
int cmd_db(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_sensor(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* The server's configuration for commands that work on its data folder
 * (`khien server`, `khien report`): the folder resolved to an absolute path,
 * and DATA/khien-server.conf unless `config` names another file. Prints the
 * error and returns -1 on failure. */
struct srv_config;
int cli_server_config(const char *data, const char *config, const char *listen,
                      struct srv_config *cfg);

/* The name that prefixes messages on standard error, e.g. "khien scan". main()
 * sets it before dispatching; it points at static storage. */
extern const char *cli_progname;

/* Prints "PROGNAME: message\n" on standard error. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A subcommand's own subcommands (`khien server init`, `khien report
 * quarterly`): runs the one argv[1] names with argv shifted by one, prints
 * usage for -h/--help (to stdout) or no argument (to stderr), and names the
 * expected words (`expected`, e.g. "init, run or passwd") otherwise. */
struct cli_sub {
    const char *name;
    int (*run)(int argc, char **argv);
};
int cli_run_sub(int argc, char **argv, const struct cli_sub *subs, size_t nsubs,
                void (*usage)(FILE *), const char *what, const char *expected);

/* The version line printed by --version, e.g. "khien 0.1.0 (libkhien 0.1.0)". */
void cli_print_version(FILE *out);

/* Parses a whole decimal number no larger than `max`. Returns 0 or -1. */
int cli_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* Parses a size: a decimal number with an optional K, M or G suffix (either
 * case, powers of 1024), e.g. "100M". Returns 0, or -1 on a malformed or
 * overflowing value. */
int cli_parse_size(const char *s, uint64_t *out);

/* Formats a size the way cli_parse_size reads it back, using the largest
 * suffix that divides it exactly ("100M", "1536K", "17"). */
void cli_format_size(uint64_t v, char *out, size_t outlen);

/* Formats a byte count for people: "512 B", "1.5 KiB", "12.3 MiB". */
void cli_format_bytes(uint64_t v, char *out, size_t outlen);

/* Formats Unix seconds as UTC ISO-8601 ("2024-01-31T12:00:00Z"). */
void cli_format_time(int64_t t, char *out, size_t outlen);

/* The kh_diag_fn every subcommand uses. `ud` is a struct cli_diag: each
 * problem is counted, and printed as "source:line: message" on standard error
 * when `print` is set. Not thread-safe; builders run on one thread. */
struct cli_diag {
    int print;
    unsigned long count;
};
void cli_diag_print(void *ud, const char *source, unsigned line, const char *msg);

/* Decodes one UTF-8 sequence from s[0..avail). Returns its length (1 to 4)
 * and the code point, or 0 when the bytes are not valid UTF-8 (overlong forms,
 * surrogates and values above U+10FFFF are invalid). */
size_t cli_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp);

/* Returns 1 when the NUL-terminated string is valid UTF-8. */
int cli_utf8_valid(const char *s);

/* Appends `s` to `b` with control characters (C0, DEL, C1) and bytes that are
 * not valid UTF-8 written as \xNN, so that the text is one safe line. */
int cli_buf_escaped(struct khx_buf *b, const char *s);

/* Writes `s` to `f` escaped as cli_buf_escaped does. */
void cli_fput_escaped(FILE *f, const char *s);

/* Returns a new JSON string for `s` (NULL is taken as ""). Bytes that are not
 * valid UTF-8 become U+FFFD, because JSON text must be UTF-8; callers that need
 * the exact bytes add them separately in hex. Returns NULL only when out of
 * memory. The caller owns the reference. */
json_t *cli_json_string(const char *s);

#endif
