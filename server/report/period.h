/*
 * Reporting periods: calendar months and quarters in the province's local
 * time (srv_report_config.utc_offset, +07:00 by default), as half-open
 * ranges of Unix seconds [start, end). Every figure of the index and the
 * quarterly report is counted over one of these, so that a detection at
 * 23:30 on 31 December (local) belongs to Q4 and not to the next year.
 */
#ifndef KHIEN_REPORT_PERIOD_H
#define KHIEN_REPORT_PERIOD_H

#include <stdint.h>

enum rpt_period_kind { RPT_MONTH = 1, RPT_QUARTER = 2 };

struct rpt_period {
    enum rpt_period_kind kind;
    int year;
    int num;            /* month 1-12 or quarter 1-4 */
    int64_t start, end; /* [start, end) in Unix seconds */
    char label[16];     /* "2026-11" or "2026Q4" */
};

/* "2026Q4", "2026q4", "2026-Q4" or "2026-11". Returns 0, or -1 for anything
 * else (years 2000-2999). */
int rpt_period_parse(const char *s, int utc_offset, struct rpt_period *out);
void rpt_period_month(int year, int month, int utc_offset, struct rpt_period *out);
void rpt_period_quarter(int year, int quarter, int utc_offset, struct rpt_period *out);
/* The month or quarter holding time t. */
void rpt_period_at(int64_t t, enum rpt_period_kind kind, int utc_offset, struct rpt_period *out);
/* The period before / after p, of the same kind. */
void rpt_period_prev(const struct rpt_period *p, int utc_offset, struct rpt_period *out);
void rpt_period_next(const struct rpt_period *p, int utc_offset, struct rpt_period *out);
/* The months of quarter q (3 of them). */
void rpt_period_months(const struct rpt_period *q, int utc_offset, struct rpt_period out[3]);
/* When the quarterly report for q is due: local midnight starting
 * `deadline_day` of the quarter's last month ("before the 20th"), and when
 * the dashboard starts reminding (`reminder_day` of that month). */
int64_t rpt_quarter_deadline(const struct rpt_period *q, unsigned deadline_day, int utc_offset);
int64_t rpt_quarter_reminder(const struct rpt_period *q, unsigned reminder_day, int utc_offset);

#endif
