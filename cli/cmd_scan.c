/*
 * `khien scan`: scans files and directory trees with a signature database and
 * reports in clamscan's text format ("path: Name FOUND") or as JSON lines.
 *
 * This file is the command itself: it parses the options into a
 * struct scan_config, loads the database (a compiled .kdb, or signature
 * sources compiled in memory), sets up the state the threads share, installs
 * the Ctrl-C handler, runs the scan and turns the totals into clamscan's exit
 * status. The threads (walker, queue, workers) live in scan_walk.c and all
 * output in scan_output.c; scan_int.h describes how they fit together.
 *
 * Hostile input. File names, names of archive members and signature names are
 * all attacker-chosen; text output escapes control characters and invalid
 * UTF-8 as \xNN, and JSON output carries valid UTF-8 (plus the exact bytes in
 * hex when a path is not UTF-8). Directory recursion is bounded by
 * --max-dir-recursion and checked for loops; the queue, the per-file list of
 * detections and every string copied from the library have a maximum size.
 */
#include "scan_int.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_DEFAULT_DB        "/var/lib/khien/khien.kdb"
#define SCAN_MAX_THREADS       256
#define SCAN_DIR_DEPTH_DEFAULT 64
#define SCAN_DIR_DEPTH_MAX     1024
#define SCAN_RECORD_MAX        (4u << 20) /* one file's formatted report */

volatile sig_atomic_t scan_interrupted;

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
            cfg->opts.want_sha256 = 1; /* every JSON record carries it */
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
/* The command                                                               */
/* ------------------------------------------------------------------------ */

/* The workers whose scans Ctrl-C cancels (kh_scanner_cancel is
 * async-signal-safe), so that a large file stops at once. */
static struct scan_worker *signal_workers;
static unsigned signal_nworkers;

static void on_signal(int sig)
{
    (void)sig;
    scan_interrupted = 1;
    for (unsigned i = 0; i < signal_nworkers; i++)
        kh_scanner_cancel(signal_workers[i].scanner);
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

int cmd_scan(int argc, char **argv)
{
    int rc = CLI_EXIT_ERROR;
    struct scan_config *cfg = calloc(1, sizeof(*cfg));
    struct scan_run *run = NULL;
    struct scan_worker *workers = NULL;
    struct scan_walker walker = {0};
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

    signal_workers = workers;
    signal_nworkers = cfg->threads;
    if (scan_run_threads(run, workers, cfg->threads, &walker) != 0)
        goto out;

    double secs = scan_seconds_since(&run->started);
    if (scan_interrupted)
        cli_errorf("interrupted; the summary covers the files scanned so far");
    if (cfg->summary)
        scan_print_summary(cfg->json ? stderr : stdout, &run->totals, known, secs);
    if (run->totals.infected > 0)
        rc = CLI_EXIT_FOUND;
    else if (run->totals.errors > 0 || scan_interrupted)
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
    signal_nworkers = 0;
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
        for (unsigned i = 0; i < cfg->threads; i++)
            scan_worker_release(&workers[i]);
    }
    free(workers);
    free(run);
    free(walker.chain);
    khx_buf_free(&walker.out);
    kh_engine_free(engine);
    config_free(cfg);
    return rc;
}