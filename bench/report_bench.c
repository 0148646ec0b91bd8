/*
 * `make bench-report`: how long the quarterly report for a large province
 * takes. Seeds a store (SQLite in a temporary folder, or the PostgreSQL of
 * the URL given as the first argument) with 500 agencies under one province
 * (20 districts and departments of 24 agencies each), 10,000 machines
 * (a tenth of them out of date), detections spread over the quarter (a
 * fifth resolved) and C&C hits, then times the gathering and each rendering
 * of 2026Q4 as `khien report quarterly` makes it, and prints the sizes. The
 * issue's target is the whole report under 10 s (docs/PERFORMANCE.md).
 *
 *   report_bench [postgresql://...] [--detections N] [--c2 N]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "khx.h"
#include "period.h"
#include "quarterly.h"
#include "reports.h"
#include "server.h"
#include "testutil.h"

enum { DISTRICTS = 20, PER_DISTRICT = 24, MACHINES = 10000 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *const families[] = {
    "Win.Trojan.Emotet", "Win.Trojan.Agent",   "Win.Ransomware.LockBit", "Win.Worm.Conficker",
    "Doc.Dropper.Agent", "Win.Malware.Zusy",   "Html.Phishing.Bank",     "Unix.Trojan.Mirai",
    "Win.Trojan.Qakbot", "Win.Packed.Generic", "Js.Downloader.Nemucod",  "Win.Virus.Sality"};

static int seed(struct store_db *db, struct rpt_period *q, int64_t ndet, int64_t nc2)
{
    int64_t ids[DISTRICTS * PER_DISTRICT + DISTRICTS + 1];
    size_t nids = 0;
    char code[64], name[256], path[128];
    int64_t id = 0, now = q->end - 86400;
    if (store_begin_write(db) != 0)
        return -1;
    if (store_query_int(db, &id,
                        "INSERT INTO agencies (code, name, kind, created_at) VALUES"
                        " ('tinh', 'Ủy ban nhân dân tỉnh', 'province', $1) RETURNING id",
                        "i", now) != STORE_ROW)
        return -1;
    snprintf(path, sizeof(path), "/%" PRId64 "/", id);
    store_execf(db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", path, id);
    int64_t province = id;
    int64_t agencies[DISTRICTS * PER_DISTRICT];
    size_t nag = 0;
    for (int d = 0; d < DISTRICTS; d++) {
        snprintf(code, sizeof(code), "huyen-%02d", d);
        snprintf(name, sizeof(name), "%s số %d", d % 2 ? "Ủy ban nhân dân huyện" : "Sở", d + 1);
        if (store_query_int(db, &id,
                            "INSERT INTO agencies (parent_id, code, name, kind, created_at) VALUES"
                            " ($1, $2, $3, $4, $5) RETURNING id",
                            "ittti", province, code, name, d % 2 ? "district" : "department",
                            now) != STORE_ROW)
            return -1;
        char dpath[128];
        snprintf(dpath, sizeof(dpath), "/%" PRId64 "/%" PRId64 "/", province, id);
        store_execf(db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", dpath, id);
        int64_t district = id;
        ids[nids++] = district;
        for (int a = 0; a < PER_DISTRICT; a++) {
            snprintf(code, sizeof(code), "dv-%02d-%02d", d, a);
            snprintf(name, sizeof(name), "Phòng Giáo dục và Đào tạo, trường học số %d-%d", d + 1,
                     a + 1);
            if (store_query_int(db, &id,
                                "INSERT INTO agencies (parent_id, code, name, kind,"
                                " expected_machines, created_at) VALUES ($1, $2, $3, 'agency', $4,"
                                " $5) RETURNING id",
                                "ittii", district, code, name, (int64_t)(MACHINES / 480 + 3),
                                now) != STORE_ROW)
                return -1;
            char apath[160];
            snprintf(apath, sizeof(apath), "%s%" PRId64 "/", dpath, id);
            store_execf(db, NULL, "UPDATE agencies SET path = $1 WHERE id = $2", "ti", apath, id);
            agencies[nag++] = id;
        }
    }
    for (int m = 0; m < MACHINES; m++) {
        char mid[40], host[64], ip[32];
        snprintf(mid, sizeof(mid), "00000000-0000-4000-8000-%012d", m);
        snprintf(host, sizeof(host), "pc-%05d", m);
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", m / 65536, (m / 256) % 256, m % 256);
        int64_t db_time = (m % 10 == 0) ? now - 40 * 86400 : now - 86400;
        if (store_execf(db, NULL,
                        "INSERT INTO machines (id, agency_id, hostname, os, ips, db_time, rtp,"
                        " firewall, enrolled_at, last_seen) VALUES ($1, $2, $3, 'Windows 10', $4,"
                        " $5, 1, 1, $6, $7)",
                        "tittiii", mid, agencies[m % nag], host, ip, db_time, q->start - 86400 * 30,
                        now) != 0)
            return -1;
    }
    for (int64_t i = 0; i < ndet; i++) {
        int m = (int)(next_rand() % MACHINES);
        char mid[40], ev[32];
        snprintf(mid, sizeof(mid), "00000000-0000-4000-8000-%012d", m);
        snprintf(ev, sizeof(ev), "ev-%" PRId64, i);
        const char *fam = families[next_rand() % (sizeof(families) / sizeof(families[0]))];
        int64_t at = q->start + (int64_t)(next_rand() % (uint64_t)(q->end - q->start - 86400));
        const char *status = i % 5 == 0 ? "resolved" : "new";
        if (store_execf(db, NULL,
                        "INSERT INTO detections (event_id, machine_id, agency_id, path, signature,"
                        " family, detected_at, received_at, status, status_at) VALUES ($1, $2, $3,"
                        " 'C:\\Users\\x\\a.exe', $4, $5, $6, $6, $7, $6)",
                        "ttittit", ev, mid, agencies[m % nag], fam, fam, at, status) != 0)
            return -1;
    }
    for (int64_t i = 0; i < nc2; i++) {
        int m = (int)(next_rand() % MACHINES);
        char mid[40], ev[32], ip[32], ind[64];
        snprintf(mid, sizeof(mid), "00000000-0000-4000-8000-%012d", m);
        snprintf(ev, sizeof(ev), "c2-%" PRId64, i);
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", m / 65536, (m / 256) % 256, m % 256);
        snprintf(ind, sizeof(ind), "c2-%d.example-bad.net", (int)(next_rand() % 300));
        int64_t at = q->start + (int64_t)(next_rand() % (uint64_t)(q->end - q->start - 86400));
        if (store_execf(db, NULL,
                        "INSERT INTO c2_hits (event_id, machine_id, agency_id, host, indicator,"
                        " kind, category, seen_in, hit_count, first_seen, last_seen, received_at)"
                        " VALUES ($1, $2, $3, $4, $5, 'domain', 'c2', 'dns.query', 3, $6, $6, $6)",
                        "ttitti", ev, mid, agencies[m % nag], ip, ind, at) != 0)
            return -1;
    }
    (void)ids;
    return store_commit(db);
}

int main(int argc, char **argv)
{
    const char *pg = NULL;
    int64_t ndet = 50000, nc2 = 5000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--detections") == 0 && i + 1 < argc)
            ndet = atoll(argv[++i]);
        else if (strcmp(argv[i], "--c2") == 0 && i + 1 < argc)
            nc2 = atoll(argv[++i]);
        else
            pg = argv[i];
    }
    const char *dir = tu_mkdtemp();
    struct store_db *db = tu_store_open(dir, pg, 0);
    if (db == NULL) {
        fprintf(stderr, "report_bench: cannot open the store\n");
        return 1;
    }
    struct srv_report_config cfg;
    srv_report_config_defaults(&cfg);
    snprintf(cfg.org_name, sizeof(cfg.org_name), "Sở Thông tin và Truyền thông");
    struct rpt_period q;
    rpt_period_parse("2026Q4", cfg.utc_offset, &q);
    double t0 = now_s();
    if (seed(db, &q, ndet, nc2) != 0) {
        fprintf(stderr, "report_bench: seeding failed: %s\n", store_errmsg(db));
        return 1;
    }
    double t1 = now_s();
    printf("backend %s: %d agencies, %d machines, %" PRId64 " detections, %" PRId64
           " C&C hits seeded in %.2f s\n",
           pg ? "postgresql" : "sqlite", 1 + DISTRICTS * (PER_DISTRICT + 1), MACHINES, ndet, nc2,
           t1 - t0);

    char err[512];
    struct rpt_quarter *data = NULL;
    double g0 = now_s();
    if (rpt_quarter_gather(db, &cfg, &q, 0, q.end - 3600, &data, err, sizeof(err)) != 0) {
        fprintf(stderr, "report_bench: gather: %s\n", err);
        return 1;
    }
    double g1 = now_s();
    printf("gather          %6.3f s  (%zu agencies, %zu families, %zu C&C lines)\n", g1 - g0,
           data->nagencies, data->nfamilies, data->nc2);
    typedef int (*render_fn)(const struct rpt_quarter *, uint8_t **, size_t *, char *, size_t);
    static const render_fn render[] = {rpt_render_pdf, rpt_render_csv, rpt_render_xlsx};
    double total = g1 - g0;
    for (int f = 0; f < RPT_NFORMATS; f++) {
        uint8_t *out = NULL;
        size_t len = 0;
        double r0 = now_s();
        if (render[f](data, &out, &len, err, sizeof(err)) != 0) {
            fprintf(stderr, "report_bench: %s: %s\n", rpt_format_name(f), err);
            return 1;
        }
        double r1 = now_s();
        total += r1 - r0;
        printf("render %-5s    %6.3f s  (%zu bytes)\n", rpt_format_name(f), r1 - r0, len);
        free(out);
    }
    rpt_quarter_free(data);

    /* The whole path as the dashboard and the CLI take it, recorded. */
    struct rpt_output outs[RPT_NFORMATS];
    size_t nout = 0;
    double p0 = now_s();
    if (rpt_produce_quarterly(db, &cfg, &q, 0, 7, 0, "bench", q.end - 3600, outs, &nout, err,
                              sizeof(err)) != 0) {
        fprintf(stderr, "report_bench: produce: %s\n", err);
        return 1;
    }
    double p1 = now_s();
    rpt_outputs_free(outs, nout);
    printf("parts together  %6.3f s\n", total);
    printf("produce+record  %6.3f s  (target < 10 s: %s)\n", p1 - p0,
           p1 - p0 < 10 ? "met" : "NOT met");
    store_close(db);
    tu_rmtree(dir);
    return p1 - p0 < 10 ? 0 : 1;
}
