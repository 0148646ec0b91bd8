/*
 * The AVReport message for the national malware monitoring system, in the
 * edXML envelope of QCVN 102:2016 as document 2290/BTTTT-CATTT's connectors
 * build it (docs/internals/sharing.md, regulations Appendix A): what the
 * store knows of one period [start, end) — malware per machine, C&C
 * connections, operating systems and update state, machines not updated,
 * protection features — as a libxml2 tree, unsigned. xmldsig.c signs it and
 * sharing.c sends it.
 *
 * Element names and the namespace are in one table (edxml.c), because they
 * come from a third-party connector rather than the official annex and may
 * have to change. Private data of the parties is never read into the tree:
 * no file paths, user names, e-mail addresses of users, file contents,
 * observed URLs or query names; a machine appears only by its host name and
 * first address.
 */
#ifndef KHIEN_REPORT_EDXML_H
#define KHIEN_REPORT_EDXML_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

#include "server.h"

/* The size bounds of one document: machines per section and lines
 * (MalwareInfo, ConnectionInfo) in all. Rows beyond are left out, counted
 * in edxml_stats.omitted, and the document says nothing of them. */
enum { EDXML_MAX_MACHINES = 20000, EDXML_MAX_LINES = 100000 };

struct edxml_stats {
    unsigned malware_machines, malware_lines;
    unsigned connection_machines, connection_lines;
    unsigned os_machines, stale_machines;
    unsigned omitted; /* rows left out by the bounds above */
};

/* Builds the unsigned document for [start, end) from the store, with the
 * sender from cfg->org_* and AVReport@name = cfg->product_name. *out is
 * the caller's (xmlFreeDoc). 0, or -1 with err set. */
int edxml_build(struct store_db *db, const struct srv_report_config *cfg, int64_t start,
                int64_t end, xmlDocPtr *out, struct edxml_stats *stats, char *err, size_t errlen);

/* The element the signature goes into (edXMLHeader), or NULL. */
xmlNodePtr edxml_signature_parent(xmlDocPtr doc);

/* "Trojan" from "Win.Trojan.Agent-123", "Worm" from "Worm.Foo"; the
 * generic "Malware" when the name says nothing known. Static strings. */
const char *edxml_malware_type(const char *name);

/* "Server", "Workstation" or "" from an operating system's name. */
const char *edxml_device_type(const char *os);

#endif
