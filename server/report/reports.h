/*
 * Producing reports and keeping a record of each (the `reports` table of
 * migration 6): the dashboard's button, the API and `khien report` all go
 * through rpt_produce_quarterly, so every report produced, by whom and
 * when, has a row with its bytes and their SHA-256, whatever asked for it.
 */
#ifndef KHIEN_REPORT_REPORTS_H
#define KHIEN_REPORT_REPORTS_H

#include <stddef.h>
#include <stdint.h>

#include "period.h"
#include "server.h"

enum { RPT_PDF = 0, RPT_CSV = 1, RPT_XLSX = 2, RPT_NFORMATS = 3 };

/* "pdf", "csv", "xlsx"; their media types; RPT_* from a name or -1. */
const char *rpt_format_name(int format);
const char *rpt_format_type(int format);
int rpt_format_parse(const char *name);

struct rpt_output {
    int format;
    int64_t id; /* the row in `reports` */
    uint8_t *data;
    size_t len;
    char sha256[65];
};

/* Gathers quarter q for the scope (agency_id 0 = the province), renders the
 * formats whose bit (1 << RPT_*) is set in `formats`, and records each in
 * `reports` as made by user_id (0 for none) named `who`. out[] gets one
 * entry per format produced, in RPT_* order; *nout their number. The
 * caller frees with rpt_outputs_free. */
int rpt_produce_quarterly(struct store_db *db, const struct srv_report_config *cfg,
                          const struct rpt_period *q, int64_t agency_id, unsigned formats,
                          int64_t user_id, const char *who, int64_t now,
                          struct rpt_output out[RPT_NFORMATS], size_t *nout, char *err,
                          size_t errlen);
void rpt_outputs_free(struct rpt_output *out, size_t n);

#endif
