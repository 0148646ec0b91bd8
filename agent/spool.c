/*
 * The event spool (see spool.h for the contract, docs/internals/agent-spool.md
 * for the on-disk format). Every event is one file named by its sequence
 * number in 16 lowercase hex digits ("000000000000002a.ev"), written under a
 * temporary name ("000000000000002a.tmp", O_EXCL), fsync'd, renamed into
 * place and the folder fsync'd. Two small state files hold what must survive
 * a restart beyond the events themselves: "seq", the next sequence number
 * as of the last time events were removed (so a number is never given twice,
 * even once every event was acknowledged), and "dropped", the number of
 * events refused because the spool was full.
 *
 * The files are the truth; memory holds a sorted index of (sequence, size)
 * built once at open, so peek never lists the folder. One mutex guards the
 * index and the counters; the slow part of a put (write and two fsyncs)
 * runs outside it, with the sequence number and the room for the event
 * reserved beforehand so the limits hold under concurrent puts.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "khx.h"

#define SPOOL_DEFAULT_EVENTS      100000u
#define SPOOL_DEFAULT_BYTES       (256ull * 1024 * 1024)
#define SPOOL_PEEK_DEFAULT_EVENTS 1000u
#define SPOOL_PEEK_DEFAULT_BYTES  (16u * 1024 * 1024)
#define SPOOL_HEX_DIGITS          16
#define SPOOL_NAME_MAX            32 /* "<16 hex>.ev" and "<16 hex>.tmp" fit */
#define SPOOL_STATE_MAX           64 /* a state file holds one decimal number */

struct spool_item {
    uint64_t seq;
    uint64_t size;
};

struct spool {
    pthread_mutex_t mu;
    int dirfd; /* holds the flock that keeps other processes out */
    char *dir;
    size_t max_events;
    uint64_t max_bytes;
    struct spool_item *items; /* sorted by seq; these files are complete on disk */
    size_t n, cap;
    uint64_t bytes;
    size_t pending; /* puts that reserved room and are still writing */
    uint64_t pending_bytes;
    uint64_t next_seq;
    uint64_t persisted_next; /* the value in "seq" */
    uint64_t dropped;
};

static void event_name(char *buf, uint64_t seq, const char *ext)
{
    snprintf(buf, SPOOL_NAME_MAX, "%0*" PRIx64 ".%s", SPOOL_HEX_DIGITS, seq, ext);
}

/* Accepts exactly "<16 lowercase hex digits>.ev". */
static int parse_event_name(const char *name, uint64_t *seq)
{
    uint64_t v = 0;
    if (strlen(name) != SPOOL_HEX_DIGITS + 3 || strcmp(name + SPOOL_HEX_DIGITS, ".ev") != 0)
        return 0;
    for (size_t i = 0; i < SPOOL_HEX_DIGITS; i++) {
        int d = khx_hexval((unsigned char)name[i]);
        if (d < 0 || (name[i] >= 'A' && name[i] <= 'F'))
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Writes `name` in the spool folder so that after a crash it is either the
 * old file (or absent) or the complete new one: temporary file (O_EXCL, so a
 * stray file of that name is never written through), fsync, rename, fsync of
 * the folder so the rename itself is durable. */
static int write_durable(struct spool *sp, const char *name, const char *tmp, const void *data,
                         size_t len)
{
    int r = KH_EIO;
    int fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "spool: cannot create %s/%s: %s\n", sp->dir, tmp, strerror(errno));
        return KH_EIO;
    }
    if (khx_write_all(fd, data, len) != KH_OK || fsync(fd) != 0) {
        fprintf(stderr, "spool: cannot write %s/%s: %s\n", sp->dir, tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto out;
    }
    fd = -1;
    if (renameat(sp->dirfd, tmp, sp->dirfd, name) != 0) {
        fprintf(stderr, "spool: cannot rename %s/%s: %s\n", sp->dir, tmp, strerror(errno));
        goto out;
    }
    if (fsync(sp->dirfd) != 0) {
        /* The file is in place but its name may not survive a power cut;
         * the caller treats it as not stored, and a duplicate is harmless
         * (the server ignores an event id it already has). */
        fprintf(stderr, "spool: cannot fsync %s: %s\n", sp->dir, strerror(errno));
        goto out;
    }
    r = KH_OK;
out:
    if (fd >= 0)
        close(fd);
    if (r != KH_OK)
        unlinkat(sp->dirfd, tmp, 0);
    return r;
}

/* Rewrites a state file ("seq", "dropped") with one decimal number. */
static int state_write(struct spool *sp, const char *name, uint64_t v)
{
    char buf[SPOOL_STATE_MAX], tmp[SPOOL_NAME_MAX];
    int n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    /* A temporary file left by a failed unlink would block O_EXCL forever. */
    unlinkat(sp->dirfd, tmp, 0);
    return write_durable(sp, name, tmp, buf, (size_t)n);
}

/* Reads a state file; an absent file is 0. A damaged one is reported and
 * read as 0 (the caller combines it with what the folder shows). */
static void state_read(struct spool *sp, const char *name, uint64_t *v)
{
    char buf[SPOOL_STATE_MAX];
    size_t len = 0;
    *v = 0;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            fprintf(stderr, "spool: cannot open %s/%s: %s\n", sp->dir, name, strerror(errno));
        return;
    }
    for (;;) {
        ssize_t k = read(fd, buf + len, sizeof(buf) - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == sizeof(buf))
            break;
    }
    close(fd);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    if (len == 0 || len == sizeof(buf) || khx_parse_u64(buf, len, v) != KH_OK) {
        *v = 0;
        fprintf(stderr, "spool: %s/%s is damaged; ignoring it\n", sp->dir, name);
    }
}

static int index_reserve(struct spool *sp, size_t want)
{
    if (want <= sp->cap)
        return KH_OK;
    size_t cap = sp->cap ? sp->cap : 64;
    while (cap < want) {
        if (cap > SIZE_MAX / 2 / sizeof(*sp->items))
            return KH_ENOMEM;
        cap *= 2;
    }
    struct spool_item *p = realloc(sp->items, cap * sizeof(*p));
    if (p == NULL)
        return KH_ENOMEM;
    sp->items = p;
    sp->cap = cap;
    return KH_OK;
}

/* Returns the position of the first item whose seq is >= seq. */
static size_t index_lower_bound(const struct spool *sp, uint64_t seq)
{
    size_t lo = 0, hi = sp->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sp->items[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Inserts in order; the caller reserved the room, so this cannot fail.
 * Puts usually finish in sequence order, so this is mostly an append. */
static void index_insert(struct spool *sp, uint64_t seq, uint64_t size)
{
    size_t at = index_lower_bound(sp, seq);
    memmove(&sp->items[at + 1], &sp->items[at], (sp->n - at) * sizeof(*sp->items));
    sp->items[at].seq = seq;
    sp->items[at].size = size;
    sp->n++;
    sp->bytes += size;
}

/* Removes the events `seqs` (in any order; unknown ones are skipped) from
 * disk and from the index, with one folder fsync. When `count_dropped` is
 * set they are added to the persisted dropped count. Called with sp->mu
 * held. */
static int remove_locked(struct spool *sp, const uint64_t *seqs, size_t k, int count_dropped)
{
    int r = KH_EIO;
    size_t *pos = NULL, npos = 0;
    uint64_t top = 0;
    char name[SPOOL_NAME_MAX];

    if (k == 0)
        return KH_OK;
    if ((pos = malloc(k * sizeof(*pos))) == NULL)
        return KH_ENOMEM;
    for (size_t i = 0; i < k; i++) {
        size_t at = index_lower_bound(sp, seqs[i]);
        if (at < sp->n && sp->items[at].seq == seqs[i]) {
            pos[npos++] = at;
            top = KHX_MAX(top, seqs[i]);
        }
    }
    if (npos == 0) {
        r = KH_OK;
        goto out;
    }
    /* Once the highest stored event is gone, the folder no longer shows how
     * far the sequence went: record it first, so a restart continues above
     * every number ever given. */
    if (top >= sp->persisted_next) {
        if ((r = state_write(sp, "seq", sp->next_seq)) != KH_OK)
            goto out;
        sp->persisted_next = sp->next_seq;
    }
    for (size_t i = 0; i < npos; i++) {
        struct spool_item *it = &sp->items[pos[i]];
        if (it->seq == 0)
            continue; /* listed twice in seqs */
        event_name(name, it->seq, "ev");
        if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT)
            fprintf(stderr, "spool: cannot remove %s/%s: %s\n", sp->dir, name, strerror(errno));
        sp->bytes -= it->size;
        it->seq = 0; /* sequence numbers start at 1, so 0 marks a hole */
    }
    size_t w = 0;
    for (size_t i = 0; i < sp->n; i++)
        if (sp->items[i].seq != 0)
            sp->items[w++] = sp->items[i];
    size_t removed = sp->n - w;
    sp->n = w;
    if (fsync(sp->dirfd) != 0) {
        fprintf(stderr, "spool: cannot fsync %s: %s\n", sp->dir, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if (count_dropped) {
        sp->dropped += removed;
        if (state_write(sp, "dropped", sp->dropped) != KH_OK)
            fprintf(stderr, "spool: the dropped count (%" PRIu64 ") is not saved\n", sp->dropped);
    }
    r = KH_OK;
out:
    free(pos);
    return r;
}

static int item_cmp(const void *a, const void *b)
{
    const struct spool_item *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Builds the index from the folder and removes the temporary files of
 * writes that a crash interrupted. */
static int scan_folder(struct spool *sp, char *err, size_t errlen)
{
    int r = KH_EIO;
    int removed = 0;
    DIR *d = NULL;
    int fd = openat(sp->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        khx_errf(err, errlen, "cannot list the spool folder %s: %s", sp->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return KH_EIO;
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        struct stat st;
        if (ends_with(de->d_name, ".tmp")) {
            if (unlinkat(sp->dirfd, de->d_name, 0) == 0)
                removed = 1;
        } else if (parse_event_name(de->d_name, &seq) && seq != 0 &&
                   fstatat(sp->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   S_ISREG(st.st_mode)) {
            if ((r = index_reserve(sp, sp->n + 1)) != KH_OK) {
                khx_errf(err, errlen, "out of memory indexing the spool folder %s", sp->dir);
                goto out;
            }
            sp->items[sp->n].seq = seq;
            sp->items[sp->n].size = (uint64_t)st.st_size;
            sp->bytes += (uint64_t)st.st_size;
            sp->n++;
        }
        errno = 0;
    }
    if (errno != 0) {
        khx_errf(err, errlen, "cannot list the spool folder %s: %s", sp->dir, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if (removed && fsync(sp->dirfd) != 0) {
        khx_errf(err, errlen, "cannot fsync the spool folder %s: %s", sp->dir, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if (sp->n > 1)
        qsort(sp->items, sp->n, sizeof(*sp->items), item_cmp);
    r = KH_OK;
out:
    closedir(d);
    return r;
}

int spool_open(const char *dir, size_t max_events, uint64_t max_bytes, struct spool **out,
               char *err, size_t errlen)
{
    int r = KH_EIO;
    struct spool *sp = NULL;
    uint64_t hwm;

    if (dir == NULL || *dir == '\0' || out == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    if ((sp = calloc(1, sizeof(*sp))) == NULL || (sp->dir = strdup(dir)) == NULL) {
        free(sp);
        khx_errf(err, errlen, "out of memory");
        return KH_ENOMEM;
    }
    sp->dirfd = -1;
    pthread_mutex_init(&sp->mu, NULL);
    sp->max_events = max_events ? max_events : SPOOL_DEFAULT_EVENTS;
    sp->max_bytes = max_bytes ? max_bytes : SPOOL_DEFAULT_BYTES;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        khx_errf(err, errlen, "cannot create the spool folder %s: %s", dir, strerror(errno));
        goto out;
    }
    if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        khx_errf(err, errlen, "cannot open the spool folder %s: %s", dir, strerror(errno));
        goto out;
    }
    /* Two writers would hand out the same sequence numbers. */
    if (flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0) {
        khx_errf(err, errlen, "the spool folder %s is in use by another process (%s)", dir,
                 strerror(errno));
        goto out;
    }
    state_read(sp, "seq", &hwm);
    state_read(sp, "dropped", &sp->dropped);
    if ((r = scan_folder(sp, err, errlen)) != KH_OK)
        goto out;
    sp->persisted_next = hwm;
    sp->next_seq = KHX_MAX(hwm, (uint64_t)1);
    if (sp->n > 0 && sp->items[sp->n - 1].seq >= sp->next_seq)
        sp->next_seq = sp->items[sp->n - 1].seq + 1;
    *out = sp;
    sp = NULL;
    r = KH_OK;
out:
    spool_close(sp);
    return r;
}

void spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    pthread_mutex_destroy(&sp->mu);
    free(sp->items);
    free(sp->dir);
    free(sp);
}

int spool_put(struct spool *sp, const char *json, size_t len)
{
    return spool_put_seq(sp, json, len, NULL);
}

int spool_put_seq(struct spool *sp, const char *json, size_t len, uint64_t *seqp)
{
    int r = KH_EINVAL;
    json_t *root = NULL;
    char *text = NULL;
    int reserved = 0;
    size_t n = 0;
    uint64_t seq = 0;
    char name[SPOOL_NAME_MAX], tmp[SPOOL_NAME_MAX];

    if (sp == NULL || json == NULL || len == 0 || len > SPOOL_EVENT_MAX)
        goto out;
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (root == NULL || !json_is_object(root))
        goto out;
    /* Stored compact, so a batch is the files joined with commas. */
    if ((text = json_dumps(root, JSON_COMPACT)) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    n = strlen(text);
    if (n > SPOOL_EVENT_MAX)
        goto out; /* numbers can grow when re-printed (0.1 -> 0.10000000000000001) */

    pthread_mutex_lock(&sp->mu);
    if (sp->n + sp->pending >= sp->max_events ||
        sp->bytes + sp->pending_bytes + n > sp->max_bytes) {
        sp->dropped++;
        if (state_write(sp, "dropped", sp->dropped) != KH_OK)
            fprintf(stderr, "spool: the dropped count (%" PRIu64 ") is not saved\n", sp->dropped);
        pthread_mutex_unlock(&sp->mu);
        r = KH_ELIMIT;
        goto out;
    }
    /* Room in the index is reserved now so that recording the event once it
     * is on disk cannot fail. */
    if (index_reserve(sp, sp->n + sp->pending + 1) != KH_OK) {
        pthread_mutex_unlock(&sp->mu);
        r = KH_ENOMEM;
        goto out;
    }
    seq = sp->next_seq++;
    sp->pending++;
    sp->pending_bytes += n;
    reserved = 1;
    pthread_mutex_unlock(&sp->mu);

    event_name(name, seq, "ev");
    event_name(tmp, seq, "tmp");
    if ((r = write_durable(sp, name, tmp, text, n)) != KH_OK)
        goto out; /* this number is never used again: it was taken from next_seq */

    pthread_mutex_lock(&sp->mu);
    sp->pending--;
    sp->pending_bytes -= n;
    reserved = 0;
    index_insert(sp, seq, n);
    pthread_mutex_unlock(&sp->mu);
    if (seqp != NULL)
        *seqp = seq;
    r = KH_OK;
out:
    if (reserved) {
        pthread_mutex_lock(&sp->mu);
        sp->pending--;
        sp->pending_bytes -= n;
        pthread_mutex_unlock(&sp->mu);
    }
    free(text);
    json_decref(root);
    return r;
}

/* Reads one event file. Returns KH_OK with the bytes, KH_ENOTFOUND when the
 * file is gone, KH_EFORMAT (with `why`) when it is not a JSON object of at
 * most SPOOL_EVENT_MAX bytes. */
static int read_event(struct spool *sp, const char *name, char *buf, size_t *len, char *why,
                      size_t whylen)
{
    int r = KH_EFORMAT;
    struct stat st;
    json_error_t jerr;
    json_t *root = NULL;
    size_t got = 0;
    int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return KH_ENOTFOUND;
        khx_errf(why, whylen, "cannot open it: %s", strerror(errno));
        return KH_EFORMAT;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        khx_errf(why, whylen, "not a regular file");
        goto out;
    }
    if (st.st_size == 0 || st.st_size > (off_t)SPOOL_EVENT_MAX) {
        khx_errf(why, whylen, "%lld bytes (1 to %u allowed)", (long long)st.st_size,
                 SPOOL_EVENT_MAX);
        goto out;
    }
    /* Read one byte more than the limit to notice a file that grew. */
    for (;;) {
        ssize_t k = read(fd, buf + got, SPOOL_EVENT_MAX + 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            khx_errf(why, whylen, "read error: %s", strerror(errno));
            goto out;
        }
        if (k == 0)
            break;
        got += (size_t)k;
        if (got > SPOOL_EVENT_MAX) {
            khx_errf(why, whylen, "over %u bytes", SPOOL_EVENT_MAX);
            goto out;
        }
    }
    root = json_loadb(buf, got, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        khx_errf(why, whylen, "not JSON: %s at byte %d", jerr.text, jerr.position);
        goto out;
    }
    if (!json_is_object(root)) {
        khx_errf(why, whylen, "not a JSON object");
        goto out;
    }
    *len = got;
    r = KH_OK;
out:
    json_decref(root);
    close(fd);
    return r;
}

int spool_peek(struct spool *sp, size_t max_events, size_t max_bytes, struct spool_batch *b)
{
    int r = KH_EINVAL;
    uint64_t *cand = NULL, *seqs = NULL, *bad = NULL, *gone = NULL;
    size_t ncand = 0, count = 0, nbad = 0, ngone = 0;
    char *buf = NULL;
    char name[SPOOL_NAME_MAX], why[160];
    struct khx_buf out;

    khx_buf_init(&out, 0);
    if (sp == NULL || b == NULL)
        return KH_EINVAL;
    memset(b, 0, sizeof(*b));
    if (max_events == 0)
        max_events = SPOOL_PEEK_DEFAULT_EVENTS;
    if (max_bytes == 0)
        max_bytes = SPOOL_PEEK_DEFAULT_BYTES;
    /* One event always fits, whatever max_bytes says; +1 for the NUL
     * (unless max_bytes is SIZE_MAX, "no limit"). */
    size_t cap = KHX_MAX(max_bytes, (size_t)SPOOL_EVENT_MAX + 2);
    khx_buf_init(&out, cap < SIZE_MAX ? cap + 1 : cap);

    /* The files are read without the lock, so puts are not held up. */
    pthread_mutex_lock(&sp->mu);
    ncand = KHX_MIN(max_events, sp->n);
    if (ncand > 0 && (cand = malloc(ncand * sizeof(*cand))) != NULL)
        for (size_t i = 0; i < ncand; i++)
            cand[i] = sp->items[i].seq;
    pthread_mutex_unlock(&sp->mu);
    r = KH_ENOMEM;
    if (ncand > 0 && (cand == NULL || (seqs = malloc(ncand * sizeof(*seqs))) == NULL ||
                      (bad = malloc(ncand * sizeof(*bad))) == NULL ||
                      (gone = malloc(ncand * sizeof(*gone))) == NULL ||
                      (buf = malloc(SPOOL_EVENT_MAX + 1)) == NULL))
        goto out;
    if ((r = khx_buf_append(&out, "[", 1)) != KH_OK)
        goto out;
    for (size_t i = 0; i < ncand; i++) {
        size_t len = 0;
        event_name(name, cand[i], "ev");
        int e = read_event(sp, name, buf, &len, why, sizeof(why));
        if (e == KH_ENOTFOUND) {
            fprintf(stderr, "spool: %s/%s has disappeared\n", sp->dir, name);
            gone[ngone++] = cand[i];
            continue;
        }
        if (e != KH_OK) {
            fprintf(stderr, "spool: dropping %s/%s: %s\n", sp->dir, name, why);
            bad[nbad++] = cand[i];
            continue;
        }
        /* The closing bracket must still fit after this event. */
        if (count > 0 && out.len + 1 + len + 1 > max_bytes)
            break;
        if ((count > 0 && (r = khx_buf_append(&out, ",", 1)) != KH_OK) ||
            (r = khx_buf_append(&out, buf, len)) != KH_OK)
            goto out;
        seqs[count++] = cand[i];
    }
    if ((r = khx_buf_append(&out, "]", 2)) != KH_OK) /* with the NUL */
        goto out;
    if (nbad > 0 || ngone > 0) {
        pthread_mutex_lock(&sp->mu);
        (void)remove_locked(sp, bad, nbad, 1);
        (void)remove_locked(sp, gone, ngone, 0);
        pthread_mutex_unlock(&sp->mu);
    }
    size_t total;
    b->json = (char *)khx_buf_steal(&out, &total);
    b->len = total - 1;
    b->count = count;
    if (count > 0) {
        b->seqs = seqs;
        seqs = NULL;
    }
    r = KH_OK;
out:
    khx_buf_free(&out);
    free(cand);
    free(seqs);
    free(bad);
    free(gone);
    free(buf);
    return r;
}

int spool_ack(struct spool *sp, const struct spool_batch *b)
{
    if (sp == NULL || b == NULL || (b->count > 0 && b->seqs == NULL))
        return KH_EINVAL;
    pthread_mutex_lock(&sp->mu);
    int r = remove_locked(sp, b->seqs, b->count, 0);
    pthread_mutex_unlock(&sp->mu);
    return r;
}

void spool_batch_free(struct spool_batch *b)
{
    if (b == NULL)
        return;
    free(b->json);
    free(b->seqs);
    memset(b, 0, sizeof(*b));
}

void spool_stats(struct spool *sp, struct spool_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (sp == NULL)
        return;
    pthread_mutex_lock(&sp->mu);
    st->events = sp->n;
    st->bytes = sp->bytes;
    st->dropped = sp->dropped;
    pthread_mutex_unlock(&sp->mu);
}

uint64_t spool_take_dropped(struct spool *sp)
{
    if (sp == NULL)
        return 0;
    pthread_mutex_lock(&sp->mu);
    uint64_t v = sp->dropped;
    if (v > 0) {
        sp->dropped = 0;
        /* If this fails the count is reported again after a restart, which
         * is the lesser evil compared with losing it. */
        if (state_write(sp, "dropped", 0) != KH_OK)
            fprintf(stderr, "spool: the reset dropped count is not saved\n");
    }
    pthread_mutex_unlock(&sp->mu);
    return v;
}
