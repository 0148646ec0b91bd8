/*
 * The three renderings of the quarterly report (server/report/pdf*.c,
 * csv.c, xlsx.c), from rpt_quarter values built by hand: the PDF's text
 * (pdftotext), first page (pdftoppm), embedded fonts (pdffonts), page
 * breaks of a 500-agency, 5,000-contact report; the CSV's exact lines,
 * quoting and formula neutralisation; the XLSX's zip (unzip -t), sheets and
 * cells, and its XML parsed by python3. A check whose tool is missing
 * prints "SKIP" and is left out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "khx.h"
#include "quarterly.h"
#include "testutil.h"

#define VN (7 * 3600)

/* Every Vietnamese vowel with every tone mark, capital and small, and đ. */
static const char ALL_DIACRITICS[] =
    "đ àáảãạ ằắẳẵặ ầấẩẫậ èéẻẽẹ ềếểễệ ìíỉĩị òóỏõọ ồốổỗộ ờớởỡợ ùúủũụ ừứửữự ỳýỷỹỵ ăâêôơư";
static const char ALL_DIACRITICS_CAPS[] =
    "Đ ÀÁẢÃẠ ẰẮẲẴẶ ẦẤẨẪẬ ÈÉẺẼẸ ỀẾỂỄỆ ÌÍỈĨỊ ÒÓỎÕỌ ỒỐỔỖỘ ỜỚỞỠỢ ÙÚỦŨỤ ỪỨỬỮỰ ỲÝỶỸỴ ĂÂÊÔƠƯ";

static int have(const char *tool)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
    if (system(cmd) == 0)
        return 1;
    printf("SKIP: %s is not installed; its checks are left out\n", tool);
    return 0;
}

/* Runs a shell command and returns its standard output (malloc'd). */
static char *run(const char *cmd, int *status)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    struct khx_buf b;
    khx_buf_init(&b, (size_t)1 << 30);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(khx_buf_append(&b, tmp, n), 0);
    assert_int_equal(khx_buf_append_u8(&b, 0), 0);
    int st = pclose(f);
    if (status != NULL)
        *status = st;
    size_t len;
    return (char *)khx_buf_steal(&b, &len);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0, l = strlen(needle);
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + l, needle))
        n++;
    return n;
}

static void comp(struct idx_components *c, int64_t managed, int64_t infected)
{
    memset(c, 0, sizeof(*c));
    c->managed = managed;
    c->expected = managed + 10;
    c->infected = infected;
    c->stale = managed / 10;
    c->c2_hosts = infected / 2;
    c->c2_hits = infected * 3;
    c->detections = infected * 2;
    c->families = 3;
    c->open = infected;
    c->resolved = infected;
    c->share_slots = 90;
    c->share_accepted = 88;
}

/* A quarter 2026Q4 with `nag` agencies and `nc2` contacts; agency i is
 * DV%04zu, contact i has the indicator c2-%05zu.evil.example. */
static struct rpt_quarter *make_quarter(size_t nag, size_t nc2)
{
    struct rpt_quarter *q = calloc(1, sizeof(*q));
    assert_non_null(q);
    assert_int_equal(rpt_period_parse("2026Q4", VN, &q->period), 0);
    q->utc_offset = VN;
    snprintf(q->org_id, sizeof(q->org_id), "%s", "000.00.00.H23");
    snprintf(q->org_name, sizeof(q->org_name), "%s", "SỞ THÔNG TIN VÀ TRUYỀN THÔNG HÀ GIANG");
    snprintf(q->place, sizeof(q->place), "%s", "Hà Giang");
    snprintf(q->formula, sizeof(q->formula), "%s",
             "min(100, 60*infected_rate + 15*stale_rate + 10*(1 - coverage))");
    q->generated_at = 1797670800; /* 2026-12-19 16:00 +07:00 */
    snprintf(q->generated_by, sizeof(q->generated_by), "%s", "Nguyễn Văn Ánh");
    q->deadline = rpt_quarter_deadline(&q->period, 20, VN);
    comp(&q->total, 1500, 123);
    q->total.expected = 2000;
    q->index = 37.5;
    struct rpt_period months[3];
    rpt_period_months(&q->period, VN, months);
    for (int i = 0; i < 3; i++) {
        q->months[i].period = months[i];
        comp(&q->months[i].c, 1400 + 50 * i, 40 + i);
        q->months[i].index = 30.0 + i;
    }
    q->ntrend = 4;
    struct rpt_period p = q->period;
    for (int i = 3; i >= 0; i--) {
        q->trend[i].period = p;
        comp(&q->trend[i].c, 1500, 100 + i);
        q->trend[i].index = 20.0 + 5.0 * i;
        rpt_period_prev(&p, VN, &p);
    }
    q->trend[3].index = q->index;

    q->nagencies = nag;
    q->agencies = calloc(nag > 0 ? nag : 1, sizeof(*q->agencies));
    assert_non_null(q->agencies);
    for (size_t i = 0; i < nag; i++) {
        struct rpt_agency_line *a = &q->agencies[i];
        a->agency_id = (int64_t)i + 1;
        a->depth = i == 0 ? 0 : 1 + (int)(i % 3);
        snprintf(a->code, sizeof(a->code), "DV%04zu", i + 1);
        snprintf(a->name, sizeof(a->name), "Đơn vị số %zu", i + 1);
        comp(&a->c, 1000 + (int64_t)i, (int64_t)(i % 50));
        a->index = 10.0 + (double)(i % 50);
        a->index_prev = i % 7 == 0 ? NAN : a->index - 1.5;
    }
    q->nfamilies = 2;
    q->families = calloc(2, sizeof(*q->families));
    assert_non_null(q->families);
    snprintf(q->families[0].name, sizeof(q->families[0].name), "%s", "Win.Trojan.Emotet");
    q->families[0].detections = 321;
    q->families[0].machines = 45;
    q->families[0].agencies = 6;
    snprintf(q->families[1].name, sizeof(q->families[1].name), "%s", "Doc.Dropper, \"Agent\"");
    q->families[1].detections = 12;
    q->families[1].machines = 3;
    q->families[1].agencies = 1;

    q->nc2 = nc2;
    q->c2_total = (int64_t)nc2;
    q->c2 = calloc(nc2 > 0 ? nc2 : 1, sizeof(*q->c2));
    assert_non_null(q->c2);
    static const char *const st[] = {"new", "acknowledged", "resolved", "false_positive"};
    for (size_t i = 0; i < nc2; i++) {
        struct rpt_c2_line *c = &q->c2[i];
        snprintf(c->agency_code, sizeof(c->agency_code), "CQ%03zu", i % 500);
        snprintf(c->agency_name, sizeof(c->agency_name), "Cơ quan %zu", i % 500);
        snprintf(c->host, sizeof(c->host), "10.%zu.%zu.%zu", i / 65536, (i / 256) % 256, i % 256);
        snprintf(c->hostname, sizeof(c->hostname), "may-tinh-%zu", i);
        snprintf(c->indicator, sizeof(c->indicator), "c2-%05zu.evil.example", i);
        snprintf(c->category, sizeof(c->category), "%s", "c2");
        snprintf(c->seen_in, sizeof(c->seen_in), "%s", "dns.query");
        c->hits = (int64_t)i + 1;
        c->first_seen = q->period.start + 3600 * (int64_t)i;
        c->last_seen = c->first_seen + 600;
        snprintf(c->status, sizeof(c->status), "%s", st[i % 4]);
        snprintf(c->note, sizeof(c->note), "Đã cách ly máy, quét lại ngày %zu", i % 28 + 1);
    }
    q->det_new = 5;
    q->det_acknowledged = 7;
    q->det_resolved = 30;
    q->det_false_positive = 2;
    q->det_open_at_end = 19;
    return q;
}

static void free_quarter(struct rpt_quarter *q)
{
    if (q == NULL)
        return;
    free(q->agencies);
    free(q->families);
    free(q->c2);
    free(q);
}

/* With KHIEN_TEST_KEEP=<dir>, the rendered files are also copied there to
 * be looked at (named after the test's file name `name`). */
static void keep(const char *path, const char *name)
{
    const char *d = getenv("KHIEN_TEST_KEEP");
    if (d == NULL || d[0] == '\0')
        return;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s/%s'", path, d, name);
    if (system(cmd) != 0)
        printf("could not keep %s\n", name);
}

static char *render_pdf_file(const struct rpt_quarter *q, const char *dir, double *secs)
{
    uint8_t *pdf = NULL;
    size_t len = 0;
    char err[256] = "";
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = rpt_render_pdf(q, &pdf, &len, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (rc != 0)
        fail_msg("rpt_render_pdf: %s", err);
    if (secs != NULL)
        *secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(len > 1000);
    assert_memory_equal(pdf, "%PDF-", 5);
    char *path = tu_write(dir, "report.pdf", pdf, len);
    free(pdf);
    char name[64];
    snprintf(name, sizeof(name), "report-%zu-%zu.pdf", q->nagencies, q->nc2);
    keep(path, name);
    return path;
}

static char *pdf_text(const char *path)
{
    char cmd[1024];
    int st;
    snprintf(cmd, sizeof(cmd), "pdftotext -layout '%s' -", path);
    char *t = run(cmd, &st);
    assert_int_equal(st, 0);
    return t;
}

/* The rightmost edge of any word on any page, from pdftotext -bbox. */
static double max_word_right(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "pdftotext -bbox '%s' -", path);
    char *t = run(cmd, NULL);
    double max = 0;
    for (const char *p = strstr(t, "xMax=\""); p != NULL; p = strstr(p + 6, "xMax=\"")) {
        double v = strtod(p + 6, NULL);
        if (v > max)
            max = v;
    }
    free(t);
    return max;
}

static void pdf_shows_names_figures_and_page_numbers(void **state)
{
    (void)state;
    if (!have("pdftotext"))
        return;
    const char *dir = tu_mkdtemp();
    struct rpt_quarter *q = make_quarter(4, 3);
    snprintf(q->agencies[1].name, sizeof(q->agencies[1].name), "%s", ALL_DIACRITICS);
    snprintf(q->agencies[2].name, sizeof(q->agencies[2].name), "%s", ALL_DIACRITICS_CAPS);
    snprintf(q->families[1].name, sizeof(q->families[1].name), "%s",
             "Ủy ban nhân dân huyện Đồng Văn");
    /* A name far wider than its column, and an indicator with no place to
     * break: both must wrap or be cut short inside the page. */
    memset(q->agencies[3].name, 'W', sizeof(q->agencies[3].name) - 1);
    q->agencies[3].name[sizeof(q->agencies[3].name) - 1] = '\0';
    memset(q->c2[0].indicator, 'x', sizeof(q->c2[0].indicator) - 1);
    q->c2[0].indicator[sizeof(q->c2[0].indicator) - 1] = '\0';
    /* Bytes that are not UTF-8 and a control character, from an agent. */
    snprintf(q->c2[1].note, sizeof(q->c2[1].note), "%s", "bad \xff\xfe utf8 \x01 here");
    q->agencies[0].c.managed = 2000;
    q->agencies[0].c.infected = 1234;

    char *path = render_pdf_file(q, dir, NULL);
    char *t = pdf_text(path);
    assert_non_null(strstr(t, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"));
    assert_non_null(strstr(t, "Độc lập - Tự do - Hạnh phúc"));
    assert_non_null(strstr(t, "BÁO CÁO TÌNH HÌNH LÂY NHIỄM MÃ ĐỘC QUÝ IV/2026"));
    assert_non_null(strstr(t, "SỞ THÔNG TIN VÀ TRUYỀN"));
    assert_non_null(strstr(t, "Mã đơn vị: 000.00.00.H23"));
    assert_non_null(strstr(t, "Ủy ban nhân dân huyện Đồng Văn"));
    /* Every diacritic comes back out of the PDF: the words of the name are
     * checked one by one, since a long cell may wrap between them. */
    char words[sizeof(ALL_DIACRITICS) + sizeof(ALL_DIACRITICS_CAPS)];
    snprintf(words, sizeof(words), "%s %s", ALL_DIACRITICS, ALL_DIACRITICS_CAPS);
    char *save = NULL;
    for (char *w = strtok_r(words, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
        if (strstr(t, w) == NULL)
            fail_msg("the word \"%s\" of the agency names is not in the PDF's text", w);
    assert_non_null(strstr(t, "1.234"));         /* the first agency's infected machines */
    assert_non_null(strstr(t, "37,50"));         /* the quarter's index */
    assert_non_null(strstr(t, "1.500 / 2.000")); /* coverage */
    assert_non_null(strstr(t, "Hà Giang, ngày 19 tháng 12 năm 2026"));
    assert_non_null(strstr(t, "trước ngày 20/12/2026"));
    assert_non_null(strstr(t, "NGƯỜI LẬP BÁO CÁO"));
    assert_non_null(strstr(t, "THỦ TRƯỞNG ĐƠN VỊ"));
    assert_non_null(strstr(t, "Đã tiếp nhận"));
    assert_non_null(strstr(t, "Báo nhầm"));
    assert_non_null(strstr(t, "Win.Trojan.Emotet"));
    assert_non_null(strstr(t, "Trang 1/"));
    assert_true(max_word_right(path) <= 595.3 - 40);

    if (have("pdftoppm")) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "pdftoppm -r 50 -f 1 -l 1 -png '%s' '%s/page' 2>&1", path, dir);
        int st;
        char *o = run(cmd, &st);
        if (st != 0)
            fail_msg("pdftoppm failed: %s", o);
        free(o);
        snprintf(cmd, sizeof(cmd), "ls '%s' | grep -c '^page.*\\.png$'", dir);
        o = run(cmd, NULL);
        assert_int_equal(atoi(o), 1);
        free(o);
    }
    if (have("pdffonts")) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "pdffonts '%s'", path);
        char *o = run(cmd, NULL);
        /* Every font row says "yes" in the emb column. */
        const char *head = strstr(o, "emb");
        assert_non_null(head);
        size_t col = (size_t)(head - o);
        const char *line = strstr(o, "\n---");
        assert_non_null(line);
        line = strchr(line + 1, '\n');
        size_t fonts = 0;
        while (line != NULL && line[1] != '\0') {
            line++;
            const char *end = strchr(line, '\n');
            if (end == NULL || (size_t)(end - line) <= col + 3)
                break;
            if (strncmp(line + col, "yes", 3) != 0)
                fail_msg("a font is not embedded: %.*s", (int)(end - line), line);
            assert_non_null(strstr(line, "DejaVu"));
            fonts++;
            line = end;
        }
        assert_true(fonts >= 2);
        free(o);
    }
    free(t);
    free(path);
    free_quarter(q);
    tu_rmtree(dir);
}

static void pdf_with_no_agency_and_no_contact_renders(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct rpt_quarter *q = make_quarter(0, 0);
    q->nfamilies = 0;
    q->ntrend = 0;
    memset(&q->total, 0, sizeof(q->total));
    char *path = render_pdf_file(q, dir, NULL);
    if (have("pdftotext")) {
        char *t = pdf_text(path);
        assert_non_null(strstr(t, "Không có đơn vị trong phạm vi"));
        assert_non_null(strstr(t, "Không ghi nhận kết nối C&C"));
        assert_non_null(strstr(t, "Trang 1/"));
        free(t);
    }
    free(path);
    free_quarter(q);
    tu_rmtree(dir);
}

static void a_large_report_breaks_tables_without_cutting_rows(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct rpt_quarter *q = make_quarter(500, 5000);
    double secs = 0;
    char *path = render_pdf_file(q, dir, &secs);
    printf("500 agencies + 5,000 C&C lines: PDF rendered in %.2f s\n", secs);
    if (!have("pdftotext")) {
        free(path);
        free_quarter(q);
        tu_rmtree(dir);
        return;
    }
    char *t = pdf_text(path);
    /* Every agency once, whole on one line: code, name and index. */
    for (size_t i = 0; i < 500; i++) {
        char code[16], name[64], idx[16];
        snprintf(code, sizeof(code), "DV%04zu", i + 1);
        snprintf(name, sizeof(name), "Đơn vị số %zu ", i + 1);
        snprintf(idx, sizeof(idx), "%zu,00", 10 + i % 50);
        if (count(t, code) != 1)
            fail_msg("agency %s appears %zu times", code, count(t, code));
        const char *at = strstr(t, code);
        const char *bol = at;
        while (bol > t && bol[-1] != '\n')
            bol--;
        const char *eol = strchr(at, '\n');
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)(eol - bol), bol);
        if (strstr(line, name) == NULL || strstr(line, idx) == NULL)
            fail_msg("the row of %s is not whole: \"%s\"", code, line);
    }
    /* Every contact once. */
    for (size_t i = 0; i < 5000; i++) {
        char ind[64];
        snprintf(ind, sizeof(ind), "c2-%05zu.evil.example", i);
        if (count(t, ind) != 1)
            fail_msg("contact %s appears %zu times", ind, count(t, ind));
    }
    /* The header row is repeated on every page of a table: each page
     * after the first few holds one of the two tables' headers. */
    const char *p1 = strstr(t, "Trang 1/");
    assert_non_null(p1);
    int pages = atoi(p1 + 8);
    assert_true(pages > 50);
    char last[32];
    snprintf(last, sizeof(last), "Trang %d/%d", pages, pages);
    assert_non_null(strstr(t, last));
    assert_true(count(t, "Nơi thấy") + count(t, "Tên đơn vị") >= (size_t)pages - 3);
    assert_non_null(strstr(t, "Đơn vị số 500 "));
    free(t);
    free(path);
    free_quarter(q);
    tu_rmtree(dir);
}

/* ---- CSV ---- */

static void csv_quotes_neutralises_and_prints_exact_lines(void **state)
{
    (void)state;
    struct rpt_quarter *q = make_quarter(2, 1);
    snprintf(q->agencies[0].name, sizeof(q->agencies[0].name), "%s", "=HYPERLINK(\"x\")");
    snprintf(q->agencies[1].name, sizeof(q->agencies[1].name), "%s",
             "Phòng Tư pháp, huyện Mèo Vạc");
    q->agencies[1].index_prev = q->agencies[1].index + 2.25;
    snprintf(q->c2[0].indicator, sizeof(q->c2[0].indicator), "%s", "@evil.example");
    snprintf(q->c2[0].note, sizeof(q->c2[0].note), "%s", "-2+3 dòng 1\ndòng 2");
    uint8_t *out = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(rpt_render_csv(q, &out, &len, err, sizeof(err)), 0);
    char *s = malloc(len + 1);
    memcpy(s, out, len);
    s[len] = '\0';
    assert_memory_equal(s, "\xEF\xBB\xBF", 3);
    assert_non_null(strstr(s,
                           "\xEF\xBB\xBFTổng hợp / Summary\r\nChỉ tiêu / Item,Giá trị / Value\r\n"
                           "Đơn vị báo cáo / Reporting organisation,"
                           "SỞ THÔNG TIN VÀ TRUYỀN THÔNG HÀ GIANG\r\n"));
    assert_non_null(strstr(s, "\r\nChỉ số / Index,37.50\r\n"));
    assert_non_null(strstr(s, "\r\nThời điểm lập / Generated at,19/12/2026 16:00 (UTC+07:00)\r\n"));
    /* The agencies table, exactly: formulas neutralised, commas quoted,
     * numbers as numbers (a negative change is a number, not a formula). */
    assert_non_null(strstr(
        s, "\r\n\r\nĐơn vị / Agencies\r\n"
           "Mã / Code,Tên đơn vị / Agency,Cấp / Depth,Máy quản lý / Managed,Máy nhiễm / Infected,"
           "Tỷ lệ nhiễm (%) / Infected rate (%),Máy chưa cập nhật CSDL / Stale,"
           "IP liên lạc C&C / C&C hosts,Phát hiện / Detections,Chỉ số / Index,"
           "Chỉ số quý trước / Previous index,Thay đổi / Change\r\n"
           "DV0001,\"'=HYPERLINK(\"\"x\"\")\",0,1000,0,0.00,100,0,0,10.00,,\r\n"
           "DV0002,\"Phòng Tư pháp, huyện Mèo Vạc\",2,1001,1,0.10,100,0,2,11.00,13.25,-2.25"
           "\r\n\r\n"));
    assert_non_null(strstr(s, "\r\nHọ mã độc / Malware families\r\n"
                              "Họ mã độc / Family,Phát hiện / Detections,Số máy / Machines,"
                              "Số đơn vị / Agencies\r\n"
                              "Win.Trojan.Emotet,321,45,6\r\n"
                              "\"Doc.Dropper, \"\"Agent\"\"\",12,3,1\r\n\r\n"));
    assert_non_null(strstr(s, ",'@evil.example,c2,dns.query,1,01/10/2026 00:00,01/10/2026 00:10,"
                              "Mới,\"'-2+3 dòng 1\ndòng 2\"\r\n"));
    assert_non_null(strstr(s, "\r\nCòn mở cuối quý (mọi thời điểm) / Open at quarter end (any "
                              "time),19\r\n"));
    assert_non_null(strstr(s, "\r\nQuý / Quarter,"));
    assert_non_null(strstr(s, "\r\nIV/2026,1500,1510,99.34,103,"));
    /* The file ends with the last table's last line. */
    assert_true(len > 2 && memcmp(s + len - 2, "\r\n", 2) == 0 && s[len - 3] != '\n');
    free(s);
    free(out);
    free_quarter(q);
}

/* ---- XLSX ---- */

static void xlsx_is_a_workbook_with_seven_sheets(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct rpt_quarter *q = make_quarter(3, 2);
    snprintf(q->agencies[0].name, sizeof(q->agencies[0].name), "%s",
             "Sở <Y tế> & \"Dân số\" \x01\x02 ỹ");
    uint8_t *out = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(rpt_render_xlsx(q, &out, &len, err, sizeof(err)), 0);
    assert_memory_equal(out, "PK\x03\x04", 4);
    char *path = tu_write(dir, "report.xlsx", out, len);
    free(out);
    keep(path, "report.xlsx");
    char cmd[1024];
    int st;
    if (have("unzip")) {
        snprintf(cmd, sizeof(cmd), "unzip -t '%s'", path);
        char *o = run(cmd, &st);
        if (st != 0)
            fail_msg("unzip -t: %s", o);
        free(o);
        snprintf(cmd, sizeof(cmd), "unzip -Z1 '%s' | grep -c '^xl/worksheets/sheet[0-9]*\\.xml$'",
                 path);
        o = run(cmd, NULL);
        assert_int_equal(atoi(o), 7);
        free(o);
        snprintf(cmd, sizeof(cmd), "unzip -p '%s' xl/worksheets/sheet4.xml", path);
        o = run(cmd, NULL);
        assert_non_null(strstr(o, "<c r=\"A3\" t=\"inlineStr\"><is><t xml:space=\"preserve\">"
                                  "DV0001</t></is></c>"));
        assert_non_null(strstr(o, "<c r=\"B3\" t=\"inlineStr\"><is><t xml:space=\"preserve\">"
                                  "Sở &lt;Y tế&gt; &amp; &quot;Dân số&quot;  ỹ</t></is></c>"));
        assert_non_null(strstr(o, "<c r=\"D3\"><v>1000</v></c>"));
        assert_non_null(strstr(o, "<c r=\"J3\" s=\"3\"><v>10</v></c>"));
        assert_non_null(strstr(o, "state=\"frozen\""));
        free(o);
        snprintf(cmd, sizeof(cmd), "unzip -p '%s' xl/workbook.xml", path);
        o = run(cmd, NULL);
        assert_non_null(strstr(o, "<sheet name=\"Kết nối C&amp;C\" sheetId=\"6\""));
        assert_non_null(strstr(o, "<sheet name=\"Tổng hợp\" sheetId=\"1\""));
        free(o);
    }
    snprintf(cmd, sizeof(cmd), "python3 -c 'import zipfile, xml.dom.minidom' 2>/dev/null");
    if (system(cmd) == 0) {
        snprintf(cmd, sizeof(cmd),
                 "python3 -c 'import sys, zipfile, xml.dom.minidom\n"
                 "z = zipfile.ZipFile(sys.argv[1])\n"
                 "n = 0\n"
                 "for i in z.namelist():\n"
                 "    xml.dom.minidom.parseString(z.read(i)); n += 1\n"
                 "print(n)' '%s' 2>&1",
                 path);
        char *o = run(cmd, &st);
        if (st != 0)
            fail_msg("python3 could not parse the workbook's XML: %s", o);
        assert_int_equal(atoi(o), 12);
        free(o);
    } else {
        printf("SKIP: python3 with zipfile and xml.dom.minidom is not available\n");
    }
    free(path);
    free_quarter(q);
    tu_rmtree(dir);
}

/* ---- Hostile input ---- */

static void fill_random(char *dst, size_t n, uint32_t *seed)
{
    for (size_t i = 0; i + 1 < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        char c = (char)((*seed >> 16) & 0xFF);
        dst[i] = c != 0 ? c : 'x';
    }
    dst[n - 1] = '\0';
}

#define FILL(field) fill_random((field), sizeof(field), &seed)

static void text_from_agents_and_feeds_never_breaks_a_rendering(void **state)
{
    (void)state;
    const char *dir = tu_mkdtemp();
    struct rpt_quarter *q = make_quarter(20, 40);
    uint32_t seed = 7;
    FILL(q->org_name);
    FILL(q->org_id);
    FILL(q->place);
    FILL(q->generated_by);
    FILL(q->formula);
    FILL(q->scope_code);
    FILL(q->scope_name);
    for (size_t i = 0; i < q->nagencies; i++) {
        FILL(q->agencies[i].code);
        FILL(q->agencies[i].name);
        q->agencies[i].depth = (int)i * 1000 - 5000;
    }
    q->agencies[0].index = NAN;
    q->agencies[1].index = -INFINITY;
    q->agencies[2].c.managed = INT64_MAX;
    q->agencies[2].c.infected = INT64_MIN;
    for (size_t i = 0; i < q->nfamilies; i++)
        FILL(q->families[i].name);
    for (size_t i = 0; i < q->nc2; i++) {
        struct rpt_c2_line *c = &q->c2[i];
        FILL(c->agency_code), FILL(c->agency_name), FILL(c->host), FILL(c->hostname);
        FILL(c->indicator), FILL(c->category), FILL(c->seen_in), FILL(c->status), FILL(c->note);
        c->first_seen = -(int64_t)i;
    }
    q->index = NAN;
    q->trend[0].index = -50;
    q->months[1].index = 1e300;
    q->ntrend = 99; /* more than the array holds: only 8 are read */

    uint8_t *out = NULL;
    size_t len = 0;
    char err[256] = "";
    assert_int_equal(rpt_render_csv(q, &out, &len, err, sizeof(err)), 0);
    free(out);
    assert_int_equal(rpt_render_xlsx(q, &out, &len, err, sizeof(err)), 0);
    char *path = tu_write(dir, "hostile.xlsx", out, len);
    free(out);
    char cmd[1024];
    if (system("python3 -c 'import zipfile, xml.dom.minidom' 2>/dev/null") == 0) {
        snprintf(cmd, sizeof(cmd),
                 "python3 -c 'import sys, zipfile, xml.dom.minidom\n"
                 "z = zipfile.ZipFile(sys.argv[1])\n"
                 "for i in z.namelist(): xml.dom.minidom.parseString(z.read(i))' '%s' 2>&1",
                 path);
        int st;
        char *o = run(cmd, &st);
        if (st != 0)
            fail_msg("python3 could not parse the workbook's XML: %s", o);
        free(o);
    } else {
        printf("SKIP: python3 with zipfile and xml.dom.minidom is not available\n");
    }
    free(path);
    path = render_pdf_file(q, dir, NULL);
    if (have("pdftotext"))
        assert_true(max_word_right(path) <= 595.3 - 40);
    free(path);
    free_quarter(q);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pdf_shows_names_figures_and_page_numbers),
        cmocka_unit_test(pdf_with_no_agency_and_no_contact_renders),
        cmocka_unit_test(a_large_report_breaks_tables_without_cutting_rows),
        cmocka_unit_test(csv_quotes_neutralises_and_prints_exact_lines),
        cmocka_unit_test(xlsx_is_a_workbook_with_seven_sheets),
        cmocka_unit_test(text_from_agents_and_feeds_never_breaks_a_rendering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
