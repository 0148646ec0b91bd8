/*
 * Private plumbing shared by the feed readers (feed.c, feed_text.c,
 * feed_json.c): the state of one read (options resolved to their defaults,
 * the callback and the counters) and the one place where a raw value becomes
 * a record — normalised, its words checked, its expiry applied, counted.
 * Nothing here is part of feed.h's interface.
 */
#ifndef KHIEN_IOC_FEED_INT_H
#define KHIEN_IOC_FEED_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "feed.h"

/* The most lines or objects a reader looks at in one text; beyond it the
 * rest is refused with a counted reason (a 1 GiB list has about 30 M). */
#define FEED_MAX_ENTRIES (64u * 1024 * 1024)

/* One read in progress. `st` always points somewhere (a local when the
 * caller passed NULL). */
struct feed_run {
    const char *source;   /* resolved feed id */
    const char *category; /* default category word */
    const char *family;   /* default family or NULL */
    uint8_t confidence;   /* default confidence */
    int64_t now;
    int keep_expired;
    const struct ioc_read_opts *opts; /* never NULL */
    ioc_record_fn fn;
    void *ctx;
    struct ioc_read_stats *st;
    /* The defaults above as feed_emit would clean them, done once per run
     * rather than once per record. */
    char cat_clean[IOC_WORD_MAX + 1];
    char src_clean[IOC_WORD_MAX + 1];
    char fam_clean[IOC_WORD_MAX + 1];
    int fam_ok;         /* fam_clean holds the cleaned default family */
    unsigned line_base; /* lines of a streamed plain file already read */
    /* feed_emit_plain's category (0) and source (1) words: the last field
     * as written and as cleaned. A line repeating it reuses the cleaned
     * word, which thus stays at one address; word_gen[k] counts the times
     * word[k] was rewritten, so that the same address and count mean the
     * same word (feed_pipe.c packs it once a batch by that). */
    char word_raw[2][IOC_WORD_MAX + 1];
    char word[2][IOC_WORD_MAX + 1];
    size_t word_rawlen[2];
    int word_ok[2];
    unsigned word_gen[2];
    /* IOC_HINT_* (store.h) for the record being passed to fn: feed_pipe.c
     * carries them to the store builder */
    unsigned rec_hints;
};

/* What a reader knows about one value besides the value itself; NULL or -1
 * fields take the run's defaults. */
struct feed_meta {
    const char *source;   /* a word, or NULL */
    const char *category; /* a category word, or NULL */
    const char *family;   /* free text (trimmed, cut to IOC_WORD_MAX), or NULL */
    size_t family_len;    /* 0 = strlen(family) */
    int confidence;       /* 0..100, or -1 */
    int64_t expires;      /* Unix seconds, 0 = never */
};

void feed_run_init(struct feed_run *run, enum ioc_format fmt, const struct ioc_read_opts *opts,
                   ioc_record_fn fn, void *ctx, struct ioc_read_stats *st);

/* Counts one rejected entry; the first one's reason goes to first_error. */
void feed_reject(struct feed_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Normalises value[0..len) as `kind` (-1: any) and passes it to the
 * callback, or counts a rejection "<unit> <n>: <reason>" or, for an expired
 * record, a skip. Returns 0 or the callback's non-zero value. */
int feed_emit(struct feed_run *run, int kind, const char *value, size_t len,
              const struct feed_meta *m, const char *unit, size_t n);

/* The fast path of ioc_normalize_value for values already in canonical
 * form or nearly (plain domains, possibly upper-case; dotted IPv4 with an
 * optional :port or /len). Writes the same text the full normaliser would
 * and returns the kind, or returns -1 when the value needs the full path
 * (which also words any error). With used == NULL s[0..n) is the trimmed
 * value; otherwise the value is the token at s, ended by the end or a blank,
 * and *used gets its length. */
int feed_fast_value(int kind, const char *s, size_t n, char *out, size_t *used);

/* For a plain-list line "value [category [source]]" whose value the fast
 * path takes and whose words need no cleaning: emits it as the general path
 * would. Returns 1 when it was handled (r holds the callback's value), 0 to
 * take the general path. */
int feed_emit_plain(struct feed_run *run, const char *line, size_t n, int *r);

/* Runs read(run, arg) on a second thread and calls run->fn on this one, in
 * the same order, overlapping parsing with the callback's work
 * (feed_pipe.c). Falls back to one thread when no thread can be started.
 * Returns what the reader or the callback returned. */
int feed_read_piped(struct feed_run *run, int (*read)(struct feed_run *run, void *arg), void *arg);

/* ioc_category_word without its fallback: NULL when nothing is recognised. */
const char *feed_category_lookup(const char *text, size_t len);

/* Parses a time as Unix seconds: digits (seconds), "YYYY-MM-DD", or
 * "YYYY-MM-DD[T ]hh:mm[:ss[.frac]][Z|+hh:mm]". Returns 0 or -1. */
int feed_parse_time(const char *s, size_t n, int64_t *out);

/* Case-insensitive comparison of s[0..n) with a NUL-terminated word. */
int feed_word_eq(const char *s, size_t n, const char *word);

/* Readers, one per format (feed_text.c and feed_json.c). */
int feed_read_plain(struct feed_run *run, const char *text, size_t len);
int feed_read_csv(struct feed_run *run, const char *text, size_t len);
int feed_read_maltrail(struct feed_run *run, const char *text, size_t len);
int feed_read_ipsum(struct feed_run *run, const char *text, size_t len);
int feed_read_firehol(struct feed_run *run, const char *text, size_t len);
int feed_read_iprep(struct feed_run *run, const char *text, size_t len);
int feed_read_zeek(struct feed_run *run, const char *text, size_t len);
int feed_read_stix(struct feed_run *run, const char *text, size_t len);
int feed_read_misp(struct feed_run *run, const char *text, size_t len);
int feed_read_warninglist(struct feed_run *run, const char *text, size_t len);

#endif
