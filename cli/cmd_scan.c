/*
 * `khien scan`: scans files and directory trees with a signature database and
 * reports in clamscan's text format ("path: Name FOUND") or as JSON lines.
 *
 * Threads. One walker thread lists the paths named on the command line and
 * the regular files below them into a bounded queue; N worker threads each own
 * one kh_scanner (scratch space is per thread, the engine is shared) and take
 * paths from the queue; the main thread waits, redraws the progress line and
 * notices Ctrl-C. One mutex guards the queue, the totals and the output
 * streams: a worker formats a file's whole report first and writes it while
 * holding the mutex, so the lines of two files never interleave and reports
 * appear in the order the files finish.
 *
 * Hostile input. File names, names of archive members and signature names are
 * all attacker-chosen; text output escapes control characters and invalid
 * UTF-8 as \xNN, and JSON output carries valid UTF-8 (plus the exact bytes in
 * hex when a path is not UTF-8). Directory recursion is bounded by
 * --max-dir-recursion and checked for loops; the queue, the per-file list of
 * detections and every string copied from the library have a maximum size.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCAN_DEFAULT_DB        "/var/lib/khien/khien.kdb"
#define SCAN_QUEUE_CAP         1024
#define SCAN_MAX_THREADS       256
#define SCAN_MAX_DBS           64
#define SCAN_MAX_REGEX         128
#define SCAN_PATH_MAX          4096
#define SCAN_NAME_MAX          4096
#define SCAN_MAX_DETECTIONS    256
#define SCAN_DIR_ENTRIES_MAX   (4u * 1024 * 1024)
#define SCAN_DIR_DEPTH_DEFAULT 64
#define SCAN_DIR_DEPTH_MAX     1024
#define SCAN_RECORD_MAX        (4u << 20)
#define SCAN_STDIN_MAX         (4ull << 30)
#define SCAN_PROGRESS_NS       200000000L
#define SCAN_CURRENT_MAX       512

/* Set by the SIGINT/SIGTERM handler. The walker stops listing, workers stop
 * taking files and the callbacks ask the library to stop the current scan. */
static volatile sig_atomic_t g_interrupted;

struct scan_config {
    const char *dbs[SCAN_MAX_DBS];
    size_t ndbs;
    regex_t exclude[SCAN_MAX_REGEX];
    size_t nexclude;
    regex_t exclude_dir[SCAN_MAX_REGEX];
    size_t nexclude_dir;
    unsigned threads;
    unsigned max_dir_depth;
    int follow_symlinks;
    int infected_only;
    int suppress_ok;
    int verbose;
    int archive_verbose;
    int quiet;
    int json;
    int summary;
    int alert_encrypted;
    int alert_exceeds_max;
    int alert_broken;
    int strict;
    int pua;
    struct kh_scan_opts opts;
    char **paths; /* points into argv */
    size_t npaths;
};

struct scan_totals {
    uint64_t files;    /* files whose scan ran to the end or to a limit */
    uint64_t dirs;     /* directories listed */
    uint64_t infected; /* files with a FOUND line */
    uint64_t partial;  /* files with a notice, or stopped by a limit */
    uint64_t errors;   /* paths that could not be listed or scanned */
    uint64_t bytes;    /* kh_scan_result.bytes_scanned, summed */
};

/* State shared by the walker, the workers and the main thread; `lock` guards
 * every field below it and the output streams. */
struct scan_run {
    const struct scan_config *cfg;
    pthread_mutex_t lock;
    pthread_cond_t can_pop;  /* the queue has an item, or the walker finished */
    pthread_cond_t can_push; /* the queue has room */
    pthread_cond_t changed;  /* a thread finished; wakes the main thread */
    char *queue[SCAN_QUEUE_CAP];
    size_t qhead, qlen;
    int walker_done;
    unsigned workers_left;
    struct scan_totals totals;
    char current[SCAN_CURRENT_MAX]; /* the path a worker started last, for the progress line */
    int progress;                   /* draw a progress line on stderr */
    int progress_shown;             /* a progress line is on the screen now */
    int flush_each;                 /* flush stdout after each report */
    struct timespec started;
};

/* One detection, copied out of the callback because the library's strings
 * need not outlive it. */
struct det {
    char *name;
    char *source;
    char *inner; /* NULL at top level */
    int kind;
    int severity;
    int alert; /* counted as infected: malware, or a notice promoted by --alert-* */
};

/* What is known about one path once it has been handled; formatted as text
 * or JSON by the same code for workers and the walker. */
struct file_report {
    const char *path; /* as printed; "stdin" for "-" */
    int scanned;      /* the scan ran: size and sha256 are valid */
    struct kh_scan_result res;
    const struct det *dets;
    unsigned ndets;
    unsigned dropped; /* detections beyond SCAN_MAX_DETECTIONS, not kept */
    int infected;
    int partial;
    const char *error;        /* NULL, or the clamscan-style message */
    const char *error_detail; /* NULL, or the reason (strerror, kh_strerror) */
    int detail_in_text;       /* text output shows the reason too; "Can't open file or
                                 directory" keeps clamscan's exact wording */
};

struct worker {
    struct scan_run *run;
    kh_scanner *scanner;
    pthread_t thread;
    int started;
    struct det dets[SCAN_MAX_DETECTIONS];
    unsigned ndets;
    unsigned dropped;
    struct khx_buf out;
};

struct dir_id {
    dev_t dev;
    ino_t ino;
};

struct walker {
    struct scan_run *run;
    struct dir_id *chain; /* the directories being listed, outermost first */
    int stdin_taken;
    struct khx_buf out;
};

struct dir_entry {
    char *name;
    unsigned char type; /* DT_* from readdir, DT_UNKNOWN when the file system does not say */
};

/* ------------------------------------------------------------------------ */
/* Help and options                                                          */
/* ------------------------------------------------------------------------ */

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > SCAN_MAX_THREADS ? SCAN_MAX_THREADS : (unsigned)n;
}

static void print_help(FILE *out)
{
    struct kh_limits l;
    char fsize[32], ssize[32];
    kh_limits_default(&l);
    cli_format_size(l.max_filesize, fsize, sizeof(fsize));
    cli_format_size(l.max_scansize, ssize, sizeof(ssize));

    fprintf(out,
            "Usage: khien scan [OPTIONS] PATH...\n"
            "\n"
            "Scans files, and directory trees recursively, with a signature database and\n"
            "prints one line per finding in clamscan's format. A PATH of '-' scans standard\n"
            "input. Symbolic links named on the command line are followed.\n"
            "\n"
            "Database:\n"
            "  -d, --db PATH            Signature database; repeatable (alias: --database).\n"
            "                           A .kdb file made by 'khien db compile' is mapped as\n"
            "                           is; any other file, or a directory of signature files\n"
            "                           (ClamAV .cvd .cld .hdb .hsb .ndb .ldb ..., YARA .yar,\n"
            "                           hash lists), is compiled in memory first. One .kdb at\n"
            "                           most, not mixed with sources.\n"
            "                           Default: $KHIEN_DB, else " SCAN_DEFAULT_DB ".\n"
            "      --strict             Stop when a signature source has a malformed line\n"
            "                           (sources only; default: skip and count such lines).\n"
            "      --pua                Also load PUA databases from sources (.hdu .ndu ...).\n"
            "\n"
            "Which files:\n"
            "  -r, --recursive          Accepted for clamscan compatibility; directories are\n"
            "                           always scanned recursively.\n"
            "      --follow-symlinks    Follow symbolic links found inside directories\n"
            "                           (default: skip them; loops are detected).\n"
            "      --exclude REGEX      Skip files whose path matches REGEX; repeatable.\n"
            "      --exclude-dir REGEX  Do not enter directories whose path matches REGEX;\n"
            "                           repeatable. Both take POSIX extended regular\n"
            "                           expressions matched against the whole path as it is\n"
            "                           printed (PATH joined with the names below it), also\n"
            "                           for PATHs named on the command line.\n"
            "      --max-dir-recursion N\n"
            "                           Enter directories at most N levels below each PATH\n"
            "                           (default: %u, at most %u).\n"
            "  -j, --threads N          Scan with N worker threads, 1 to %u (default: the\n"
            "                           number of online CPUs, here %u).\n"
            "\n"
            "How files are scanned:\n"
            "  -z, --allmatch           Report every matching signature, not only the first.\n"
            "      --no-archive         Do not look inside archives and other containers.\n"
            "      --max-filesize SIZE  Do not scan files or members larger than SIZE\n"
            "                           (default: %s).\n"
            "      --max-scansize SIZE  Scan at most SIZE bytes for one file, its members\n"
            "                           included (default: %s).\n"
            "      --max-recursion N    Container nesting depth (default: %" PRIu32 ").\n"
            "      --max-files N        Members extracted from one file (default: %" PRIu32 ").\n"
            "      --max-ratio N        Uncompressed:compressed ratio above which a member is\n"
            "                           treated as a decompression bomb (default: %" PRIu32 ").\n"
            "      --max-scantime MS    Time for one file in milliseconds, 0 for no limit\n"
            "                           (default: %" PRIu32 ").\n"
            "                           SIZE takes a K, M or G suffix (powers of 1024).\n"
            "\n"
            "Findings that mean 'not fully scanned' are printed as WARNING and do not make\n"
            "a file infected, unless promoted to FOUND by:\n"
            "      --alert-encrypted    encrypted archives and documents\n"
            "                           (Heuristics.Encrypted.*);\n"
            "      --alert-exceeds-max  files or members over a --max-* limit\n"
            "                           (Heuristics.Limits.Exceeded.*);\n"
            "      --alert-broken       broken or corrupt executables and containers\n"
            "                           (Heuristics.Broken.*, Heuristics.Corrupt.*).\n"
            "                           These three also accept =yes or =no.\n"
            "\n"
            "Output:\n"
            "  -i, --infected           Print only infected files, warnings and errors.\n"
            "  -o, --suppress-ok-results\n"
            "                           Do not print 'OK' lines.\n"
            "  -a, --archive-verbose    Name the container member that matched.\n"
            "  -v, --verbose            Like -a, and print OK lines even with -i or -o; also\n"
            "                           report skipped paths and list signature-source\n"
            "                           problems on standard error.\n"
            "  -q, --quiet              Print only errors: no findings, summary or progress.\n"
            "      --json               One JSON object per file on standard output (the\n"
            "                           summary goes to standard error).\n"
            "      --no-summary         Do not print the scan summary.\n"
            "  -h, --help               Show this help and exit.\n"
            "\n"
            "Text output, one line each:\n"
            "  FILE: NAME FOUND          signature NAME matched FILE or a member inside it\n"
            "  FILE!MEMBER: NAME FOUND   the same with -a or -v, for a match inside a\n"
            "                            container (MEMBER is the path inside, nested\n"
            "                            containers joined by '/')\n"
            "  FILE: NAME WARNING        FILE was not fully scanned (see above)\n"
            "  FILE: OK                  nothing found\n"
            "  FILE: MESSAGE ERROR       FILE could not be opened, read or scanned\n"
            "Control characters and bytes that are not UTF-8 in names are shown as \\xNN.\n"
            "A summary block ('----------- SCAN SUMMARY -----------') follows. While\n"
            "scanning, a progress line is drawn on standard error when it is a terminal.\n"
            "\n"
            "JSON output, one object per line:\n"
            "  {\"path\", \"size\", \"sha256\", \"status\": \"clean\"|\"infected\"|\"error\",\n"
            "   \"detections\": [{\"name\", \"kind\", \"source\", \"inner_path\",\n"
            "                   \"severity\": \"malware\"|\"notice\"}], \"error\"}\n"
            "  size and sha256 are present when the file was scanned, error when it failed,\n"
            "  path_hex when the path is not valid UTF-8. -i, -o and -q filter objects as\n"
            "  they filter lines.\n"
            "\n"
            "Exit status (as clamscan):\n"
            "  0  nothing found and no error\n"
            "  1  at least one file infected; this wins over errors\n"
            "  2  an error occurred and nothing was found, the scan was interrupted, the\n"
            "     database could not be loaded, or the command line was wrong\n",
            SCAN_DIR_DEPTH_DEFAULT, SCAN_DIR_DEPTH_MAX, SCAN_MAX_THREADS, online_cpus(), fsize,
            ssize, l.max_recursion, l.max_files, l.max_ratio, l.max_scantime_ms);
}

enum {
    OPT_FOLLOW = 256,
    OPT_EXCLUDE,
    OPT_EXCLUDE_DIR,
    OPT_MAX_DIR_RECURSION,
    OPT_MAX_FILESIZE,
    OPT_MAX_SCANSIZE,
    OPT_MAX_RECURSION,
    OPT_MAX_FILES,
    OPT_MAX_RATIO,
    OPT_MAX_SCANTIME,
    OPT_NO_ARCHIVE,
    OPT_STRICT,
    OPT_PUA,
    OPT_JSON,
    OPT_NO_SUMMARY,
    OPT_ALERT_ENCRYPTED,
    OPT_ALERT_EXCEEDS_MAX,
    OPT_ALERT_BROKEN,
};

static const struct option scan_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"db", required_argument, NULL, 'd'},
    {"database", required_argument, NULL, 'd'},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"pua", no_argument, NULL, OPT_PUA},
    {"recursive", optional_argument, NULL, 'r'},
    {"follow-symlinks", no_argument, NULL, OPT_FOLLOW},
    {"exclude", required_argument, NULL, OPT_EXCLUDE},
    {"exclude-dir", required_argument, NULL, OPT_EXCLUDE_DIR},
    {"max-dir-recursion", required_argument, NULL, OPT_MAX_DIR_RECURSION},
    {"threads", required_argument, NULL, 'j'},
    {"allmatch", optional_argument, NULL, 'z'},
    {"no-archive", no_argument, NULL, OPT_NO_ARCHIVE},
    {"max-filesize", required_argument, NULL, OPT_MAX_FILESIZE},
    {"max-scansize", required_argument, NULL, OPT_MAX_SCANSIZE},
    {"max-recursion", required_argument, NULL, OPT_MAX_RECURSION},
    {"max-files", required_argument, NULL, OPT_MAX_FILES},
    {"max-ratio", required_argument, NULL, OPT_MAX_RATIO},
    {"max-scantime", required_argument, NULL, OPT_MAX_SCANTIME},
    {"alert-encrypted", optional_argument, NULL, OPT_ALERT_ENCRYPTED},
    {"alert-exceeds-max", optional_argument, NULL, OPT_ALERT_EXCEEDS_MAX},
    {"alert-broken", optional_argument, NULL, OPT_ALERT_BROKEN},
    {"infected", no_argument, NULL, 'i'},
    {"suppress-ok-results", no_argument, NULL, 'o'},
    {"archive-verbose", no_argument, NULL, 'a'},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"json", no_argument, NULL, OPT_JSON},
    {"no-summary", no_argument, NULL, OPT_NO_SUMMARY},
    {NULL, 0, NULL, 0},
};

/* clamscan writes boolean options as --allmatch[=yes/no]; so do we. */
static int parse_flag(const char *opt, const char *arg, int *out)
{
    if (arg == NULL || strcmp(arg, "yes") == 0 || strcmp(arg, "1") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(arg, "no") == 0 || strcmp(arg, "0") == 0) {
        *out = 0;
        return 0;
    }
    cli_errorf("--%s takes yes or no, not '%s'", opt, arg);
    return -1;
}

static int parse_u32_opt(const char *opt, const char *arg, uint32_t *out)
{
    uint64_t v;
    if (cli_parse_uint(arg, UINT32_MAX, &v) != 0) {
        cli_errorf("--%s needs a whole number up to %" PRIu32 ", not '%s'", opt, UINT32_MAX, arg);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_size_opt(const char *opt, const char *arg, uint64_t *out)
{
    if (cli_parse_size(arg, out) != 0) {
        cli_errorf("--%s needs a size such as 4096, 512K, 100M or 2G, not '%s'", opt, arg);
        return -1;
    }
    return 0;
}

static int add_regex(regex_t *list, size_t *n, const char *opt, const char *pattern)
{
    char msg[256];
    if (*n >= SCAN_MAX_REGEX) {
        cli_errorf("too many --%s options (at most %d)", opt, SCAN_MAX_REGEX);
        return -1;
    }
    int rc = regcomp(&list[*n], pattern, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &list[*n], msg, sizeof(msg));
        cli_errorf("--%s '%s': %s", opt, pattern, msg);
        return -1;
    }
    (*n)++;
    return 0;
}

static void config_free(struct scan_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nexclude; i++)
        regfree(&cfg->exclude[i]);
    for (size_t i = 0; i < cfg->nexclude_dir; i++)
        regfree(&cfg->exclude_dir[i]);
    free(cfg);
}

/* Fills `cfg` from the command line. Returns 0, 1 when --help was printed, or
 * -1 after printing what was wrong. */
static int parse_options(struct scan_config *cfg, int argc, char **argv)
{
    int c;
    uint64_t v;
    cfg->threads = online_cpus();
    cfg->max_dir_depth = SCAN_DIR_DEPTH_DEFAULT;
    cfg->summary = 1;
    kh_scan_opts_default(&cfg->opts);
    struct kh_limits *l = &cfg->opts.limits;

    while ((c = getopt_long(argc, argv, "hd:rj:zioavq", scan_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            print_help(stdout);
            return 1;
        case 'd':
            if (cfg->ndbs >= SCAN_MAX_DBS) {
                cli_errorf("too many -d options (at most %d)", SCAN_MAX_DBS);
                return -1;
            }
            cfg->dbs[cfg->ndbs++] = optarg;
            break;
        case OPT_STRICT:
            cfg->strict = 1;
            break;
        case OPT_PUA:
            cfg->pua = 1;
            break;
        case 'r': {
            int ignored;
            if (parse_flag("recursive", optarg, &ignored) != 0)
                return -1;
            break;
        }
        case OPT_FOLLOW:
            cfg->follow_symlinks = 1;
            break;
        case OPT_EXCLUDE:
            if (add_regex(cfg->exclude, &cfg->nexclude, "exclude", optarg) != 0)
                return -1;
            break;
        case OPT_EXCLUDE_DIR:
            if (add_regex(cfg->exclude_dir, &cfg->nexclude_dir, "exclude-dir", optarg) != 0)
                return -1;
            break;
        case OPT_MAX_DIR_RECURSION:
            if (cli_parse_uint(optarg, SCAN_DIR_DEPTH_MAX, &v) != 0) {
                cli_errorf("--max-dir-recursion needs a number from 0 to %d, not '%s'",
                           SCAN_DIR_DEPTH_MAX, optarg);
                return -1;
            }
            cfg->max_dir_depth = (unsigned)v;
            break;
        case 'j':
            if (cli_parse_uint(optarg, SCAN_MAX_THREADS, &v) != 0 || v == 0) {
                cli_errorf("--threads needs a number from 1 to %d, not '%s'", SCAN_MAX_THREADS,
                           optarg);
                return -1;
            }
            cfg->threads = (unsigned)v;
            break;
        case 'z':
            if (parse_flag("allmatch", optarg, &cfg->opts.allmatch) != 0)
                return -1;
            break;
        case OPT_NO_ARCHIVE:
            cfg->opts.scan_archives = 0;
            break;
        case OPT_MAX_FILESIZE:
            if (parse_size_opt("max-filesize", optarg, &l->max_filesize) != 0)
                return -1;
            break;
        case OPT_MAX_SCANSIZE:
            if (parse_size_opt("max-scansize", optarg, &l->max_scansize) != 0)
                return -1;
            break;
        case OPT_MAX_RECURSION:
            if (parse_u32_opt("max-recursion", optarg, &l->max_recursion) != 0)
                return -1;
            break;
        case OPT_MAX_FILES:
            if (parse_u32_opt("max-files", optarg, &l->max_files) != 0)
                return -1;
            break;
        case OPT_MAX_RATIO:
            if (parse_u32_opt("max-ratio", optarg, &l->max_ratio) != 0)
                return -1;
            break;
        case OPT_MAX_SCANTIME:
            if (parse_u32_opt("max-scantime", optarg, &l->max_scantime_ms) != 0)
                return -1;
            break;
        case OPT_ALERT_ENCRYPTED:
            if (parse_flag("alert-encrypted", optarg, &cfg->alert_encrypted) != 0)
                return -1;
            break;
        case OPT_ALERT_EXCEEDS_MAX:
            if (parse_flag("alert-exceeds-max", optarg, &cfg->alert_exceeds_max) != 0)
                return -1;
            break;
        case OPT_ALERT_BROKEN:
            if (parse_flag("alert-broken", optarg, &cfg->alert_broken) != 0)
                return -1;
            break;
        case 'i':
            cfg->infected_only = 1;
            break;
        case 'o':
            cfg->suppress_ok = 1;
            break;
        case 'a':
            cfg->archive_verbose = 1;
            break;
        case 'v':
            cfg->verbose = 1;
            cfg->archive_verbose = 1;
            break;
        case 'q':
            cfg->quiet = 1;
            break;
        case OPT_JSON:
            cfg->json = 1;
            break;
        case OPT_NO_SUMMARY:
            cfg->summary = 0;
            break;
        default:
            /* getopt has named the problem already. */
            fprintf(stderr, "Try '%s --help' for the list of options.\n", cli_progname);
            return -1;
        }
    }
    if (optind >= argc) {
        cli_errorf("no PATH given; name the files or directories to scan ('.' for the current "
                   "directory)");
        fprintf(stderr, "Try '%s --help' for the list of options.\n", cli_progname);
        return -1;
    }
    cfg->paths = argv + optind;
    cfg->npaths = (size_t)(argc - optind);
    if (cfg->quiet)
        cfg->summary = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Loading the database                                                      */
/* ------------------------------------------------------------------------ */

static int is_kdb_name(const char *path)
{
    return strcasecmp(khx_path_ext(path), "kdb") == 0;
}

/* Builds an engine from signature sources in memory. */
static int engine_from_sources(const struct scan_config *cfg, const char *const *dbs, size_t n,
                               kh_engine **out)
{
    int r = KH_EINVAL;
    kh_builder *b = NULL;
    void *image = NULL;
    size_t image_len = 0;
    char err[512] = "";
    struct cli_diag diag = {.print = cfg->verbose, .count = 0};
    struct kh_build_opts bo = {
        .strict = cfg->strict, .pua = cfg->pua, .diag = cli_diag_print, .diag_ud = &diag};

    if ((r = kh_builder_new(&bo, &b)) != KH_OK) {
        cli_errorf("cannot start a signature build: %s", kh_strerror(r));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((r = kh_builder_add_path(b, dbs[i])) != KH_OK) {
            if (r == KH_ESTRICT)
                cli_errorf("%s: signature source has errors and --strict was given%s", dbs[i],
                           cfg->verbose ? "" : " (-v lists them)");
            else
                cli_errorf("%s: cannot load signatures: %s", dbs[i], kh_strerror(r));
            goto out;
        }
    }
    if ((r = kh_builder_compile(b, &image, &image_len)) != KH_OK) {
        cli_errorf("cannot compile the signatures: %s", kh_strerror(r));
        goto out;
    }
    /* The engine owns the image from here on, whether or not it opens. */
    r = kh_engine_open_image(image, image_len, out, err, sizeof(err));
    image = NULL;
    if (r != KH_OK) {
        cli_errorf("cannot use the compiled signatures: %s", err[0] ? err : kh_strerror(r));
        goto out;
    }
    if (diag.count > 0 && !cfg->verbose && !cfg->quiet)
        cli_errorf("%lu problem(s) in the signature sources were skipped (-v lists them, "
                   "--strict makes them fatal)",
                   diag.count);
    r = KH_OK;
out:
    kh_builder_free(b);
    return r;
}

/* Opens the database named by -d, $KHIEN_DB or the default path. */
static int load_engine(const struct scan_config *cfg, kh_engine **out)
{
    const char *fallback[1];
    const char *const *dbs = cfg->dbs;
    size_t n = cfg->ndbs, nkdb = 0;
    int from_default = 0;
    struct stat st;
    char err[512] = "";

    if (n == 0) {
        const char *env = getenv("KHIEN_DB");
        fallback[0] = (env != NULL && *env != '\0') ? env : SCAN_DEFAULT_DB;
        dbs = fallback;
        n = 1;
        from_default = 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (stat(dbs[i], &st) != 0) {
            int e = errno;
            if (from_default) {
                cli_errorf("no signature database: %s: %s", dbs[i], strerror(e));
                cli_errorf("build one with 'khien db compile SOURCES... -o FILE.kdb', then pass "
                           "it with -d FILE.kdb or set KHIEN_DB=FILE.kdb");
            } else {
                cli_errorf("signature database %s: %s", dbs[i], strerror(e));
            }
            return KH_ENOTFOUND;
        }
        if (S_ISREG(st.st_mode) && is_kdb_name(dbs[i]))
            nkdb++;
    }
    if (nkdb > 0 && n > 1) {
        cli_errorf("a .kdb database cannot be combined with other -d databases; compile the "
                   "sources into one with 'khien db compile'");
        return KH_EINVAL;
    }
    if (nkdb == 1) {
        int r = kh_engine_open(dbs[0], out, err, sizeof(err));
        if (r != KH_OK)
            cli_errorf("%s: %s", dbs[0], err[0] ? err : kh_strerror(r));
        return r;
    }
    return engine_from_sources(cfg, dbs, n, out);
}

/* ------------------------------------------------------------------------ */
/* Output: reports, notes and the progress line                              */
/* ------------------------------------------------------------------------ */

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Writes to `f` with the lock held, first erasing a progress line so that the
 * text starts at the left margin of a clean line. */
static void emit_locked(struct scan_run *run, FILE *f, const void *data, size_t len)
{
    if (run->progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        run->progress_shown = 0;
    }
    fwrite(data, 1, len, f);
    if (run->flush_each || f == stderr)
        fflush(f);
}

/* Prints "khien scan: PATH: message" on stderr, for paths that are skipped
 * rather than scanned. `always` notes are printed without --verbose, because
 * they hide files from the scan. */
static void note(struct scan_run *run, struct khx_buf *b, int always, const char *path,
                 const char *msg)
{
    if (run->cfg->quiet || (!always && !run->cfg->verbose))
        return;
    b->len = 0;
    if (khx_buf_printf(b, "%s: ", cli_progname) != KH_OK || cli_buf_escaped(b, path) != KH_OK ||
        khx_buf_printf(b, ": %s\n", msg) != KH_OK)
        return;
    pthread_mutex_lock(&run->lock);
    emit_locked(run, stderr, b->data, b->len);
    pthread_mutex_unlock(&run->lock);
}

static const char *kind_name(int kind)
{
    const char *s = kh_sigkind_name(kind);
    return s ? s : "unknown";
}

static int format_text(struct khx_buf *b, const struct scan_config *cfg,
                       const struct file_report *rep)
{
    int r = KH_OK;
    for (unsigned i = 0; i < rep->ndets && r == KH_OK; i++) {
        const struct det *d = &rep->dets[i];
        r = cli_buf_escaped(b, rep->path);
        if (r == KH_OK && cfg->archive_verbose && d->inner != NULL && *d->inner != '\0') {
            if ((r = khx_buf_append(b, "!", 1)) == KH_OK)
                r = cli_buf_escaped(b, d->inner);
        }
        if (r == KH_OK)
            r = khx_buf_append(b, ": ", 2);
        if (r == KH_OK)
            r = cli_buf_escaped(b, d->name);
        if (r == KH_OK)
            r = khx_buf_printf(b, " %s\n", d->alert ? "FOUND" : "WARNING");
    }
    if (r == KH_OK && rep->error != NULL) {
        if ((r = cli_buf_escaped(b, rep->path)) == KH_OK)
            r = khx_buf_printf(b, ": %s", rep->error);
        if (r == KH_OK && rep->detail_in_text && rep->error_detail != NULL) {
            if ((r = khx_buf_append(b, " (", 2)) == KH_OK &&
                (r = cli_buf_escaped(b, rep->error_detail)) == KH_OK)
                r = khx_buf_append(b, ")", 1);
        }
        if (r == KH_OK)
            r = khx_buf_append(b, " ERROR\n", 7);
    } else if (r == KH_OK && rep->ndets == 0) {
        if ((r = cli_buf_escaped(b, rep->path)) == KH_OK)
            r = khx_buf_append(b, ": OK\n", 5);
    }
    return r;
}

/* Sets o[key] = v, taking v's reference; a NULL v (out of memory) fails. */
static int jset(json_t *o, const char *key, json_t *v)
{
    if (v == NULL)
        return -1;
    return json_object_set_new(o, key, v);
}

static json_t *json_detection(const struct det *d)
{
    json_t *o = json_object();
    int bad = o == NULL;
    if (!bad) {
        bad |= jset(o, "name", cli_json_string(d->name));
        bad |= jset(o, "kind", json_string(kind_name(d->kind)));
        bad |= jset(o, "source", cli_json_string(d->source));
        bad |= jset(o, "inner_path", d->inner ? cli_json_string(d->inner) : json_null());
        bad |=
            jset(o, "severity", json_string(d->severity == KH_SEV_NOTICE ? "notice" : "malware"));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int format_json(struct khx_buf *b, const struct file_report *rep)
{
    int r = KH_ENOMEM, bad = 0;
    char *text = NULL;
    json_t *o = json_object(), *arr = json_array();
    if (o == NULL || arr == NULL)
        goto out;
    bad |= jset(o, "path", cli_json_string(rep->path));
    if (!cli_utf8_valid(rep->path)) {
        size_t n = strlen(rep->path);
        char *hex = malloc(2 * n + 1);
        if (hex == NULL)
            goto out;
        khx_hex_encode((const uint8_t *)rep->path, n, hex);
        bad |= jset(o, "path_hex", json_string(hex));
        free(hex);
    }
    if (rep->scanned) {
        char sha[65];
        khx_hex_encode(rep->res.sha256, sizeof(rep->res.sha256), sha);
        bad |= jset(o, "size", json_integer((json_int_t)rep->res.size));
        bad |= jset(o, "sha256", json_string(sha));
    }
    bad |= jset(o, "status",
                json_string(rep->infected ? "infected"
                            : rep->error  ? "error"
                                          : "clean"));
    for (unsigned i = 0; i < rep->ndets && !bad; i++) {
        json_t *d = json_detection(&rep->dets[i]);
        bad |= d == NULL || json_array_append_new(arr, d) != 0;
    }
    bad |= jset(o, "detections", arr);
    arr = NULL;
    if (rep->dropped > 0)
        bad |= jset(o, "detections_dropped", json_integer(rep->dropped));
    if (rep->error != NULL) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s%s%s", rep->error, rep->error_detail ? ": " : "",
                 rep->error_detail ? rep->error_detail : "");
        bad |= jset(o, "error", cli_json_string(msg));
    }
    if (bad)
        goto out;
    if ((text = json_dumps(o, JSON_COMPACT)) == NULL)
        goto out;
    if ((r = khx_buf_append(b, text, strlen(text))) == KH_OK)
        r = khx_buf_append(b, "\n", 1);
out:
    free(text);
    json_decref(arr);
    json_decref(o);
    return r;
}

/* One rule for both formats: errors always show, findings unless --quiet,
 * clean files as the -i/-o/-v options say. */
static int report_visible(const struct scan_config *cfg, const struct file_report *rep)
{
    if (rep->error != NULL)
        return 1;
    if (cfg->quiet)
        return 0;
    if (rep->ndets > 0)
        return 1;
    return cfg->verbose || (!cfg->infected_only && !cfg->suppress_ok);
}

/* Counts the report in the totals and prints it. `b` is the caller's scratch
 * buffer. */
static void publish(struct scan_run *run, struct khx_buf *b, const struct file_report *rep)
{
    const struct scan_config *cfg = run->cfg;
    int visible = report_visible(cfg, rep), fr = KH_OK;
    b->len = 0;
    if (visible)
        fr = cfg->json ? format_json(b, rep) : format_text(b, cfg, rep);

    pthread_mutex_lock(&run->lock);
    if (rep->scanned) {
        run->totals.files++;
        run->totals.bytes += rep->res.bytes_scanned;
    }
    if (rep->infected)
        run->totals.infected++;
    if (rep->partial)
        run->totals.partial++;
    if (rep->error != NULL)
        run->totals.errors++;
    if (visible && fr == KH_OK) {
        emit_locked(run, stdout, b->data, b->len);
    } else if (visible) {
        /* The report could not be formatted (out of memory, or a report over
         * SCAN_RECORD_MAX); say so rather than drop a finding silently. */
        char msg[160];
        int n = snprintf(msg, sizeof(msg), "%s: cannot print the report of a file: %s\n",
                         cli_progname, kh_strerror(fr));
        run->totals.errors++;
        emit_locked(run, stderr, msg, (size_t)KHX_MIN((size_t)n, sizeof(msg) - 1));
    }
    pthread_mutex_unlock(&run->lock);
}

/* Reports a path that could not be listed or scanned at all. */
static void report_error(struct scan_run *run, struct khx_buf *b, const char *path,
                         const char *error, const char *detail)
{
    static const char cant_open[] = "Can't open file or directory";
    struct file_report rep = {.path = path,
                              .error = error,
                              .error_detail = detail,
                              .detail_in_text = strcmp(error, cant_open) != 0};
    publish(run, b, &rep);
    if (run->cfg->verbose && detail != NULL && !rep.detail_in_text && !run->cfg->json)
        note(run, b, 0, path, detail);
}

/* Columns a code point takes on a terminal: 0 for combining marks (Vietnamese
 * in decomposed form uses them), 2 for East Asian wide characters, else 1. */
static unsigned cp_width(uint32_t cp)
{
    if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x1ab0 && cp <= 0x1aff) ||
        (cp >= 0x1dc0 && cp <= 0x1dff) || (cp >= 0x200b && cp <= 0x200f) ||
        (cp >= 0x20d0 && cp <= 0x20ff) || (cp >= 0xfe20 && cp <= 0xfe2f))
        return 0;
    if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
        (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
        (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
        (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
        (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd))
        return 2;
    return 1;
}

/* Copies `src` into `out` for the progress line: control characters and
 * invalid UTF-8 become '?', and a path wider than `cols` columns keeps its end
 * (the file name) behind a leading "...". */
static void fit_path(const char *src, unsigned cols, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t left = strlen(src), o = 0;
    unsigned total = 0;
    uint32_t cp;

    out[0] = '\0';
    if (cols < 8 || outlen < 8)
        return;
    for (size_t i = 0; i < left;) {
        size_t n = cli_utf8_decode(p + i, left - i, &cp);
        total += (n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) ? 1 : cp_width(cp);
        i += n ? n : 1;
    }
    if (total > cols) {
        memcpy(out, "...", 3);
        o = 3;
        cols -= 3;
    }
    while (left > 0) {
        size_t n = cli_utf8_decode(p, left, &cp);
        int bad = n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
        unsigned w = bad ? 1 : cp_width(cp);
        size_t step = n ? n : 1;
        if (total > cols) {
            total -= w; /* still dropping from the front */
        } else if (bad) {
            if (o + 1 >= outlen)
                break;
            out[o++] = '?';
        } else {
            if (o + step >= outlen)
                break;
            memcpy(out + o, p, step);
            o += step;
        }
        p += step;
        left -= step;
    }
    out[o] = '\0';
}

static unsigned terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void draw_progress_locked(struct scan_run *run)
{
    char head[160], bytes[32], rate[32], path[4 * SCAN_CURRENT_MAX];
    double secs = seconds_since(&run->started);
    unsigned width = terminal_width();

    cli_format_bytes(run->totals.bytes, bytes, sizeof(bytes));
    cli_format_bytes(secs > 0.1 ? (uint64_t)((double)run->totals.bytes / secs) : 0, rate,
                     sizeof(rate));
    int hn = snprintf(head, sizeof(head), "Scanning: %" PRIu64 " files, %s, %s/s  ",
                      run->totals.files, bytes, rate);
    if (hn < 0)
        return;
    /* The last column is left empty: writing it makes some terminals wrap. */
    if ((unsigned)hn >= width - 1) {
        head[width - 1 < sizeof(head) ? width - 1 : sizeof(head) - 1] = '\0';
        path[0] = '\0';
    } else {
        fit_path(run->current, width - 1 - (unsigned)hn, path, sizeof(path));
    }
    fprintf(stderr, "\r\033[K%s%s", head, path);
    fflush(stderr);
    run->progress_shown = 1;
}

/* ------------------------------------------------------------------------ */
/* Work queue                                                                */
/* ------------------------------------------------------------------------ */

/* Queues a path; the queue takes ownership of the malloc'd `path`. Blocks
 * while the queue is full. Returns -1 (and frees `path`) once interrupted. */
static int queue_push(struct scan_run *run, char *path)
{
    pthread_mutex_lock(&run->lock);
    while (run->qlen == SCAN_QUEUE_CAP && !g_interrupted)
        pthread_cond_wait(&run->can_push, &run->lock);
    if (g_interrupted) {
        pthread_mutex_unlock(&run->lock);
        free(path);
        return -1;
    }
    run->queue[(run->qhead + run->qlen) % SCAN_QUEUE_CAP] = path;
    run->qlen++;
    pthread_cond_signal(&run->can_pop);
    pthread_mutex_unlock(&run->lock);
    return 0;
}

/* Takes the next path (the caller frees it), or NULL when the walker has
 * finished and the queue is empty, or the scan was interrupted. */
static char *queue_pop(struct scan_run *run)
{
    char *path = NULL;
    pthread_mutex_lock(&run->lock);
    while (run->qlen == 0 && !run->walker_done && !g_interrupted)
        pthread_cond_wait(&run->can_pop, &run->lock);
    if (run->qlen > 0 && !g_interrupted) {
        path = run->queue[run->qhead];
        run->queue[run->qhead] = NULL;
        run->qhead = (run->qhead + 1) % SCAN_QUEUE_CAP;
        run->qlen--;
        /* Keeps the end of a long path: the file name is the useful part. */
        size_t n = strlen(path);
        const char *tail = n >= SCAN_CURRENT_MAX ? path + n - (SCAN_CURRENT_MAX - 1) : path;
        memcpy(run->current, tail, strlen(tail) + 1);
        pthread_cond_signal(&run->can_push);
    }
    pthread_mutex_unlock(&run->lock);
    return path;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                   */
/* ------------------------------------------------------------------------ */

static void dets_clear(struct worker *w)
{
    for (unsigned i = 0; i < w->ndets; i++) {
        free(w->dets[i].name);
        free(w->dets[i].source);
        free(w->dets[i].inner);
    }
    memset(w->dets, 0, sizeof(w->dets[0]) * w->ndets);
    w->ndets = 0;
    w->dropped = 0;
}

/* Whether a notice is promoted to FOUND by an --alert-* option. The names
 * follow ClamAV's heuristic families. */
static int notice_alerts(const struct scan_config *cfg, const char *name)
{
    static const char *const encrypted[] = {"Heuristics.Encrypted."};
    static const char *const limits[] = {"Heuristics.Limits."};
    static const char *const broken[] = {"Heuristics.Broken.", "Heuristics.Corrupt."};
    const struct {
        int on;
        const char *const *prefixes;
        size_t n;
    } families[] = {
        {cfg->alert_encrypted, encrypted, KHX_ARRAY_LEN(encrypted)},
        {cfg->alert_exceeds_max, limits, KHX_ARRAY_LEN(limits)},
        {cfg->alert_broken, broken, KHX_ARRAY_LEN(broken)},
    };
    for (size_t f = 0; f < KHX_ARRAY_LEN(families); f++) {
        if (!families[f].on)
            continue;
        for (size_t i = 0; i < families[f].n; i++)
            if (strncmp(name, families[f].prefixes[i], strlen(families[f].prefixes[i])) == 0)
                return 1;
    }
    return 0;
}

/* Appends a detection to the worker's list; returns 0 when it was kept. */
static int dets_add(struct worker *w, const char *name, int kind, int severity, const char *source,
                    const char *inner)
{
    if (w->ndets >= SCAN_MAX_DETECTIONS) {
        w->dropped++;
        return -1;
    }
    struct det *d = &w->dets[w->ndets];
    d->name = strndup(name ? name : "", SCAN_NAME_MAX);
    d->source = strndup(source ? source : "", SCAN_NAME_MAX);
    d->inner = inner ? strndup(inner, SCAN_NAME_MAX) : NULL;
    if (d->name == NULL || d->source == NULL || (inner != NULL && d->inner == NULL)) {
        free(d->name);
        free(d->source);
        free(d->inner);
        memset(d, 0, sizeof(*d));
        w->dropped++;
        return -1;
    }
    d->kind = kind;
    d->severity = severity;
    d->alert = severity != KH_SEV_NOTICE || notice_alerts(w->run->cfg, d->name);
    w->ndets++;
    return 0;
}

static int on_detection(void *ud, const struct kh_detection *d)
{
    struct worker *w = ud;
    dets_add(w, d->name, d->kind, d->severity, d->source, d->inner_path);
    /* A non-zero return stops the scan of this file (KH_EABORTED). */
    return g_interrupted ? 1 : 0;
}

/* Reads standard input, at most --max-filesize bytes, and scans it from
 * memory. A read failure or an input over the limit returns KH_EIO with the
 * reason in `why`, so that it is not mistaken for a limit inside the scan. */
static int scan_stdin(struct worker *w, struct kh_scan_result *res, char *why, size_t whylen)
{
    struct khx_buf in;
    uint64_t limit = w->run->cfg->opts.limits.max_filesize;
    int r = KH_EIO;
    if (limit == 0 || limit > SCAN_STDIN_MAX)
        limit = SCAN_STDIN_MAX;
    khx_buf_init(&in, (size_t)limit);
    for (;;) {
        ssize_t k;
        char probe;
        int rr = khx_buf_reserve(&in, 65536);
        if (rr == KH_ELIMIT)
            rr = khx_buf_reserve(&in, 1);
        if (rr == KH_OK) {
            size_t room = KHX_MIN(in.cap - in.len, (size_t)65536);
            k = read(STDIN_FILENO, in.data + in.len, room);
        } else if (rr == KH_ELIMIT) {
            /* Full: one more byte tells "exactly the limit" from "over it". */
            k = read(STDIN_FILENO, &probe, 1);
            if (k > 0) {
                snprintf(why, whylen, "standard input is over --max-filesize, %llu bytes",
                         (unsigned long long)limit);
                goto out;
            }
        } else {
            snprintf(why, whylen, "%s", kh_strerror(rr));
            goto out;
        }
        if (k < 0 && errno == EINTR && !g_interrupted)
            continue;
        if (k < 0) {
            char eb[128];
            snprintf(why, whylen, "%s", strerror_r(errno, eb, sizeof(eb)));
            goto out;
        }
        if (k == 0)
            break;
        in.len += (size_t)k;
    }
    r = kh_scan_mem(w->scanner, in.data, in.len, "stdin", on_detection, w, res);
out:
    khx_buf_free(&in);
    return r;
}

static void scan_one(struct worker *w, const char *path)
{
    const struct scan_config *cfg = w->run->cfg;
    struct file_report rep = {.path = path};
    char why[256] = "", errbuf[256];
    int is_stdin = strcmp(path, "-") == 0, r;

    dets_clear(w);
    if (is_stdin) {
        rep.path = "stdin";
        r = scan_stdin(w, &rep.res, why, sizeof(why));
    } else {
        r = kh_scan_file(w->scanner, path, on_detection, w, &rep.res);
    }

    switch (r) {
    case KH_OK:
        rep.scanned = 1;
        break;
    case KH_ETIMEOUT:
    case KH_ELIMIT: {
        /* A limit stopped the scan: the file counts as scanned but not fully,
         * and gets a notice of its own if the library did not report one. */
        int have_notice = 0;
        for (unsigned i = 0; i < w->ndets; i++)
            have_notice |= w->dets[i].severity == KH_SEV_NOTICE;
        if (!have_notice)
            dets_add(w,
                     r == KH_ETIMEOUT ? "Heuristics.Limits.Exceeded.MaxScanTime"
                                      : "Heuristics.Limits.Exceeded",
                     KH_SIG_HEURISTIC, KH_SEV_NOTICE, "", NULL);
        rep.scanned = 1;
        rep.partial = 1;
        break;
    }
    case KH_EABORTED:
        rep.scanned = 1;
        rep.partial = 1;
        break;
    case KH_EIO:
    case KH_ENOTFOUND:
        if (is_stdin) {
            rep.error = "Can't read file";
            rep.error_detail = why[0] ? why : kh_strerror(r);
            rep.detail_in_text = 1;
        } else {
            /* Opening the file again tells open failures (with their errno)
             * apart from read failures; the library reports both as I/O. */
            int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
            if (fd < 0) {
                rep.error = "Can't open file or directory";
                rep.error_detail = strerror_r(errno, errbuf, sizeof(errbuf));
            } else {
                close(fd);
                rep.error = "Can't read file";
                rep.error_detail = kh_strerror(r);
                rep.detail_in_text = 1;
            }
        }
        break;
    default:
        rep.error = "Scan failed";
        rep.error_detail = kh_strerror(r);
        rep.detail_in_text = 1;
        break;
    }

    for (unsigned i = 0; i < w->ndets; i++) {
        rep.infected |= w->dets[i].alert;
        rep.partial |= w->dets[i].severity == KH_SEV_NOTICE;
    }
    rep.dets = w->dets;
    rep.ndets = w->ndets;
    rep.dropped = w->dropped;
    publish(w->run, &w->out, &rep);
    if (w->dropped > 0)
        note(w->run, &w->out, 1, rep.path, "more detections than can be listed; some omitted");
    if (rep.error != NULL && cfg->verbose && !cfg->json && !rep.detail_in_text)
        note(w->run, &w->out, 0, rep.path, rep.error_detail);
    dets_clear(w);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct scan_run *run = w->run;
    char *path;
    while ((path = queue_pop(run)) != NULL) {
        scan_one(w, path);
        free(path);
    }
    pthread_mutex_lock(&run->lock);
    run->workers_left--;
    pthread_cond_signal(&run->changed);
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Directory walker                                                          */
/* ------------------------------------------------------------------------ */

static int matches_any(const regex_t *list, size_t n, const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (regexec(&list[i], path, 0, NULL, 0) == 0)
            return 1;
    return 0;
}

static int cmp_entries(const void *a, const void *b)
{
    const struct dir_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static void free_entries(struct khx_vec *v)
{
    for (size_t i = 0; i < v->len; i++)
        free(KHX_VEC_AT(v, struct dir_entry, i)->name);
    khx_vec_free(v);
}

/* Joins a directory path and a name, or returns NULL when the result would
 * be longer than SCAN_PATH_MAX or memory ran out. */
static char *join_path(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] != '/';
    if (dl + (size_t)slash + nl >= SCAN_PATH_MAX)
        return NULL;
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + (size_t)slash, name, nl + 1);
    return p;
}

static void walk_dir(struct walker *w, const char *path, unsigned depth, int nofollow);

static void queue_file(struct walker *w, const char *path)
{
    const struct scan_config *cfg = w->run->cfg;
    if (matches_any(cfg->exclude, cfg->nexclude, path)) {
        note(w->run, &w->out, 0, path, "excluded");
        return;
    }
    char *copy = strdup(path);
    if (copy == NULL) {
        report_error(w->run, &w->out, path, "Out of memory", NULL);
        return;
    }
    queue_push(w->run, copy);
}

static void enter_dir(struct walker *w, const char *path, unsigned depth, int nofollow)
{
    const struct scan_config *cfg = w->run->cfg;
    if (matches_any(cfg->exclude_dir, cfg->nexclude_dir, path)) {
        note(w->run, &w->out, 0, path, "directory excluded");
        return;
    }
    if (depth > cfg->max_dir_depth) {
        note(w->run, &w->out, 1, path,
             "directory not entered: deeper than --max-dir-recursion allows");
        return;
    }
    walk_dir(w, path, depth, nofollow);
}

/* Handles one directory entry whose full path is `child`. */
static void walk_entry(struct walker *w, const char *child, unsigned char type, unsigned depth)
{
    const struct scan_config *cfg = w->run->cfg;
    struct stat st;
    int followed = 0;

    if (type == DT_UNKNOWN) {
        if (lstat(child, &st) != 0) {
            report_error(w->run, &w->out, child, "Can't open file or directory", strerror(errno));
            return;
        }
        type = S_ISLNK(st.st_mode)   ? DT_LNK
               : S_ISDIR(st.st_mode) ? DT_DIR
               : S_ISREG(st.st_mode) ? DT_REG
                                     : DT_UNKNOWN;
    }
    if (type == DT_LNK) {
        if (!cfg->follow_symlinks) {
            note(w->run, &w->out, 0, child, "symbolic link, not followed");
            return;
        }
        if (stat(child, &st) != 0) {
            note(w->run, &w->out, 0, child, "symbolic link to nothing, skipped");
            return;
        }
        followed = 1;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_DIR)
        enter_dir(w, child, depth + 1, !followed);
    else if (type == DT_REG)
        queue_file(w, child);
    else
        note(w->run, &w->out, 0, child, "not a regular file, skipped");
}

/* Lists `path` (at `depth` below its PATH argument) and handles its entries
 * in name order, so that a scan with one thread is reproducible. The entries
 * are read and the directory closed before descending, so one descriptor is
 * open at a time however deep the tree. */
static void walk_dir(struct walker *w, const char *path, unsigned depth, int nofollow)
{
    struct khx_vec entries;
    struct stat st;
    DIR *d = NULL;
    khx_vec_init(&entries, sizeof(struct dir_entry), SCAN_DIR_ENTRIES_MAX);

    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0 || fstat(fd, &st) != 0) {
        report_error(w->run, &w->out, path, "Can't open file or directory", strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    for (unsigned i = 0; i < depth; i++) {
        if (w->chain[i].dev == st.st_dev && w->chain[i].ino == st.st_ino) {
            note(w->run, &w->out, 1, path, "directory loop, not entered again");
            close(fd);
            goto out;
        }
    }
    w->chain[depth].dev = st.st_dev;
    w->chain[depth].ino = st.st_ino;
    if ((d = fdopendir(fd)) == NULL) {
        report_error(w->run, &w->out, path, "Can't open file or directory", strerror(errno));
        close(fd);
        goto out;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                report_error(w->run, &w->out, path, "Can't read directory", strerror(errno));
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct dir_entry *e = khx_vec_push(&entries);
        if (e == NULL || (e->name = strdup(de->d_name)) == NULL) {
            report_error(w->run, &w->out, path, "Can't read directory",
                         "too many entries, or out of memory");
            break;
        }
        e->type = de->d_type;
    }
    closedir(d);

    pthread_mutex_lock(&w->run->lock);
    w->run->totals.dirs++;
    pthread_mutex_unlock(&w->run->lock);

    if (entries.len > 1)
        qsort(entries.items, entries.len, sizeof(struct dir_entry), cmp_entries);
    for (size_t i = 0; i < entries.len && !g_interrupted; i++) {
        const struct dir_entry *e = KHX_VEC_AT(&entries, struct dir_entry, i);
        char *child = join_path(path, e->name);
        if (child == NULL) {
            report_error(w->run, &w->out, path, "Can't open file or directory",
                         "a name inside is too long");
            continue;
        }
        walk_entry(w, child, e->type, depth);
        free(child);
    }
out:
    free_entries(&entries);
}

static void walk_arg(struct walker *w, const char *arg)
{
    const struct scan_config *cfg = w->run->cfg;
    struct stat st;

    if (strcmp(arg, "-") == 0) {
        char *dash = w->stdin_taken ? NULL : strdup("-");
        if (w->stdin_taken)
            report_error(w->run, &w->out, "stdin", "Can't read file",
                         "standard input named more than once");
        else if (dash == NULL)
            report_error(w->run, &w->out, "stdin", "Out of memory", NULL);
        else
            queue_push(w->run, dash);
        w->stdin_taken = 1;
        return;
    }
    if (strlen(arg) >= SCAN_PATH_MAX) {
        report_error(w->run, &w->out, arg, "Can't open file or directory", "name too long");
        return;
    }
    /* Symbolic links named on the command line are followed, as clamscan does. */
    if (stat(arg, &st) != 0) {
        report_error(w->run, &w->out, arg, "Can't open file or directory", strerror(errno));
        return;
    }
    if (S_ISDIR(st.st_mode))
        enter_dir(w, arg, 0, 0);
    else if (S_ISREG(st.st_mode))
        queue_file(w, arg);
    else
        report_error(w->run, &w->out, arg, "Not supported file type", NULL);
    (void)cfg;
}

static void *walker_main(void *arg)
{
    struct walker *w = arg;
    struct scan_run *run = w->run;
    for (size_t i = 0; i < run->cfg->npaths && !g_interrupted; i++)
        walk_arg(w, run->cfg->paths[i]);
    pthread_mutex_lock(&run->lock);
    run->walker_done = 1;
    pthread_cond_broadcast(&run->can_pop);
    pthread_cond_signal(&run->changed);
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The command                                                               */
/* ------------------------------------------------------------------------ */

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static uint64_t known_signatures(const kh_engine *e)
{
    struct kh_db_info info;
    uint64_t n = 0;
    memset(&info, 0, sizeof(info));
    if (kh_engine_info(e, &info) != KH_OK)
        return 0;
    /* Allowlist entries are not signatures of anything. */
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        if (k != KH_SIG_ALLOW)
            n += info.counts[k];
    return n;
}

static void print_summary(FILE *f, const struct scan_totals *t, uint64_t known, double secs)
{
    unsigned long whole = secs > 0 ? (unsigned long)secs : 0;
    fprintf(f,
            "\n----------- SCAN SUMMARY -----------\n"
            "Known signatures: %" PRIu64 "\n"
            "Engine version: %s\n"
            "Scanned directories: %" PRIu64 "\n"
            "Scanned files: %" PRIu64 "\n"
            "Infected files: %" PRIu64 "\n"
            "Not fully scanned: %" PRIu64 "\n"
            "Errors: %" PRIu64 "\n"
            "Data scanned: %.2f MB (%" PRIu64 " bytes)\n"
            "Time: %.3f sec (%lu m %lu s)\n",
            known, kh_version(), t->dirs, t->files, t->infected, t->partial, t->errors,
            (double)t->bytes / (1024.0 * 1024.0), t->bytes, secs, whole / 60, whole % 60);
    fflush(f);
}

/* Starts the walker and the workers, waits for them while drawing progress,
 * and leaves the totals in `run`. Returns 0, or -1 if no thread could start. */
static int run_threads(struct scan_run *run, struct worker *workers, unsigned nworkers,
                       struct walker *walker)
{
    pthread_t walker_thread;
    sigset_t block, old;
    unsigned started = 0;
    int walker_started = 0;

    /* Only the main thread takes SIGINT and SIGTERM: the created threads
     * inherit this mask. */
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (unsigned i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            break;
        workers[i].started = 1;
        started++;
    }
    pthread_mutex_lock(&run->lock);
    run->workers_left = started;
    pthread_mutex_unlock(&run->lock);
    if (started > 0 && pthread_create(&walker_thread, NULL, walker_main, walker) == 0)
        walker_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (!walker_started) {
        cli_errorf("cannot start threads: %s", strerror(errno));
        g_interrupted = 1;
    }

    pthread_mutex_lock(&run->lock);
    while (!(run->walker_done && run->workers_left == 0)) {
        if (!walker_started && run->workers_left == 0)
            break;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SCAN_PROGRESS_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&run->changed, &run->lock, &until);
        if (g_interrupted) {
            pthread_cond_broadcast(&run->can_pop);
            pthread_cond_broadcast(&run->can_push);
        }
        if (run->progress && !(run->walker_done && run->workers_left == 0))
            draw_progress_locked(run);
    }
    if (run->progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        run->progress_shown = 0;
    }
    pthread_mutex_unlock(&run->lock);

    if (walker_started)
        pthread_join(walker_thread, NULL);
    for (unsigned i = 0; i < nworkers; i++)
        if (workers[i].started)
            pthread_join(workers[i].thread, NULL);
    return walker_started ? 0 : -1;
}

int cmd_scan(int argc, char **argv)
{
    int rc = CLI_EXIT_ERROR;
    struct scan_config *cfg = calloc(1, sizeof(*cfg));
    struct scan_run *run = NULL;
    struct worker *workers = NULL;
    struct walker walker = {0};
    kh_engine *engine = NULL;
    pthread_condattr_t ca;
    struct sigaction sa, old_int, old_term;
    int sync_ready = 0, signals_set = 0;

    khx_buf_init(&walker.out, SCAN_RECORD_MAX);
    if (cfg == NULL) {
        cli_errorf("out of memory");
        goto out;
    }
    int pr = parse_options(cfg, argc, argv);
    if (pr != 0) {
        rc = pr > 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
        goto out;
    }
    if (load_engine(cfg, &engine) != KH_OK)
        goto out;
    uint64_t known = known_signatures(engine);
    if (cfg->verbose)
        cli_errorf("%" PRIu64 " signatures loaded; scanning with %u thread(s)", known,
                   cfg->threads);

    run = calloc(1, sizeof(*run));
    workers = calloc(cfg->threads, sizeof(*workers));
    walker.chain = calloc((size_t)cfg->max_dir_depth + 1, sizeof(*walker.chain));
    if (run == NULL || workers == NULL || walker.chain == NULL) {
        cli_errorf("out of memory");
        goto out;
    }
    run->cfg = cfg;
    walker.run = run;
    pthread_mutex_init(&run->lock, NULL);
    pthread_cond_init(&run->can_pop, NULL);
    pthread_cond_init(&run->can_push, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&run->changed, &ca);
    pthread_condattr_destroy(&ca);
    sync_ready = 1;

    for (unsigned i = 0; i < cfg->threads; i++) {
        int r;
        workers[i].run = run;
        khx_buf_init(&workers[i].out, SCAN_RECORD_MAX);
        if ((r = kh_scanner_new(engine, &cfg->opts, &workers[i].scanner)) != KH_OK) {
            cli_errorf("cannot create a scanner: %s", kh_strerror(r));
            goto out;
        }
    }

    run->progress = !cfg->quiet && isatty(STDERR_FILENO);
    run->flush_each = run->progress || isatty(STDOUT_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &run->started);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* A second Ctrl-C kills at once, for a scan stuck in one large file. */
    sa.sa_flags = (int)SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    signals_set = 1;

    if (run_threads(run, workers, cfg->threads, &walker) != 0)
        goto out;

    double secs = seconds_since(&run->started);
    if (g_interrupted)
        cli_errorf("interrupted; the summary covers the files scanned so far");
    if (cfg->summary)
        print_summary(cfg->json ? stderr : stdout, &run->totals, known, secs);
    if (run->totals.infected > 0)
        rc = CLI_EXIT_FOUND;
    else if (run->totals.errors > 0 || g_interrupted)
        rc = CLI_EXIT_ERROR;
    else
        rc = CLI_EXIT_OK;
out:
    if (fflush(stdout) != 0 && rc != CLI_EXIT_FOUND) {
        cli_errorf("cannot write the results: %s", strerror(errno));
        rc = CLI_EXIT_ERROR;
    }
    if (signals_set) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (run != NULL) {
        for (size_t i = 0; i < run->qlen; i++)
            free(run->queue[(run->qhead + i) % SCAN_QUEUE_CAP]);
        if (sync_ready) {
            pthread_cond_destroy(&run->changed);
            pthread_cond_destroy(&run->can_push);
            pthread_cond_destroy(&run->can_pop);
            pthread_mutex_destroy(&run->lock);
        }
    }
    if (workers != NULL && cfg != NULL) {
        for (unsigned i = 0; i < cfg->threads; i++) {
            dets_clear(&workers[i]);
            kh_scanner_free(workers[i].scanner);
            khx_buf_free(&workers[i].out);
        }
    }
    free(workers);
    free(run);
    free(walker.chain);
    khx_buf_free(&walker.out);
    kh_engine_free(engine);
    config_free(cfg);
    return rc;
}
