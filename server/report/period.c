/*
 * Months and quarters in local time (period.h). Dates are turned into Unix
 * seconds with the days-from-civil arithmetic of the proleptic Gregorian
 * calendar rather than mktime(), so the result never depends on the
 * process's TZ: the province's offset is configuration.
 */
#include "period.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Days since 1970-01-01 of year-month-day (month 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t local_midnight(int year, int month, int day, int utc_offset)
{
    return days_from_civil(year, month, day) * 86400 - utc_offset;
}

static void set(struct rpt_period *p, enum rpt_period_kind kind, int year, int num, int utc_offset)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->year = year;
    p->num = num;
    int first = kind == RPT_MONTH ? num : 3 * (num - 1) + 1;
    int months = kind == RPT_MONTH ? 1 : 3;
    int ey = year, em = first + months;
    if (em > 12) {
        em -= 12;
        ey++;
    }
    p->start = local_midnight(year, first, 1, utc_offset);
    p->end = local_midnight(ey, em, 1, utc_offset);
    if (kind == RPT_MONTH)
        snprintf(p->label, sizeof(p->label), "%04d-%02d", year, num);
    else
        snprintf(p->label, sizeof(p->label), "%04dQ%d", year, num);
}

void rpt_period_month(int year, int month, int utc_offset, struct rpt_period *out)
{
    set(out, RPT_MONTH, year, month, utc_offset);
}

void rpt_period_quarter(int year, int quarter, int utc_offset, struct rpt_period *out)
{
    set(out, RPT_QUARTER, year, quarter, utc_offset);
}

int rpt_period_parse(const char *s, int utc_offset, struct rpt_period *out)
{
    if (s == NULL || strlen(s) < 6 || strlen(s) > 8)
        return -1;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)s[i]))
            return -1;
    int year = atoi(s);
    if (year < 2000 || year > 2999)
        return -1;
    const char *t = s + 4;
    if (*t == '-')
        t++;
    if ((t[0] == 'Q' || t[0] == 'q') && t[1] >= '1' && t[1] <= '4' && t[2] == '\0') {
        rpt_period_quarter(year, t[1] - '0', utc_offset, out);
        return 0;
    }
    if (t == s + 5 && isdigit((unsigned char)t[0]) && isdigit((unsigned char)t[1]) &&
        t[2] == '\0') {
        int m = (t[0] - '0') * 10 + (t[1] - '0');
        if (m < 1 || m > 12)
            return -1;
        rpt_period_month(year, m, utc_offset, out);
        return 0;
    }
    return -1;
}

void rpt_period_at(int64_t t, enum rpt_period_kind kind, int utc_offset, struct rpt_period *out)
{
    /* civil_from_days on the local day. */
    int64_t z = (t + utc_offset) / 86400 - ((t + utc_offset) % 86400 < 0);
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int y = (int)(yoe + era * 400 + (m <= 2));
    if (kind == RPT_MONTH)
        set(out, RPT_MONTH, y, m, utc_offset);
    else
        set(out, RPT_QUARTER, y, (m - 1) / 3 + 1, utc_offset);
}

void rpt_period_prev(const struct rpt_period *p, int utc_offset, struct rpt_period *out)
{
    int max = p->kind == RPT_MONTH ? 12 : 4;
    if (p->num > 1)
        set(out, p->kind, p->year, p->num - 1, utc_offset);
    else
        set(out, p->kind, p->year - 1, max, utc_offset);
}

void rpt_period_next(const struct rpt_period *p, int utc_offset, struct rpt_period *out)
{
    int max = p->kind == RPT_MONTH ? 12 : 4;
    if (p->num < max)
        set(out, p->kind, p->year, p->num + 1, utc_offset);
    else
        set(out, p->kind, p->year + 1, 1, utc_offset);
}

void rpt_period_months(const struct rpt_period *q, int utc_offset, struct rpt_period out[3])
{
    for (int i = 0; i < 3; i++)
        set(&out[i], RPT_MONTH, q->year, 3 * (q->num - 1) + 1 + i, utc_offset);
}

int64_t rpt_quarter_deadline(const struct rpt_period *q, unsigned deadline_day, int utc_offset)
{
    return local_midnight(q->year, 3 * q->num, (int)deadline_day, utc_offset);
}

int64_t rpt_quarter_reminder(const struct rpt_period *q, unsigned reminder_day, int utc_offset)
{
    return local_midnight(q->year, 3 * q->num, (int)reminder_day, utc_offset);
}
