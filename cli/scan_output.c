/*
 * `khien scan`: what the scan writes while and after it runs. A worker or the
 * walker describes each path in a struct scan_report; scan_publish() counts it
 * in the totals and, when the output options make it visible, formats it as
 * clamscan-style text lines or as one JSON object, then writes it in one
 * piece while holding the run's lock, so that the reports of two files never
 * interleave. Notes about skipped paths, the progress line on a terminal and
 * the summary block are written here too, and every write first erases a
 * progress line that is on the screen.
 *
 * Everything printed here may contain attacker-chosen bytes (file names,
 * member names, signature names): text output escapes them with
 * cli_buf_escaped, JSON output carries valid UTF-8 plus the exact bytes of a
 * path in hex, and the progress line replaces anything unprintable with '?'.
 * A report is formatted into a buffer of at most SCAN_RECORD_MAX bytes
 * (cmd_scan.c); one that does not fit is counted as an error and said so.
 */
#include "scan_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Writing under the lock                                                    */
/* ------------------------------------------------------------------------ */

double scan_seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

void scan_erase_progress_locked(struct scan_run *run)
{
    if (run->progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        run->progress_shown = 0;
    }
}

/* Writes to `f` with the lock held, first erasing a progress line so that the
 * text starts at the left margin of a clean line. */
static void emit_locked(struct scan_run *run, FILE *f, const void *data, size_t len)
{
    scan_erase_progress_locked(run);
    fwrite(data, 1, len, f);
    if (run->flush_each || f == stderr)
        fflush(f);
}

/* Prints "khien scan: PATH: message" on stderr, for paths that are skipped
 * rather than scanned. `always` notes are printed without --verbose, because
 * they hide files from the scan. */
void scan_note(struct scan_run *run, struct khx_buf *b, int always, const char *path,
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

/* ------------------------------------------------------------------------ */
/* Reports: text and JSON                                                    */
/* ------------------------------------------------------------------------ */

static const char *kind_name(int kind)
{
    const char *s = kh_sigkind_name(kind);
    return s ? s : "unknown";
}

static int format_text(struct khx_buf *b, const struct scan_config *cfg,
                       const struct scan_report *rep)
{
    int r = KH_OK;
    for (unsigned i = 0; i < rep->ndets && r == KH_OK; i++) {
        const struct scan_det *d = &rep->dets[i];
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

static json_t *json_detection(const struct scan_det *d)
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

static int format_json(struct khx_buf *b, const struct scan_report *rep)
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
        if (rep->res.sha256_valid)
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
static int report_visible(const struct scan_config *cfg, const struct scan_report *rep)
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
void scan_publish(struct scan_run *run, struct khx_buf *b, const struct scan_report *rep)
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
void scan_report_error(struct scan_run *run, struct khx_buf *b, const char *path, const char *error,
                       const char *detail)
{
    static const char cant_open[] = "Can't open file or directory";
    struct scan_report rep = {.path = path,
                              .error = error,
                              .error_detail = detail,
                              .detail_in_text = strcmp(error, cant_open) != 0};
    scan_publish(run, b, &rep);
    if (run->cfg->verbose && detail != NULL && !rep.detail_in_text && !run->cfg->json)
        scan_note(run, b, 0, path, detail);
}

/* ------------------------------------------------------------------------ */
/* The progress line                                                         */
/* ------------------------------------------------------------------------ */

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

void scan_draw_progress_locked(struct scan_run *run)
{
    char head[160], bytes[32], rate[32], path[4 * SCAN_CURRENT_MAX];
    double secs = scan_seconds_since(&run->started);
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
/* The summary                                                               */
/* ------------------------------------------------------------------------ */

void scan_print_summary(FILE *f, const struct scan_totals *t, uint64_t known, double secs)
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
