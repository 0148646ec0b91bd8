/*
 * The quarterly report to the Ministry: the data (gathered once from the
 * store by rpt_quarter_gather) and the three renderings of it, a PDF in
 * Vietnamese drawn with Cairo and Pango (pdf.c), and the same tables as CSV
 * (csv.c) and XLSX (xlsx.c). The renderers see only struct rpt_quarter, so
 * they are tested without a database and every format shows the same
 * figures. Contents follow ../shared/reference/regulations.md section 4
 * (RPT-1): coverage, the index's components and trend, top families, most
 * affected agencies, C&C contacts and what was done, open and resolved
 * detections.
 */
#ifndef KHIEN_REPORT_QUARTERLY_H
#define KHIEN_REPORT_QUARTERLY_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "period.h"
#include "server.h"

struct rpt_agency_line {
    int64_t agency_id;
    int depth; /* in the scope's tree, 0 for the scope's root(s) */
    char code[64];
    char name[256];
    struct idx_components c; /* the agency and everything below it, this quarter */
    double index;
    double index_prev; /* the previous quarter's; NAN when there was none */
};

struct rpt_family {
    char name[128];
    int64_t detections;
    int64_t machines;
    int64_t agencies;
};

/* One C&C contact: an internal host and an indicator, over the quarter. */
struct rpt_c2_line {
    char agency_code[64];
    char agency_name[256];
    char host[64];      /* the internal address */
    char hostname[256]; /* the machine with that address, when one is managed */
    char indicator[256];
    char category[32]; /* c2, malware, phishing, ... */
    char seen_in[32];  /* dns.query, tls.sni, ip.dst, ... */
    int64_t hits;
    int64_t first_seen, last_seen;
    char status[24]; /* new|acknowledged|resolved|false_positive: what was done */
    char note[256];  /* the officer's last note */
};

struct rpt_quarter {
    struct rpt_period period;
    /* Who reports: the province's identity from the configuration, and the
     * scope (the province, or one agency with --agency). */
    char org_id[64];
    char org_name[256];
    char scope_code[64]; /* "" for the whole province */
    char scope_name[256];
    char formula[512];
    int64_t generated_at;
    char generated_by[128];
    int64_t deadline; /* rpt_quarter_deadline() */
    /* Added for the renderings: dates are printed in local time at this
     * offset (srv_report_config.utc_offset), and the place name opening the
     * date line of a Vietnamese document ("Hà Giang, ngày ..."; may be ""). */
    int utc_offset;
    char place[128];

    struct idx_components total; /* the scope, this quarter */
    double index;
    struct idx_point months[3]; /* the quarter's months */
    struct idx_point trend[8];  /* the last ntrend quarters, oldest first, this one last */
    size_t ntrend;

    struct rpt_agency_line *agencies; /* every agency in scope, most affected first */
    size_t nagencies;
    struct rpt_family *families; /* the commonest, at most 20, most detections first */
    size_t nfamilies;
    struct rpt_c2_line *c2; /* every contact of the quarter, newest first, at most 5,000 */
    size_t nc2;
    int64_t c2_total; /* contacts in all, when more than nc2 */

    /* Detections: made this quarter by status at the quarter's end, and all
     * still open at the end (whenever made). */
    int64_t det_new, det_acknowledged, det_resolved, det_false_positive;
    int64_t det_open_at_end;
};

/* Gathers quarter q for the scope: the province when agency_id is 0. */
int rpt_quarter_gather(struct store_db *db, const struct srv_report_config *cfg,
                       const struct rpt_period *q, int64_t agency_id, int64_t now,
                       struct rpt_quarter **out, char *err, size_t errlen);
void rpt_quarter_free(struct rpt_quarter *q);

/* Renderings, into a malloc'd buffer the caller frees. */
int rpt_render_pdf(const struct rpt_quarter *q, uint8_t **out, size_t *len, char *err,
                   size_t errlen);
int rpt_render_csv(const struct rpt_quarter *q, uint8_t **out, size_t *len, char *err,
                   size_t errlen);
int rpt_render_xlsx(const struct rpt_quarter *q, uint8_t **out, size_t *len, char *err,
                    size_t errlen);

#endif
