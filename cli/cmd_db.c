/*
 * `khien db`: the signature-database subcommands.
 *
 *   khien db compile [--strict] [--pua] SOURCES... -o FILE.kdb
 *       reads signature sources with kh_builder, prints each problem as
 *       "file:line: reason" on stderr, writes the .kdb image atomically and
 *       prints what went into it;
 *   khien db info [--json] FILE.kdb
 *       describes a .kdb image: format, creation time, size, signatures per
 *       kind and the sources it was built from;
 *   khien db unpack FILE.cvd|FILE.cld -o DIR
 *   khien db patch FILE.cvd|FILE.cld PATCH.cdiff... -o FILE.cld
 *       verify and unpack a ClamAV container, or apply delta patches to it,
 *       as a private mirror does.
 *
 * The summary after compiling is read back from the image just written (via
 * kh_engine_open_image), so it describes exactly what a scan will load.
 * Source names come from the sources themselves (file names, names inside
 * CVD containers) and are escaped before they reach a terminal.
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Widest source-name column in the table; longer names push their row out
 * rather than widen every row. */
#define DB_NAME_COL_MAX 40

static void print_db_help(FILE *out)
{
    fputs("Usage: khien db compile [--strict] [--pua] [--portable] SOURCES... -o FILE.kdb\n"
          "       khien db info [--json] FILE.kdb\n"
          "       khien db unpack FILE.cvd -o DIR\n"
          "       khien db patch FILE.cvd PATCH.cdiff... -o FILE.cld\n"
          "\n"
          "Signature databases. Khiên compiles signature sources once into a .kdb image\n"
          "that scanners map read-only; 'khien scan -d FILE.kdb' uses it.\n"
          "\n"
          "Commands:\n"
          "  compile  Read signature sources and write a .kdb image.\n"
          "  info     Describe a .kdb image.\n"
          "  unpack   Verify a ClamAV .cvd/.cld and write its files into a directory.\n"
          "  patch    Apply ClamAV .cdiff delta patches to a .cvd/.cld, giving a .cld.\n"
          "\n"
          "Run 'khien db COMMAND --help' for the options of each.\n",
          out);
}

static void print_compile_help(FILE *out)
{
    fputs("Usage: khien db compile [--strict] [--pua] [--portable] SOURCES... -o FILE.kdb\n"
          "\n"
          "Reads signature sources and compiles them into one .kdb image. A SOURCE is a\n"
          "signature file or a directory whose signature files are all read (not\n"
          "recursively; files of unknown type in it are ignored). The file extension\n"
          "selects the format: ClamAV .cvd .cld .cud (containers), .hdb .hsb .mdb .msb .imp\n"
          ".ndb .ldb .fp .sfp .ign2 ..., YARA .yar .yara, and plain hash lists.\n"
          "\n"
          "Options:\n"
          "  -o, --output FILE  Write the image to FILE (required). The file is replaced\n"
          "                     atomically: a reader sees the old or the new image.\n"
          "      --strict       Treat any malformed signature line as fatal: nothing is\n"
          "                     written and the exit status is 1.\n"
          "      --pua          Also load PUA databases (.hdu .ndu .ldu ...), which\n"
          "                     describe potentially unwanted applications.\n"
          "      --portable     Build the pattern matcher for any x86-64 CPU, not only\n"
          "                     this machine's (for a database other machines will load;\n"
          "                     slightly slower than one tuned for the machine).\n"
          "  -q, --quiet        Do not print the summary (problems are still printed).\n"
          "  -h, --help         Show this help and exit.\n"
          "\n"
          "Each problem found in a source is printed on standard error as\n"
          "'file:line: reason' ('file: reason' when it is not tied to a line); inside a\n"
          "container the file is named 'container:member'. Without --strict such lines are\n"
          "skipped and counted. The summary on standard output gives the signatures per\n"
          "kind and, per source, the signatures loaded, skipped (a kind or functionality\n"
          "level this engine does not support) and in error.\n"
          "\n"
          "Exit status:\n"
          "  0  the image was written\n"
          "  1  --strict was given and a source had errors; nothing was written\n"
          "  2  any other failure (unreadable source, unknown file type, write error,\n"
          "     bad usage)\n",
          out);
}

static void print_info_help(FILE *out)
{
    fputs("Usage: khien db info [--json] FILE.kdb\n"
          "\n"
          "Describes a .kdb image: its format version, when it was built (UTC), its size,\n"
          "the signatures per kind, the signatures dropped by .ign2 ignore lists, and one\n"
          "line per source with its version (for CVD/CLD containers), signatures loaded,\n"
          "signatures skipped, malformed lines and build time. The image's header and\n"
          "checksum are verified first.\n"
          "\n"
          "Options:\n"
          "      --json   Print one JSON object instead of text.\n"
          "  -h, --help   Show this help and exit.\n"
          "\n"
          "Exit status: 0 on success, 2 when FILE cannot be opened or is not a valid image.\n",
          out);
}

static void print_unpack_help(FILE *out)
{
    fputs("Usage: khien db unpack FILE.cvd|FILE.cld -o DIR\n"
          "\n"
          "Verifies a ClamAV database container (the header MD5 and RSA signature of a\n"
          ".cvd, the DSIG of its .info manifest, every member's size and SHA-256) and\n"
          "writes its files, the .info manifest included, into the existing directory\n"
          "DIR, as 'sigtool -u' does. Nothing is written if any check fails.\n"
          "\n"
          "Options:\n"
          "  -o, --output DIR  The directory to write into (required; must exist).\n"
          "  -h, --help        Show this help and exit.\n"
          "\n"
          "Exit status: 0 on success, 2 on any failure (the message says what and where).\n",
          out);
}

static void print_patch_help(FILE *out)
{
    fputs("Usage: khien db patch FILE.cvd|FILE.cld PATCH.cdiff... -o FILE.cld\n"
          "\n"
          "Applies ClamAV delta patches (daily-N.cdiff), in the order given, to a\n"
          ".cvd or .cld and writes the result as a .cld, as freshclam does. Every input is\n"
          "verified first (container signatures, each patch's DSIG); each patch is\n"
          "checked command by command before anything changes, so a patch that does not\n"
          "apply leaves no output. The .cld can then be given to 'khien db compile'.\n"
          "\n"
          "Options:\n"
          "  -o, --output FILE  The .cld to write (required); replaced atomically.\n"
          "  -h, --help         Show this help and exit.\n"
          "\n"
          "Exit status: 0 on success, 2 on any failure (the message names the patch and\n"
          "the script line).\n",
          out);
}

static void try_help(void)
{
    fprintf(stderr, "Try '%s --help' for more information.\n", cli_progname);
}

static uint64_t total_signatures(const struct kh_db_info *info)
{
    uint64_t n = 0;
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        if (k != KH_SIG_ALLOW)
            n += info->counts[k];
    return n;
}

static const char *kind_name(int kind)
{
    const char *s = kh_sigkind_name(kind);
    return s ? s : "unknown";
}

/* Prints the per-kind counts and the source table shared by `compile` and
 * `info`. */
static void print_contents(FILE *out, const struct kh_db_info *info)
{
    int width = 4;
    char when[40];

    fprintf(out, "Signatures:      %" PRIu64 "%s\n", total_signatures(info),
            info->counts[KH_SIG_ALLOW] ? " (allowlist entries not counted)" : "");
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        fprintf(out, "  %-13s  %" PRIu64 "\n", kind_name(k), info->counts[k]);
    fprintf(out, "Ignored (.ign2): %" PRIu64 "\n", info->ignored);
    fprintf(out, "Sources:         %" PRIu32 "\n", info->nsources);
    if (info->nsources == 0 || info->sources == NULL)
        return;
    for (uint32_t i = 0; i < info->nsources; i++) {
        const char *name = info->sources[i].name ? info->sources[i].name : "";
        int len = (int)strnlen(name, DB_NAME_COL_MAX);
        width = len > width ? len : width;
    }
    fprintf(out, "  %-*s  %8s  %10s  %8s  %7s  %s\n", width, "NAME", "VERSION", "SIGNATURES",
            "SKIPPED", "ERRORS", "BUILT");
    for (uint32_t i = 0; i < info->nsources; i++) {
        const struct kh_source_info *s = &info->sources[i];
        struct khx_buf name;
        khx_buf_init(&name, 1u << 16);
        int ok = cli_buf_escaped(&name, s->name) == KH_OK && khx_buf_append_u8(&name, 0) == 0;
        if (s->built > 0)
            cli_format_time(s->built, when, sizeof(when));
        else
            snprintf(when, sizeof(when), "-");
        fprintf(out, "  %-*s  %8" PRIu32 "  %10" PRIu32 "  %8" PRIu32 "  %7" PRIu32 "  %s\n", width,
                ok ? (const char *)name.data : "?", s->version, s->signatures, s->skipped,
                s->errors, when);
        khx_buf_free(&name);
    }
}

static json_t *info_to_json(const char *file, const struct kh_db_info *info)
{
    char when[40];
    int bad = 0;
    json_t *o = json_object(), *counts = json_object(), *sources = json_array();
    if (o == NULL || counts == NULL || sources == NULL)
        goto fail;
    cli_format_time(info->created, when, sizeof(when));
    bad |= json_object_set_new(o, "file", cli_json_string(file));
    bad |= json_object_set_new(o, "format_version", json_integer(info->format_version));
    bad |= json_object_set_new(o, "created", json_string(when));
    bad |= json_object_set_new(o, "created_unix", json_integer((json_int_t)info->created));
    bad |= json_object_set_new(o, "image_size", json_integer((json_int_t)info->image_size));
    bad |= json_object_set_new(o, "signatures", json_integer((json_int_t)total_signatures(info)));
    for (int k = 0; k < KH_SIG_KIND_COUNT; k++)
        bad |= json_object_set_new(counts, kind_name(k), json_integer((json_int_t)info->counts[k]));
    bad |= json_object_set_new(o, "counts", counts);
    counts = NULL;
    bad |= json_object_set_new(o, "ignored", json_integer((json_int_t)info->ignored));
    for (uint32_t i = 0; i < info->nsources && info->sources != NULL && !bad; i++) {
        const struct kh_source_info *s = &info->sources[i];
        json_t *j = json_object();
        if (j == NULL || json_array_append_new(sources, j) != 0) {
            bad = 1;
            break;
        }
        bad |= json_object_set_new(j, "name", cli_json_string(s->name));
        bad |= json_object_set_new(j, "version", json_integer(s->version));
        bad |= json_object_set_new(j, "signatures", json_integer(s->signatures));
        bad |= json_object_set_new(j, "skipped", json_integer(s->skipped));
        bad |= json_object_set_new(j, "errors", json_integer(s->errors));
        if (s->built > 0) {
            cli_format_time(s->built, when, sizeof(when));
            bad |= json_object_set_new(j, "built", json_string(when));
        } else {
            bad |= json_object_set_new(j, "built", json_null());
        }
    }
    bad |= json_object_set_new(o, "sources", sources);
    sources = NULL;
    if (bad)
        goto fail;
    return o;
fail:
    json_decref(sources);
    json_decref(counts);
    json_decref(o);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* khien db compile                                                          */
/* ------------------------------------------------------------------------ */

static int db_compile(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'o'},
        {"strict", no_argument, NULL, 'S'},
        {"pua", no_argument, NULL, 'P'},
        {"portable", no_argument, NULL, 'G'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    int rc = CLI_EXIT_ERROR, c, r, quiet = 0, failed = 0;
    const char *output = NULL;
    struct cli_diag diag = {.print = 1, .count = 0};
    struct kh_build_opts bo = {.diag = cli_diag_print, .diag_ud = &diag};
    kh_builder *b = NULL;
    kh_engine *e = NULL;
    void *image = NULL;
    size_t image_len = 0;
    char err[512] = "";
    struct kh_db_info info;

    while ((c = getopt_long(argc, argv, "ho:q", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            print_compile_help(stdout);
            return CLI_EXIT_OK;
        case 'o':
            output = optarg;
            break;
        case 'S':
            bo.strict = 1;
            break;
        case 'G':
            bo.portable = 1;
            break;
        case 'P':
            bo.pua = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        default:
            try_help();
            return CLI_EXIT_ERROR;
        }
    }
    if (output == NULL) {
        cli_errorf("no output file; name it with -o FILE.kdb");
        try_help();
        return CLI_EXIT_ERROR;
    }
    if (optind >= argc) {
        cli_errorf("no SOURCES given");
        try_help();
        return CLI_EXIT_ERROR;
    }
    if (strcasecmp(khx_path_ext(output), "kdb") != 0)
        cli_errorf("note: '%s' does not end in .kdb; 'khien scan -d' recognises images by that "
                   "extension and would treat this file as a signature source",
                   output);

    if ((r = kh_builder_new(&bo, &b)) != KH_OK) {
        cli_errorf("cannot start a signature build: %s", kh_strerror(r));
        goto out;
    }
    /* Every source is read even after one fails, so that one run lists all
     * the problems. */
    for (int i = optind; i < argc; i++) {
        if ((r = kh_builder_add_path(b, argv[i])) == KH_OK)
            continue;
        if (r == KH_ESTRICT) {
            failed |= 1;
        } else {
            cli_errorf("%s: %s", argv[i], kh_strerror(r));
            failed |= 2;
        }
    }
    if (failed & 2) {
        cli_errorf("nothing written");
        goto out;
    }
    if (!failed && (r = kh_builder_compile(b, &image, &image_len)) != KH_OK) {
        if (r == KH_ESTRICT)
            failed = 1;
        else {
            cli_errorf("cannot compile the signatures: %s", kh_strerror(r));
            goto out;
        }
    }
    if (failed) {
        cli_errorf("%lu problem(s) in the sources and --strict was given; nothing written",
                   diag.count);
        rc = CLI_EXIT_FOUND;
        goto out;
    }
    if ((r = khx_write_file_atomic(output, image, image_len)) != KH_OK) {
        cli_errorf("cannot write %s: %s", output, kh_strerror(r));
        goto out;
    }
    /* The engine owns the image from here on, whether or not it opens. */
    r = kh_engine_open_image(image, image_len, &e, err, sizeof(err));
    image = NULL;
    if (r != KH_OK) {
        cli_errorf("%s was written but does not open: %s", output, err[0] ? err : kh_strerror(r));
        goto out;
    }
    memset(&info, 0, sizeof(info));
    if ((r = kh_engine_info(e, &info)) != KH_OK) {
        cli_errorf("%s: cannot describe the image: %s", output, kh_strerror(r));
        goto out;
    }
    if (!quiet) {
        printf("Wrote:           ");
        cli_fput_escaped(stdout, output);
        printf(" (%zu bytes)\n", image_len);
        printf("Problems:        %lu%s\n", diag.count,
               diag.count ? " (lines skipped; listed above)" : "");
        print_contents(stdout, &info);
    }
    rc = CLI_EXIT_OK;
out:
    free(image);
    kh_engine_free(e);
    kh_builder_free(b);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* khien db info                                                             */
/* ------------------------------------------------------------------------ */

static int db_info(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"json", no_argument, NULL, 'J'},
        {NULL, 0, NULL, 0},
    };
    int rc = CLI_EXIT_ERROR, c, r, as_json = 0;
    kh_engine *e = NULL;
    json_t *j = NULL;
    char err[512] = "", when[40];
    struct kh_db_info info;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            print_info_help(stdout);
            return CLI_EXIT_OK;
        case 'J':
            as_json = 1;
            break;
        default:
            try_help();
            return CLI_EXIT_ERROR;
        }
    }
    if (argc - optind != 1) {
        cli_errorf(optind >= argc ? "no FILE given" : "one FILE at a time");
        try_help();
        return CLI_EXIT_ERROR;
    }
    const char *file = argv[optind];
    if ((r = kh_engine_open(file, &e, err, sizeof(err))) != KH_OK) {
        cli_errorf("%s: %s", file, err[0] ? err : kh_strerror(r));
        goto out;
    }
    memset(&info, 0, sizeof(info));
    if ((r = kh_engine_info(e, &info)) != KH_OK) {
        cli_errorf("%s: cannot describe the image: %s", file, kh_strerror(r));
        goto out;
    }
    if (as_json) {
        char *text = NULL;
        if ((j = info_to_json(file, &info)) == NULL ||
            (text = json_dumps(j, JSON_INDENT(2))) == NULL) {
            cli_errorf("out of memory");
            goto out;
        }
        puts(text);
        free(text);
    } else {
        cli_format_time(info.created, when, sizeof(when));
        printf("File:            ");
        cli_fput_escaped(stdout, file);
        printf("\nFormat version:  %" PRIu32 "\n", info.format_version);
        printf("Created:         %s\n", when);
        printf("Image size:      %" PRIu64 " bytes\n", info.image_size);
        print_contents(stdout, &info);
    }
    rc = CLI_EXIT_OK;
out:
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_ERROR;
    json_decref(j);
    kh_engine_free(e);
    return rc;
}

/* Parses "-o X" (and -h) around positional arguments, for unpack and patch. */
static int parse_output(int argc, char **argv, void (*help)(FILE *), const char **output)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int c;
    *output = NULL;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            help(stdout);
            return 1;
        case 'o':
            *output = optarg;
            break;
        default:
            try_help();
            return -1;
        }
    }
    if (*output == NULL) {
        cli_errorf("no output given (-o)");
        try_help();
        return -1;
    }
    return 0;
}

static int db_unpack(int argc, char **argv)
{
    const char *dir;
    char err[768] = "";
    int p = parse_output(argc, argv, print_unpack_help, &dir);
    if (p != 0)
        return p > 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    if (argc - optind != 1) {
        cli_errorf("give exactly one .cvd or .cld file");
        try_help();
        return CLI_EXIT_ERROR;
    }
    int r = kh_clamav_unpack(argv[optind], dir, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s", err[0] ? err : kh_strerror(r));
        return CLI_EXIT_ERROR;
    }
    printf("Unpacked %s into %s\n", argv[optind], dir);
    return CLI_EXIT_OK;
}

static int db_patch(int argc, char **argv)
{
    const char *out;
    char err[768] = "";
    int p = parse_output(argc, argv, print_patch_help, &out);
    if (p != 0)
        return p > 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    if (argc - optind < 2) {
        cli_errorf("give a .cvd or .cld file and at least one .cdiff patch");
        try_help();
        return CLI_EXIT_ERROR;
    }
    const char *base = argv[optind];
    int r = kh_clamav_patch(base, (const char *const *)&argv[optind + 1],
                            (size_t)(argc - optind - 1), out, err, sizeof(err));
    if (r != KH_OK) {
        cli_errorf("%s", err[0] ? err : kh_strerror(r));
        return CLI_EXIT_ERROR;
    }
    printf("Applied %d patch(es) to %s; wrote %s\n", argc - optind - 1, base, out);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

int cmd_db(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } subs[] = {
        {"compile", db_compile}, {"info", db_info}, {"unpack", db_unpack}, {"patch", db_patch}};
    static char display[64];

    if (argc < 2) {
        print_db_help(stderr);
        return CLI_EXIT_ERROR;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_db_help(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < KHX_ARRAY_LEN(subs); i++) {
        if (strcmp(argv[1], subs[i].name) != 0)
            continue;
        snprintf(display, sizeof(display), "khien db %s", subs[i].name);
        cli_progname = display;
        argv[1] = display;
        return subs[i].run(argc - 1, argv + 1);
    }
    cli_errorf("unknown command '%s'; the db commands are 'compile', 'info', 'unpack' and 'patch'",
               argv[1]);
    return CLI_EXIT_ERROR;
}
