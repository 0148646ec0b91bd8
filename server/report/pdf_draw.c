/*
 * Drawing primitives of the quarterly report's PDF (pdf.c holds the
 * document): fonts, pages with the "Trang X/Y" footer, wrapped text,
 * tables that break across pages, and the two charts.
 *
 * Tables: every cell is laid out by Pango in its column's width (wrapped at
 * words, or inside a word when one is too long, and ellipsized past
 * PDF_CELL_LINES lines so no row can outgrow a page); the row is as tall as
 * its tallest cell. A row that does not fit in what is left of the page
 * goes whole to the next page, under a repeated header row: rows are never
 * cut. Each column has its own PangoLayout, so a cell is laid out once to
 * measure it and drawn from the same layout, and no layout is created per
 * cell.
 *
 * The document is drawn twice (pdf.c): the first pass draws nothing and
 * only counts pages, so that the second can print "Trang X/Y".
 */
#define KHIEN_RENDER_PDF 1

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "render_int.h"

#if defined(__SANITIZE_ADDRESS__)
/* Under LeakSanitizer (the sanitizer build of the tests): fontconfig keeps
 * its configuration cache for the life of the process on purpose, which
 * LeakSanitizer would report at exit from every program that drew a PDF. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig.so\n";
}
#endif

#define PDF_PAD        2.5 /* inside a table cell */
#define PDF_CELL_LINES 8   /* a cell's text is ellipsized past this many lines */

static const char *const FONT_SPEC[PF_N] = {
    [PF_BODY] = "DejaVu Sans 9",           [PF_BOLD] = "DejaVu Sans Bold 9",
    [PF_ITALIC] = "DejaVu Sans Oblique 8", [PF_TITLE] = "DejaVu Sans Bold 13",
    [PF_HEAD] = "DejaVu Sans Bold 10.5",   [PF_CELL] = "DejaVu Sans 6.5",
    [PF_CELLB] = "DejaVu Sans Bold 6.5",   [PF_MONO] = "DejaVu Sans Mono 7.5",
};

int rpt_pdf_setup(struct pdf *p, cairo_surface_t *surf)
{
    p->surf = surf;
    p->cr = cairo_create(surf);
    if (cairo_status(p->cr) != CAIRO_STATUS_SUCCESS)
        return -1;
    /* A font map of our own, freed with the document, rather than the
     * process-wide default one: rendering may run on a job thread. */
    p->fm = pango_cairo_font_map_new();
    if (p->fm == NULL)
        return -1;
    /* Font sizes are in points and the PDF's unit is the point: 72 dpi
     * (Pango's default of 96 would draw everything a third larger). */
    pango_cairo_font_map_set_resolution(PANGO_CAIRO_FONT_MAP(p->fm), 72.0);
    p->ctx = pango_font_map_create_context(p->fm);
    pango_cairo_update_context(p->cr, p->ctx);
    for (int i = 0; i < PF_N; i++)
        p->font[i] = pango_font_description_from_string(FONT_SPEC[i]);
    p->lay = pango_layout_new(p->ctx);
    pango_layout_set_wrap(p->lay, PANGO_WRAP_WORD_CHAR);
    for (size_t i = 0; i < RND_MAX_COLS; i++) {
        p->cell[i] = pango_layout_new(p->ctx);
        pango_layout_set_wrap(p->cell[i], PANGO_WRAP_WORD_CHAR);
        pango_layout_set_ellipsize(p->cell[i], PANGO_ELLIPSIZE_END);
        pango_layout_set_height(p->cell[i], -PDF_CELL_LINES);
    }
    p->page = 1;
    p->y = PDF_TOP;
    return 0;
}

void rpt_pdf_teardown(struct pdf *p)
{
    for (size_t i = 0; i < RND_MAX_COLS; i++)
        if (p->cell[i] != NULL)
            g_object_unref(p->cell[i]);
    if (p->lay != NULL)
        g_object_unref(p->lay);
    for (int i = 0; i < PF_N; i++)
        if (p->font[i] != NULL) {
            pango_font_description_free(p->font[i]);
            p->font[i] = NULL;
        }
    if (p->ctx != NULL)
        g_object_unref(p->ctx);
    if (p->fm != NULL)
        g_object_unref(p->fm);
    if (p->cr != NULL)
        cairo_destroy(p->cr);
    memset(p->cell, 0, sizeof(p->cell));
    p->lay = NULL, p->ctx = NULL, p->fm = NULL, p->cr = NULL;
}

/* ---- Numbers ---- */

/* Groups the digits of an unsigned decimal string by threes with dots. */
static void group(const char *digits, char *buf, size_t n)
{
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 2 < n)
            buf[o++] = '.';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

void rpt_pdf_int(int64_t v, char *buf, size_t n)
{
    char d[32], g[48];
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    snprintf(d, sizeof(d), "%llu", (unsigned long long)a);
    group(d, g, sizeof(g));
    snprintf(buf, n, "%s%s", v < 0 ? "-" : "", g);
}

void rpt_pdf_dec(double v, int decimals, char *buf, size_t n)
{
    if (!isfinite(v)) {
        snprintf(buf, n, "—");
        return;
    }
    char d[64], g[80];
    snprintf(d, sizeof(d), "%.*f", decimals, fabs(v));
    char *dot = strchr(d, '.');
    if (dot != NULL)
        *dot = '\0';
    group(d, g, sizeof(g));
    int neg = v < 0 && strpbrk(dot != NULL ? d : d, "123456789") != NULL;
    if (!neg && v < 0 && dot != NULL && strpbrk(dot + 1, "123456789") != NULL)
        neg = 1;
    snprintf(buf, n, "%s%s%s%s", neg ? "-" : "", g, dot != NULL ? "," : "",
             dot != NULL ? dot + 1 : "");
}

void rpt_pdf_pct(double fraction, char *buf, size_t n)
{
    char d[64];
    rpt_pdf_dec(fraction * 100.0, 1, d, sizeof(d));
    snprintf(buf, n, "%s%%", d);
}

/* ---- Pages and text ---- */

void rpt_pdf_footer(struct pdf *p)
{
    if (!p->draw)
        return;
    char t[64], lab[32];
    snprintf(t, sizeof(t), "Trang %d/%d", p->page, p->npages);
    cairo_set_source_rgb(p->cr, 0.5, 0.5, 0.5);
    cairo_set_line_width(p->cr, 0.5);
    cairo_move_to(p->cr, PDF_LEFT, PDF_BOTTOM + 10);
    cairo_line_to(p->cr, PDF_RIGHT, PDF_BOTTOM + 10);
    cairo_stroke(p->cr);
    cairo_set_source_rgb(p->cr, 0, 0, 0);
    rpt_pdf_text_at(p, PDF_LEFT, PDF_BOTTOM + 14, PDF_RIGHT - PDF_LEFT, PF_ITALIC, PA_CENTER, t);
    rnd_period_label(&p->q->period, lab, sizeof(lab));
    snprintf(p->tmp, sizeof(p->tmp), "Khiên — %s", lab);
    rpt_pdf_text_at(p, PDF_LEFT, PDF_BOTTOM + 14, 150, PF_ITALIC, PA_LEFT, p->tmp);
}

void rpt_pdf_new_page(struct pdf *p)
{
    rpt_pdf_footer(p);
    if (p->draw)
        cairo_show_page(p->cr);
    p->page++;
    p->y = PDF_TOP;
}

void rpt_pdf_ensure(struct pdf *p, double need)
{
    if (p->y + need > PDF_BOTTOM && p->y > PDF_TOP)
        rpt_pdf_new_page(p);
}

static PangoAlignment pango_al(enum pdf_align al)
{
    return al == PA_RIGHT    ? PANGO_ALIGN_RIGHT
           : al == PA_CENTER ? PANGO_ALIGN_CENTER
                             : PANGO_ALIGN_LEFT;
}

double rpt_pdf_text_at(struct pdf *p, double x, double y, double w, enum pdf_font f,
                       enum pdf_align al, const char *text)
{
    char clean[2048];
    rnd_clean(text, clean, sizeof(clean), RND_KEEP_NL);
    pango_layout_set_font_description(p->lay, p->font[f]);
    pango_layout_set_width(p->lay, (int)(w * PANGO_SCALE));
    pango_layout_set_alignment(p->lay, pango_al(al));
    pango_layout_set_text(p->lay, clean, -1);
    int lw, lh;
    pango_layout_get_size(p->lay, &lw, &lh);
    if (p->draw) {
        cairo_move_to(p->cr, x, y);
        pango_cairo_show_layout(p->cr, p->lay);
    }
    return (double)lh / PANGO_SCALE;
}

void rpt_pdf_para(struct pdf *p, enum pdf_font f, enum pdf_align al, const char *text)
{
    /* Measure first so that a paragraph is never cut by the page's end. */
    int saved = p->draw;
    p->draw = 0;
    double h = rpt_pdf_text_at(p, PDF_LEFT, p->y, PDF_RIGHT - PDF_LEFT, f, al, text);
    p->draw = saved;
    rpt_pdf_ensure(p, h);
    h = rpt_pdf_text_at(p, PDF_LEFT, p->y, PDF_RIGHT - PDF_LEFT, f, al, text);
    p->y += h + 2;
}

/* ---- Tables ---- */

/* Lays out one row in the column layouts; returns its height. */
static double row_layout(struct pdf *p, const struct pdf_col *cols, size_t ncols,
                         const char *const *cell, const double *indent, enum pdf_font f)
{
    double h = 0;
    char clean[PDF_CELL_BUF * 2];
    for (size_t c = 0; c < ncols; c++) {
        PangoLayout *l = p->cell[c];
        rnd_clean(cell[c] != NULL ? cell[c] : "", clean, sizeof(clean), RND_KEEP_NL);
        pango_layout_set_font_description(l, p->font[f]);
        double w = cols[c].w - 2 * PDF_PAD - indent[c];
        pango_layout_set_width(l, (int)((w > 4 ? w : 4) * PANGO_SCALE));
        pango_layout_set_alignment(l, pango_al(cols[c].align));
        pango_layout_set_text(l, clean, -1);
        int lw, lh;
        pango_layout_get_size(l, &lw, &lh);
        double ch = (double)lh / PANGO_SCALE + 2 * PDF_PAD;
        if (ch > h)
            h = ch;
    }
    return h;
}

static void row_draw(struct pdf *p, const struct pdf_col *cols, size_t ncols, const double *indent,
                     double h, int shade)
{
    if (!p->draw)
        return;
    double x = PDF_LEFT, total = 0;
    for (size_t c = 0; c < ncols; c++)
        total += cols[c].w;
    if (shade != 0) {
        cairo_set_source_rgb(p->cr, shade == 2 ? 0.85 : 0.95, shade == 2 ? 0.88 : 0.95,
                             shade == 2 ? 0.93 : 0.95);
        cairo_rectangle(p->cr, x, p->y, total, h);
        cairo_fill(p->cr);
    }
    cairo_set_source_rgb(p->cr, 0, 0, 0);
    for (size_t c = 0; c < ncols; c++) {
        cairo_move_to(p->cr, x + PDF_PAD + indent[c], p->y + PDF_PAD);
        pango_cairo_show_layout(p->cr, p->cell[c]);
        x += cols[c].w;
    }
    /* The row's grid: its box and the lines between its cells. */
    cairo_set_source_rgb(p->cr, 0.45, 0.45, 0.45);
    cairo_set_line_width(p->cr, 0.4);
    cairo_rectangle(p->cr, PDF_LEFT, p->y, total, h);
    x = PDF_LEFT;
    for (size_t c = 0; c + 1 < ncols; c++) {
        x += cols[c].w;
        cairo_move_to(p->cr, x, p->y);
        cairo_line_to(p->cr, x, p->y + h);
    }
    cairo_stroke(p->cr);
    cairo_set_source_rgb(p->cr, 0, 0, 0);
}

static double header_row(struct pdf *p, const struct pdf_col *cols, size_t ncols)
{
    const char *cell[RND_MAX_COLS];
    double indent[RND_MAX_COLS] = {0};
    for (size_t c = 0; c < ncols; c++)
        cell[c] = cols[c].head;
    double h = row_layout(p, cols, ncols, cell, indent, PF_CELLB);
    row_draw(p, cols, ncols, indent, h, 2);
    p->y += h;
    return h;
}

void rpt_pdf_table(struct pdf *p, const struct pdf_col *cols, size_t ncols, size_t nrows,
                   pdf_row_fn fn, void *ctx)
{
    if (ncols > RND_MAX_COLS)
        ncols = RND_MAX_COLS;
    const char *cell[RND_MAX_COLS];
    char buf[RND_MAX_COLS][PDF_CELL_BUF];
    double indent[RND_MAX_COLS];
    /* The header and at least one row stay together. */
    rpt_pdf_ensure(p, 40);
    header_row(p, cols, ncols);
    for (size_t r = 0; r < nrows; r++) {
        memset(indent, 0, sizeof(indent));
        for (size_t c = 0; c < ncols; c++)
            cell[c] = NULL, buf[c][0] = '\0';
        fn(ctx, r, cell, buf, indent);
        double h = row_layout(p, cols, ncols, cell, indent, PF_CELL);
        if (p->y + h > PDF_BOTTOM) {
            rpt_pdf_new_page(p);
            header_row(p, cols, ncols);
            /* The header was laid out in the same layouts: lay the row out
             * again before drawing it. */
            h = row_layout(p, cols, ncols, cell, indent, PF_CELL);
        }
        row_draw(p, cols, ncols, indent, h, r % 2 == 1);
        p->y += h;
    }
    p->y += 8;
}

/* ---- Charts ---- */

/* The smallest of 1, 2, 5 x 10^k at or above v (v > 0). */
static double nice_ceil(double v)
{
    double e = pow(10.0, floor(log10(v)));
    double m = v / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * e;
}

/* Axes, grid and tick labels; returns the scale's maximum and the plot
 * area in px/py/pw/ph. */
static double axes(struct pdf *p, double x, double y, double w, double h, const char *title,
                   const char *const *labels, const double *v, size_t n, double *px, double *py,
                   double *pw, double *ph)
{
    double max = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]) && v[i] > max)
            max = v[i];
    max = nice_ceil(max > 1 ? max * 1.1 : 1.0);
    rpt_pdf_text_at(p, x, y, w, PF_CELLB, PA_CENTER, title);
    *px = x + 30, *py = y + 16, *pw = w - 36, *ph = h - 16 - 18;
    char t[32];
    for (int k = 0; k <= 4; k++) {
        double val = max * k / 4.0, yy = *py + *ph - *ph * k / 4.0;
        rpt_pdf_dec(val, max >= 10 ? 0 : 1, t, sizeof(t));
        rpt_pdf_text_at(p, x, yy - 4, 27, PF_CELL, PA_RIGHT, t);
        if (p->draw) {
            cairo_set_source_rgb(p->cr, 0.85, 0.85, 0.85);
            cairo_set_line_width(p->cr, 0.4);
            cairo_move_to(p->cr, *px, yy);
            cairo_line_to(p->cr, *px + *pw, yy);
            cairo_stroke(p->cr);
        }
    }
    if (p->draw) {
        cairo_set_source_rgb(p->cr, 0, 0, 0);
        cairo_set_line_width(p->cr, 0.8);
        cairo_move_to(p->cr, *px, *py);
        cairo_line_to(p->cr, *px, *py + *ph);
        cairo_line_to(p->cr, *px + *pw, *py + *ph);
        cairo_stroke(p->cr);
    }
    double slot = n > 0 ? *pw / (double)n : *pw;
    for (size_t i = 0; i < n; i++)
        rpt_pdf_text_at(p, *px + slot * (double)i, *py + *ph + 3, slot, PF_CELL, PA_CENTER,
                        labels[i]);
    return max;
}

void rpt_pdf_line_chart(struct pdf *p, double x, double y, double w, double h, const char *title,
                        const char *const *labels, const double *v, size_t n)
{
    double px, py, pw, ph;
    double max = axes(p, x, y, w, h, title, labels, v, n, &px, &py, &pw, &ph);
    double slot = n > 0 ? pw / (double)n : pw;
    char t[32];
    int started = 0;
    if (p->draw) {
        cairo_set_source_rgb(p->cr, 0.75, 0.1, 0.1);
        cairo_set_line_width(p->cr, 1.4);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            started = 0;
            continue;
        }
        double cx = px + slot * ((double)i + 0.5), cy = py + ph - ph * v[i] / max;
        if (p->draw) {
            if (started)
                cairo_line_to(p->cr, cx, cy);
            else
                cairo_move_to(p->cr, cx, cy);
        }
        started = 1;
    }
    if (p->draw)
        cairo_stroke(p->cr);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        double cx = px + slot * ((double)i + 0.5), cy = py + ph - ph * v[i] / max;
        if (p->draw) {
            cairo_set_source_rgb(p->cr, 0.75, 0.1, 0.1);
            cairo_arc(p->cr, cx, cy, 2.2, 0, 2 * M_PI);
            cairo_fill(p->cr);
            cairo_set_source_rgb(p->cr, 0, 0, 0);
        }
        rpt_pdf_dec(v[i], 2, t, sizeof(t));
        rpt_pdf_text_at(p, cx - slot / 2, cy - 11, slot, PF_CELL, PA_CENTER, t);
    }
}

void rpt_pdf_bar_chart(struct pdf *p, double x, double y, double w, double h, const char *title,
                       const char *const *labels, const double *v, size_t n)
{
    double px, py, pw, ph;
    double max = axes(p, x, y, w, h, title, labels, v, n, &px, &py, &pw, &ph);
    double slot = n > 0 ? pw / (double)n : pw;
    char t[32];
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        double bh = ph * (v[i] > 0 ? v[i] : 0) / max;
        double bx = px + slot * (double)i + slot * 0.2;
        if (p->draw) {
            cairo_set_source_rgb(p->cr, 0.2, 0.4, 0.7);
            cairo_rectangle(p->cr, bx, py + ph - bh, slot * 0.6, bh);
            cairo_fill(p->cr);
            cairo_set_source_rgb(p->cr, 0, 0, 0);
        }
        rpt_pdf_dec(v[i], 2, t, sizeof(t));
        rpt_pdf_text_at(p, px + slot * (double)i, py + ph - bh - 11, slot, PF_CELL, PA_CENTER, t);
    }
}
