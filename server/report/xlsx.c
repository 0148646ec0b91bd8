/*
 * The quarterly report as an Office Open XML workbook (.xlsx): the tables
 * of rpt_book_build (csv.c), one worksheet each, written as a zip with
 * libarchive (deflate). The workbook is the smallest Excel and LibreOffice
 * open without repair: [Content_Types].xml, _rels/.rels, xl/workbook.xml,
 * xl/_rels/workbook.xml.rels, xl/styles.xml and xl/worksheets/sheetN.xml.
 *
 * Text is written as inline strings (t="inlineStr", no shared string
 * table), escaped for XML, with the characters XML 1.0 forbids dropped
 * (rnd_clean); numbers are numbers, rates are fractions with a percent
 * style. Row 1 is the table's title, row 2 its header (bold), and both stay
 * frozen while scrolling. Column widths follow the longest text.
 */
#include <archive.h>
#include <archive_entry.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"
#include "render_int.h"

/* Style indexes of styles.xml's cellXfs. */
enum { ST_DEFAULT = 0, ST_BOLD = 1, ST_PCT = 2, ST_NUM = 3, ST_TITLE = 4 };

static const char CONTENT_TYPES_HEAD[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">"
    "<Default Extension=\"rels\" "
    "ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>"
    "<Default Extension=\"xml\" ContentType=\"application/xml\"/>"
    "<Override PartName=\"/xl/workbook.xml\" "
    "ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>"
    "<Override PartName=\"/xl/styles.xml\" "
    "ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>";

static const char RELS[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">"
    "<Relationship Id=\"rId1\" "
    "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" "
    "Target=\"xl/workbook.xml\"/></Relationships>";

static const char STYLES[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
    "<styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">"
    "<fonts count=\"3\">"
    "<font><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/></font>"
    "<font><b/><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/></font>"
    "<font><b/><sz val=\"13\"/><name val=\"Calibri\"/><family val=\"2\"/></font>"
    "</fonts>"
    "<fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill>"
    "<fill><patternFill patternType=\"gray125\"/></fill></fills>"
    "<borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>"
    "<cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/>"
    "</cellStyleXfs>"
    "<cellXfs count=\"5\">"
    "<xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>"
    "<xf numFmtId=\"0\" fontId=\"1\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyFont=\"1\" "
    "applyAlignment=\"1\"><alignment wrapText=\"1\" vertical=\"top\"/></xf>"
    "<xf numFmtId=\"10\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\" "
    "applyNumberFormat=\"1\"/>"
    "<xf numFmtId=\"2\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\" "
    "applyNumberFormat=\"1\"/>"
    "<xf numFmtId=\"0\" fontId=\"2\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyFont=\"1\"/>"
    "</cellXfs>"
    "<cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/></cellStyles>"
    "</styleSheet>";

/* Appends s escaped for XML text and attributes, after rnd_clean. */
static int xml_text(struct khx_buf *o, const char *raw)
{
    char s[1024];
    rnd_clean(raw, s, sizeof(s), RND_KEEP_NL | RND_DROP_CTRL);
    for (const char *p = s; *p != '\0'; p++) {
        int rc;
        switch (*p) {
        case '&':
            rc = khx_buf_append(o, "&amp;", 5);
            break;
        case '<':
            rc = khx_buf_append(o, "&lt;", 4);
            break;
        case '>':
            rc = khx_buf_append(o, "&gt;", 4);
            break;
        case '"':
            rc = khx_buf_append(o, "&quot;", 6);
            break;
        default:
            rc = khx_buf_append_u8(o, (uint8_t)*p);
        }
        if (rc != 0)
            return KH_ELIMIT;
    }
    return 0;
}

/* "A", "B", ..., "Z", "AA" ... for column c (0-based, < 702). */
static void col_name(size_t c, char buf[4])
{
    if (c < 26) {
        buf[0] = (char)('A' + c), buf[1] = '\0';
    } else {
        buf[0] = (char)('A' + c / 26 - 1), buf[1] = (char)('A' + c % 26), buf[2] = '\0';
    }
}

static int inline_str(struct khx_buf *o, const char *ref, int style, const char *text)
{
    if (khx_buf_printf(o, "<c r=\"%s\" t=\"inlineStr\"", ref) != 0)
        return KH_ELIMIT;
    if (style != ST_DEFAULT && khx_buf_printf(o, " s=\"%d\"", style) != 0)
        return KH_ELIMIT;
    if (khx_buf_printf(o, "><is><t xml:space=\"preserve\">") != 0 || xml_text(o, text) != 0 ||
        khx_buf_printf(o, "</t></is></c>") != 0)
        return KH_ELIMIT;
    return 0;
}

static int sheet_cell(struct khx_buf *o, const char *ref, const struct rnd_cell *c)
{
    switch (c->k) {
    case RND_STR:
        return inline_str(o, ref, ST_DEFAULT, rnd_cell_str(c));
    case RND_INT:
        return khx_buf_printf(o, "<c r=\"%s\"><v>%lld</v></c>", ref, (long long)c->i);
    case RND_PCT:
        return khx_buf_printf(o, "<c r=\"%s\" s=\"%d\"><v>%.6g</v></c>", ref, ST_PCT, c->d);
    case RND_NUM:
        return khx_buf_printf(o, "<c r=\"%s\" s=\"%d\"><v>%.6g</v></c>", ref, ST_NUM, c->d);
    case RND_NONE:
        break;
    }
    return 0;
}

/* Characters (not bytes) of a UTF-8 string, for column widths. */
static size_t u8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int sheet_xml(struct khx_buf *o, const struct rnd_table *t)
{
    if (khx_buf_printf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
                          "<worksheet "
                          "xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">"
                          "<sheetViews><sheetView workbookViewId=\"0\">"
                          "<pane ySplit=\"2\" topLeftCell=\"A3\" activePane=\"bottomLeft\" "
                          "state=\"frozen\"/></sheetView></sheetViews><cols>") != 0)
        return KH_ELIMIT;
    for (size_t c = 0; c < t->ncols; c++) {
        /* The header wraps, so it counts for at most 24 characters; numbers
         * need about 12. */
        size_t w = KHX_MIN(u8_chars(t->head[c]), (size_t)24);
        w = KHX_MAX(w, (size_t)10);
        for (size_t r = 0; r < t->nrows; r++) {
            const struct rnd_cell *cell = &t->cells[r * t->ncols + c];
            if (cell->k == RND_STR)
                w = KHX_MAX(w, u8_chars(rnd_cell_str(cell)));
        }
        w = KHX_MIN(w, (size_t)60);
        if (khx_buf_printf(o, "<col min=\"%zu\" max=\"%zu\" width=\"%zu\" customWidth=\"1\"/>",
                           c + 1, c + 1, w + 2) != 0)
            return KH_ELIMIT;
    }
    if (khx_buf_printf(o, "</cols><sheetData><row r=\"1\">") != 0 ||
        inline_str(o, "A1", ST_TITLE, t->title) != 0 || khx_buf_printf(o, "</row><row r=\"2\">"))
        return KH_ELIMIT;
    char ref[32], cn[4];
    for (size_t c = 0; c < t->ncols; c++) {
        col_name(c, cn);
        snprintf(ref, sizeof(ref), "%s2", cn);
        if (inline_str(o, ref, ST_BOLD, t->head[c]) != 0)
            return KH_ELIMIT;
    }
    if (khx_buf_printf(o, "</row>") != 0)
        return KH_ELIMIT;
    for (size_t r = 0; r < t->nrows; r++) {
        if (khx_buf_printf(o, "<row r=\"%zu\">", r + 3) != 0)
            return KH_ELIMIT;
        for (size_t c = 0; c < t->ncols; c++) {
            col_name(c, cn);
            snprintf(ref, sizeof(ref), "%s%zu", cn, r + 3);
            if (sheet_cell(o, ref, &t->cells[r * t->ncols + c]) != 0)
                return KH_ELIMIT;
        }
        if (khx_buf_printf(o, "</row>") != 0)
            return KH_ELIMIT;
    }
    return khx_buf_printf(o, "</sheetData></worksheet>");
}

static la_ssize_t zip_write(struct archive *a, void *ctx, const void *p, size_t n)
{
    (void)a;
    return khx_buf_append(ctx, p, n) == 0 ? (la_ssize_t)n : -1;
}

static int zip_add(struct archive *a, const char *name, const void *data, size_t len, int64_t mtime,
                   char *err, size_t errlen)
{
    int r = -1;
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        goto out;
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, (time_t)mtime, 0);
    if (archive_write_header(a, e) != ARCHIVE_OK ||
        archive_write_data(a, data, len) != (la_ssize_t)len)
        goto out;
    r = 0;
out:
    if (r != 0)
        khx_errf(err, errlen, "XLSX: writing %s: %s", name,
                 a != NULL && archive_error_string(a) ? archive_error_string(a) : "out of memory");
    archive_entry_free(e);
    return r;
}

int rpt_render_xlsx(const struct rpt_quarter *q, uint8_t **out, size_t *len, char *err,
                    size_t errlen)
{
    int r = -1;
    struct rnd_book b;
    struct khx_buf zip, x;
    struct archive *a = NULL;
    khx_buf_init(&zip, RND_MAX_OUTPUT);
    khx_buf_init(&x, RND_MAX_OUTPUT);
    if (rpt_book_build(q, &b, err, errlen) != 0)
        goto out_nobook;
    int64_t mtime = q->generated_at > 0 ? q->generated_at : 0;

    a = archive_write_new();
    if (a == NULL || archive_write_set_format_zip(a) != ARCHIVE_OK ||
        archive_write_zip_set_compression_deflate(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open2(a, &zip, NULL, zip_write, NULL, NULL) != ARCHIVE_OK) {
        khx_errf(err, errlen, "XLSX: cannot start the zip: %s",
                 a != NULL && archive_error_string(a) ? archive_error_string(a) : "no memory");
        goto out;
    }

    /* [Content_Types].xml names every sheet. */
    if (khx_buf_append(&x, CONTENT_TYPES_HEAD, strlen(CONTENT_TYPES_HEAD)) != 0)
        goto too_big;
    for (size_t i = 0; i < b.n; i++)
        if (khx_buf_printf(&x,
                           "<Override PartName=\"/xl/worksheets/sheet%zu.xml\" "
                           "ContentType=\"application/"
                           "vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>",
                           i + 1) != 0)
            goto too_big;
    if (khx_buf_printf(&x, "</Types>") != 0)
        goto too_big;
    if (zip_add(a, "[Content_Types].xml", x.data, x.len, mtime, err, errlen) != 0 ||
        zip_add(a, "_rels/.rels", RELS, strlen(RELS), mtime, err, errlen) != 0)
        goto out;

    x.len = 0;
    if (khx_buf_printf(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
                           "<workbook "
                           "xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" "
                           "xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/"
                           "relationships\"><sheets>") != 0)
        goto too_big;
    for (size_t i = 0; i < b.n; i++) {
        if (khx_buf_printf(&x, "<sheet name=\"") != 0 || xml_text(&x, b.t[i].sheet) != 0 ||
            khx_buf_printf(&x, "\" sheetId=\"%zu\" r:id=\"rId%zu\"/>", i + 1, i + 1) != 0)
            goto too_big;
    }
    if (khx_buf_printf(&x, "</sheets></workbook>") != 0)
        goto too_big;
    if (zip_add(a, "xl/workbook.xml", x.data, x.len, mtime, err, errlen) != 0)
        goto out;

    x.len = 0;
    if (khx_buf_printf(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
                           "<Relationships "
                           "xmlns=\"http://schemas.openxmlformats.org/package/2006/"
                           "relationships\">") != 0)
        goto too_big;
    for (size_t i = 0; i < b.n; i++)
        if (khx_buf_printf(&x,
                           "<Relationship Id=\"rId%zu\" "
                           "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/"
                           "relationships/worksheet\" Target=\"worksheets/sheet%zu.xml\"/>",
                           i + 1, i + 1) != 0)
            goto too_big;
    if (khx_buf_printf(&x,
                       "<Relationship Id=\"rId%zu\" "
                       "Type=\"http://schemas.openxmlformats.org/officeDocument/2006/"
                       "relationships/styles\" Target=\"styles.xml\"/></Relationships>",
                       b.n + 1) != 0)
        goto too_big;
    if (zip_add(a, "xl/_rels/workbook.xml.rels", x.data, x.len, mtime, err, errlen) != 0 ||
        zip_add(a, "xl/styles.xml", STYLES, strlen(STYLES), mtime, err, errlen) != 0)
        goto out;

    for (size_t i = 0; i < b.n; i++) {
        char name[64];
        x.len = 0;
        if (sheet_xml(&x, &b.t[i]) != 0)
            goto too_big;
        snprintf(name, sizeof(name), "xl/worksheets/sheet%zu.xml", i + 1);
        if (zip_add(a, name, x.data, x.len, mtime, err, errlen) != 0)
            goto out;
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        khx_errf(err, errlen, "XLSX: closing the zip: %s", archive_error_string(a));
        goto out;
    }
    *out = khx_buf_steal(&zip, len);
    r = 0;
    goto out;
too_big:
    khx_errf(err, errlen, "XLSX: the report is larger than %zu bytes", x.max);
out:
    if (a != NULL)
        archive_write_free(a);
    rpt_book_free(&b);
out_nobook:
    khx_buf_free(&x);
    khx_buf_free(&zip);
    return r;
}
