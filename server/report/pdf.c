/*
 * The quarterly report to the Ministry as a PDF in Vietnamese, A4 portrait,
 * in the form of a Vietnamese state report: the organisation and the
 * national motto at the top, the title with the quarter in Roman numerals,
 * six sections (coverage; index and components with two charts; top
 * families; agencies; C&C contacts and what was done; detections) and the
 * signature block. Text is DejaVu Sans through Pango and fontconfig; Cairo
 * embeds the subset fonts it used. Section titles are bilingual; the
 * Vietnamese tables keep Vietnamese headers (the English is in the CSV and
 * XLSX headers and in docs/internals/report-rendering.md).
 *
 * The document is drawn twice with the same code: once to count pages
 * (nothing is drawn, only measured), then for real with "Trang X/Y" in each
 * footer. Primitives are in pdf_draw.c.
 */
#define KHIEN_RENDER_PDF 1

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cairo-pdf.h>

#include "khx.h"
#include "render_int.h"

/* ---- Header, title and signature ---- */

static void header_block(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    double w = PDF_RIGHT - PDF_LEFT, lw = w * 0.42, rx = PDF_LEFT + w * 0.44, rw = w * 0.56;
    double y = p->y;
    double hl = rpt_pdf_text_at(p, PDF_LEFT, y, lw, PF_BOLD, PA_CENTER, q->org_name);
    snprintf(p->tmp, sizeof(p->tmp), "Mã đơn vị: %s", q->org_id);
    hl += rpt_pdf_text_at(p, PDF_LEFT, y + hl, lw, PF_BODY, PA_CENTER, p->tmp);
    double hr =
        rpt_pdf_text_at(p, rx, y, rw, PF_BOLD, PA_CENTER, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM");
    double h2 =
        rpt_pdf_text_at(p, rx, y + hr, rw, PF_BOLD, PA_CENTER, "Độc lập - Tự do - Hạnh phúc");
    if (p->draw) {
        /* The short rule under the motto. */
        cairo_set_line_width(p->cr, 0.6);
        cairo_move_to(p->cr, rx + rw * 0.25, y + hr + h2 + 1);
        cairo_line_to(p->cr, rx + rw * 0.75, y + hr + h2 + 1);
        cairo_stroke(p->cr);
    }
    hr += h2 + 4;
    struct tm tm;
    rnd_local(q->generated_at, q->utc_offset, &tm);
    snprintf(p->tmp, sizeof(p->tmp), "%s%sngày %02d tháng %02d năm %04d", q->place,
             q->place[0] != '\0' ? ", " : "", tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900);
    hr += rpt_pdf_text_at(p, rx, y + hr, rw, PF_ITALIC, PA_CENTER, p->tmp);
    p->y = y + (hl > hr ? hl : hr) + 16;
}

static void title_block(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    char lab[32], d[32], off[16];
    rnd_period_label(&q->period, lab, sizeof(lab));
    snprintf(p->tmp, sizeof(p->tmp), "BÁO CÁO TÌNH HÌNH LÂY NHIỄM MÃ ĐỘC QUÝ %s", lab);
    rpt_pdf_para(p, PF_TITLE, PA_CENTER, p->tmp);
    snprintf(p->tmp, sizeof(p->tmp), "Malware infection report, quarter %s", lab);
    rpt_pdf_para(p, PF_ITALIC, PA_CENTER, p->tmp);
    if (q->scope_code[0] != '\0')
        snprintf(p->tmp, sizeof(p->tmp), "Phạm vi / Scope: %s (%s) và các đơn vị trực thuộc",
                 q->scope_name, q->scope_code);
    else
        snprintf(p->tmp, sizeof(p->tmp), "Phạm vi / Scope: toàn tỉnh / whole province");
    rpt_pdf_para(p, PF_BODY, PA_CENTER, p->tmp);
    rnd_date(q->generated_at, q->utc_offset, 1, d, sizeof(d));
    rnd_offset(q->utc_offset, off, sizeof(off));
    snprintf(p->tmp, sizeof(p->tmp), "Lập lúc / Generated: %s (%s)%s%s", d, off,
             q->generated_by[0] != '\0' ? " — " : "", q->generated_by);
    rpt_pdf_para(p, PF_BODY, PA_CENTER, p->tmp);
    rnd_date(q->deadline, q->utc_offset, 0, d, sizeof(d));
    snprintf(p->tmp, sizeof(p->tmp), "Hạn nộp / Due: trước ngày %s", d);
    rpt_pdf_para(p, PF_BODY, PA_CENTER, p->tmp);
    p->y += 8;
}

static void section(struct pdf *p, const char *title)
{
    /* A heading is never the last thing on a page. */
    rpt_pdf_ensure(p, 80);
    p->y += 4;
    rpt_pdf_para(p, PF_HEAD, PA_LEFT, title);
    p->y += 2;
}

static void signature_block(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    rpt_pdf_ensure(p, 130);
    p->y += 10;
    double w = PDF_RIGHT - PDF_LEFT, half = w / 2;
    struct tm tm;
    rnd_local(q->generated_at, q->utc_offset, &tm);
    snprintf(p->tmp, sizeof(p->tmp), "%s%sngày %02d tháng %02d năm %04d", q->place,
             q->place[0] != '\0' ? ", " : "", tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900);
    p->y += rpt_pdf_text_at(p, PDF_LEFT + half, p->y, half, PF_ITALIC, PA_CENTER, p->tmp) + 4;
    double y = p->y;
    rpt_pdf_text_at(p, PDF_LEFT, y, half, PF_BOLD, PA_CENTER, "NGƯỜI LẬP BÁO CÁO");
    rpt_pdf_text_at(p, PDF_LEFT + half, y, half, PF_BOLD, PA_CENTER, "THỦ TRƯỞNG ĐƠN VỊ");
    y += 13;
    rpt_pdf_text_at(p, PDF_LEFT, y, half, PF_ITALIC, PA_CENTER, "(Ký, ghi rõ họ tên)");
    rpt_pdf_text_at(p, PDF_LEFT + half, y, half, PF_ITALIC, PA_CENTER,
                    "(Ký, ghi rõ họ tên, đóng dấu)");
    y += 70;
    rpt_pdf_text_at(p, PDF_LEFT, y, half, PF_BOLD, PA_CENTER, q->generated_by);
    p->y = y + 16;
}

/* ---- 1. Coverage, 2. Index ---- */

struct kv {
    const char *k[16];
    char v[16][64];
    char r[16][32];
    size_t n;
};

static void kv_row(void *ctx, size_t row, const char *cell[], char (*buf)[PDF_CELL_BUF],
                   double indent[])
{
    (void)buf, (void)indent;
    struct kv *kv = ctx;
    cell[0] = kv->k[row];
    cell[1] = kv->v[row];
    cell[2] = kv->r[row];
}

static void kv_add(struct kv *kv, const char *k, int64_t v, double rate)
{
    kv->k[kv->n] = k;
    rpt_pdf_int(v, kv->v[kv->n], sizeof(kv->v[0]));
    if (isfinite(rate))
        rpt_pdf_pct(rate, kv->r[kv->n], sizeof(kv->r[0]));
    else
        kv->r[kv->n][0] = '\0';
    kv->n++;
}

static void coverage(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    struct idx_rates r;
    idx_rates_of(&q->total, &r);
    section(p, "1. Độ bao phủ / Coverage");
    char m[32], e[32], c[32];
    rpt_pdf_int(q->total.managed, m, sizeof(m));
    rpt_pdf_int(q->total.expected, e, sizeof(e));
    rpt_pdf_pct(r.coverage, c, sizeof(c));
    snprintf(p->tmp, sizeof(p->tmp),
             "Số máy được quản lý: %s / %s máy theo kế hoạch, đạt %s (managed / expected).", m, e,
             c);
    rpt_pdf_para(p, PF_BODY, PA_LEFT, p->tmp);
    snprintf(p->tmp, sizeof(p->tmp), "Số đơn vị trong phạm vi báo cáo: %zu.", q->nagencies);
    rpt_pdf_para(p, PF_BODY, PA_LEFT, p->tmp);
}

struct month_ctx {
    const struct idx_point *pt;
};

static void month_row(void *ctx, size_t row, const char *cell[], char (*buf)[PDF_CELL_BUF],
                      double indent[])
{
    (void)indent;
    const struct idx_point *pt = &((struct month_ctx *)ctx)->pt[row];
    struct idx_rates r;
    idx_rates_of(&pt->c, &r);
    rnd_period_label(&pt->period, buf[0], PDF_CELL_BUF);
    rpt_pdf_int(pt->c.managed, buf[1], PDF_CELL_BUF);
    rpt_pdf_int(pt->c.infected, buf[2], PDF_CELL_BUF);
    rpt_pdf_pct(r.infected_rate, buf[3], PDF_CELL_BUF);
    rpt_pdf_int(pt->c.stale, buf[4], PDF_CELL_BUF);
    rpt_pdf_int(pt->c.c2_hosts, buf[5], PDF_CELL_BUF);
    rpt_pdf_int(pt->c.detections, buf[6], PDF_CELL_BUF);
    rpt_pdf_int(pt->c.families, buf[7], PDF_CELL_BUF);
    rpt_pdf_pct(r.sharing_uptime, buf[8], PDF_CELL_BUF);
    rpt_pdf_dec(pt->index, 2, buf[9], PDF_CELL_BUF);
    for (int i = 0; i < 10; i++)
        cell[i] = buf[i];
}

static void index_section(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    struct idx_rates r;
    idx_rates_of(&q->total, &r);
    section(p, "2. Chỉ số lây nhiễm mã độc và các thành phần / Infection index and components");
    char idx[32];
    rpt_pdf_dec(q->index, 2, idx, sizeof(idx));
    snprintf(p->tmp, sizeof(p->tmp), "Chỉ số lây nhiễm của quý / Index of the quarter: %s", idx);
    rpt_pdf_para(p, PF_BOLD, PA_LEFT, p->tmp);

    struct kv kv = {0};
    kv_add(&kv, "(a) Máy nhiễm (phát hiện chưa xử lý hoặc kết nối C&C) / Infected machines",
           q->total.infected, r.infected_rate);
    kv_add(&kv, "(b) Lượt phát hiện trong quý / Detections", q->total.detections, NAN);
    kv_add(&kv, "(b) Họ mã độc khác nhau / Distinct families", q->total.families, NAN);
    kv_add(&kv, "(c) Máy chưa cập nhật CSDL / Machines with an old database", q->total.stale,
           r.stale_rate);
    kv_add(&kv, "(d) Địa chỉ IP liên lạc C&C / Addresses seen contacting C&C", q->total.c2_hosts,
           NAN);
    kv_add(&kv, "(d) Lượt kết nối C&C / C&C hits", q->total.c2_hits, NAN);
    kv_add(&kv, "(e) Lượt chia sẻ thành công / Sharing submissions accepted",
           q->total.share_accepted, r.sharing_uptime);
    kv_add(&kv, "Lượt chia sẻ theo lịch / Sharing submissions scheduled", q->total.share_slots,
           NAN);
    kv_add(&kv, "Máy được quản lý / Managed machines", q->total.managed, r.coverage);
    static const struct pdf_col kcols[] = {
        {"Thành phần / Component", 330, PA_LEFT},
        {"Số lượng / Count", 80, PA_RIGHT},
        {"Tỷ lệ / Rate", 87.276, PA_RIGHT},
    };
    rpt_pdf_table(p, kcols, 3, kv.n, kv_row, &kv);
    snprintf(p->tmp, sizeof(p->tmp), "Công thức / Formula: %s", q->formula);
    rpt_pdf_para(p, PF_MONO, PA_LEFT, p->tmp);
    p->y += 6;

    static const struct pdf_col mcols[] = {
        {"Tháng", 52, PA_LEFT},        {"Máy quản lý", 50, PA_RIGHT},   {"Máy nhiễm", 46, PA_RIGHT},
        {"Tỷ lệ nhiễm", 46, PA_RIGHT}, {"Chưa cập nhật", 50, PA_RIGHT}, {"IP C&C", 44, PA_RIGHT},
        {"Phát hiện", 50, PA_RIGHT},   {"Họ mã độc", 46, PA_RIGHT},     {"Chia sẻ", 50, PA_RIGHT},
        {"Chỉ số", 63.276, PA_RIGHT},
    };
    struct month_ctx mc = {q->months};
    rpt_pdf_table(p, mcols, 10, 3, month_row, &mc);

    /* The charts: the trend of the quarters (line) and the three months
     * (bars), side by side. */
    double h = 170;
    rpt_pdf_ensure(p, h + 10);
    size_t nt = q->ntrend > 8 ? 8 : q->ntrend;
    char tl[8][16], ml[3][16];
    const char *tlab[8], *mlab[3];
    double tv[8], mv[3];
    for (size_t i = 0; i < nt; i++) {
        rnd_period_label(&q->trend[i].period, tl[i], sizeof(tl[i]));
        tlab[i] = tl[i];
        tv[i] = q->trend[i].index;
    }
    for (size_t i = 0; i < 3; i++) {
        rnd_period_label(&q->months[i].period, ml[i], sizeof(ml[i]));
        mlab[i] = ml[i];
        mv[i] = q->months[i].index;
    }
    double w = PDF_RIGHT - PDF_LEFT;
    rpt_pdf_line_chart(p, PDF_LEFT, p->y, w * 0.6 - 8, h, "Chỉ số theo quý / Index by quarter",
                       tlab, tv, nt);
    rpt_pdf_bar_chart(p, PDF_LEFT + w * 0.6 + 8, p->y, w * 0.4 - 8, h,
                      "Chỉ số theo tháng / Index by month", mlab, mv, 3);
    p->y += h + 10;
}

/* ---- 3. Families, 4. Agencies ---- */

static void family_row(void *ctx, size_t row, const char *cell[], char (*buf)[PDF_CELL_BUF],
                       double indent[])
{
    (void)indent;
    const struct rpt_family *f = &((const struct rpt_quarter *)ctx)->families[row];
    snprintf(buf[0], PDF_CELL_BUF, "%zu", row + 1);
    cell[0] = buf[0];
    cell[1] = f->name;
    rpt_pdf_int(f->detections, buf[2], PDF_CELL_BUF);
    rpt_pdf_int(f->machines, buf[3], PDF_CELL_BUF);
    rpt_pdf_int(f->agencies, buf[4], PDF_CELL_BUF);
    cell[2] = buf[2], cell[3] = buf[3], cell[4] = buf[4];
}

static void agency_row(void *ctx, size_t row, const char *cell[], char (*buf)[PDF_CELL_BUF],
                       double indent[])
{
    const struct rpt_agency_line *a = &((const struct rpt_quarter *)ctx)->agencies[row];
    struct idx_rates r;
    idx_rates_of(&a->c, &r);
    cell[0] = a->code;
    cell[1] = a->name;
    indent[1] = 6.0 * (a->depth < 0 ? 0 : a->depth > 6 ? 6 : a->depth);
    rpt_pdf_int(a->c.managed, buf[2], PDF_CELL_BUF);
    rpt_pdf_int(a->c.infected, buf[3], PDF_CELL_BUF);
    rpt_pdf_pct(r.infected_rate, buf[4], PDF_CELL_BUF);
    rpt_pdf_int(a->c.stale, buf[5], PDF_CELL_BUF);
    rpt_pdf_int(a->c.c2_hosts, buf[6], PDF_CELL_BUF);
    rpt_pdf_int(a->c.detections, buf[7], PDF_CELL_BUF);
    rpt_pdf_dec(a->index, 2, buf[8], PDF_CELL_BUF);
    if (isfinite(a->index_prev) && isfinite(a->index)) {
        double d = a->index - a->index_prev;
        char t[32];
        rpt_pdf_dec(d, 2, t, sizeof(t));
        snprintf(buf[9], PDF_CELL_BUF, "%s%s", d > 0.005 ? "+" : "", t);
    } else {
        snprintf(buf[9], PDF_CELL_BUF, "—");
    }
    for (int i = 2; i < 10; i++)
        cell[i] = buf[i];
}

static void families_section(struct pdf *p)
{
    section(p, "3. Các họ mã độc phổ biến / Top malware families");
    if (p->q->nfamilies == 0) {
        rpt_pdf_para(p, PF_BODY, PA_LEFT, "Không có phát hiện trong quý / No detections.");
        return;
    }
    static const struct pdf_col cols[] = {
        {"STT", 28, PA_RIGHT},    {"Họ mã độc", 249.276, PA_LEFT}, {"Lượt phát hiện", 80, PA_RIGHT},
        {"Số máy", 70, PA_RIGHT}, {"Số đơn vị", 70, PA_RIGHT},
    };
    rpt_pdf_table(p, cols, 5, p->q->nfamilies, family_row, (void *)p->q);
}

static void agencies_section(struct pdf *p)
{
    section(p, "4. Các đơn vị bị ảnh hưởng / Most affected agencies");
    if (p->q->nagencies == 0) {
        rpt_pdf_para(p, PF_BODY, PA_LEFT, "Không có đơn vị trong phạm vi / No agency in scope.");
        return;
    }
    rpt_pdf_para(p, PF_ITALIC, PA_LEFT,
                 "Xếp theo mức độ ảnh hưởng; số liệu của mỗi đơn vị gồm cả các đơn vị trực thuộc. "
                 "Thay đổi: so với chỉ số quý trước.");
    static const struct pdf_col cols[] = {
        {"Mã", 44, PA_LEFT},           {"Tên đơn vị", 143.276, PA_LEFT},
        {"Máy quản lý", 38, PA_RIGHT}, {"Máy nhiễm", 36, PA_RIGHT},
        {"Tỷ lệ nhiễm", 38, PA_RIGHT}, {"Chưa cập nhật", 40, PA_RIGHT},
        {"IP C&C", 32, PA_RIGHT},      {"Phát hiện", 40, PA_RIGHT},
        {"Chỉ số", 42, PA_RIGHT},      {"Thay đổi", 44, PA_RIGHT},
    };
    rpt_pdf_table(p, cols, 10, p->q->nagencies, agency_row, (void *)p->q);
}

/* ---- 5. C&C, 6. Detections ---- */

static void c2_row(void *ctx, size_t row, const char *cell[], char (*buf)[PDF_CELL_BUF],
                   double indent[])
{
    (void)indent;
    const struct rpt_quarter *q = ctx;
    const struct rpt_c2_line *c = &q->c2[row];
    char f[32], l[32];
    cell[0] = c->agency_code;
    snprintf(buf[1], PDF_CELL_BUF, "%s%s%s", c->host, c->hostname[0] != '\0' ? "\n" : "",
             c->hostname);
    cell[1] = buf[1];
    cell[2] = c->indicator;
    cell[3] = c->category;
    cell[4] = c->seen_in;
    rpt_pdf_int(c->hits, buf[5], PDF_CELL_BUF);
    cell[5] = buf[5];
    rnd_date(c->first_seen, q->utc_offset, 1, f, sizeof(f));
    rnd_date(c->last_seen, q->utc_offset, 1, l, sizeof(l));
    snprintf(buf[6], PDF_CELL_BUF, "%s\n%s", f, l);
    cell[6] = buf[6];
    cell[7] = rnd_status_vi(c->status);
    cell[8] = c->note;
}

static void c2_section(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    section(p, "5. Kết nối tới máy chủ điều khiển (C&C) và kết quả xử lý / C&C contacts and "
               "actions");
    if (q->nc2 == 0) {
        rpt_pdf_para(p, PF_BODY, PA_LEFT,
                     "Không ghi nhận kết nối C&C trong quý / No C&C contact this quarter.");
        return;
    }
    if (q->c2_total > (int64_t)q->nc2) {
        char a[32], b[32];
        rpt_pdf_int((int64_t)q->nc2, a, sizeof(a));
        rpt_pdf_int(q->c2_total, b, sizeof(b));
        snprintf(p->tmp, sizeof(p->tmp),
                 "Liệt kê %s/%s kết nối mới nhất; danh sách đầy đủ trong tệp CSV/XLSX.", a, b);
        rpt_pdf_para(p, PF_ITALIC, PA_LEFT, p->tmp);
    }
    static const struct pdf_col cols[] = {
        {"Đơn vị", 42, PA_LEFT},
        {"Máy", 64, PA_LEFT},
        {"Chỉ dấu", 90, PA_LEFT},
        {"Loại", 34, PA_LEFT},
        {"Nơi thấy", 40, PA_LEFT},
        {"Lượt", 28, PA_RIGHT},
        {"Lần đầu / Lần cuối", 62, PA_LEFT},
        {"Trạng thái", 42, PA_LEFT},
        {"Ghi chú", 95.276, PA_LEFT},
    };
    rpt_pdf_table(p, cols, 9, q->nc2, c2_row, (void *)q);
}

static void detections_section(struct pdf *p)
{
    const struct rpt_quarter *q = p->q;
    section(p, "6. Phát hiện đang mở và đã xử lý / Detections open and resolved");
    struct kv kv = {0};
    int64_t all = q->det_new + q->det_acknowledged + q->det_resolved + q->det_false_positive;
    double da = all > 0 ? (double)all : NAN;
    kv_add(&kv, "Mới / New", q->det_new, q->det_new / da);
    kv_add(&kv, "Đã tiếp nhận / Acknowledged", q->det_acknowledged, q->det_acknowledged / da);
    kv_add(&kv, "Đã xử lý / Resolved", q->det_resolved, q->det_resolved / da);
    kv_add(&kv, "Báo nhầm / False positive", q->det_false_positive, q->det_false_positive / da);
    kv_add(&kv, "Tổng phát hiện trong quý / Detections this quarter", all, NAN);
    kv_add(&kv, "Còn mở cuối quý (kể cả từ trước) / Open at the quarter's end (any time)",
           q->det_open_at_end, NAN);
    static const struct pdf_col cols[] = {
        {"Trạng thái cuối quý / Status at the quarter's end", 330, PA_LEFT},
        {"Số lượng / Count", 80, PA_RIGHT},
        {"Tỷ lệ / Share", 87.276, PA_RIGHT},
    };
    rpt_pdf_table(p, cols, 3, kv.n, kv_row, &kv);
}

/* ---- The document ---- */

static void document(struct pdf *p)
{
    header_block(p);
    title_block(p);
    coverage(p);
    index_section(p);
    families_section(p);
    agencies_section(p);
    c2_section(p);
    detections_section(p);
    signature_block(p);
    rpt_pdf_footer(p);
}

static cairo_status_t discard(void *ctx, const unsigned char *data, unsigned int n)
{
    (void)ctx, (void)data, (void)n;
    return CAIRO_STATUS_SUCCESS;
}

static cairo_status_t to_buf(void *ctx, const unsigned char *data, unsigned int n)
{
    return khx_buf_append(ctx, data, n) == 0 ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static int pass(const struct rpt_quarter *q, int draw, int npages, struct khx_buf *o, int *pages,
                char *err, size_t errlen)
{
    int r = -1;
    struct pdf p;
    memset(&p, 0, sizeof(p));
    p.q = q;
    p.draw = draw;
    p.npages = npages;
    cairo_surface_t *s =
        cairo_pdf_surface_create_for_stream(draw ? to_buf : discard, o, PDF_W, PDF_H);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        khx_errf(err, errlen, "PDF: cannot create the surface: %s",
                 cairo_status_to_string(cairo_surface_status(s)));
        goto out;
    }
    if (draw) {
        char lab[32];
        rnd_period_label(&q->period, lab, sizeof(lab));
        snprintf(p.tmp, sizeof(p.tmp), "Báo cáo tình hình lây nhiễm mã độc quý %s", lab);
        cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, p.tmp);
        /* Cairo puts the surface in error on invalid UTF-8: clean it. */
        rnd_clean(q->org_name, p.tmp, sizeof(p.tmp), 0);
        cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_AUTHOR, p.tmp);
        cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "Khiên");
    }
    if (rpt_pdf_setup(&p, s) != 0) {
        khx_errf(
            err, errlen, "PDF: cannot set up Cairo and Pango: %s",
            cairo_status_to_string(p.cr != NULL ? cairo_status(p.cr) : cairo_surface_status(s)));
        goto out;
    }
    document(&p);
    rpt_pdf_teardown(&p);
    cairo_surface_finish(s);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        khx_errf(err, errlen, "PDF: %s%s", cairo_status_to_string(cairo_surface_status(s)),
                 draw && o->len + 65536 > o->max ? " (the report is too large)" : "");
        goto out;
    }
    *pages = p.page;
    r = 0;
out:
    rpt_pdf_teardown(&p);
    cairo_surface_destroy(s);
    return r;
}

int rpt_render_pdf(const struct rpt_quarter *q, uint8_t **out, size_t *len, char *err,
                   size_t errlen)
{
    int r = -1, pages = 0, pages2 = 0;
    struct khx_buf o;
    khx_buf_init(&o, RND_MAX_OUTPUT);
    if (pass(q, 0, 0, &o, &pages, err, errlen) != 0 ||
        pass(q, 1, pages, &o, &pages2, err, errlen) != 0)
        goto out;
    if (pages2 != pages) {
        /* Both passes run the same code on the same data: a difference is a
         * bug, and the footers would lie. */
        khx_errf(err, errlen, "PDF: the page count changed between passes (%d, %d)", pages, pages2);
        goto out;
    }
    *out = khx_buf_steal(&o, len);
    r = 0;
out:
    khx_buf_free(&o);
    return r;
}
