/*
 * The malware infection index (chỉ số lây nhiễm mã độc), per agency, per
 * district or department (an agency and everything below it) and for the
 * province, per month and per quarter. No national formula is published
 * (../shared/reference/regulations.md section 3), so the index is kept as
 * its raw components and the number itself is a configured expression of
 * them (srv_report_config.index_formula): changing the weights never needs
 * the data again.
 *
 * Components of a period (struct idx_components) are counted from the
 * store: machines and their databases, detections, C&C hits and the sharing
 * submissions. What cannot be recounted later (how many machines were
 * managed and how many were out of date at the end of a month) is kept per
 * agency when a month closes (the "index-month" job), and a past period
 * reads those snapshots; the current period is counted live.
 */
#ifndef KHIEN_REPORT_INDEX_H
#define KHIEN_REPORT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "period.h"
#include "server.h"

/* Raw components of one agency's own machines, or of a subtree. All counts. */
struct idx_components {
    int64_t managed;     /* machines with an agent (role agent, not retired) at the period's end */
    int64_t expected;    /* agencies.expected_machines */
    int64_t infected;    /* managed machines with a detection in the period not resolved or marked
                            false positive by its end, or whose address had a C&C hit in the period */
    int64_t stale;       /* managed machines whose database is older than stale_days at the period's
                            end (at `now` for the current period) */
    int64_t c2_hosts;    /* distinct internal addresses of the agency seen contacting C&C */
    int64_t c2_hits;     /* C&C hits (rows) in the period */
    int64_t detections;  /* detections made in the period */
    int64_t families;    /* distinct families among them (not a sum over children: counted) */
    int64_t open;        /* of those detections, still new or acknowledged at the period's end */
    int64_t resolved;    /* of those detections, resolved or false positive */
    int64_t share_slots; /* sharing submissions scheduled in the period (province-wide) */
    int64_t share_accepted; /* of those, accepted by the receiver */
};

/* The rates the formula sees besides the raw counts (each 0..1):
 *   infected_rate  = infected / managed         (0 when managed = 0)
 *   stale_rate     = stale / managed            (0 when managed = 0)
 *   coverage       = min(1, managed / expected)  (1 when expected = 0)
 *   sharing_uptime = share_accepted / share_slots (1 when no slot) */
struct idx_rates {
    double infected_rate, stale_rate, coverage, sharing_uptime;
};
void idx_rates_of(const struct idx_components *c, struct idx_rates *out);

/* The formula: an arithmetic expression over numbers, the component names
 * above (managed, expected, infected, stale, c2_hosts, c2_hits, detections,
 * families, open, resolved, share_slots, share_accepted), the rates, + - * /,
 * parentheses, unary minus and the functions min(a,b), max(a,b). Division
 * by zero gives 0. Compiled once, evaluated per row. */
struct idx_formula;
int idx_formula_compile(const char *text, struct idx_formula **out, char *err, size_t errlen);
double idx_formula_eval(const struct idx_formula *f, const struct idx_components *c);
void idx_formula_free(struct idx_formula *f);

/* One agency in a period. */
struct idx_row {
    int64_t agency_id;
    int64_t parent_id; /* 0 for a root */
    int depth;         /* 0 for a root */
    char code[64];
    char name[256];
    char kind[16];               /* province|department|district|agency */
    struct idx_components own;   /* the agency's own machines */
    struct idx_components total; /* the agency and everything below it */
    double index;                /* the formula over total */
};

/* Every agency of the tree (or of the subtree of root_agency when it is not
 * 0), in tree order (parent before children, siblings by name), with the
 * province's figures in `province` (all roots together when root_agency is
 * 0, else the subtree). */
struct idx_table {
    struct rpt_period period;
    struct idx_row *rows;
    size_t n;
    struct idx_components province;
    double province_index;
};

/* Counts period p for every agency. `now` bounds the current period (a
 * period that has not ended is counted up to now). */
int idx_compute(struct store_db *db, const struct srv_report_config *cfg,
                const struct rpt_period *p, int64_t root_agency, int64_t now, struct idx_table *out,
                char *err, size_t errlen);
void idx_table_free(struct idx_table *t);

/* The trend: the index of the subtree of `agency_id` (0 = province) for the
 * `count` periods of p's kind ending with p, oldest first. */
struct idx_point {
    struct rpt_period period;
    struct idx_components c;
    double index;
};
int idx_trend(struct store_db *db, const struct srv_report_config *cfg, const struct rpt_period *p,
              int64_t agency_id, unsigned count, int64_t now, struct idx_point *out, char *err,
              size_t errlen);

/* The "index-month" job (jobs.c): keeps the snapshots of every month that
 * has ended and has none yet. */
int idx_job_month(struct srv *s, struct store_db *db, int64_t now, char *msg, size_t msglen);

#endif
