/*
 * The infection index's formula (index.h): the configured expression is
 * compiled once into a short postfix program over the components and rates
 * of one row, and evaluated per agency and per period. The text comes from
 * the configuration file, so it is parsed as hostile input: a length cap, a
 * nesting cap, a program cap, and every error names what is wrong and
 * where (1-based column), e.g. "index_formula: unknown name 'infectd' at 12".
 *
 * Grammar (recursive descent, one function per level):
 *   expr    = term { ("+" | "-") term }
 *   term    = unary { ("*" | "/") unary }
 *   unary   = "-" unary | primary
 *   primary = number | name | ("min" | "max") "(" expr "," expr ")" | "(" expr ")"
 * Division by zero gives 0, and so does any result that is not finite, so a
 * row with no machines never shows NaN.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"

#define FORMULA_MAX_LEN   511 /* srv_report_config.index_formula holds 511 characters */
#define FORMULA_MAX_DEPTH 32  /* nested parentheses, unary minus and function calls */
#define FORMULA_MAX_OPS   256 /* instructions of the compiled program */

enum op { OP_NUM, OP_VAR, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_NEG, OP_MIN, OP_MAX };

/* The names a formula may use, in the order var_value() reads them. */
static const char *const var_names[] = {
    "managed",       "expected",   "infected", "stale",          "c2_hosts",    "c2_hits",
    "detections",    "families",   "open",     "resolved",       "share_slots", "share_accepted",
    "infected_rate", "stale_rate", "coverage", "sharing_uptime",
};
#define NVARS (sizeof(var_names) / sizeof(var_names[0]))

struct insn {
    enum op op;
    unsigned var;
    double num;
};

struct idx_formula {
    struct insn code[FORMULA_MAX_OPS];
    size_t n;
    size_t max_stack;
};

struct parser {
    const char *text;
    size_t pos;
    unsigned depth;
    size_t stack, max_stack; /* values on the evaluation stack after the code so far */
    struct idx_formula *f;
    char *err;
    size_t errlen;
    int failed;
};

static void fail(struct parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "index_formula: %s at %zu", what, at + 1);
}

static void skip_space(struct parser *p)
{
    if (p->failed)
        return;
    while (p->text[p->pos] == ' ' || p->text[p->pos] == '\t')
        p->pos++;
}

/* Appends one instruction, keeping track of how deep the evaluation stack
 * gets so that idx_formula_eval() knows its bound. */
static void emit(struct parser *p, enum op op, unsigned var, double num)
{
    if (p->failed)
        return;
    if (p->f->n >= FORMULA_MAX_OPS) {
        fail(p, p->pos, "too long (more than %d operations)", FORMULA_MAX_OPS);
        return;
    }
    p->f->code[p->f->n++] = (struct insn){.op = op, .var = var, .num = num};
    if (op == OP_NUM || op == OP_VAR)
        p->stack++;
    else if (op != OP_NEG)
        p->stack--;
    if (p->stack > p->max_stack)
        p->max_stack = p->stack;
}

static void expr(struct parser *p);

static void number(struct parser *p)
{
    size_t start = p->pos;
    char buf[40];
    size_t n = 0;
    int dot = 0;
    while (isdigit((unsigned char)p->text[p->pos]) || (p->text[p->pos] == '.' && !dot)) {
        if (p->text[p->pos] == '.')
            dot = 1;
        if (n + 1 >= sizeof(buf)) {
            fail(p, start, "number too long");
            return;
        }
        buf[n++] = p->text[p->pos++];
    }
    buf[n] = '\0';
    if (strcmp(buf, ".") == 0) {
        fail(p, start, "bad number");
        return;
    }
    emit(p, OP_NUM, 0, strtod(buf, NULL));
}

static void call(struct parser *p, enum op op, const char *name)
{
    skip_space(p);
    if (p->text[p->pos] != '(') {
        fail(p, p->pos, "'(' expected after %s", name);
        return;
    }
    p->pos++;
    expr(p);
    skip_space(p);
    if (p->failed)
        return;
    if (p->text[p->pos] != ',') {
        fail(p, p->pos, "',' expected in %s(", name);
        return;
    }
    p->pos++;
    expr(p);
    skip_space(p);
    if (p->failed)
        return;
    if (p->text[p->pos] != ')') {
        fail(p, p->pos, "')' expected to close %s(", name);
        return;
    }
    p->pos++;
    emit(p, op, 0, 0);
}

static void primary(struct parser *p)
{
    skip_space(p);
    size_t at = p->pos;
    char c = p->text[p->pos];
    if (isdigit((unsigned char)c) || c == '.') {
        number(p);
        return;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        char name[40];
        size_t n = 0;
        while (isalnum((unsigned char)p->text[p->pos]) || p->text[p->pos] == '_') {
            if (n + 1 >= sizeof(name)) {
                fail(p, at, "name too long");
                return;
            }
            name[n++] = p->text[p->pos++];
        }
        name[n] = '\0';
        if (strcmp(name, "min") == 0 || strcmp(name, "max") == 0) {
            call(p, name[1] == 'i' ? OP_MIN : OP_MAX, name);
            return;
        }
        for (unsigned i = 0; i < NVARS; i++) {
            if (strcmp(name, var_names[i]) == 0) {
                emit(p, OP_VAR, i, 0);
                return;
            }
        }
        fail(p, at, "unknown name '%s'", name);
        return;
    }
    if (c == '(') {
        p->pos++;
        expr(p);
        skip_space(p);
        if (p->failed)
            return;
        if (p->text[p->pos] != ')') {
            fail(p, at, "unclosed '('");
            return;
        }
        p->pos++;
        return;
    }
    if (c == '\0')
        fail(p, at, "unexpected end");
    else if (isprint((unsigned char)c))
        fail(p, at, "unexpected '%c'", c);
    else
        fail(p, at, "unexpected byte 0x%02x", (unsigned char)c);
}

/* Parentheses, function calls and unary minus nest; each level is one
 * more frame of recursion, so the depth is capped. */
static void unary(struct parser *p)
{
    skip_space(p);
    if (p->failed)
        return;
    if (p->text[p->pos] != '-') {
        primary(p);
        return;
    }
    if (++p->depth > FORMULA_MAX_DEPTH) {
        fail(p, p->pos, "nested too deeply (more than %d levels)", FORMULA_MAX_DEPTH);
        return;
    }
    p->pos++;
    unary(p);
    emit(p, OP_NEG, 0, 0);
    p->depth--;
}

static void term(struct parser *p)
{
    unary(p);
    for (;;) {
        skip_space(p);
        char c = p->text[p->pos];
        if (p->failed || (c != '*' && c != '/'))
            return;
        p->pos++;
        unary(p);
        emit(p, c == '*' ? OP_MUL : OP_DIV, 0, 0);
    }
}

static void expr(struct parser *p)
{
    if (++p->depth > FORMULA_MAX_DEPTH) {
        fail(p, p->pos, "nested too deeply (more than %d levels)", FORMULA_MAX_DEPTH);
        return;
    }
    term(p);
    for (;;) {
        skip_space(p);
        char c = p->text[p->pos];
        if (p->failed || (c != '+' && c != '-'))
            break;
        p->pos++;
        term(p);
        emit(p, c == '+' ? OP_ADD : OP_SUB, 0, 0);
    }
    p->depth--;
}

int idx_formula_compile(const char *text, struct idx_formula **out, char *err, size_t errlen)
{
    int r = -1;
    struct idx_formula *f = NULL;
    char dummy[8];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (text == NULL || out == NULL) {
        snprintf(err, errlen, "index_formula: missing");
        goto out;
    }
    size_t len = strnlen(text, FORMULA_MAX_LEN + 1);
    if (len > FORMULA_MAX_LEN) {
        snprintf(err, errlen, "index_formula: longer than %d characters", FORMULA_MAX_LEN);
        goto out;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        snprintf(err, errlen, "index_formula: out of memory");
        goto out;
    }
    struct parser p = {.text = text, .f = f, .err = err, .errlen = errlen};
    skip_space(&p);
    if (text[p.pos] == '\0') {
        snprintf(err, errlen, "index_formula: empty");
        goto out;
    }
    expr(&p);
    skip_space(&p);
    if (!p.failed && text[p.pos] != '\0')
        fail(&p, p.pos, "unexpected '%c'", isprint((unsigned char)text[p.pos]) ? text[p.pos] : '?');
    if (p.failed)
        goto out;
    f->max_stack = p.max_stack;
    *out = f;
    f = NULL;
    r = 0;
out:
    free(f);
    return r;
}

void idx_formula_free(struct idx_formula *f)
{
    free(f);
}

static double ratio(int64_t a, int64_t b, double if_zero)
{
    if (b <= 0)
        return if_zero;
    double v = (double)a / (double)b;
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

void idx_rates_of(const struct idx_components *c, struct idx_rates *out)
{
    out->infected_rate = ratio(c->infected, c->managed, 0);
    out->stale_rate = ratio(c->stale, c->managed, 0);
    out->coverage = ratio(c->managed, c->expected, 1);
    out->sharing_uptime = ratio(c->share_accepted, c->share_slots, 1);
}

static double var_value(unsigned v, const struct idx_components *c, const struct idx_rates *rt)
{
    switch (v) {
    case 0:
        return (double)c->managed;
    case 1:
        return (double)c->expected;
    case 2:
        return (double)c->infected;
    case 3:
        return (double)c->stale;
    case 4:
        return (double)c->c2_hosts;
    case 5:
        return (double)c->c2_hits;
    case 6:
        return (double)c->detections;
    case 7:
        return (double)c->families;
    case 8:
        return (double)c->open;
    case 9:
        return (double)c->resolved;
    case 10:
        return (double)c->share_slots;
    case 11:
        return (double)c->share_accepted;
    case 12:
        return rt->infected_rate;
    case 13:
        return rt->stale_rate;
    case 14:
        return rt->coverage;
    default:
        return rt->sharing_uptime;
    }
}

double idx_formula_eval(const struct idx_formula *f, const struct idx_components *c)
{
    if (f == NULL || c == NULL || f->n == 0)
        return 0;
    double st[FORMULA_MAX_OPS];
    size_t sp = 0;
    struct idx_rates rt;
    idx_rates_of(c, &rt);
    for (size_t i = 0; i < f->n; i++) {
        const struct insn *in = &f->code[i];
        if (in->op == OP_NUM) {
            st[sp++] = in->num;
            continue;
        }
        if (in->op == OP_VAR) {
            st[sp++] = var_value(in->var, c, &rt);
            continue;
        }
        if (in->op == OP_NEG) {
            st[sp - 1] = -st[sp - 1];
            continue;
        }
        double b = st[--sp], a = st[sp - 1], v;
        switch (in->op) {
        case OP_ADD:
            v = a + b;
            break;
        case OP_SUB:
            v = a - b;
            break;
        case OP_MUL:
            v = a * b;
            break;
        case OP_DIV:
            v = b == 0 ? 0 : a / b;
            break;
        case OP_MIN:
            v = a < b ? a : b;
            break;
        default:
            v = a > b ? a : b;
            break;
        }
        st[sp - 1] = isfinite(v) ? v : 0;
    }
    return sp == 1 && isfinite(st[0]) ? st[0] : 0;
}
