/*
 * The infection index's components (index.h), counted for every agency of
 * the tree at once. A period costs a fixed handful of queries whatever the
 * size of the province: the agencies, the managed machines (id, agency,
 * addresses, database time), the period's detections grouped by (agency,
 * machine, family), its C&C hits grouped by (agency, host), the sharing
 * slots, and for a past period the month-end snapshots (migration 7). Every
 * per-agency and per-subtree figure is then worked out in memory: additive
 * counts are summed from the leaves up, and the two distinct counts
 * (families and C&C hosts) are unions of per-agency bit sets, so a family
 * seen in two districts counts once for the province.
 *
 * A machine is infected in a period when it has a detection made in the
 * period that was not resolved or marked a false positive by the period's
 * end (status and status_at), or when one of its addresses (machines.ips,
 * space-separated, matched here rather than with LIKE per row) was the
 * internal host of a C&C hit seen in the period. It counts under its own
 * agency. A C&C host that is no managed machine counts in c2_hosts of the
 * agency the hit was filed under, but infects nobody.
 *
 * The index-month job writes, when a month has ended and has no snapshot,
 * what cannot be recounted later: each agency's managed, expected and stale
 * machines at that moment. A past month reads them (a past quarter its last
 * month's); agencies without a snapshot are counted live.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "khx.h"
#include "store/store.h"

#define MAX_AGENCIES 100000 /* a province has hundreds; this bounds memory on a damaged table */

struct machine {
    char id[40];
    size_t agency; /* row index */
    int64_t db_time;
    int infected;
};

struct ipref {
    const char *ip; /* into one of ips_text */
    size_t machine;
};

struct work {
    struct idx_table *t;
    int64_t *ids_sorted; /* agency ids in id order ... */
    size_t *ids_row;     /* ... and their rows */
    size_t *parent;      /* each row's parent row, or SIZE_MAX for a root of the scope */
    struct machine *m;
    size_t nm;
    char **ips_text; /* one per machine: its addresses, cut into tokens in place */
    size_t ntext;
    struct ipref *ips;
    size_t nips;
    /* (row, family) and (row, host) pairs, for the distinct counts */
    size_t *fam_row, *host_row;
    char **fam_name, **host_name;
    size_t nfam, nhost, capfam, capfamn, caphost, caphostn;
};

static void set_err(char *err, size_t errlen, const char *what, struct store_db *db)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, db != NULL ? store_errmsg(db) : "out of memory");
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The row of agency `id`, or SIZE_MAX when it is not in the table. */
static size_t row_of(const struct work *w, int64_t id)
{
    size_t lo = 0, hi = w->t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->ids_sorted[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < w->t->n && w->ids_sorted[lo] == id ? w->ids_row[lo] : SIZE_MAX;
}

/* ------------------------------------------------------------------------ */
/* The tree.                                                                 */
/* ------------------------------------------------------------------------ */

struct raw_agency {
    struct idx_row row;
    char path[256];
};

static int cmp_raw_id(const void *a, const void *b)
{
    return cmp_i64(&((const struct raw_agency *)a)->row.agency_id,
                   &((const struct raw_agency *)b)->row.agency_id);
}

/* Children of each agency, by name, for the walk in tree order. */
struct kids {
    size_t *first; /* per raw index: start in list */
    size_t *count;
    size_t *list;
    const struct raw_agency *raw;
};

static const struct raw_agency *sort_raw;
static int cmp_kid_name(const void *a, const void *b)
{
    const struct raw_agency *x = &sort_raw[*(const size_t *)a], *y = &sort_raw[*(const size_t *)b];
    int c = strcmp(x->row.name, y->row.name);
    return c != 0 ? c : cmp_i64(&x->row.agency_id, &y->row.agency_id);
}

/* Loads the agencies of the scope and puts them in tree order (parent before
 * children, siblings by name). A row whose parent is outside the scope is a
 * root of it. */
static int load_tree(struct store_db *db, int64_t root, struct idx_table *t, char *err,
                     size_t errlen)
{
    int r = -1;
    struct store_stmt *st = NULL;
    struct raw_agency *raw = NULL;
    size_t n = 0, cap = 0, *parent = NULL, *kid_start = NULL, *kid_n = NULL, *kids = NULL,
           *stack = NULL;
    char prefix[260] = "%";

    if (root != 0) {
        char *path = NULL;
        int q = store_query_text(db, &path, "SELECT path FROM agencies WHERE id = $1", "i", root);
        if (q != STORE_ROW || path == NULL || strlen(path) > 250) {
            free(path);
            snprintf(err, errlen, "agency %lld not found", (long long)root);
            return -1;
        }
        snprintf(prefix, sizeof(prefix), "%s%%", path);
        free(path);
    }
    int q = store_queryf(db, &st,
                         "SELECT id, parent_id, path, code, name, kind, expected_machines"
                         " FROM agencies WHERE path LIKE $1",
                         "t", prefix);
    while (q == STORE_ROW) {
        if (n >= MAX_AGENCIES) {
            snprintf(err, errlen, "more than %d agencies", MAX_AGENCIES);
            goto out;
        }
        if (grow((void **)&raw, &cap, n + 1, sizeof(*raw)) != 0)
            goto oom;
        struct raw_agency *a = &raw[n++];
        memset(a, 0, sizeof(*a));
        a->row.agency_id = store_col_int(st, 0);
        a->row.parent_id = store_col_int(st, 1);
        const char *s;
        snprintf(a->path, sizeof(a->path), "%s", (s = store_col_text(st, 2)) ? s : "");
        snprintf(a->row.code, sizeof(a->row.code), "%s", (s = store_col_text(st, 3)) ? s : "");
        snprintf(a->row.name, sizeof(a->row.name), "%s", (s = store_col_text(st, 4)) ? s : "");
        snprintf(a->row.kind, sizeof(a->row.kind), "%s", (s = store_col_text(st, 5)) ? s : "");
        a->row.own.expected = store_col_int(st, 6);
        q = store_step(st);
    }
    store_finalize(st);
    st = NULL;
    if (q < 0) {
        set_err(err, errlen, "agencies", db);
        goto out;
    }
    t->rows = calloc(n ? n : 1, sizeof(*t->rows));
    parent = calloc(n ? n : 1, sizeof(size_t));
    kid_start = calloc(n + 1, sizeof(size_t));
    kid_n = calloc(n + 1, sizeof(size_t));
    kids = calloc(n ? n : 1, sizeof(size_t));
    stack = calloc(n ? n : 1, sizeof(size_t));
    if (!t->rows || !parent || !kid_start || !kid_n || !kids || !stack)
        goto oom;
    if (n > 0)
        qsort(raw, n, sizeof(*raw), cmp_raw_id);
    /* Parent index of each (n = none in scope); then children grouped by
     * parent with a counting sort, and each group sorted by name. */
    for (size_t i = 0; i < n; i++) {
        struct raw_agency key = {.row.agency_id = raw[i].row.parent_id};
        struct raw_agency *p =
            raw[i].row.parent_id != 0 && raw[i].row.parent_id != raw[i].row.agency_id
                ? bsearch(&key, raw, n, sizeof(*raw), cmp_raw_id)
                : NULL;
        if (root != 0 && raw[i].row.agency_id == root)
            p = NULL;
        parent[i] = p != NULL ? (size_t)(p - raw) : n;
        kid_n[parent[i]]++;
    }
    for (size_t i = 1; i <= n; i++)
        kid_start[i] = kid_start[i - 1] + kid_n[i - 1];
    memset(kid_n, 0, (n + 1) * sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        kids[kid_start[parent[i]] + kid_n[parent[i]]++] = i;
    sort_raw = raw;
    for (size_t i = 0; i <= n; i++)
        qsort(kids + kid_start[i], kid_n[i], sizeof(size_t), cmp_kid_name);
    /* Depth-first walk from the roots (children of the virtual node n). A
     * cycle in a damaged table is never reached from a root and is left
     * out rather than looping. */
    size_t sp = 0, out_n = 0;
    for (size_t k = kid_n[n]; k-- > 0;)
        stack[sp++] = kids[kid_start[n] + k];
    int *depth = calloc(n ? n : 1, sizeof(int));
    if (depth == NULL)
        goto oom;
    while (sp > 0 && out_n < n) {
        size_t i = stack[--sp];
        struct idx_row *row = &t->rows[out_n++];
        *row = raw[i].row;
        row->depth = depth[i];
        if (parent[i] == n)
            row->parent_id = 0;
        for (size_t k = kid_n[i]; k-- > 0 && sp < n;) {
            size_t c = kids[kid_start[i] + k];
            depth[c] = depth[i] + 1;
            stack[sp++] = c;
        }
    }
    free(depth);
    t->n = out_n;
    r = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    store_finalize(st);
    free(raw);
    free(parent);
    free(kid_start);
    free(kid_n);
    free(kids);
    free(stack);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Distinct counts per subtree.                                              */
/* ------------------------------------------------------------------------ */

struct intern {
    const char **s; /* sorted unique, pointing into the pair names */
    size_t n;
};

static int cmp_pstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int intern_build(char **names, size_t n, struct intern *out)
{
    out->s = malloc((n ? n : 1) * sizeof(char *));
    if (out->s == NULL)
        return -1;
    if (n > 0) {
        memcpy(out->s, names, n * sizeof(char *));
        qsort(out->s, n, sizeof(char *), cmp_pstr);
    }
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(out->s[u - 1], out->s[i]) != 0)
            out->s[u++] = out->s[i];
    out->n = u;
    return 0;
}

static size_t intern_id(const struct intern *in, const char *s)
{
    const char **p = bsearch(&s, in->s, in->n, sizeof(char *), cmp_pstr);
    return p != NULL ? (size_t)(p - in->s) : 0;
}

/* Counts, for every row's subtree and for the whole table, the distinct
 * values among (row, name) pairs, writing the counts with `put`. Rows are in
 * tree order, so walking them backwards meets every child before its
 * parent and one OR per row carries a subtree's set up. */
static int distinct_rollup(struct idx_table *t, const size_t *parent, const size_t *pair_row,
                           char **pair_name, size_t npairs, int which)
{
    struct intern in = {0};
    uint64_t *bits = NULL, *all = NULL;
    int r = -1;
    if (intern_build(pair_name, npairs, &in) != 0)
        goto out;
    size_t words = (in.n + 63) / 64 + 1;
    bits = calloc((t->n ? t->n : 1) * words, sizeof(uint64_t));
    all = calloc(words, sizeof(uint64_t));
    if (bits == NULL || all == NULL)
        goto out;
    for (size_t i = 0; i < npairs; i++) {
        size_t id = intern_id(&in, pair_name[i]);
        bits[pair_row[i] * words + id / 64] |= (uint64_t)1 << (id % 64);
    }
    /* Each row's own set, before any child is merged into it. */
    for (size_t i = 0; i < t->n; i++) {
        int64_t cnt = 0;
        for (size_t k = 0; k < words; k++)
            cnt += __builtin_popcountll(bits[i * words + k]);
        if (which == 0)
            t->rows[i].own.families = cnt;
        else
            t->rows[i].own.c2_hosts = cnt;
    }
    for (size_t i = t->n; i-- > 0;) {
        uint64_t *b = &bits[i * words];
        uint64_t *dst = parent[i] != SIZE_MAX ? &bits[parent[i] * words] : all;
        int64_t cnt = 0;
        for (size_t k = 0; k < words; k++) {
            cnt += __builtin_popcountll(b[k]);
            dst[k] |= b[k];
        }
        if (which == 0)
            t->rows[i].total.families = cnt;
        else
            t->rows[i].total.c2_hosts = cnt;
    }
    int64_t cnt = 0;
    for (size_t k = 0; k < words; k++)
        cnt += __builtin_popcountll(all[k]);
    if (which == 0)
        t->province.families = cnt;
    else
        t->province.c2_hosts = cnt;
    r = 0;
out:
    free(in.s);
    free(bits);
    free(all);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Machines and addresses.                                                   */
/* ------------------------------------------------------------------------ */

static int cmp_machine(const void *a, const void *b)
{
    return strcmp(((const struct machine *)a)->id, ((const struct machine *)b)->id);
}

static int cmp_ipref(const void *a, const void *b)
{
    return strcmp(((const struct ipref *)a)->ip, ((const struct ipref *)b)->ip);
}

static size_t machine_find(const struct work *w, const char *id)
{
    struct machine key;
    snprintf(key.id, sizeof(key.id), "%s", id != NULL ? id : "");
    struct machine *m = w->nm > 0 ? bsearch(&key, w->m, w->nm, sizeof(*w->m), cmp_machine) : NULL;
    return m != NULL ? (size_t)(m - w->m) : SIZE_MAX;
}

/* Marks every managed machine holding address `ip` as infected. */
static void infect_ip(struct work *w, const char *ip)
{
    if (ip == NULL || w->nips == 0)
        return;
    struct ipref key = {.ip = ip};
    struct ipref *p = bsearch(&key, w->ips, w->nips, sizeof(*w->ips), cmp_ipref);
    if (p == NULL)
        return;
    while (p > w->ips && strcmp(p[-1].ip, ip) == 0)
        p--;
    for (; p < w->ips + w->nips && strcmp(p->ip, ip) == 0; p++)
        if (p->machine != SIZE_MAX)
            w->m[p->machine].infected = 1;
}

/* The managed machines at `at` (agents enrolled before it and not retired)
 * of the table's agencies, with their addresses cut out for matching. */
static int load_machines(struct store_db *db, struct work *w, int64_t at, char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    size_t cap = 0, capt = 0, capips = 0;
    char(*ids)[40] = NULL;
    int q = store_queryf(db, &st,
                         "SELECT id, agency_id, db_time, ips FROM machines"
                         " WHERE role = 'agent' AND retired = 0 AND enrolled_at < $1",
                         "i", at);
    while (q == STORE_ROW) {
        size_t row = row_of(w, store_col_int(st, 1));
        const char *id = store_col_text(st, 0), *ips = store_col_text(st, 3);
        if (row != SIZE_MAX && id != NULL) {
            if (grow((void **)&w->m, &cap, w->nm + 1, sizeof(*w->m)) != 0 ||
                grow((void **)&w->ips_text, &capt, w->ntext + 1, sizeof(char *)) != 0)
                goto oom;
            struct machine *m = &w->m[w->nm++];
            memset(m, 0, sizeof(*m));
            snprintf(m->id, sizeof(m->id), "%s", id);
            m->agency = row;
            m->db_time = store_col_int(st, 2);
            char *text = strndup(ips != NULL ? ips : "", 4096);
            if (text == NULL)
                goto oom;
            w->ips_text[w->ntext++] = text;
            char *save = NULL;
            for (char *tok = strtok_r(text, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                if (grow((void **)&w->ips, &capips, w->nips + 1, sizeof(*w->ips)) != 0)
                    goto oom;
                w->ips[w->nips++] = (struct ipref){.ip = tok, .machine = w->nm - 1};
            }
        }
        q = store_step(st);
    }
    store_finalize(st);
    st = NULL;
    if (q < 0) {
        set_err(err, errlen, "machines", db);
        return -1;
    }
    /* Sorting the machines moves them, so each address reference is fixed
     * up through its machine's id. */
    ids = malloc((w->nm ? w->nm : 1) * sizeof(*ids));
    if (ids == NULL)
        goto oom;
    for (size_t i = 0; i < w->nm; i++)
        memcpy(ids[i], w->m[i].id, sizeof(ids[i]));
    if (w->nm > 0)
        qsort(w->m, w->nm, sizeof(*w->m), cmp_machine);
    for (size_t i = 0; i < w->nips; i++)
        w->ips[i].machine = machine_find(w, ids[w->ips[i].machine]);
    free(ids);
    if (w->nips > 0)
        qsort(w->ips, w->nips, sizeof(*w->ips), cmp_ipref);
    return 0;
oom:
    store_finalize(st);
    free(ids);
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int add_pair(size_t **rows, char ***names, size_t *n, size_t *caprow, size_t *capname,
                    size_t row, const char *name)
{
    if (grow((void **)rows, caprow, *n + 1, sizeof(size_t)) != 0 ||
        grow((void **)names, capname, *n + 1, sizeof(char *)) != 0)
        return -1;
    char *copy = strndup(name != NULL ? name : "", 1024);
    if (copy == NULL)
        return -1;
    (*rows)[*n] = row;
    (*names)[*n] = copy;
    (*n)++;
    return 0;
}

static void work_free(struct work *w)
{
    free(w->ids_sorted);
    free(w->ids_row);
    free(w->parent);
    free(w->m);
    for (size_t i = 0; i < w->ntext; i++)
        free(w->ips_text[i]);
    free(w->ips_text);
    free(w->ips);
    for (size_t i = 0; i < w->nfam; i++)
        free(w->fam_name[i]);
    for (size_t i = 0; i < w->nhost; i++)
        free(w->host_name[i]);
    free(w->fam_row);
    free(w->fam_name);
    free(w->host_row);
    free(w->host_name);
}

struct id_row {
    int64_t id;
    size_t row;
};

static int cmp_id_row(const void *a, const void *b)
{
    return cmp_i64(&((const struct id_row *)a)->id, &((const struct id_row *)b)->id);
}

/* The lookup from agency id to row, and each row's parent row. */
static int index_rows(struct work *w)
{
    struct idx_table *t = w->t;
    size_t n = t->n ? t->n : 1;
    struct id_row *ir = malloc(n * sizeof(*ir));
    w->ids_sorted = malloc(n * sizeof(int64_t));
    w->ids_row = malloc(n * sizeof(size_t));
    w->parent = malloc(n * sizeof(size_t));
    if (ir == NULL || w->ids_sorted == NULL || w->ids_row == NULL || w->parent == NULL) {
        free(ir);
        return -1;
    }
    for (size_t i = 0; i < t->n; i++)
        ir[i] = (struct id_row){t->rows[i].agency_id, i};
    qsort(ir, t->n, sizeof(*ir), cmp_id_row);
    for (size_t i = 0; i < t->n; i++) {
        w->ids_sorted[i] = ir[i].id;
        w->ids_row[i] = ir[i].row;
    }
    free(ir);
    for (size_t i = 0; i < t->n; i++)
        w->parent[i] = t->rows[i].parent_id != 0 ? row_of(w, t->rows[i].parent_id) : SIZE_MAX;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The counts.                                                               */
/* ------------------------------------------------------------------------ */

#define FAMILY_EXPR "CASE WHEN family = '' THEN signature ELSE family END"

/* Detections made in [start, at): per agency the counts, per (agency,
 * family) a pair for the distinct count, and the machines left infected. */
static int count_detections(struct store_db *db, struct work *w, int64_t start, int64_t at,
                            char *err, size_t errlen)
{
    struct store_stmt *st = NULL;
    int q = store_queryf(db, &st,
                         "SELECT agency_id, machine_id, " FAMILY_EXPR ", count(*),"
                         " sum(CASE WHEN status IN ('resolved','false_positive') AND status_at < $2"
                         " THEN 1 ELSE 0 END)"
                         " FROM detections WHERE detected_at >= $1 AND detected_at < $2"
                         " GROUP BY agency_id, machine_id, " FAMILY_EXPR,
                         "ii", start, at);
    while (q == STORE_ROW) {
        size_t row = row_of(w, store_col_int(st, 0));
        int64_t cnt = store_col_int(st, 3), res = store_col_int(st, 4);
        if (row != SIZE_MAX) {
            struct idx_components *c = &w->t->rows[row].own;
            c->detections += cnt;
            c->resolved += res;
            c->open += cnt - res;
            if (add_pair(&w->fam_row, &w->fam_name, &w->nfam, &w->capfam, &w->capfamn, row,
                         store_col_text(st, 2)) != 0) {
                store_finalize(st);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
        if (cnt > res) {
            size_t m = machine_find(w, store_col_text(st, 1));
            if (m != SIZE_MAX)
                w->m[m].infected = 1;
        }
        q = store_step(st);
    }
    store_finalize(st);
    if (q < 0) {
        set_err(err, errlen, "detections", db);
        return -1;
    }
    return 0;
}

/* C&C hits seen in [start, at): hits and hosts per agency, and the managed
 * machines with a host's address. Grouped by host first: grouped by agency
 * first, SQLite reads every hit ever through c2_hits_agency to skip a sort
 * instead of the period's through c2_hits_time. */
static int count_c2(struct store_db *db, struct work *w, int64_t start, int64_t at, char *err,
                    size_t errlen)
{
    struct store_stmt *st = NULL;
    int q = store_queryf(db, &st,
                         "SELECT agency_id, host, count(*) FROM c2_hits"
                         " WHERE last_seen >= $1 AND first_seen < $2 GROUP BY host, agency_id",
                         "ii", start, at);
    while (q == STORE_ROW) {
        size_t row = row_of(w, store_col_int(st, 0));
        const char *host = store_col_text(st, 1);
        if (row != SIZE_MAX) {
            w->t->rows[row].own.c2_hits += store_col_int(st, 2);
            if (add_pair(&w->host_row, &w->host_name, &w->nhost, &w->caphost, &w->caphostn, row,
                         host) != 0) {
                store_finalize(st);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
        infect_ip(w, host);
        q = store_step(st);
    }
    store_finalize(st);
    if (q < 0) {
        set_err(err, errlen, "c2_hits", db);
        return -1;
    }
    return 0;
}

/* A past period's month-end figures, where the index-month job kept them. */
static int apply_snapshots(struct store_db *db, struct work *w, const struct rpt_period *p,
                           int utc_offset, char *err, size_t errlen)
{
    int64_t month_start = p->start;
    if (p->kind == RPT_QUARTER) {
        struct rpt_period m[3];
        rpt_period_months(p, utc_offset, m);
        month_start = m[2].start;
    }
    struct store_stmt *st = NULL;
    int q = store_queryf(db, &st,
                         "SELECT agency_id, managed, expected, stale FROM index_snapshots"
                         " WHERE month_start = $1",
                         "i", month_start);
    while (q == STORE_ROW) {
        size_t row = row_of(w, store_col_int(st, 0));
        if (row != SIZE_MAX) {
            struct idx_components *c = &w->t->rows[row].own;
            c->managed = store_col_int(st, 1);
            c->expected = store_col_int(st, 2);
            c->stale = store_col_int(st, 3);
        }
        q = store_step(st);
    }
    store_finalize(st);
    if (q < 0) {
        set_err(err, errlen, "index_snapshots", db);
        return -1;
    }
    return 0;
}

static void add_counts(struct idx_components *to, const struct idx_components *c)
{
    to->managed += c->managed;
    to->expected += c->expected;
    to->infected += c->infected;
    to->stale += c->stale;
    to->c2_hits += c->c2_hits;
    to->detections += c->detections;
    to->open += c->open;
    to->resolved += c->resolved;
}

int idx_compute(struct store_db *db, const struct srv_report_config *cfg,
                const struct rpt_period *p, int64_t root_agency, int64_t now, struct idx_table *out,
                char *err, size_t errlen)
{
    int r = -1;
    struct idx_formula *f = NULL;
    struct idx_table t = {.period = *p};
    struct work w = {.t = &t};
    char dummy[8];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (idx_formula_compile(cfg->index_formula, &f, err, errlen) != 0)
        goto out;
    int past = p->end <= now;
    int64_t at = past ? p->end : now + 1;
    int64_t ref = past ? p->end : now;
    int64_t stale_before = ref - (int64_t)cfg->stale_days * 86400;

    if (load_tree(db, root_agency, &t, err, errlen) != 0)
        goto out;
    if (index_rows(&w) != 0 || load_machines(db, &w, at, err, errlen) != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < w.nm; i++) {
        struct idx_components *c = &t.rows[w.m[i].agency].own;
        c->managed++;
        if (w.m[i].db_time < stale_before)
            c->stale++;
    }
    if (past && apply_snapshots(db, &w, p, cfg->utc_offset, err, errlen) != 0)
        goto out;
    if (count_detections(db, &w, p->start, at, err, errlen) != 0 ||
        count_c2(db, &w, p->start, at, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < w.nm; i++)
        if (w.m[i].infected)
            t.rows[w.m[i].agency].own.infected++;

    int64_t slots = 0, accepted = 0;
    struct store_stmt *st = NULL;
    int q = store_queryf(db, &st,
                         "SELECT count(*), sum(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END)"
                         " FROM share_submissions WHERE slot >= $1 AND slot < $2",
                         "ii", p->start, at);
    if (q == STORE_ROW) {
        slots = store_col_int(st, 0);
        accepted = store_col_int(st, 1);
    }
    store_finalize(st);
    if (q < 0) {
        set_err(err, errlen, "share_submissions", db);
        goto out;
    }

    /* Sums from the leaves up: in tree order every child comes after its
     * parent, so walking backwards finishes a subtree before its root. */
    for (size_t i = 0; i < t.n; i++)
        t.rows[i].total = t.rows[i].own;
    memset(&t.province, 0, sizeof(t.province));
    for (size_t i = t.n; i-- > 0;)
        add_counts(w.parent[i] != SIZE_MAX ? &t.rows[w.parent[i]].total : &t.province,
                   &t.rows[i].total);
    if (distinct_rollup(&t, w.parent, w.fam_row, w.fam_name, w.nfam, 0) != 0 ||
        distinct_rollup(&t, w.parent, w.host_row, w.host_name, w.nhost, 1) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* Sharing is the province's, not an agency's: every row sees it whole. */
    for (size_t i = 0; i < t.n; i++) {
        t.rows[i].own.share_slots = t.rows[i].total.share_slots = slots;
        t.rows[i].own.share_accepted = t.rows[i].total.share_accepted = accepted;
        t.rows[i].index = idx_formula_eval(f, &t.rows[i].total);
    }
    t.province.share_slots = slots;
    t.province.share_accepted = accepted;
    t.province_index = idx_formula_eval(f, &t.province);
    *out = t;
    t.rows = NULL;
    r = 0;
out:
    work_free(&w);
    free(t.rows);
    idx_formula_free(f);
    return r;
}

void idx_table_free(struct idx_table *t)
{
    if (t == NULL)
        return;
    free(t->rows);
    t->rows = NULL;
    t->n = 0;
}

int idx_trend(struct store_db *db, const struct srv_report_config *cfg, const struct rpt_period *p,
              int64_t agency_id, unsigned count, int64_t now, struct idx_point *out, char *err,
              size_t errlen)
{
    if (count == 0 || count > 60) {
        snprintf(err, errlen, "trend: count must be 1 to 60");
        return -1;
    }
    struct rpt_period cur = *p;
    for (unsigned i = count; i-- > 0;) {
        struct idx_table t;
        if (idx_compute(db, cfg, &cur, agency_id, now, &t, err, errlen) != 0)
            return -1;
        out[i].period = cur;
        out[i].c = t.province;
        out[i].index = t.province_index;
        idx_table_free(&t);
        struct rpt_period prev;
        rpt_period_prev(&cur, cfg->utc_offset, &prev);
        cur = prev;
    }
    return 0;
}

int idx_job_month(struct srv *s, struct store_db *db, int64_t now, char *msg, size_t msglen)
{
    const struct srv_report_config *cfg = &s->cfg.report;
    struct rpt_period cur, m;
    rpt_period_at(now, RPT_MONTH, cfg->utc_offset, &cur);
    rpt_period_prev(&cur, cfg->utc_offset, &m);
    int64_t have = 0;
    if (store_query_int(db, &have, "SELECT count(*) FROM index_snapshots WHERE month_start = $1",
                        "i", m.start) < 0) {
        snprintf(msg, msglen, "index_snapshots: %s", store_errmsg(db));
        return -1;
    }
    if (have > 0) {
        snprintf(msg, msglen, "%s already kept", m.label);
        return 0;
    }
    /* One statement, so that two servers racing on the same month leave one
     * set of rows (the primary key and DO NOTHING settle it). */
    int64_t changes = 0;
    int r = store_execf(
        db, &changes,
        "INSERT INTO index_snapshots (agency_id, month_start, month, managed, expected, stale,"
        " taken_at)"
        " SELECT a.id, $1, $2, count(m.id), a.expected_machines,"
        " COALESCE(sum(CASE WHEN m.db_time < $3 THEN 1 ELSE 0 END), 0), $4"
        " FROM agencies a LEFT JOIN machines m ON m.agency_id = a.id AND m.role = 'agent'"
        " AND m.retired = 0 AND m.enrolled_at < $5"
        " WHERE 1 = 1 GROUP BY a.id, a.expected_machines"
        " ON CONFLICT (agency_id, month_start) DO NOTHING",
        "itiii", m.start, m.label, m.end - (int64_t)cfg->stale_days * 86400, now, m.end);
    if (r != 0) {
        snprintf(msg, msglen, "index_snapshots: %s", store_errmsg(db));
        return -1;
    }
    snprintf(msg, msglen, "%s kept for %lld agencies", m.label, (long long)changes);
    return 0;
}
