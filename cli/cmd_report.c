/*
 * `khien report`: reports produced from the server's database without going
 * through the server, for a cron job or an administrator at the console.
 * `khien report quarterly` makes the quarterly report to the Ministry (the
 * same files as the dashboard's button, recorded the same way in the
 * `reports` table) and writes them to a folder.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "period.h"
#include "reports.h"
#include "server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: khien report quarterly --data DIR [--quarter YYYYQn] [options]\n"
            "\n"
            "Produce the quarterly malware infection report to the Ministry from the server's\n"
            "database: a PDF in Vietnamese, and the same tables as CSV and XLSX. Each file is\n"
            "recorded (who, when, SHA-256) as when it is made from the dashboard.\n"
            "Lập báo cáo quý về tình hình lây nhiễm mã độc gửi Bộ (PDF, CSV, XLSX) từ cơ sở\n"
            "dữ liệu của máy chủ; mỗi tệp được ghi lại (người lập, thời điểm, SHA-256).\n"
            "\n"
            "Options:\n"
            "  --data DIR          the server's data folder (as for 'khien server run')\n"
            "  --config FILE       configuration file (default DIR/khien-server.conf if present)\n"
            "  --quarter YYYYQn    the quarter, e.g. 2026Q4 (default: the current quarter)\n"
            "  --agency CODE       one agency and everything below it (default: the province)\n"
            "  --format LIST       pdf,csv,xlsx or a subset (default: all three)\n"
            "  --out DIR           where to write the files (default: the current folder)\n"
            "  -h, --help          this help\n"
            "\n"
            "Files are named khien-report-QUARTER[-AGENCY].FORMAT. The quarter's months and\n"
            "deadline use report_utc_offset and report_deadline_day from the configuration\n"
            "(docs/SERVER.md). Exit status: 0 when every file was written, 2 on an error.\n");
}

static unsigned parse_formats(const char *list)
{
    unsigned formats = 0;
    char buf[64];
    if (strlen(list) >= sizeof(buf))
        return 0;
    strcpy(buf, list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        int f = rpt_format_parse(t);
        if (f < 0)
            return 0;
        formats |= 1u << f;
    }
    return formats;
}

static int quarterly(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},    {"config", required_argument, NULL, 'c'},
        {"quarter", required_argument, NULL, 'q'}, {"agency", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'},  {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *data = NULL, *config = NULL, *quarter = NULL, *agency = NULL, *out_dir = ".";
    unsigned formats = (1u << RPT_NFORMATS) - 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'q':
            quarter = optarg;
            break;
        case 'a':
            agency = optarg;
            break;
        case 'f':
            if ((formats = parse_formats(optarg)) == 0) {
                cli_errorf("--format: expected pdf, csv, xlsx or a comma-separated list of them");
                return CLI_EXIT_ERROR;
            }
            break;
        case 'o':
            out_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_EXIT_OK;
        default:
            usage(stderr);
            return CLI_EXIT_ERROR;
        }
    }
    if (data == NULL || optind != argc) {
        cli_errorf("quarterly needs --data DIR; see --help");
        return CLI_EXIT_ERROR;
    }
    struct srv_config cfg;
    if (cli_server_config(data, config, NULL, &cfg) != 0)
        return CLI_EXIT_ERROR;
    struct rpt_period q;
    if (quarter == NULL)
        rpt_period_at(srv_now(), RPT_QUARTER, cfg.report.utc_offset, &q);
    else if (rpt_period_parse(quarter, cfg.report.utc_offset, &q) != 0 || q.kind != RPT_QUARTER) {
        cli_errorf("--quarter: '%s' is not a quarter such as 2026Q4", quarter);
        return CLI_EXIT_ERROR;
    }

    char err[512], who[96];
    struct store_db *db = NULL;
    struct rpt_output outs[RPT_NFORMATS];
    size_t nout = 0;
    int64_t agency_id = 0;
    int rc = CLI_EXIT_ERROR;
    if (store_open(cfg.database, &db, err, sizeof(err)) != 0) {
        cli_errorf("database: %s", err);
        return CLI_EXIT_ERROR;
    }
    int v = 0;
    if (store_schema_version(db, &v) != 0 || v != store_schema_latest()) {
        cli_errorf("the database is at schema %d, this khien needs %d: start 'khien server run' "
                   "once to migrate it",
                   v, store_schema_latest());
        goto out;
    }
    if (agency != NULL) {
        int s =
            store_query_int(db, &agency_id, "SELECT id FROM agencies WHERE code = $1", "t", agency);
        if (s != STORE_ROW) {
            cli_errorf("--agency: no agency with code '%s'", agency);
            goto out;
        }
    }
    struct passwd *pw = getpwuid(getuid());
    snprintf(who, sizeof(who), "cli:%s", pw != NULL ? pw->pw_name : "?");
    if (rpt_produce_quarterly(db, &cfg.report, &q, agency_id, formats, 0, who, srv_now(), outs,
                              &nout, err, sizeof(err)) != 0) {
        cli_errorf("report %s: %s", q.label, err);
        goto out;
    }
    for (size_t i = 0; i < nout; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/khien-report-%s%s%s.%s", out_dir, q.label,
                 agency ? "-" : "", agency ? agency : "", rpt_format_name(outs[i].format));
        if (khx_write_file_mode(path, outs[i].data, outs[i].len, 0644) != 0) {
            cli_errorf("cannot write %s: %s", path, strerror(errno));
            goto out;
        }
        printf("%s  %zu bytes  sha256 %s\n", path, outs[i].len, outs[i].sha256);
    }
    rc = CLI_EXIT_OK;
out:
    rpt_outputs_free(outs, nout);
    store_close(db);
    return rc;
}

int cmd_report(int argc, char **argv)
{
    static const struct cli_sub subs[] = {{"quarterly", quarterly}};
    return cli_run_sub(argc, argv, subs, 1, usage, "report", "quarterly");
}
