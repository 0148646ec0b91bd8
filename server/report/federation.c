/*
 * The federation document (federation.h): built by a provincial server from
 * its index tables and checked, field by field, by the parent that receives
 * it. The two live together so that the format has one definition.
 *
 * The parent treats a push as hostile input: it is parsed with a size cap,
 * duplicate keys refused, and every object must have exactly the fields of
 * the format. That strictness is what keeps the promise that nothing but
 * aggregated figures crosses to the parent: a field that could carry a file
 * path, a host or a user name has nowhere to go, and names themselves may
 * not contain the characters of a path or an account ('/', '\\', '@').
 */
#include "federation.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"

const char *const fed_component_names[FED_NCOMPONENTS] = {
    "managed",    "expected", "infected", "stale",    "c2_hosts",    "c2_hits",
    "detections", "families", "open",     "resolved", "share_slots", "share_accepted",
};

/* The fields of struct idx_components in the order of fed_component_names. */
static int64_t *component_ptr(struct idx_components *c, size_t i)
{
    int64_t *f[FED_NCOMPONENTS] = {
        &c->managed,  &c->expected, &c->infected,    &c->stale,
        &c->c2_hosts, &c->c2_hits,  &c->detections,  &c->families,
        &c->open,     &c->resolved, &c->share_slots, &c->share_accepted,
    };
    return f[i];
}

json_t *fed_components_json(const struct idx_components *c)
{
    struct idx_components copy = *c;
    json_t *o = json_object();

    for (size_t i = 0; o != NULL && i < FED_NCOMPONENTS; i++)
        if (json_object_set_new(o, fed_component_names[i],
                                json_integer((json_int_t)*component_ptr(&copy, i))) != 0) {
            json_decref(o);
            o = NULL;
        }
    return o;
}

int fed_components_from_json(const json_t *o, struct idx_components *out)
{
    struct idx_components c;

    memset(&c, 0, sizeof(c));
    if (!json_is_object(o))
        return -1;
    for (size_t i = 0; i < FED_NCOMPONENTS; i++) {
        json_t *v = json_object_get(o, fed_component_names[i]);
        if (!json_is_integer(v))
            return -1;
        *component_ptr(&c, i) = (int64_t)json_integer_value(v);
    }
    *out = c;
    return 0;
}

void fed_components_add(struct idx_components *acc, const struct idx_components *c)
{
    struct idx_components copy = *c;

    for (size_t i = 0; i < FED_NCOMPONENTS; i++)
        *component_ptr(acc, i) += *component_ptr(&copy, i);
}

/* ------------------------------------------------------------------------ */
/* Character rules shared by the builder and the validator.                  */
/* ------------------------------------------------------------------------ */

static int code_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

int fed_code_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > FED_CODE_MAX)
        return 0;
    for (; *s; s++)
        if (!code_char((unsigned char)*s))
            return 0;
    return 1;
}

/* Characters a name may not hold: those of a path ('/', '\\') or an account
 * ('@'), and control characters. jansson has already checked the UTF-8. */
static int name_char_refused(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f || ch == '/' || ch == '\\' || ch == '@';
}

int fed_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > FED_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (name_char_refused((unsigned char)*s))
            return 0;
    return 1;
}

/* Copies a name with refused characters replaced by '-', cut at a UTF-8
 * boundary to FED_NAME_MAX bytes; an empty name becomes `fallback`. */
static void clean_name(const char *in, const char *fallback, char out[FED_NAME_MAX + 1])
{
    size_t n = 0;

    if (in == NULL || in[0] == '\0')
        in = fallback;
    for (; in[n] != '\0' && n < FED_NAME_MAX; n++)
        out[n] = name_char_refused((unsigned char)in[n]) ? '-' : in[n];
    /* Do not leave half a multi-byte character at the cut. */
    if (in[n] != '\0')
        while (n > 0 && ((unsigned char)in[n] & 0xC0) == 0x80)
            n--;
    out[n] = '\0';
}

/* An agency code as the document spells it: refused characters become '-'. */
static void clean_code(const char *in, char out[FED_CODE_MAX + 1])
{
    size_t n = 0;

    for (; in[n] != '\0' && n < FED_CODE_MAX; n++)
        out[n] = code_char((unsigned char)in[n]) ? in[n] : '-';
    out[n] = '\0';
    if (n == 0)
        snprintf(out, FED_CODE_MAX + 1, "-");
}

static const char *const agency_kinds[] = {"province", "department", "district", "agency"};

static int valid_kind(const char *s)
{
    for (size_t i = 0; i < sizeof(agency_kinds) / sizeof(agency_kinds[0]); i++)
        if (strcmp(s, agency_kinds[i]) == 0)
            return 1;
    return 0;
}

static int finite_index(double x)
{
    return isfinite(x) && x >= -(double)FED_COUNT_MAX && x <= (double)FED_COUNT_MAX;
}

/* ------------------------------------------------------------------------ */
/* Building (the child).                                                     */
/* ------------------------------------------------------------------------ */

static json_t *agency_json(const struct idx_table *t, const struct idx_row *row)
{
    char code[FED_CODE_MAX + 1], parent[FED_CODE_MAX + 1], name[FED_NAME_MAX + 1];
    json_t *parent_j = json_null();

    clean_code(row->code, code);
    clean_name(row->name, code, name);
    if (row->parent_id != 0) {
        for (size_t i = 0; i < t->n; i++)
            if (t->rows[i].agency_id == row->parent_id) {
                clean_code(t->rows[i].code, parent);
                json_decref(parent_j);
                parent_j = json_string(parent);
                break;
            }
    }
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:f}", "code", code, "name", name, "kind",
                     valid_kind(row->kind) ? row->kind : "agency", "parent", parent_j, "own",
                     fed_components_json(&row->own), "total", fed_components_json(&row->total),
                     "index", finite_index(row->index) ? row->index : 0.0);
}

static json_t *period_json(const struct idx_table *t)
{
    json_t *agencies = json_array(), *p = NULL;

    if (agencies == NULL)
        return NULL;
    for (size_t i = 0; i < t->n && i < FED_AGENCIES_MAX; i++)
        if (json_array_append_new(agencies, agency_json(t, &t->rows[i])) != 0) {
            json_decref(agencies);
            return NULL;
        }
    p = json_pack("{s:s, s:s, s:I, s:I, s:o, s:f, s:o}", "period", t->period.label, "kind",
                  t->period.kind == RPT_QUARTER ? "quarter" : "month", "start",
                  (json_int_t)t->period.start, "end", (json_int_t)t->period.end, "totals",
                  fed_components_json(&t->province), "index",
                  finite_index(t->province_index) ? t->province_index : 0.0, "agencies", agencies);
    return p;
}

int fed_doc_build(const char *province_code, const char *province_name,
                  const struct idx_table *tables, size_t n, unsigned interval, int64_t generated_at,
                  json_t **out, char *err, size_t errlen)
{
    int r = -1;
    char name[FED_NAME_MAX + 1];
    json_t *doc = NULL, *periods = NULL;

    if (province_code == NULL || !fed_code_valid(province_code)) {
        khx_errf(err, errlen,
                 "org_id (the province's code) must be 1-63 letters, digits, '.', '_' or '-'");
        goto out;
    }
    if (n == 0 || n > FED_PERIODS_MAX) {
        khx_errf(err, errlen, "a document holds 1 to %d periods", FED_PERIODS_MAX);
        goto out;
    }
    clean_name(province_name, province_code, name);
    periods = json_array();
    if (periods == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(periods, period_json(&tables[i])) != 0)
            goto nomem;
    doc = json_pack("{s:i, s:{s:s, s:s}, s:I, s:I, s:O}", "schema", FED_SCHEMA, "province", "code",
                    province_code, "name", name, "generated_at", (json_int_t)generated_at,
                    "interval", (json_int_t)interval, "periods", periods);
    if (doc == NULL)
        goto nomem;
    *out = doc;
    doc = NULL;
    r = 0;
    goto out;
nomem:
    khx_errf(err, errlen, "out of memory building the federation document");
out:
    json_decref(periods);
    json_decref(doc);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Checking (the parent).                                                    */
/* ------------------------------------------------------------------------ */

/* Where in the document a check is, for the error message. */
struct where {
    char path[128];
};

static int bad(char *err, size_t errlen, const char *path, const char *problem)
{
    khx_errf(err, errlen, "%s: %s", path, problem);
    return -1;
}

static void sub(struct where *w, const struct where *parent, const char *field)
{
    /* A path longer than the buffer is cut; the message stays readable. */
    if (snprintf(w->path, sizeof(w->path), "%s%s%s", parent->path, parent->path[0] ? "." : "",
                 field) >= (int)sizeof(w->path))
        w->path[sizeof(w->path) - 1] = '\0';
}

static void item(struct where *w, const struct where *parent, size_t i)
{
    if (snprintf(w->path, sizeof(w->path), "%s[%zu]", parent->path, i) >= (int)sizeof(w->path))
        w->path[sizeof(w->path) - 1] = '\0';
}

/* The object must hold exactly `keys` (all of them, nothing else). */
static int exact_keys(const json_t *o, const char *const *keys, size_t nkeys, const struct where *w,
                      char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    struct where f;

    if (!json_is_object(o))
        return bad(err, errlen, w->path[0] ? w->path : "document", "must be an object");
    json_object_foreach((json_t *)o, k, v)
    {
        size_t i = 0;
        while (i < nkeys && strcmp(k, keys[i]) != 0)
            i++;
        if (i == nkeys) {
            char key[48];
            /* The name is the sender's: print only a bounded, tame copy. */
            size_t j = 0;
            for (; k[j] != '\0' && j < sizeof(key) - 1; j++)
                key[j] = code_char((unsigned char)k[j]) ? k[j] : '?';
            key[j] = '\0';
            sub(&f, w, key);
            return bad(err, errlen, f.path, "unknown field (the format allows no other)");
        }
    }
    for (size_t i = 0; i < nkeys; i++)
        if (json_object_get(o, keys[i]) == NULL) {
            sub(&f, w, keys[i]);
            return bad(err, errlen, f.path, "missing");
        }
    return 0;
}

static int check_int(const json_t *o, const char *field, int64_t min, int64_t max,
                     const struct where *w, int64_t *out, char *err, size_t errlen)
{
    struct where f;
    json_t *v = json_object_get(o, field);

    sub(&f, w, field);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char problem[96];
        snprintf(problem, sizeof(problem), "must be an integer from %" PRId64 " to %" PRId64, min,
                 max);
        return bad(err, errlen, f.path, problem);
    }
    if (out != NULL)
        *out = (int64_t)json_integer_value(v);
    return 0;
}

static int check_text(const json_t *o, const char *field, int is_code, const struct where *w,
                      const char **out, char *err, size_t errlen)
{
    struct where f;
    json_t *v = json_object_get(o, field);
    const char *s = json_string_value(v);

    sub(&f, w, field);
    /* jansson keeps strings with an embedded NUL; such a length differs. */
    if (s == NULL || strlen(s) != json_string_length(v))
        return bad(err, errlen, f.path, "must be a string");
    if (is_code && !fed_code_valid(s))
        return bad(err, errlen, f.path, "must be 1-63 letters, digits, '.', '_' or '-'");
    if (!is_code && !fed_name_valid(s))
        return bad(err, errlen, f.path,
                   "must be 1-255 bytes without '/', '\\', '@' or control characters");
    *out = s;
    return 0;
}

static int check_index(const json_t *o, const struct where *w, char *err, size_t errlen)
{
    struct where f;
    json_t *v = json_object_get(o, "index");

    sub(&f, w, "index");
    if (!json_is_number(v) || !finite_index(json_number_value(v)))
        return bad(err, errlen, f.path, "must be a finite number");
    return 0;
}

static int check_components(const json_t *o, const char *field, const struct where *w, char *err,
                            size_t errlen)
{
    struct where f;
    const json_t *c = json_object_get(o, field);

    sub(&f, w, field);
    if (exact_keys(c, fed_component_names, FED_NCOMPONENTS, &f, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < FED_NCOMPONENTS; i++)
        if (check_int(c, fed_component_names[i], 0, FED_COUNT_MAX, &f, NULL, err, errlen) != 0)
            return -1;
    return 0;
}

/* Codes seen so far in one period, for duplicates and parents. A sorted
 * array would be faster; FED_AGENCIES_MAX keeps the quadratic look-up
 * small enough (at most 12.5 M comparisons for one document). */
static int seen(const char *const *codes, size_t n, const char *code)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(codes[i], code) == 0)
            return 1;
    return 0;
}

static int check_agencies(const json_t *a, const struct where *w, char *err, size_t errlen)
{
    static const char *const keys[] = {"code", "name", "kind", "parent", "own", "total", "index"};
    const char **codes = NULL;
    int r = -1;
    size_t n = json_array_size(a);
    struct where e, f;

    if (!json_is_array(a) || n > FED_AGENCIES_MAX) {
        char problem[64];
        snprintf(problem, sizeof(problem), "must be an array of at most %d agencies",
                 FED_AGENCIES_MAX);
        return bad(err, errlen, w->path, problem);
    }
    codes = calloc(n ? n : 1, sizeof(*codes));
    if (codes == NULL)
        return bad(err, errlen, w->path, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *ag = json_array_get(a, i);
        const char *code, *name, *kind, *parent;
        json_t *pj;

        item(&e, w, i);
        if (exact_keys(ag, keys, sizeof(keys) / sizeof(keys[0]), &e, err, errlen) != 0 ||
            check_text(ag, "code", 1, &e, &code, err, errlen) != 0 ||
            check_text(ag, "name", 0, &e, &name, err, errlen) != 0)
            goto out;
        if (seen(codes, i, code)) {
            sub(&f, &e, "code");
            bad(err, errlen, f.path, "appears twice in this period");
            goto out;
        }
        sub(&f, &e, "kind");
        kind = json_string_value(json_object_get(ag, "kind"));
        if (kind == NULL || !valid_kind(kind)) {
            bad(err, errlen, f.path, "must be province, department, district or agency");
            goto out;
        }
        pj = json_object_get(ag, "parent");
        if (!json_is_null(pj)) {
            if (check_text(ag, "parent", 1, &e, &parent, err, errlen) != 0)
                goto out;
            if (!seen(codes, i, parent)) {
                sub(&f, &e, "parent");
                bad(err, errlen, f.path, "must be null or the code of an agency listed before");
                goto out;
            }
        }
        if (check_components(ag, "own", &e, err, errlen) != 0 ||
            check_components(ag, "total", &e, err, errlen) != 0 ||
            check_index(ag, &e, err, errlen) != 0)
            goto out;
        codes[i] = code;
    }
    r = 0;
out:
    free(codes);
    return r;
}

static int check_period(const json_t *p, const struct where *w, char *err, size_t errlen)
{
    static const char *const keys[] = {"period", "kind",  "start",   "end",
                                       "totals", "index", "agencies"};
    struct rpt_period parsed;
    const char *label, *kind;
    int64_t start, end;
    struct where f;

    if (exact_keys(p, keys, sizeof(keys) / sizeof(keys[0]), w, err, errlen) != 0)
        return -1;
    sub(&f, w, "period");
    label = json_string_value(json_object_get(p, "period"));
    /* The offset only moves start and end, which are checked below. */
    if (label == NULL || strlen(label) >= sizeof(parsed.label) ||
        rpt_period_parse(label, 0, &parsed) != 0 || strcmp(parsed.label, label) != 0)
        return bad(err, errlen, f.path, "must be a month \"2026-11\" or a quarter \"2026Q4\"");
    sub(&f, w, "kind");
    kind = json_string_value(json_object_get(p, "kind"));
    if (kind == NULL || strcmp(kind, parsed.kind == RPT_QUARTER ? "quarter" : "month") != 0)
        return bad(err, errlen, f.path, "must be \"month\" or \"quarter\" as the period is");
    if (check_int(p, "start", 0, INT64_C(32503680000), w, &start, err, errlen) != 0 ||
        check_int(p, "end", 0, INT64_C(32503680000), w, &end, err, errlen) != 0)
        return -1;
    /* Within a day of the label's UTC range: the child's offset may differ. */
    if (end <= start || start < parsed.start - 86400 || start > parsed.start + 86400 ||
        end < parsed.end - 86400 || end > parsed.end + 86400) {
        sub(&f, w, "start");
        return bad(err, errlen, f.path, "start and end do not match the period");
    }
    if (check_components(p, "totals", w, err, errlen) != 0 || check_index(p, w, err, errlen) != 0)
        return -1;
    sub(&f, w, "agencies");
    return check_agencies(json_object_get(p, "agencies"), &f, err, errlen);
}

int fed_doc_validate(const char *text, size_t len, json_t **out, char *err, size_t errlen)
{
    static const char *const keys[] = {"schema", "province", "generated_at", "interval", "periods"};
    static const char *const pkeys[] = {"code", "name"};
    int r = -1;
    json_t *doc = NULL, *periods;
    json_error_t je;
    struct where top, w, f;
    const char *s;
    size_t n;

    memset(&top, 0, sizeof(top));
    if (len > FED_DOC_MAX) {
        khx_errf(err, errlen, "document: larger than %u bytes", FED_DOC_MAX);
        goto out;
    }
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL) {
        khx_errf(err, errlen, "document: not JSON (line %d, column %d: %s)", je.line, je.column,
                 je.text);
        goto out;
    }
    if (exact_keys(doc, keys, sizeof(keys) / sizeof(keys[0]), &top, err, errlen) != 0)
        goto out;
    if (check_int(doc, "schema", FED_SCHEMA, FED_SCHEMA, &top, NULL, err, errlen) != 0 ||
        check_int(doc, "generated_at", INT64_C(946684800), INT64_C(32503680000), &top, NULL, err,
                  errlen) != 0 ||
        check_int(doc, "interval", 0, INT64_C(315360000), &top, NULL, err, errlen) != 0)
        goto out;
    sub(&w, &top, "province");
    if (exact_keys(json_object_get(doc, "province"), pkeys, 2, &w, err, errlen) != 0 ||
        check_text(json_object_get(doc, "province"), "code", 1, &w, &s, err, errlen) != 0 ||
        check_text(json_object_get(doc, "province"), "name", 0, &w, &s, err, errlen) != 0)
        goto out;
    sub(&w, &top, "periods");
    periods = json_object_get(doc, "periods");
    n = json_array_size(periods);
    if (!json_is_array(periods) || n == 0 || n > FED_PERIODS_MAX) {
        char problem[64];
        snprintf(problem, sizeof(problem), "must be an array of 1 to %d periods", FED_PERIODS_MAX);
        bad(err, errlen, w.path, problem);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        item(&f, &w, i);
        if (check_period(json_array_get(periods, i), &f, err, errlen) != 0)
            goto out;
        const char *label =
            json_string_value(json_object_get(json_array_get(periods, i), "period"));
        for (size_t j = 0; j < i; j++)
            if (strcmp(label, json_string_value(
                                  json_object_get(json_array_get(periods, j), "period"))) == 0) {
                bad(err, errlen, f.path, "the period appears twice");
                goto out;
            }
    }
    *out = doc;
    doc = NULL;
    r = 0;
out:
    /* The parser quotes the input near an error: keep the message one
     * printable line for the reply and the log. */
    for (char *c = err; r != 0 && errlen > 0 && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    json_decref(doc);
    return r;
}
