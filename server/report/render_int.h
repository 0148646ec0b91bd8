/*
 * What the three renderings of the quarterly report (pdf*.c, csv.c, xlsx.c)
 * share and nobody else needs: the rates of a set of components, the
 * Vietnamese words for a contact's status, local dates, UTF-8 cleaning of
 * text that came from agents and feeds, and the table model ("book") that
 * the CSV and the XLSX are both written from, so that the two files hold
 * the same tables, columns and figures.
 */
#ifndef KHIEN_REPORT_RENDER_INT_H
#define KHIEN_REPORT_RENDER_INT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "khx.h"
#include "quarterly.h"

/* What was done about a C&C contact, in the words the Ministry reads. */
static inline const char *rnd_status_vi(const char *status)
{
    if (strcmp(status, "new") == 0)
        return "Mới";
    if (strcmp(status, "acknowledged") == 0)
        return "Đã tiếp nhận";
    if (strcmp(status, "resolved") == 0)
        return "Đã xử lý";
    if (strcmp(status, "false_positive") == 0)
        return "Báo nhầm";
    return status;
}

static inline const char *rnd_roman(int quarter)
{
    static const char *const r[] = {"?", "I", "II", "III", "IV"};
    return quarter >= 1 && quarter <= 4 ? r[quarter] : r[0];
}

/* "IV/2026" for a quarter, "11/2026" for a month. */
static inline void rnd_period_label(const struct rpt_period *p, char *buf, size_t n)
{
    if (p->kind == RPT_QUARTER)
        snprintf(buf, n, "%s/%d", rnd_roman(p->num), p->year);
    else
        snprintf(buf, n, "%02d/%d", p->num, p->year);
}

/* Broken-down local time at `utc_offset` seconds east of UTC. */
static inline void rnd_local(int64_t t, int utc_offset, struct tm *tm)
{
    time_t lt = (time_t)(t + utc_offset);
    memset(tm, 0, sizeof(*tm));
    gmtime_r(&lt, tm);
}

/* Copies a C string into dst (n > 0), truncated and always terminated. */
static inline void rnd_copy(char *dst, size_t n, const char *src)
{
    size_t l = strnlen(src, n - 1);
    memcpy(dst, src, l);
    dst[l] = '\0';
}

/* "dd/mm/yyyy HH:MM" (with_time) or "dd/mm/yyyy" in local time; "" for 0. */
static inline void rnd_date(int64_t t, int utc_offset, int with_time, char *buf, size_t n)
{
    if (t <= 0) {
        snprintf(buf, n, "%s", "");
        return;
    }
    struct tm tm;
    char big[96];
    rnd_local(t, utc_offset, &tm);
    if (with_time)
        snprintf(big, sizeof(big), "%02d/%02d/%04d %02d:%02d", tm.tm_mday, tm.tm_mon + 1,
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min);
    else
        snprintf(big, sizeof(big), "%02d/%02d/%04d", tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900);
    rnd_copy(buf, n, big);
}

/* "UTC+07:00" */
static inline void rnd_offset(int utc_offset, char *buf, size_t n)
{
    int a = utc_offset < 0 ? -utc_offset : utc_offset;
    snprintf(buf, n, "UTC%c%02d:%02d", utc_offset < 0 ? '-' : '+', a / 3600, (a % 3600) / 60);
}

/* Copies text from agents and feeds into dst (at most dstlen - 1 bytes,
 * always terminated, never cutting a character): invalid UTF-8 becomes
 * U+FFFD; control characters, U+FFFE and U+FFFF (XML 1.0 forbids them,
 * Pango warns on them) become a space, or are dropped with RND_DROP_CTRL.
 * Newlines are kept with RND_KEEP_NL. */
#define RND_KEEP_NL   1
#define RND_DROP_CTRL 2
static inline void rnd_clean(const char *src, char *dst, size_t dstlen, int flags)
{
    int keep_nl = (flags & RND_KEEP_NL) != 0;
    const unsigned char *s = (const unsigned char *)src;
    size_t n = strlen(src), i = 0, o = 0;
    if (dstlen == 0)
        return;
    while (i < n) {
        uint32_t cp = 0;
        size_t l = khx_utf8_len(s + i, n - i, &cp);
        const char *rep = NULL;
        size_t rl = 0;
        if (l == 0) {
            rep = "\xEF\xBF\xBD", rl = 3, l = 1;
        } else if ((cp < 0x20 && !(keep_nl && cp == '\n')) || cp == 0x7F || cp == 0xFFFE ||
                   cp == 0xFFFF) {
            rep = " ", rl = (flags & RND_DROP_CTRL) ? 0 : 1;
        } else {
            rep = (const char *)s + i, rl = l;
        }
        if (o + rl >= dstlen)
            break;
        memcpy(dst + o, rep, rl);
        o += rl;
        i += l;
    }
    dst[o] = '\0';
}

/* ---- The table model of the CSV and the XLSX (built in csv.c). ---- */

enum rnd_kind {
    RND_NONE = 0, /* an empty cell (e.g. no previous quarter) */
    RND_STR,      /* text: s, or fmt when s is NULL */
    RND_INT,      /* i */
    RND_PCT,      /* d, a fraction 0..1: the CSV prints it in per cent, the XLSX styles it */
    RND_NUM,      /* d, printed with two decimals */
};

struct rnd_cell {
    enum rnd_kind k;
    int64_t i;
    double d;
    const char *s; /* points into the rpt_quarter, or NULL for fmt */
    char fmt[48];
};

static inline const char *rnd_cell_str(const struct rnd_cell *c)
{
    return c->s != NULL ? c->s : c->fmt;
}

#define RND_MAX_COLS 16

struct rnd_table {
    const char *sheet; /* the XLSX sheet's name (Vietnamese, at most 31 characters) */
    const char *title; /* the CSV's title line for the table */
    size_t ncols;
    const char *head[RND_MAX_COLS];
    size_t nrows;
    struct rnd_cell *cells; /* nrows * ncols, row by row */
};

#define RND_NTABLES 7

struct rnd_book {
    struct rnd_table t[RND_NTABLES];
    size_t n;
};

/* Builds the tables of q (summary, months, trend, agencies, families, C&C,
 * detections). The book points into q: q must outlive it. */
int rpt_book_build(const struct rpt_quarter *q, struct rnd_book *b, char *err, size_t errlen);
void rpt_book_free(struct rnd_book *b);

/* Output limits: a report bigger than this is refused (error, not crash). */
#define RND_MAX_OUTPUT ((size_t)512 * 1024 * 1024)

/* ---- The PDF's drawing context, shared by pdf.c (document and
 * sections) and pdf_draw.c (text, tables and charts). ---- */
#ifdef KHIEN_RENDER_PDF
#include <cairo.h>
#include <pango/pangocairo.h>

/* A4 portrait in points, and the margins of the text area. */
#define PDF_W      595.276
#define PDF_H      841.890
#define PDF_LEFT   56.0
#define PDF_RIGHT  (PDF_W - 42.0)
#define PDF_TOP    42.0
#define PDF_BOTTOM (PDF_H - 48.0)

enum pdf_font { PF_BODY, PF_BOLD, PF_ITALIC, PF_TITLE, PF_HEAD, PF_CELL, PF_CELLB, PF_MONO, PF_N };

struct pdf {
    cairo_surface_t *surf;
    cairo_t *cr;
    PangoFontMap *fm;
    PangoContext *ctx;
    PangoFontDescription *font[PF_N];
    PangoLayout *lay;                /* free text */
    PangoLayout *cell[RND_MAX_COLS]; /* one per table column: measured, then drawn as is */
    int draw;                        /* 0: the first pass, which only counts pages */
    int page;                        /* 1-based */
    int npages;                      /* known in the second pass */
    double y;                        /* where the next block starts */
    const struct rpt_quarter *q;
    char tmp[1024];
};

enum pdf_align { PA_LEFT, PA_RIGHT, PA_CENTER };

struct pdf_col {
    const char *head;
    double w; /* points */
    enum pdf_align align;
};

/* Fills cell[] (pointers into q or into buf[c]) and indent[] (points) for
 * one row of a table. */
#define PDF_CELL_BUF 512
typedef void (*pdf_row_fn)(void *ctx, size_t row, const char *cell[], char (*buf)[PDF_CELL_BUF],
                           double indent[]);

int rpt_pdf_setup(struct pdf *p, cairo_surface_t *surf);
void rpt_pdf_teardown(struct pdf *p);
/* Ends the page (footer "Trang X/Y") and starts the next. */
void rpt_pdf_new_page(struct pdf *p);
void rpt_pdf_footer(struct pdf *p);
/* Starts a new page unless `need` points are left. */
void rpt_pdf_ensure(struct pdf *p, double need);
/* Free text at (x, y) in width w, wrapped; returns its height. */
double rpt_pdf_text_at(struct pdf *p, double x, double y, double w, enum pdf_font f,
                       enum pdf_align al, const char *text);
/* A paragraph across the text area at p->y; moves p->y below it. */
void rpt_pdf_para(struct pdf *p, enum pdf_font f, enum pdf_align al, const char *text);
void rpt_pdf_table(struct pdf *p, const struct pdf_col *cols, size_t ncols, size_t nrows,
                   pdf_row_fn fn, void *ctx);
/* Charts in the box (x, y, w, h); NAN values are left out. */
void rpt_pdf_line_chart(struct pdf *p, double x, double y, double w, double h, const char *title,
                        const char *const *labels, const double *v, size_t n);
void rpt_pdf_bar_chart(struct pdf *p, double x, double y, double w, double h, const char *title,
                       const char *const *labels, const double *v, size_t n);

/* Vietnamese number formats: "1.234", "12,34", "12,5%". */
void rpt_pdf_int(int64_t v, char *buf, size_t n);
void rpt_pdf_dec(double v, int decimals, char *buf, size_t n);
void rpt_pdf_pct(double fraction, char *buf, size_t n);
#endif

#endif
