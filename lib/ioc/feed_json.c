/*
 * Readers for the JSON indicator formats (feed.h): STIX 2.1 bundles, MISP
 * events (and, through feed.c, MISP feed folders) and MISP warninglists. The
 * text is parsed with jansson (whose nesting limit bounds recursion); the
 * STIX pattern language is parsed here, only as far as network indicators
 * need: comparisons with '=' on ipv4-addr, ipv6-addr, domain-name, url and
 * network-traffic (dst_ref.value, optionally AND dst_port), OR'd together.
 * Anything that needs correlation over time or matching we do not do
 * (FOLLOWEDBY, WITHIN, REPEATS, START/STOP, AND between observations,
 * MATCHES, LIKE, IN, comparisons other than '=') is refused with a counted
 * reason rather than approximated: a looser indicator would raise false
 * alarms and a stricter one would miss what the author meant.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "feed_int.h"
#include "khx.h"

/* Bounds on a STIX pattern: its length, the values one pattern may carry,
 * and the nesting of parentheses and brackets. */
#define PATTERN_MAX   65536
#define PATTERN_ITEMS 64
#define PATTERN_DEPTH 32
/* The most comparisons ANDed inside one observation. */
#define AND_MAX 8

/* ---- STIX patterns ---- */

enum tok_type { T_END, T_LBRACK, T_RBRACK, T_LPAREN, T_RPAREN, T_OP, T_STR, T_NUM, T_WORD, T_BAD };

struct tok {
    enum tok_type type;
    const char *p; /* for words, paths, operators and numbers: the text */
    size_t n;
    char str[IOC_VALUE_MAX + 1]; /* a decoded string literal */
    size_t sn;
};

struct pitem {
    int kind;
    char value[IOC_VALUE_MAX + 16];
};

struct pstate {
    const char *s;
    size_t n, i;
    struct tok t;
    int depth;
    const char *fatal; /* set: the whole pattern is refused */
    char why[160];     /* the first reason a part was dropped */
    struct pitem *items;
    size_t nitems;
};

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == ':' || c == '.' || c == '\'' || c == '*' || c == '[' || c == ']';
}

/* Reads the next token. Object paths ("network-traffic:dst_ref.value",
 * "file:hashes.'SHA-256'", "x:list[*]") are one word. */
static void next(struct pstate *ps)
{
    struct tok *t = &ps->t;
    while (ps->i < ps->n && (ps->s[ps->i] == ' ' || ps->s[ps->i] == '\t' || ps->s[ps->i] == '\n' ||
                             ps->s[ps->i] == '\r'))
        ps->i++;
    t->p = ps->s + ps->i;
    t->n = 1;
    if (ps->i >= ps->n) {
        t->type = T_END;
        return;
    }
    char c = ps->s[ps->i];
    if (c == '[' || c == ']' || c == '(' || c == ')') {
        t->type = c == '[' ? T_LBRACK : c == ']' ? T_RBRACK : c == '(' ? T_LPAREN : T_RPAREN;
        ps->i++;
        return;
    }
    if (c == '=' || c == '!' || c == '<' || c == '>') {
        t->type = T_OP;
        ps->i++;
        if (ps->i < ps->n && ps->s[ps->i] == '=') {
            ps->i++;
            t->n = 2;
        }
        return;
    }
    if (c == '\'' ||
        ((c == 'b' || c == 'h' || c == 't') && ps->i + 1 < ps->n && ps->s[ps->i + 1] == '\'')) {
        /* b'..', h'..' and t'..' literals are read and marked unusable. */
        int typed = c != '\'';
        ps->i += typed ? 2 : 1;
        t->sn = 0;
        t->type = typed ? T_BAD : T_STR;
        while (ps->i < ps->n && ps->s[ps->i] != '\'') {
            char ch = ps->s[ps->i];
            if (ch == '\\' && ps->i + 1 < ps->n) {
                ch = ps->s[++ps->i];
                if (ch != '\\' && ch != '\'') {
                    t->type = T_BAD;
                }
            }
            if (t->sn >= IOC_VALUE_MAX) {
                t->type = T_BAD;
            } else {
                t->str[t->sn++] = ch;
            }
            ps->i++;
        }
        if (ps->i >= ps->n) {
            t->type = T_BAD;
            return;
        }
        ps->i++;
        t->str[t->sn] = '\0';
        return;
    }
    if ((c >= '0' && c <= '9') || c == '-') {
        size_t st = ps->i;
        ps->i++;
        while (ps->i < ps->n && ps->s[ps->i] >= '0' && ps->s[ps->i] <= '9')
            ps->i++;
        char nc = ps->i < ps->n ? ps->s[ps->i] : ' ';
        if (c != '-' && ((nc >= 'a' && nc <= 'z') || (nc >= 'A' && nc <= 'Z') || nc == ':' ||
                         nc == '_' || nc == '.' || nc == '-')) {
            /* Not a number after all: a path starting with a digit. */
            ps->i = st;
        } else {
            t->type = T_NUM;
            t->n = ps->i - st;
            return;
        }
    }
    if (is_word_char(c)) {
        size_t st = ps->i;
        int quoted = 0;
        while (ps->i < ps->n && (quoted || is_word_char(ps->s[ps->i]))) {
            if (ps->s[ps->i] == '\'')
                quoted = !quoted;
            ps->i++;
        }
        /* A word ending in '[' or ']' took the bracket of an observation. */
        while (ps->i > st + 1 && (ps->s[ps->i - 1] == ']' || ps->s[ps->i - 1] == '[') &&
               memchr(ps->s + st, '[', ps->i - st - 1) == NULL)
            ps->i--;
        t->type = T_WORD;
        t->n = ps->i - st;
        return;
    }
    t->type = T_BAD;
    ps->i++;
}

static int tok_word(const struct pstate *ps, const char *w)
{
    return ps->t.type == T_WORD && feed_word_eq(ps->t.p, ps->t.n, w);
}

static void drop(struct pstate *ps, const char *fmt, const char *a, size_t an)
{
    if (ps->why[0] == '\0')
        snprintf(ps->why, sizeof(ps->why), fmt, (int)KHX_MIN(an, (size_t)60), a);
}

struct cmp {
    char path[96];
    char value[IOC_VALUE_MAX + 1];
    size_t vn;
    int is_num;
    int ok; /* '=' with a usable literal */
};

static void add_item(struct pstate *ps, int kind, const char *v)
{
    if (ps->nitems >= PATTERN_ITEMS) {
        drop(ps, "more than 64 values in one pattern%.*s", "", 0);
        return;
    }
    ps->items[ps->nitems].kind = kind;
    snprintf(ps->items[ps->nitems].value, sizeof(ps->items[0].value), "%s", v);
    ps->nitems++;
}

/* Turns the comparisons ANDed in one observation into at most one value. */
static void finish_group(struct pstate *ps, struct cmp *c, size_t nc)
{
    const char *addr = NULL, *port = NULL;
    for (size_t i = 0; i < nc; i++) {
        if (!c[i].ok)
            return; /* the reason was recorded when it was read */
        const char *p = c[i].path;
        if (nc == 1 && (strcmp(p, "ipv4-addr:value") == 0 || strcmp(p, "ipv6-addr:value") == 0)) {
            add_item(ps, IOC_CIDR, c[i].value);
            return;
        }
        if (nc == 1 && strcmp(p, "domain-name:value") == 0) {
            add_item(ps, IOC_DOMAIN, c[i].value);
            return;
        }
        if (nc == 1 && strcmp(p, "url:value") == 0) {
            add_item(ps, IOC_URL, c[i].value);
            return;
        }
        if (strcmp(p, "network-traffic:dst_ref.value") == 0 && !c[i].is_num && addr == NULL) {
            addr = c[i].value;
        } else if (strcmp(p, "network-traffic:dst_port") == 0 && c[i].is_num && port == NULL) {
            port = c[i].value;
        } else if (strcmp(p, "network-traffic:dst_ref.type") == 0 ||
                   strncmp(p, "network-traffic:protocols", 25) == 0) {
            continue; /* says what dst_ref is, or tcp/udp: implied by the value */
        } else {
            drop(ps, "'%.*s' is not a network indicator we match", p, strlen(p));
            return;
        }
    }
    if (addr == NULL) {
        drop(ps, "network-traffic without dst_ref.value%.*s", "", 0);
        return;
    }
    char v[IOC_VALUE_MAX + 16];
    if (port != NULL && strchr(addr, ':') != NULL)
        snprintf(v, sizeof(v), "[%.1000s]:%.7s", addr, port);
    else if (port != NULL)
        snprintf(v, sizeof(v), "%.1000s:%.7s", addr, port);
    else
        snprintf(v, sizeof(v), "%s", addr);
    add_item(ps, -1, v);
}

static void parse_cmp_or(struct pstate *ps);

/* cmp_and := cmp ('AND' cmp)*, cmp := '(' cmp_or ')' | path op literal. */
static void parse_cmp_and(struct pstate *ps)
{
    struct cmp c[AND_MAX];
    size_t nc = 0;
    for (;;) {
        if (ps->fatal)
            return;
        if (ps->t.type == T_LPAREN) {
            if (nc > 0 || ++ps->depth > PATTERN_DEPTH) {
                ps->fatal = nc > 0 ? "parentheses inside an AND are not supported"
                                   : "patterns nest too deeply";
                return;
            }
            next(ps);
            parse_cmp_or(ps);
            ps->depth--;
            if (ps->t.type != T_RPAREN) {
                ps->fatal = "')' expected";
                return;
            }
            next(ps);
            if (tok_word(ps, "AND"))
                ps->fatal = "parentheses inside an AND are not supported";
            return;
        }
        if (nc == AND_MAX) {
            ps->fatal = "more than 8 comparisons ANDed";
            return;
        }
        struct cmp *x = &c[nc++];
        memset(x, 0, sizeof(*x));
        if (tok_word(ps, "NOT")) {
            x->ok = 0;
            drop(ps, "NOT comparisons are not supported%.*s", "", 0);
            next(ps);
        } else {
            x->ok = 1;
        }
        if (ps->t.type != T_WORD || ps->t.n >= sizeof(x->path) ||
            memchr(ps->t.p, ':', ps->t.n) == NULL) {
            ps->fatal = "an object path (type:property) expected";
            return;
        }
        snprintf(x->path, sizeof(x->path), "%.*s", (int)ps->t.n, ps->t.p);
        next(ps);
        if (ps->t.type == T_OP && ps->t.n == 1 && ps->t.p[0] == '=') {
            next(ps);
        } else if (ps->t.type == T_OP || ps->t.type == T_WORD) {
            drop(ps, "the operator '%.*s' is not supported (only '=')", ps->t.p, ps->t.n);
            x->ok = 0;
            next(ps);
            /* IN takes a parenthesised list. */
            if (ps->t.type == T_LPAREN) {
                while (ps->t.type != T_RPAREN && ps->t.type != T_END)
                    next(ps);
            }
        } else {
            ps->fatal = "a comparison operator expected";
            return;
        }
        if (ps->t.type == T_STR) {
            memcpy(x->value, ps->t.str, ps->t.sn + 1);
            x->vn = ps->t.sn;
        } else if (ps->t.type == T_NUM && ps->t.n < 8) {
            snprintf(x->value, sizeof(x->value), "%.*s", (int)ps->t.n, ps->t.p);
            x->is_num = 1;
        } else if (ps->t.type == T_BAD || ps->t.type == T_WORD || ps->t.type == T_NUM ||
                   ps->t.type == T_RPAREN) {
            if (x->ok)
                drop(ps, "an unusable literal for '%.*s'", x->path, strlen(x->path));
            x->ok = 0;
        } else {
            ps->fatal = "a literal expected";
            return;
        }
        next(ps);
        if (!tok_word(ps, "AND"))
            break;
        next(ps);
    }
    finish_group(ps, c, nc);
}

static void parse_cmp_or(struct pstate *ps)
{
    for (;;) {
        parse_cmp_and(ps);
        if (ps->fatal || !tok_word(ps, "OR"))
            return;
        next(ps);
    }
}

static int qualifier(struct pstate *ps)
{
    static const char *const q[] = {"WITHIN", "REPEATS", "START", "STOP", "FOLLOWEDBY"};
    for (size_t i = 0; i < KHX_ARRAY_LEN(q); i++)
        if (tok_word(ps, q[i])) {
            ps->fatal = i == 4 ? "FOLLOWEDBY (a sequence over time) is not supported"
                               : "qualifiers (WITHIN, REPEATS, START/STOP) are not supported";
            return 1;
        }
    return 0;
}

static void parse_obs_or(struct pstate *ps);

static void parse_obs(struct pstate *ps)
{
    if (++ps->depth > PATTERN_DEPTH) {
        ps->fatal = "patterns nest too deeply";
        return;
    }
    if (ps->t.type == T_LBRACK) {
        next(ps);
        parse_cmp_or(ps);
        if (!ps->fatal && ps->t.type != T_RBRACK)
            ps->fatal = "']' expected";
    } else if (ps->t.type == T_LPAREN) {
        next(ps);
        parse_obs_or(ps);
        if (!ps->fatal && ps->t.type != T_RPAREN)
            ps->fatal = "')' expected";
    } else {
        ps->fatal = "'[' expected";
    }
    ps->depth--;
    if (ps->fatal)
        return;
    next(ps);
    qualifier(ps);
}

static void parse_obs_or(struct pstate *ps)
{
    for (;;) {
        parse_obs(ps);
        if (ps->fatal)
            return;
        if (tok_word(ps, "AND")) {
            ps->fatal = "AND between observations (both seen) is not supported";
            return;
        }
        if (qualifier(ps) || !tok_word(ps, "OR"))
            return;
        next(ps);
    }
}

/* Parses a pattern into items; returns 0, or -1 with a reason in why. */
static int stix_pattern(const char *s, size_t n, struct pitem *items, size_t *nitems, char *why,
                        size_t whylen)
{
    struct pstate *ps = calloc(1, sizeof(*ps));
    int r = -1;
    if (ps == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (n > PATTERN_MAX) {
        snprintf(why, whylen, "the pattern is longer than %d bytes", PATTERN_MAX);
        goto out;
    }
    ps->s = s;
    ps->n = n;
    ps->items = items;
    next(ps);
    parse_obs_or(ps);
    if (!ps->fatal && ps->t.type != T_END)
        ps->fatal = "unexpected text after the pattern";
    if (ps->fatal) {
        snprintf(why, whylen, "%s", ps->fatal);
        goto out;
    }
    if (ps->nitems == 0) {
        snprintf(why, whylen, "%s", ps->why[0] ? ps->why : "no network indicator in the pattern");
        goto out;
    }
    *nitems = ps->nitems;
    r = 0;
out:
    free(ps);
    return r;
}

/* ---- STIX objects ---- */

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s;
}

/* The first category word among a list of free-text labels. */
static const char *category_of_list(const json_t *arr)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        const char *c = s != NULL ? feed_category_lookup(s, strlen(s)) : NULL;
        if (c != NULL)
            return c;
    }
    return NULL;
}

static int stix_indicator(struct feed_run *run, const json_t *o, const json_t *names,
                          const json_t *links, size_t idx)
{
    struct pitem *items = NULL;
    size_t nitems = 0;
    char why[200];
    int r = KH_OK;
    struct feed_meta m = {NULL, NULL, NULL, 0, -1, 0};
    if (json_is_true(json_object_get(o, "revoked"))) {
        run->st->skipped++;
        return KH_OK;
    }
    const char *ptype = jstr(o, "pattern_type");
    if (ptype != NULL && strcmp(ptype, "stix") != 0) {
        feed_reject(run, "object %zu: pattern_type '%.40s' is not supported", idx, ptype);
        return KH_OK;
    }
    const char *pattern = jstr(o, "pattern");
    if (pattern == NULL) {
        feed_reject(run, "object %zu: an indicator without a pattern", idx);
        return KH_OK;
    }
    const char *vu = jstr(o, "valid_until");
    if (vu != NULL && feed_parse_time(vu, strlen(vu), &m.expires) != 0) {
        feed_reject(run, "object %zu: valid_until is not a timestamp", idx);
        return KH_OK;
    }
    json_t *conf = json_object_get(o, "confidence");
    if (json_is_integer(conf) && json_integer_value(conf) >= 0 && json_integer_value(conf) <= 100)
        m.confidence = (int)json_integer_value(conf);
    m.category = category_of_list(json_object_get(o, "indicator_types"));
    if (m.category == NULL)
        m.category = category_of_list(json_object_get(o, "labels"));
    const char *id = jstr(o, "id");
    const char *target = id != NULL ? json_string_value(json_object_get(links, id)) : NULL;
    const json_t *tobj = target != NULL ? json_object_get(names, target) : NULL;
    if (tobj != NULL) {
        const char *tt = jstr(tobj, "type");
        m.family = jstr(tobj, "name");
        if (tt != NULL && (strcmp(tt, "intrusion-set") == 0 || strcmp(tt, "threat-actor") == 0) &&
            (m.category == NULL || strcmp(m.category, "malware") == 0))
            m.category = "apt";
    }
    if ((items = calloc(PATTERN_ITEMS, sizeof(*items))) == NULL)
        return KH_ENOMEM;
    if (stix_pattern(pattern, strlen(pattern), items, &nitems, why, sizeof(why)) != 0) {
        feed_reject(run, "object %zu: %s", idx, why);
        goto out;
    }
    for (size_t i = 0; i < nitems; i++)
        if ((r = feed_emit(run, items[i].kind, items[i].value, strlen(items[i].value), &m, "object",
                           idx)) != 0)
            goto out;
out:
    free(items);
    return r;
}

int feed_read_stix(struct feed_run *run, const char *text, size_t len)
{
    int r = KH_EFORMAT;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *names = json_object(), *links = json_object();
    json_t *objs = NULL, *one = NULL, *o;
    size_t i;
    if (root == NULL) {
        feed_reject(run, "line %d: not JSON (%.100s)", jerr.line, jerr.text);
        goto out;
    }
    if (names == NULL || links == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if (json_is_array(root))
        objs = root;
    else if (json_is_array(json_object_get(root, "objects")))
        objs = json_object_get(root, "objects");
    else if (json_is_object(root) && jstr(root, "type") != NULL) {
        objs = one = json_array();
        if (one == NULL || json_array_append(one, root) != 0) {
            r = KH_ENOMEM;
            goto out;
        }
    } else {
        feed_reject(run, "object 0: neither a bundle nor a list of STIX objects%s", "");
        goto out;
    }
    /* Names of what indicators point at, then the links. */
    json_array_foreach(objs, i, o)
    {
        const char *t = jstr(o, "type"), *id = jstr(o, "id");
        if (t == NULL || id == NULL)
            continue;
        if (strcmp(t, "malware") == 0 || strcmp(t, "intrusion-set") == 0 ||
            strcmp(t, "threat-actor") == 0 || strcmp(t, "campaign") == 0) {
            if (jstr(o, "name") != NULL)
                json_object_set(names, id, o);
        }
    }
    json_array_foreach(objs, i, o)
    {
        const char *t = jstr(o, "type"), *rt = jstr(o, "relationship_type");
        const char *src = jstr(o, "source_ref"), *dst = jstr(o, "target_ref");
        if (t != NULL && strcmp(t, "relationship") == 0 && rt != NULL &&
            strcmp(rt, "indicates") == 0 && src != NULL && dst != NULL &&
            json_object_get(names, dst) != NULL && json_object_get(links, src) == NULL)
            json_object_set_new(links, src, json_string(dst));
    }
    json_array_foreach(objs, i, o)
    {
        const char *t = jstr(o, "type");
        if (i >= FEED_MAX_ENTRIES)
            break;
        if (t == NULL) {
            feed_reject(run, "object %zu: no type", i);
            continue;
        }
        if (strcmp(t, "indicator") != 0)
            continue;
        if ((r = stix_indicator(run, o, names, links, i)) != 0)
            goto out;
    }
    r = KH_OK;
out:
    json_decref(one);
    json_decref(names);
    json_decref(links);
    json_decref(root);
    return r;
}

/* ---- MISP events ---- */

struct misp_ctx {
    const char *category; /* from the event's tags or info */
    const char *family;
    int confidence;
    size_t attr; /* running attribute number, for messages */
};

/* Reads MISP tags: galaxy clusters name families and actors; other tags
 * ("kill-chain:Command and Control", "type:phishing") may name a category. */
static void misp_tags(const json_t *tags, const char **category, const char **family)
{
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        const char *name = jstr(t, "name");
        if (name == NULL)
            continue;
        size_t n = strlen(name);
        if (strncmp(name, "tlp:", 4) == 0 || strncmp(name, "PAP:", 4) == 0)
            continue;
        if (strncmp(name, "misp-galaxy:", 12) == 0) {
            const char *eq = strchr(name, '=');
            int actor = strstr(name, "threat-actor") != NULL || strstr(name, "intrusion") != NULL;
            if (eq != NULL && *family == NULL)
                *family = eq + 1;
            if (actor && (*category == NULL || strcmp(*category, "malware") == 0))
                *category = "apt";
            continue;
        }
        if (*category == NULL)
            *category = feed_category_lookup(name, n);
    }
}

static int to_ids(const json_t *v)
{
    if (json_is_true(v))
        return 1;
    if (json_is_integer(v))
        return json_integer_value(v) == 1;
    const char *s = json_string_value(v);
    return s != NULL && (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0);
}

static int misp_attribute(struct feed_run *run, const json_t *a, struct misp_ctx *ev)
{
    size_t idx = ++ev->attr;
    const char *type = jstr(a, "type"), *value = jstr(a, "value");
    struct feed_meta m = {NULL, NULL, NULL, 0, ev->confidence, 0};
    char buf[IOC_VALUE_MAX + 16];
    int r;
    if (json_is_true(json_object_get(a, "deleted")) || !to_ids(json_object_get(a, "to_ids"))) {
        run->st->skipped++;
        return KH_OK;
    }
    if (type == NULL || value == NULL) {
        feed_reject(run, "attribute %zu: no type or value", idx);
        return KH_OK;
    }
    misp_tags(json_object_get(a, "Tag"), &m.category, &m.family);
    if (m.category == NULL)
        m.category = ev->category;
    if (m.family == NULL)
        m.family = ev->family;
    const char *mcat = jstr(a, "category");
    if (m.category == NULL && mcat != NULL)
        m.category = feed_category_lookup(mcat, strlen(mcat));
    size_t vn = strlen(value);
    const char *bar = strchr(value, '|');
    if (strcmp(type, "ip-dst") == 0 || strcmp(type, "ip-src") == 0)
        return feed_emit(run, IOC_CIDR, value, vn, &m, "attribute", idx);
    if (strcmp(type, "domain") == 0 || strcmp(type, "hostname") == 0)
        return feed_emit(run, IOC_DOMAIN, value, vn, &m, "attribute", idx);
    if (strcmp(type, "url") == 0 || strcmp(type, "uri") == 0)
        return feed_emit(run, IOC_URL, value, vn, &m, "attribute", idx);
    if (strcmp(type, "ja3-fingerprint-md5") == 0)
        return feed_emit(run, IOC_JA3, value, vn, &m, "attribute", idx);
    if (strcmp(type, "ip-dst|port") == 0 || strcmp(type, "ip-src|port") == 0 ||
        strcmp(type, "hostname|port") == 0 || strcmp(type, "domain|ip") == 0) {
        if (bar == NULL || vn > IOC_VALUE_MAX) {
            feed_reject(run, "attribute %zu: a %s value without '|'", idx, type);
            return KH_OK;
        }
        size_t hn = (size_t)(bar - value);
        if (strcmp(type, "domain|ip") == 0) {
            if ((r = feed_emit(run, IOC_DOMAIN, value, hn, &m, "attribute", idx)) != 0)
                return r;
            return feed_emit(run, IOC_CIDR, bar + 1, vn - hn - 1, &m, "attribute", idx);
        }
        if (strcmp(type, "hostname|port") == 0)
            return feed_emit(run, IOC_DOMAIN, value, hn, &m, "attribute", idx);
        int v6 = memchr(value, ':', hn) != NULL;
        snprintf(buf, sizeof(buf), v6 ? "[%.*s]:%s" : "%.*s:%s", (int)hn, value, bar + 1);
        return feed_emit(run, IOC_IP_PORT, buf, strlen(buf), &m, "attribute", idx);
    }
    /* Hashes, e-mail addresses, file names: not for the network sensor. */
    run->st->skipped++;
    return KH_OK;
}

static int misp_event(struct feed_run *run, const json_t *e, size_t *attr)
{
    struct misp_ctx ev = {NULL, NULL, -1, *attr};
    json_t *a, *obj;
    size_t i, k;
    int r = KH_OK;
    misp_tags(json_object_get(e, "Tag"), &ev.category, &ev.family);
    const char *info = jstr(e, "info");
    if (ev.category == NULL && info != NULL)
        ev.category = feed_category_lookup(info, strlen(info));
    /* threat_level_id: 1 high, 2 medium, 3 low, 4 undefined. */
    const char *tl = jstr(e, "threat_level_id");
    json_t *tlv = json_object_get(e, "threat_level_id");
    int level = tl != NULL ? atoi(tl) : json_is_integer(tlv) ? (int)json_integer_value(tlv) : 0;
    if (level >= 1 && level <= 3 && run->opts->confidence == 0)
        ev.confidence = level == 1 ? 90 : level == 2 ? 70 : 50;
    json_array_foreach(json_object_get(e, "Attribute"), i, a)
    {
        if (ev.attr >= FEED_MAX_ENTRIES)
            break;
        if ((r = misp_attribute(run, a, &ev)) != 0)
            goto out;
    }
    json_array_foreach(json_object_get(e, "Object"), k, obj)
    {
        if (json_is_true(json_object_get(obj, "deleted")))
            continue;
        json_array_foreach(json_object_get(obj, "Attribute"), i, a)
        {
            if (ev.attr >= FEED_MAX_ENTRIES)
                break;
            if ((r = misp_attribute(run, a, &ev)) != 0)
                goto out;
        }
    }
out:
    *attr = ev.attr;
    return r;
}

int feed_read_misp(struct feed_run *run, const char *text, size_t len)
{
    int r = KH_EFORMAT;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *list = NULL, *one = NULL, *e;
    size_t i, attr = 0, events = 0;
    if (root == NULL) {
        feed_reject(run, "line %d: not JSON (%.100s)", jerr.line, jerr.text);
        goto out;
    }
    if (json_is_array(root))
        list = root;
    else if (json_is_array(json_object_get(root, "response")))
        list = json_object_get(root, "response");
    else if (json_is_object(root)) {
        list = one = json_array();
        if (one == NULL || json_array_append(one, root) != 0) {
            r = KH_ENOMEM;
            goto out;
        }
    } else {
        feed_reject(run, "event 0: not a MISP event%s", "");
        goto out;
    }
    json_array_foreach(list, i, e)
    {
        json_t *ev = json_object_get(e, "Event");
        if (ev == NULL && json_object_get(e, "Attribute") != NULL)
            ev = e;
        if (!json_is_object(ev)) {
            feed_reject(run, "event %zu: no Event object", i);
            continue;
        }
        events++;
        if ((r = misp_event(run, ev, &attr)) != 0)
            goto out;
    }
    r = events > 0 || json_array_size(list) == 0 ? KH_OK : KH_EFORMAT;
out:
    json_decref(one);
    json_decref(root);
    return r;
}

/* ---- MISP warninglists ---- */

int feed_read_warninglist(struct feed_run *run, const char *text, size_t len)
{
    int r = KH_EFORMAT;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    json_t *v;
    size_t i;
    if (root == NULL) {
        feed_reject(run, "line %d: not JSON (%.100s)", jerr.line, jerr.text);
        goto out;
    }
    const char *type = jstr(root, "type");
    json_t *list = json_object_get(root, "list");
    if (type == NULL || !json_is_array(list)) {
        feed_reject(run, "entry 0: a warninglist needs 'type' and 'list'%s", "");
        goto out;
    }
    struct feed_meta m = {NULL, NULL, jstr(root, "name"), 0, -1, 0};
    int kind;
    if (strcmp(type, "cidr") == 0) {
        kind = IOC_CIDR;
    } else if (strcmp(type, "hostname") == 0) {
        kind = IOC_DOMAIN;
    } else if (strcmp(type, "string") == 0) {
        kind = -1;
    } else {
        /* substring and regex lists match in ways a key lookup cannot. */
        run->st->skipped += json_array_size(list);
        r = KH_OK;
        goto out;
    }
    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (i >= FEED_MAX_ENTRIES)
            break;
        if (s == NULL) {
            feed_reject(run, "entry %zu: not a string", i);
            continue;
        }
        if (kind < 0) {
            /* String lists also hold e-mail addresses and hashes: what is
             * not a network value is skipped, not an error. */
            char out[IOC_VALUE_MAX + 1], why[8];
            int k = ioc_normalize_value(-1, s, strlen(s), out, why, sizeof(why));
            if (k < 0 || k == IOC_JA3) {
                run->st->skipped++;
                continue;
            }
        }
        if ((r = feed_emit(run, kind, s, strlen(s), &m, "entry", i)) != 0)
            goto out;
    }
    r = KH_OK;
out:
    json_decref(root);
    return r;
}
