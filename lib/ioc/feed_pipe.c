/*
 * Reading a large feed on two threads (feed_int.h: feed_read_piped). Loading
 * 10 M indicators is two jobs of about the same size: parsing and normalising
 * the text, and adding each record to the store builder. This file runs the
 * reader on a second thread that packs its records into batches, while the
 * caller's thread unpacks them and calls the caller's callback, so the two
 * overlap. The callback still runs on the caller's thread, once per record
 * and in the order the reader produced them, so a caller (the builder, which
 * merges records in the order they were added) sees exactly what a
 * single-threaded read gives it.
 *
 * Memory is bounded: PIPE_BATCHES batches of PIPE_BATCH_BYTES each. A
 * non-zero return of the callback stops the reader at its next record and is
 * what the read returns.
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <khien/khien.h>

#include "feed_int.h"
#include "khx.h"
#include "store.h"

#define PIPE_BATCH_BYTES ((size_t)64 << 10)
#define PIPE_BATCHES     8

/* Flags of a packed record: which strings follow the value; the others are
 * the run's defaults (or no family). */
enum {
    PF_CAT = 1,
    PF_SRC = 2,
    PF_FAM = 4,
    PF_FAM_DEFAULT = 8,
    PF_CAT_PREV = 16,
    PF_SRC_PREV = 32,
    PF_CANONICAL = 64 /* the record's IOC_HINT_CANONICAL */
};
/* PF_CAT_PREV, PF_SRC_PREV: the same category (source) as the batch's
 * previous record that carried one, so the word is not packed again: in a
 * list of "value category source" lines it is the same on every line. */

/* A packed record: [len u16][kind u8][confidence u8][flags u8][expires i64]
 * then the value and any flagged strings, each NUL-terminated. */
#define PREC_HDR 13

/* A batch sits alone in its cache line(s): the reader writes `used` for
 * every record, and the other thread must not be reading a neighbour's
 * fields from the same line meanwhile. */
struct batch {
    alignas(64) size_t used;
    uint8_t *data;
};

struct pipe {
    struct feed_run *run; /* the reader's run */
    /* Copies of the run's cleaned defaults for the caller's thread, which
     * thus never reads the run that the reader writes next to. */
    char cat[IOC_WORD_MAX + 1], src[IOC_WORD_MAX + 1], fam[IOC_WORD_MAX + 1];
    /* The reader's side: the words last packed in the batch it fills. */
    char last_cat[IOC_WORD_MAX + 1], last_src[IOC_WORD_MAX + 1];
    int have_cat, have_src;
    /* where last_cat (last_src) was copied from when that was the run's
     * word[0] (word[1]), and its word_gen then; else NULL */
    const char *last_word[2];
    unsigned last_gen[2];
    ioc_record_fn fn; /* the caller's callback and context */
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch b[PIPE_BATCHES];
    unsigned head, count; /* full batches: b[head], ... (count of them) */
    unsigned fill;        /* the batch the reader fills */
    int done;             /* the reader finished; its result is in result */
    int result;
    atomic_int stop; /* the callback's non-zero value, or 0 */
};

/* Hands the filled batch to the consumer and waits for a free one. */
static void hand_over(struct pipe *p)
{
    pthread_mutex_lock(&p->mu);
    p->count++;
    pthread_cond_broadcast(&p->cv);
    while (p->count == PIPE_BATCHES && atomic_load(&p->stop) == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    /* After a stop the reader writes nothing more, so it needs no batch. */
    if (atomic_load(&p->stop) == 0) {
        p->fill = (p->head + p->count) % PIPE_BATCHES;
        p->b[p->fill].used = 0;
    }
    pthread_mutex_unlock(&p->mu);
}

static size_t str_bytes(const char *s)
{
    return strnlen(s, IOC_VALUE_MAX) + 1;
}

/* Whether s is the run's word k unchanged since it was last packed: then
 * it equals last_cat (k = 0) or last_src (k = 1) without comparing. */
static int same_word(const struct pipe *p, int k, const char *s)
{
    return s == p->last_word[k] && p->run->word_gen[k] == p->last_gen[k];
}

static void note_word(struct pipe *p, int k, const char *s)
{
    p->last_word[k] = s == p->run->word[k] ? s : NULL;
    p->last_gen[k] = p->run->word_gen[k];
}

/* The reader's callback: packs one record. */
static int push(void *ctx, const struct ioc_record *r)
{
    struct pipe *p = ctx;
    int stop = atomic_load_explicit(&p->stop, memory_order_relaxed);
    if (stop != 0)
        return stop;
    uint8_t flags = p->run->rec_hints & IOC_HINT_CANONICAL ? PF_CANONICAL : 0;
    size_t need = PREC_HDR + str_bytes(r->value);
    if (r->category != p->run->cat_clean) {
        if (p->have_cat &&
            (same_word(p, 0, r->category) || strcmp(r->category, p->last_cat) == 0)) {
            flags |= PF_CAT_PREV;
        } else {
            flags |= PF_CAT;
            need += str_bytes(r->category);
        }
    }
    if (r->source != p->run->src_clean) {
        if (p->have_src && (same_word(p, 1, r->source) || strcmp(r->source, p->last_src) == 0)) {
            flags |= PF_SRC_PREV;
        } else {
            flags |= PF_SRC;
            need += str_bytes(r->source);
        }
    }
    if (r->family != NULL && r->family == p->run->fam_clean) {
        flags |= PF_FAM_DEFAULT;
    } else if (r->family != NULL) {
        flags |= PF_FAM;
        need += str_bytes(r->family);
    }
    struct batch *b = &p->b[p->fill];
    if (b->used + need > PIPE_BATCH_BYTES) {
        hand_over(p);
        if ((stop = atomic_load(&p->stop)) != 0)
            return stop;
        b = &p->b[p->fill];
        /* A batch stands alone: its first record carries its words. */
        p->have_cat = p->have_src = 0;
        if (flags & PF_CAT_PREV) {
            flags = (uint8_t)((flags & ~PF_CAT_PREV) | PF_CAT);
            need += str_bytes(r->category);
        }
        if (flags & PF_SRC_PREV) {
            flags = (uint8_t)((flags & ~PF_SRC_PREV) | PF_SRC);
            need += str_bytes(r->source);
        }
    }
    uint8_t *o = b->data + b->used;
    uint16_t len = (uint16_t)need;
    memcpy(o, &len, 2);
    o[2] = (uint8_t)r->kind;
    o[3] = r->confidence;
    o[4] = flags;
    memcpy(o + 5, &r->expires, 8);
    size_t k = PREC_HDR;
#define PUT(s)                                                                                     \
    do {                                                                                           \
        size_t l_ = str_bytes(s) - 1;                                                              \
        memcpy(o + k, (s), l_);                                                                    \
        o[k + l_] = '\0';                                                                          \
        k += l_ + 1;                                                                               \
    } while (0)
    PUT(r->value);
    if (flags & PF_CAT) {
        PUT(r->category);
        snprintf(p->last_cat, sizeof(p->last_cat), "%s", r->category);
        p->have_cat = 1;
        note_word(p, 0, r->category);
    }
    if (flags & PF_SRC) {
        PUT(r->source);
        snprintf(p->last_src, sizeof(p->last_src), "%s", r->source);
        p->have_src = 1;
        note_word(p, 1, r->source);
    }
    if (flags & PF_FAM)
        PUT(r->family);
#undef PUT
    b->used += need;
    return 0;
}

struct reader_args {
    struct pipe *p;
    int (*read)(struct feed_run *run, void *arg);
    void *arg;
};

static void *reader_main(void *arg)
{
    struct reader_args *a = arg;
    struct pipe *p = a->p;
    int r = a->read(p->run, a->arg);
    pthread_mutex_lock(&p->mu);
    if (atomic_load(&p->stop) == 0 && p->b[p->fill].used > 0)
        p->count++;
    p->done = 1;
    p->result = r;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Unpacks one batch and calls the caller's callback per record. Within a
 * batch a word is one string for all the records that share it, so equal
 * pointers mean equal words: a record whose words (and confidence and
 * expiry) are the previous record's says so (IOC_HINT_SAME_WORDS), and the
 * builder skips comparing them. The first record of a batch never does. */
static int replay(struct pipe *p, const struct batch *b)
{
    const uint8_t *data = b->data;
    const char *pcat = p->cat, *psrc = p->src;
    struct ioc_record prev = {0};
    int have_prev = 0;
    size_t off = 0, used = b->used;
    while (off + PREC_HDR <= used) {
        const uint8_t *o = data + off;
        uint16_t len;
        struct ioc_record rec;
        memcpy(&len, o, 2);
        rec.kind = o[2];
        rec.confidence = o[3];
        uint8_t flags = o[4];
        memcpy(&rec.expires, o + 5, 8);
        const char *s = (const char *)o + PREC_HDR;
        rec.value = s;
        s += strlen(s) + 1;
        rec.category = p->cat;
        rec.source = p->src;
        rec.family = flags & PF_FAM_DEFAULT ? p->fam : NULL;
        if (flags & PF_CAT) {
            rec.category = pcat = s;
            s += strlen(s) + 1;
        } else if (flags & PF_CAT_PREV) {
            rec.category = pcat;
        }
        if (flags & PF_SRC) {
            rec.source = psrc = s;
            s += strlen(s) + 1;
        } else if (flags & PF_SRC_PREV) {
            rec.source = psrc;
        }
        if (flags & PF_FAM)
            rec.family = s;
        unsigned hints = flags & PF_CANONICAL ? IOC_HINT_CANONICAL : 0;
        if (have_prev && rec.category == prev.category && rec.source == prev.source &&
            rec.family == prev.family && rec.confidence == prev.confidence &&
            rec.expires == prev.expires)
            hints |= IOC_HINT_SAME_WORDS;
        prev = rec;
        have_prev = 1;
        int r;
        if (p->fn == ioc_builder_add_fn) {
            /* the store builder, told what the reader knows */
            r = ioc_builder_add_hinted(p->ctx, &rec, hints);
            r = r == KH_EINVAL ? KH_OK : r;
        } else {
            r = p->fn(p->ctx, &rec);
        }
        if (r != 0)
            return r;
        off += len;
    }
    return 0;
}

int feed_read_piped(struct feed_run *run, int (*read)(struct feed_run *run, void *arg), void *arg)
{
    struct pipe p;
    struct reader_args a = {&p, read, arg};
    pthread_t t;
    int r = KH_ENOMEM, started = 0, sync = 0;
    memset(&p, 0, sizeof(p));
    p.run = run;
    memcpy(p.cat, run->cat_clean, sizeof(p.cat));
    memcpy(p.src, run->src_clean, sizeof(p.src));
    memcpy(p.fam, run->fam_clean, sizeof(p.fam));
    p.fn = run->fn;
    p.ctx = run->ctx;
    atomic_init(&p.stop, 0);
    for (unsigned i = 0; i < PIPE_BATCHES; i++)
        if ((p.b[i].data = malloc(PIPE_BATCH_BYTES)) == NULL)
            goto out;
    if (pthread_mutex_init(&p.mu, NULL) != 0)
        goto out;
    if (pthread_cond_init(&p.cv, NULL) != 0) {
        pthread_mutex_destroy(&p.mu);
        goto out;
    }
    sync = 1;
    run->fn = push;
    run->ctx = &p;
    if (pthread_create(&t, NULL, reader_main, &a) != 0) {
        /* No second thread: read on this one, as without the pipe. */
        run->fn = p.fn;
        run->ctx = p.ctx;
        r = read(run, arg);
        goto out;
    }
    started = 1;
    int cb = 0;
    for (;;) {
        pthread_mutex_lock(&p.mu);
        while (p.count == 0 && !p.done)
            pthread_cond_wait(&p.cv, &p.mu);
        if (p.count == 0) {
            pthread_mutex_unlock(&p.mu);
            break;
        }
        struct batch *b = &p.b[p.head];
        pthread_mutex_unlock(&p.mu);
        if (cb == 0)
            cb = replay(&p, b);
        pthread_mutex_lock(&p.mu);
        p.head = (p.head + 1) % PIPE_BATCHES;
        p.count--;
        if (cb != 0)
            atomic_store(&p.stop, cb);
        pthread_cond_broadcast(&p.cv);
        pthread_mutex_unlock(&p.mu);
    }
    pthread_join(t, NULL);
    r = cb != 0 ? cb : p.result;
out:
    if (started || sync) {
        pthread_cond_destroy(&p.cv);
        pthread_mutex_destroy(&p.mu);
    }
    run->fn = p.fn;
    run->ctx = p.ctx;
    for (unsigned i = 0; i < PIPE_BATCHES; i++)
        free(p.b[i].data);
    return r;
}
