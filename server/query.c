/*
 * Helpers for the dashboard's list and detail handlers; see query.h. The SQL
 * builder here is the only place those handlers assemble statement text, and
 * it only accepts constant fragments and numbered placeholders, so a filter
 * value, a search string or a sort name can change what a statement binds but
 * never what it says.
 */
#include "query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* SQL builder.                                                              */
/* ------------------------------------------------------------------------ */

void srv_sql_init(struct srv_sql *q)
{
    memset(q, 0, sizeof(*q));
}

void srv_sql_clear(struct srv_sql *q)
{
    if (q == NULL)
        return;
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i].text);
    srv_sql_init(q);
}

void srv_sql_add(struct srv_sql *q, const char *fragment)
{
    size_t n = strlen(fragment);

    if (q->failed)
        return;
    if (n >= sizeof(q->text) - q->len) {
        q->failed = 1;
        return;
    }
    memcpy(q->text + q->len, fragment, n + 1);
    q->len += n;
}

void srv_sql_ref(struct srv_sql *q, int n)
{
    char ph[16];

    snprintf(ph, sizeof(ph), "$%d", n);
    srv_sql_add(q, ph);
}

/* Reserves the next parameter slot and writes its placeholder. */
static struct srv_sql_param *sql_param_new(struct srv_sql *q, int *n)
{
    struct srv_sql_param *p;

    if (q->failed || q->nparams >= SRV_SQL_MAXPARAMS) {
        q->failed = 1;
        return NULL;
    }
    p = &q->params[q->nparams++];
    memset(p, 0, sizeof(*p));
    *n = q->nparams;
    srv_sql_ref(q, *n);
    return p;
}

int srv_sql_text(struct srv_sql *q, const char *value)
{
    int n = -1;
    struct srv_sql_param *p = sql_param_new(q, &n);

    if (p == NULL)
        return -1;
    p->is_text = 1;
    if (value != NULL && (p->text = strdup(value)) == NULL) {
        q->failed = 1;
        return -1;
    }
    return n;
}

int srv_sql_int(struct srv_sql *q, int64_t value)
{
    int n = -1;
    struct srv_sql_param *p = sql_param_new(q, &n);

    if (p == NULL)
        return -1;
    p->num = value;
    return n;
}

int srv_sql_prepare(struct store_db *db, const struct srv_sql *q, struct store_stmt **out)
{
    struct store_stmt *st = NULL;
    int r = STORE_EINVAL;

    *out = NULL;
    if (q->failed)
        goto out;
    if ((r = store_prepare(db, q->text, &st)) != 0)
        goto out;
    for (int i = 0; i < q->nparams; i++) {
        const struct srv_sql_param *p = &q->params[i];
        r = p->is_text ? store_bind_text(st, i + 1, p->text) : store_bind_int(st, i + 1, p->num);
        if (r != 0)
            goto out;
    }
    *out = st;
    st = NULL;
    r = 0;
out:
    store_finalize(st);
    return r;
}

void srv_sql_scope(struct srv_sql *q, const struct srv_req *r, const char *path_col)
{
    /* An empty scope matches nothing, which is the safe reading of a
     * principal the router failed to fill. */
    if (strcmp(r->who.scope_path, "%") == 0)
        return;
    srv_sql_add(q, " AND ");
    srv_sql_add(q, path_col);
    srv_sql_add(q, " LIKE ");
    srv_sql_text(q, r->who.scope_path);
}

/* ------------------------------------------------------------------------ */
/* Sorting.                                                                  */
/* ------------------------------------------------------------------------ */

int srv_sql_order(struct srv_sql *q, const struct srv_sort *table, const char *sort,
                  const char *order, const char **bad)
{
    const struct srv_sort *e = table;
    int desc;

    if (sort != NULL) {
        for (e = table; e->name != NULL; e++)
            if (strcmp(e->name, sort) == 0)
                break;
        if (e->name == NULL) {
            *bad = "sort";
            return -1;
        }
    }
    if (order == NULL)
        desc = e->default_desc;
    else if (strcmp(order, "asc") == 0)
        desc = 0;
    else if (strcmp(order, "desc") == 0)
        desc = 1;
    else {
        *bad = "order";
        return -1;
    }
    srv_sql_add(q, " ORDER BY ");
    srv_sql_add(q, desc ? e->desc : e->asc);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* LIKE patterns.                                                            */
/* ------------------------------------------------------------------------ */

int srv_like_pattern(const char *in, int prefix_only, char *out, size_t outlen)
{
    size_t o = 0;

    /* Room for the leading %, the trailing % and the NUL is checked as we
     * go; each input byte may need two output bytes. */
    if (outlen < 3)
        return -1;
    if (!prefix_only)
        out[o++] = '%';
    for (const char *p = in; *p != '\0'; p++) {
        if (o + 4 > outlen)
            return -1;
        if (*p == '%' || *p == '_' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '%';
    out[o] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Request parameters.                                                       */
/* ------------------------------------------------------------------------ */

const char *srv_qparam(struct srv_req *r, const char *name)
{
    const char *v = srv_query(r, name);

    return v != NULL && *v != '\0' ? v : NULL;
}

int srv_qparam_copy(struct srv_req *r, const char *name, char *buf, size_t buflen)
{
    const char *v = srv_qparam(r, name);
    size_t n = v != NULL ? strlen(v) : 0;

    buf[0] = '\0';
    if (v == NULL)
        return 0;
    if (n >= buflen)
        return -1;
    memcpy(buf, v, n + 1);
    return 1;
}

/* Strict decimal: an optional minus sign and digits, nothing else. */
static int parse_int64(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (s == NULL || *s == '\0' || strlen(s) > 20)
        return -1;
    if (!(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

int srv_qparam_int(struct srv_req *r, const char *name, int64_t min, int64_t max, int64_t *out)
{
    const char *s = srv_qparam(r, name);
    int64_t v;

    if (s == NULL)
        return 0;
    if (parse_int64(s, &v) != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 1;
}

int srv_param_id(const struct srv_req *r, unsigned index, int64_t *out)
{
    int64_t v;

    if (index >= r->nparams || r->params[index] == NULL)
        return -1;
    if (r->params[index][0] == '-' || parse_int64(r->params[index], &v) != 0 || v <= 0)
        return -1;
    *out = v;
    return 0;
}

int64_t srv_route_id(const struct srv_req *r)
{
    int64_t v;
    return srv_param_id(r, 0, &v) == 0 ? v : 0;
}

const char *srv_param_machine(const struct srv_req *r, unsigned index)
{
    const char *s;
    size_t n;

    if (index >= r->nparams || (s = r->params[index]) == NULL)
        return NULL;
    n = strlen(s);
    return n >= 1 && n <= 64 ? s : NULL;
}

int srv_agency_path(struct srv_req *r, int64_t id, char *path, size_t pathlen)
{
    struct srv_sql q;
    struct store_stmt *st = NULL;
    const char *p;
    int rc;

    srv_sql_init(&q);
    srv_sql_add(&q, "SELECT a.path FROM agencies a WHERE a.id = ");
    srv_sql_int(&q, id);
    srv_sql_scope(&q, r, "a.path");
    if ((rc = srv_sql_prepare(r->db, &q, &st)) != 0)
        goto out;
    if ((rc = store_step(st)) != STORE_ROW)
        goto out; /* STORE_DONE (0): not found, or an error */
    p = store_col_text(st, 0);
    if (p == NULL || strlen(p) >= pathlen) {
        rc = STORE_EINVAL;
        goto out;
    }
    memcpy(path, p, strlen(p) + 1);
    rc = 1;
out:
    store_finalize(st);
    srv_sql_clear(&q);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* JSON.                                                                     */
/* ------------------------------------------------------------------------ */

json_t *srv_page_json(json_t *items, int64_t total, int64_t limit, int64_t offset)
{
    int64_t page = limit > 0 ? offset / limit + 1 : 1;

    return json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total", (json_int_t)total, "page",
                     (json_int_t)page, "per_page", (json_int_t)limit);
}

json_t *srv_col_string(struct store_stmt *st, int col)
{
    const char *s = store_col_text(st, col);

    return s != NULL ? json_string(s) : json_null();
}

json_t *srv_col_json(struct store_stmt *st, int col, const char *fallback)
{
    const char *s = store_col_text(st, col);
    json_t *v = NULL;

    if (s != NULL && *s != '\0')
        v = json_loads(s, JSON_DECODE_ANY, NULL);
    if (v == NULL && fallback == NULL)
        v = s != NULL && *s != '\0' ? json_string(s) : json_null();
    else if (v == NULL)
        v = json_loads(fallback, JSON_DECODE_ANY, NULL);
    return v;
}

json_t *srv_col_intn(struct store_stmt *st, int col)
{
    return store_col_is_null(st, col) ? json_null() : json_integer(store_col_int(st, col));
}

json_t *srv_col_agency(struct store_stmt *st, int col)
{
    const char *code = store_col_text(st, col + 1);
    const char *name = store_col_text(st, col + 2);

    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)store_col_int(st, col), "code",
                     code != NULL ? code : "", "name", name != NULL ? name : "");
}

json_t *srv_words_json(const char *s)
{
    json_t *a = json_array();

    if (a == NULL || s == NULL)
        return a;
    while (*s != '\0') {
        size_t n;
        while (*s == ' ')
            s++;
        n = strcspn(s, " ");
        if (n > 0)
            json_array_append_new(a, json_stringn(s, n));
        s += n;
    }
    return a;
}

json_t *srv_age_days(int64_t now, int64_t t)
{
    if (t <= 0)
        return json_null();
    return json_integer(now > t ? (now - t) / 86400 : 0);
}
