/*
 * The quarterly report's data (quarterly.h): everything the PDF, CSV and
 * XLSX renderings show, gathered once from the store for a quarter and a
 * scope (the province, or one agency and everything below it).
 *
 * The index and its components come from idx_compute() (index.c): the
 * quarter itself, the three quarters before it (the trend, and each
 * agency's previous index) and the quarter's three months. The rest is a
 * few grouped queries over the quarter, each limited to the scope by the
 * agencies' materialised path: the commonest families, the C&C contacts
 * (one line per agency, internal host and indicator, named after the
 * managed machine that holds the address when there is one) and the
 * detections by status at the quarter's end.
 *
 * Status at the end: a detection's status is kept with the time it was set
 * (status_at), not its history, so a detection whose status changed after
 * the quarter ended is counted as "new" (nothing known done by then), and
 * one resolved or marked a false positive before the end as such.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarterly.h"
#include "store/store.h"

#define C2_LINES_MAX  5000   /* struct rpt_quarter: at most 5,000 contacts listed */
#define C2_ROWS_MAX   500000 /* hits read for the contacts; more are counted, not listed */
#define FAMILIES_MAX  20
#define FAMILY_EXPR_D "CASE WHEN d.family = '' THEN d.signature ELSE d.family END"

static void db_err(char *err, size_t errlen, const char *what, struct store_db *db)
{
    snprintf(err, errlen, "%s: %s", what, store_errmsg(db));
}

static void copy(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

/* The scope as a LIKE pattern on agencies.path ("%" for the province), and
 * its code and name. */
static int scope_of(struct store_db *db, int64_t agency_id, struct rpt_quarter *q, char *like,
                    size_t cap, char *err, size_t errlen)
{
    if (agency_id == 0) {
        snprintf(like, cap, "%%");
        return 0;
    }
    struct store_stmt *st = NULL;
    int r = store_queryf(db, &st, "SELECT path, code, name FROM agencies WHERE id = $1", "i",
                         agency_id);
    if (r != STORE_ROW) {
        if (r < 0)
            db_err(err, errlen, "agencies", db);
        else
            snprintf(err, errlen, "agency %lld not found", (long long)agency_id);
        return -1;
    }
    const char *path = store_col_text(st, 0);
    int ok = path != NULL && strlen(path) + 2 <= cap;
    if (ok)
        snprintf(like, cap, "%s%%", path);
    copy(q->scope_code, sizeof(q->scope_code), store_col_text(st, 1));
    copy(q->scope_name, sizeof(q->scope_name), store_col_text(st, 2));
    store_finalize(st);
    if (!ok) {
        snprintf(err, errlen, "agency %lld: bad path", (long long)agency_id);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Agencies, most affected first.                                            */
/* ------------------------------------------------------------------------ */

static int cmp_line(const void *a, const void *b)
{
    const struct rpt_agency_line *x = a, *y = b;
    if (x->index != y->index)
        return x->index > y->index ? -1 : 1;
    if (x->c.infected != y->c.infected)
        return x->c.infected > y->c.infected ? -1 : 1;
    return strcmp(x->name, y->name);
}

static const struct idx_row *row_by_id(const struct idx_table *t, int64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->rows[i].agency_id == id)
            return &t->rows[i];
    return NULL;
}

static int agency_lines(struct rpt_quarter *q, const struct idx_table *cur,
                        const struct idx_table *prev)
{
    q->agencies = calloc(cur->n ? cur->n : 1, sizeof(*q->agencies));
    if (q->agencies == NULL)
        return -1;
    /* Both tables are in tree order and almost always hold the same
     * agencies, so the previous row is looked for at the same position
     * first and searched for only when the trees differ. */
    for (size_t i = 0; i < cur->n; i++) {
        const struct idx_row *r = &cur->rows[i];
        struct rpt_agency_line *l = &q->agencies[i];
        l->agency_id = r->agency_id;
        l->depth = r->depth;
        copy(l->code, sizeof(l->code), r->code);
        copy(l->name, sizeof(l->name), r->name);
        l->c = r->total;
        l->index = r->index;
        const struct idx_row *p = i < prev->n && prev->rows[i].agency_id == r->agency_id
                                      ? &prev->rows[i]
                                      : row_by_id(prev, r->agency_id);
        l->index_prev = p != NULL ? p->index : NAN;
    }
    q->nagencies = cur->n;
    qsort(q->agencies, q->nagencies, sizeof(*q->agencies), cmp_line);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Families.                                                                 */
/* ------------------------------------------------------------------------ */

static int families(struct store_db *db, struct rpt_quarter *q, const char *like, int64_t at,
                    char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    q->families = calloc(FAMILIES_MAX, sizeof(*q->families));
    if (q->families == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int r = store_queryf(db, &st,
                         "SELECT " FAMILY_EXPR_D ", count(*), count(DISTINCT d.machine_id),"
                         " count(DISTINCT d.agency_id)"
                         " FROM detections d JOIN agencies a ON a.id = d.agency_id"
                         " WHERE d.detected_at >= $1 AND d.detected_at < $2 AND a.path LIKE $3"
                         " GROUP BY " FAMILY_EXPR_D " ORDER BY 2 DESC, 1 LIMIT 20",
                         "iit", q->period.start, at, like);
    while (r == STORE_ROW && q->nfamilies < FAMILIES_MAX) {
        struct rpt_family *f = &q->families[q->nfamilies++];
        copy(f->name, sizeof(f->name), store_col_text(st, 0));
        f->detections = store_col_int(st, 1);
        f->machines = store_col_int(st, 2);
        f->agencies = store_col_int(st, 3);
        r = store_step(st);
    }
    store_finalize(st);
    if (r < 0) {
        db_err(err, errlen, "families", db);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* C&C contacts.                                                             */
/* ------------------------------------------------------------------------ */

struct ipname {
    char *ip;         /* into one machine's address text */
    const char *name; /* its hostname */
};

struct names {
    struct ipname *v;
    size_t n;
    char **text; /* per machine: hostname, then its addresses cut in place */
    size_t ntext;
};

static int cmp_ipname(const void *a, const void *b)
{
    return strcmp(((const struct ipname *)a)->ip, ((const struct ipname *)b)->ip);
}

static void names_free(struct names *n)
{
    for (size_t i = 0; i < n->ntext; i++)
        free(n->text[i]);
    free(n->text);
    free(n->v);
}

/* Every managed machine's addresses with its hostname, sorted by address. */
static int load_names(struct store_db *db, struct names *out, char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    size_t cap = 0, capt = 0;
    int r = store_queryf(db, &st,
                         "SELECT hostname, ips FROM machines WHERE role = 'agent' AND retired = 0"
                         " AND ips <> ''",
                         "");
    while (r == STORE_ROW) {
        const char *host = store_col_text(st, 0), *ips = store_col_text(st, 1);
        size_t hl = strnlen(host != NULL ? host : "", 255), il = strnlen(ips ? ips : "", 4096);
        char *t = malloc(hl + il + 2);
        if (t == NULL)
            goto oom;
        memcpy(t, host != NULL ? host : "", hl);
        t[hl] = '\0';
        memcpy(t + hl + 1, ips != NULL ? ips : "", il);
        t[hl + 1 + il] = '\0';
        if (out->ntext >= capt) {
            size_t nc = capt ? capt * 2 : 256;
            char **p = realloc(out->text, nc * sizeof(*p));
            if (p == NULL) {
                free(t);
                goto oom;
            }
            out->text = p;
            capt = nc;
        }
        out->text[out->ntext++] = t;
        char *save = NULL;
        for (char *tok = strtok_r(t + hl + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            if (out->n >= cap) {
                size_t nc = cap ? cap * 2 : 256;
                struct ipname *p = realloc(out->v, nc * sizeof(*p));
                if (p == NULL)
                    goto oom;
                out->v = p;
                cap = nc;
            }
            out->v[out->n++] = (struct ipname){.ip = tok, .name = t};
        }
        r = store_step(st);
    }
    store_finalize(st);
    if (r < 0) {
        db_err(err, errlen, "machines", db);
        return -1;
    }
    if (out->n > 0)
        qsort(out->v, out->n, sizeof(*out->v), cmp_ipname);
    return 0;
oom:
    store_finalize(st);
    snprintf(err, errlen, "out of memory");
    return -1;
}

static const char *name_of(const struct names *n, const char *ip)
{
    struct ipname key = {.ip = (char *)ip};
    const struct ipname *p = n->n > 0 ? bsearch(&key, n->v, n->n, sizeof(*n->v), cmp_ipname) : NULL;
    return p != NULL ? p->name : "";
}

static int cmp_c2_newest(const void *a, const void *b)
{
    const struct rpt_c2_line *x = a, *y = b;
    if (x->last_seen != y->last_seen)
        return x->last_seen > y->last_seen ? -1 : 1;
    int c = strcmp(x->agency_code, y->agency_code);
    if (c == 0)
        c = strcmp(x->host, y->host);
    return c != 0 ? c : strcmp(x->indicator, y->indicator);
}

/* One line per (agency, host, indicator) seen in the quarter: the rows come
 * grouped by that key, newest first within a group, so the first row of a
 * group gives what was done last (status and note). */
static int c2_lines(struct store_db *db, struct rpt_quarter *q, const char *like, int64_t at,
                    char *err, size_t errlen)
{
    struct names nm = {0};
    struct store_stmt *st = NULL;
    struct rpt_c2_line *v = NULL;
    size_t n = 0, cap = 0, rows = 0;
    int64_t last_agency = -1;
    char last_host[64] = "", last_ind[256] = "";
    int rc = -1;

    if (load_names(db, &nm, err, errlen) != 0)
        goto out;
    int r = store_queryf(db, &st,
                         "SELECT h.agency_id, a.code, a.name, h.host, h.indicator, h.category,"
                         " h.seen_in, h.first_seen, h.last_seen, h.status, h.status_note"
                         " FROM c2_hits h JOIN agencies a ON a.id = h.agency_id"
                         " WHERE h.last_seen >= $1 AND h.first_seen < $2 AND a.path LIKE $3"
                         " ORDER BY h.agency_id, h.host, h.indicator, h.last_seen DESC, h.id DESC",
                         "iit", q->period.start, at, like);
    while (r == STORE_ROW && rows++ < C2_ROWS_MAX) {
        int64_t ag = store_col_int(st, 0);
        const char *host = store_col_text(st, 3), *ind = store_col_text(st, 4);
        host = host != NULL ? host : "";
        ind = ind != NULL ? ind : "";
        int64_t first = store_col_int(st, 7), last = store_col_int(st, 8);
        if (n > 0 && ag == last_agency && strncmp(host, last_host, sizeof(last_host) - 1) == 0 &&
            strncmp(ind, last_ind, sizeof(last_ind) - 1) == 0) {
            struct rpt_c2_line *l = &v[n - 1];
            l->hits++;
            if (first < l->first_seen)
                l->first_seen = first;
        } else {
            if (n >= cap) {
                size_t nc = cap ? cap * 2 : 256;
                struct rpt_c2_line *p = realloc(v, nc * sizeof(*p));
                if (p == NULL) {
                    snprintf(err, errlen, "out of memory");
                    goto out;
                }
                v = p;
                cap = nc;
            }
            struct rpt_c2_line *l = &v[n++];
            memset(l, 0, sizeof(*l));
            copy(l->agency_code, sizeof(l->agency_code), store_col_text(st, 1));
            copy(l->agency_name, sizeof(l->agency_name), store_col_text(st, 2));
            copy(l->host, sizeof(l->host), host);
            copy(l->hostname, sizeof(l->hostname), name_of(&nm, host));
            copy(l->indicator, sizeof(l->indicator), ind);
            copy(l->category, sizeof(l->category), store_col_text(st, 5));
            copy(l->seen_in, sizeof(l->seen_in), store_col_text(st, 6));
            l->hits = 1;
            l->first_seen = first;
            l->last_seen = last;
            copy(l->status, sizeof(l->status), store_col_text(st, 9));
            copy(l->note, sizeof(l->note), store_col_text(st, 10));
            last_agency = ag;
            copy(last_host, sizeof(last_host), host);
            copy(last_ind, sizeof(last_ind), ind);
        }
        r = store_step(st);
    }
    store_finalize(st);
    st = NULL;
    if (r < 0) {
        db_err(err, errlen, "c2_hits", db);
        goto out;
    }
    if (n > 0)
        qsort(v, n, sizeof(*v), cmp_c2_newest);
    q->c2_total = (int64_t)n;
    q->nc2 = n < C2_LINES_MAX ? n : C2_LINES_MAX;
    q->c2 = v;
    v = NULL;
    rc = 0;
out:
    store_finalize(st);
    free(v);
    names_free(&nm);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Detections by status.                                                     */
/* ------------------------------------------------------------------------ */

static int statuses(struct store_db *db, struct rpt_quarter *q, const char *like, int64_t at,
                    char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    int r = store_queryf(db, &st,
                         "SELECT d.status, count(*), sum(CASE WHEN d.status_at >= $2 THEN 1"
                         " ELSE 0 END)"
                         " FROM detections d JOIN agencies a ON a.id = d.agency_id"
                         " WHERE d.detected_at >= $1 AND d.detected_at < $2 AND a.path LIKE $3"
                         " GROUP BY d.status",
                         "iit", q->period.start, at, like);
    while (r == STORE_ROW) {
        const char *s = store_col_text(st, 0);
        int64_t all = store_col_int(st, 1), later = store_col_int(st, 2);
        s = s != NULL ? s : "";
        q->det_new += later;
        if (strcmp(s, "new") == 0)
            q->det_new += all - later;
        else if (strcmp(s, "acknowledged") == 0)
            q->det_acknowledged += all - later;
        else if (strcmp(s, "resolved") == 0)
            q->det_resolved += all - later;
        else if (strcmp(s, "false_positive") == 0)
            q->det_false_positive += all - later;
        else
            q->det_new += all - later;
        r = store_step(st);
    }
    store_finalize(st);
    if (r < 0) {
        db_err(err, errlen, "detections", db);
        return -1;
    }
    r = store_query_int(db, &q->det_open_at_end,
                        "SELECT count(*) FROM detections d JOIN agencies a ON a.id = d.agency_id"
                        " WHERE d.detected_at < $1 AND a.path LIKE $2"
                        " AND (d.status IN ('new','acknowledged') OR d.status_at >= $1)",
                        "it", at, like);
    if (r < 0) {
        db_err(err, errlen, "detections", db);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

int rpt_quarter_gather(struct store_db *db, const struct srv_report_config *cfg,
                       const struct rpt_period *qp, int64_t agency_id, int64_t now,
                       struct rpt_quarter **out, char *err, size_t errlen)
{
    int r = -1;
    struct rpt_quarter *q = NULL;
    struct idx_table cur = {0}, prev = {0}, older = {0};
    char like[300], dummy[8];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (qp->kind != RPT_QUARTER) {
        snprintf(err, errlen, "%s is not a quarter", qp->label);
        return -1;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    q->period = *qp;
    copy(q->org_id, sizeof(q->org_id), cfg->org_id);
    copy(q->org_name, sizeof(q->org_name), cfg->org_name);
    copy(q->formula, sizeof(q->formula), cfg->index_formula);
    copy(q->place, sizeof(q->place), cfg->org_place);
    q->utc_offset = cfg->utc_offset;
    q->generated_at = now;
    q->deadline = rpt_quarter_deadline(qp, cfg->deadline_day, cfg->utc_offset);
    if (scope_of(db, agency_id, q, like, sizeof(like), err, errlen) != 0)
        goto out;
    int64_t at = qp->end <= now ? qp->end : now + 1;

    /* The quarter and the three before it: the trend, oldest first. */
    struct rpt_period p[4];
    p[3] = *qp;
    for (int i = 3; i > 0; i--)
        rpt_period_prev(&p[i], cfg->utc_offset, &p[i - 1]);
    for (int i = 0; i < 4; i++) {
        struct idx_table *t = i == 3 ? &cur : i == 2 ? &prev : &older;
        if (idx_compute(db, cfg, &p[i], agency_id, now, t, err, errlen) != 0)
            goto out;
        q->trend[i] =
            (struct idx_point){.period = p[i], .c = t->province, .index = t->province_index};
        if (i < 2)
            idx_table_free(&older);
    }
    q->ntrend = 4;
    q->total = cur.province;
    q->index = cur.province_index;

    struct rpt_period m[3];
    rpt_period_months(qp, cfg->utc_offset, m);
    for (int i = 0; i < 3; i++) {
        if (idx_compute(db, cfg, &m[i], agency_id, now, &older, err, errlen) != 0)
            goto out;
        q->months[i] =
            (struct idx_point){.period = m[i], .c = older.province, .index = older.province_index};
        idx_table_free(&older);
    }
    if (agency_lines(q, &cur, &prev) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (families(db, q, like, at, err, errlen) != 0 ||
        c2_lines(db, q, like, at, err, errlen) != 0 || statuses(db, q, like, at, err, errlen) != 0)
        goto out;
    *out = q;
    q = NULL;
    r = 0;
out:
    idx_table_free(&cur);
    idx_table_free(&prev);
    idx_table_free(&older);
    rpt_quarter_free(q);
    return r;
}

void rpt_quarter_free(struct rpt_quarter *q)
{
    if (q == NULL)
        return;
    free(q->agencies);
    free(q->families);
    free(q->c2);
    free(q);
}
