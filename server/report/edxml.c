/*
 * Builds the AVReport message (edxml.h) from the store with libxml2. The
 * element names, the namespace and the values written for yes/no are the
 * table below, from the connector described in the regulations' Appendix
 * A; nothing else in this file spells them. Each section is one query,
 * ordered so that a machine's lines are consecutive, bounded by the limits
 * in edxml.h. Text from the store (host names, operating systems, malware
 * names) passes through clean_text(), so that invalid UTF-8 or control
 * characters that an agent sent cannot make the document ill-formed.
 */
#include "edxml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* The names (regulations Appendix A).                                      */
/* ------------------------------------------------------------------------ */

#define EDXML_NS        "http://www.mic.gov.vn/TBT/QCVN_102_2016"
#define EDXML_NS_PREFIX "edXML"

/* Elements in the edXML namespace. */
#define N_ENVELOPE   "edXMLEnvelope"
#define N_HEADER     "edXMLHeader"
#define N_MSG_HEADER "MessageHeader"
#define N_FROM       "From"
#define N_ORGAN_ID   "OrganId"
#define N_ORGAN_NAME "OrganName"
#define N_ORGAN_ADD  "OrganAdd"
#define N_EMAIL      "Email"
#define N_TELEPHONE  "Telephone"
#define N_FAX        "Fax"
#define N_WEBSITE    "Website"
#define N_BODY       "edXMLBody"
/* Elements in no namespace, as the connector writes them. */
#define N_SUBJECT       "Subject"
#define N_AVREPORT      "AVReport"
#define A_AVREPORT_NAME "name"
#define N_DATETIME      "Datetime"
#define N_MACHINE       "Machine"
#define A_MACHINE_IP    "ip"
#define A_MACHINE_NAME  "name"
#define N_MALWARE       "Malware"
#define N_MALWARE_INFO  "MalwareInfo"
#define N_MALWARE_NAME  "MalwareName"
#define N_MALWARE_TYPE  "MalwareType"
#define N_MALWARE_BEHAV "MalwareBehavior"
#define N_DEVICE_TYPE   "TypeOfDevice"
#define N_NUMBER_FILE   "NumberFile"
#define N_CONNECTION    "Connection"
#define N_CONN_INFO     "ConnectionInfo"
#define N_PROGRAM       "Program"
#define N_MD5           "md5"
#define N_SHA2          "Sha2"
#define N_TARGET_IP     "TargetIP"
#define N_VULNERABILITY "Vulnerability"
#define N_OS            "OS"
#define N_OS_NAME       "OSName"
#define N_LAST_UPDATE   "LastUpdate"
#define N_UPDATE        "Update"
#define N_NOT_UPDATED   "NumberMachineNotUpdateOn15Day"
#define N_QUALITY       "QualityFeature"
#define N_AUTO_PROTECT  "AutoProtect"
#define N_FIREWALL      "EnableFirewall"
#define V_YES           "1"
#define V_NO            "0"
#define SUBJECT_FORMAT  "Anti Virus Report on %02d-%02d-%04d %02d:%02d:%02d"

enum { TEXT_MAX = 1024 }; /* longest text put in one element or attribute */

/* ------------------------------------------------------------------------ */
/* Names of things.                                                          */
/* ------------------------------------------------------------------------ */

/* ClamAV-style names are Platform.Category.Name-N; other engines put the
 * category first. The canonical spelling is what the report shows. */
static const char *const malware_types[] = {
    "Trojan",      "Worm",    "Virus",    "Ransomware", "Backdoor",  "Adware",    "Spyware",
    "Downloader",  "Dropper", "Exploit",  "Rootkit",    "Keylogger", "Coinminer", "Miner",
    "Infostealer", "Botnet",  "Phishing", "PUA",        "Packed",    "Test",      "Malware",
};

const char *edxml_malware_type(const char *name)
{
    const char *p = name != NULL ? name : "";

    /* The first three dot-separated parts, compared whole. */
    for (int part = 0; part < 3 && *p != '\0'; part++) {
        size_t n = strcspn(p, ".:/");
        for (size_t i = 0; i < sizeof(malware_types) / sizeof(malware_types[0]); i++)
            if (strlen(malware_types[i]) == n && strncasecmp(p, malware_types[i], n) == 0)
                return malware_types[i];
        if (n == 6 && strncasecmp(p, "Ransom", 6) == 0)
            return "Ransomware";
        p += n;
        if (*p == '\0')
            break;
        p++;
    }
    return "Malware";
}

const char *edxml_device_type(const char *os)
{
    if (os == NULL || *os == '\0')
        return "";
    if (strcasestr(os, "server") != NULL)
        return "Server";
    if (strcasestr(os, "windows") != NULL || strcasestr(os, "mac") != NULL ||
        strcasestr(os, "darwin") != NULL)
        return "Workstation";
    return ""; /* Linux and others: either, and the store cannot tell */
}

/* ------------------------------------------------------------------------ */
/* Tree helpers.                                                             */
/* ------------------------------------------------------------------------ */

/* Copies at most TEXT_MAX-1 bytes of s into dst as valid XML 1.0 text:
 * each byte of invalid or overlong UTF-8 and each control character (other
 * than tab) becomes '?', and a character is never cut in half. */
static const char *clean_text(char dst[TEXT_MAX], const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t o = 0;

    while (*p != '\0') {
        unsigned c = *p;
        size_t n = c < 0x80                 ? 1
                   : c >= 0xC2 && c <= 0xDF ? 2
                   : (c & 0xF0) == 0xE0     ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4
                                            : 0;
        int ok = n > 0;
        for (size_t k = 1; ok && k < n; k++)
            ok = (p[k] & 0xC0) == 0x80; /* also stops at the NUL */
        if (ok && n == 3)
            ok = !(c == 0xE0 && p[1] < 0xA0) &&
                 !(c == 0xED && p[1] >= 0xA0); /* overlong, surrogate */
        if (ok && n == 4)
            ok = !(c == 0xF0 && p[1] < 0x90) && !(c == 0xF4 && p[1] >= 0x90);
        if (ok && n == 1 && ((c < 0x20 && c != '\t') || c == 0x7F))
            ok = 0;
        if (!ok)
            n = 1;
        if (o + n >= TEXT_MAX)
            break;
        if (ok)
            memcpy(dst + o, p, n);
        else
            dst[o] = '?';
        o += ok ? n : 1;
        p += n;
    }
    dst[o] = '\0';
    return dst;
}

/* A child element in namespace `ns`, or in none when ns is NULL
 * (xmlNewChild would give it the parent's). NULL when out of memory. */
static xmlNodePtr child(xmlNodePtr parent, xmlNsPtr ns, const char *name)
{
    xmlNodePtr n = xmlNewDocNode(parent->doc, ns, BAD_CAST name, NULL);
    if (n != NULL && xmlAddChild(parent, n) == NULL) {
        xmlFreeNode(n);
        n = NULL;
    }
    return n;
}

/* A child element with text, kept literally (escaped when written). */
static xmlNodePtr add(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
    char buf[TEXT_MAX];
    xmlNodePtr n = child(parent, ns, name);
    if (n != NULL && text != NULL && *text != '\0')
        xmlNodeAddContent(n, BAD_CAST clean_text(buf, text));
    return n;
}

static xmlNodePtr add_int(xmlNodePtr parent, const char *name, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return add(parent, NULL, name, buf);
}

/* The first address of a space-separated list. */
static void first_ip(char out[64], const char *ips)
{
    const char *p = ips != NULL ? ips : "";
    p += strspn(p, " ");
    size_t n = strcspn(p, " ");
    if (n >= 64)
        n = 0; /* not an address */
    memcpy(out, p, n);
    out[n] = '\0';
}

/* <Machine ip=".." name=".."> under parent. */
static xmlNodePtr add_machine(xmlNodePtr parent, const char *ip, const char *name)
{
    char buf[TEXT_MAX];
    xmlNodePtr m = child(parent, NULL, N_MACHINE);
    if (m == NULL || xmlNewProp(m, BAD_CAST A_MACHINE_IP, BAD_CAST clean_text(buf, ip)) == NULL ||
        xmlNewProp(m, BAD_CAST A_MACHINE_NAME, BAD_CAST clean_text(buf, name)) == NULL)
        return NULL;
    return m;
}

/* ------------------------------------------------------------------------ */
/* Sections.                                                                 */
/* ------------------------------------------------------------------------ */

struct build {
    struct store_db *db;
    const struct srv_report_config *cfg;
    int64_t start, end;
    struct edxml_stats st;
    unsigned lines; /* MalwareInfo + ConnectionInfo so far */
    char *err;
    size_t errlen;
};

static int store_failed(struct build *b, const char *what, int s)
{
    snprintf(b->err, b->errlen, "%s: %s: %s", what, store_strerror(s), store_errmsg(b->db));
    return -1;
}

/* Malware/Machine/MalwareInfo: per machine and family, the detections of
 * the period that are not false positives. NumberFile counts the distinct
 * files (the path is compared in SQL and never read out). */
static int malware_section(struct build *b, xmlNodePtr report)
{
    struct store_stmt *st = NULL;
    xmlNodePtr sec = child(report, NULL, N_MALWARE), machine = NULL;
    char last[64] = "", ip[64];
    int s;

    if (sec == NULL)
        goto nomem;
    s = store_queryf(b->db, &st,
                     "SELECT d.machine_id, m.hostname, m.ips, m.os,"
                     " CASE WHEN d.family = '' THEN d.signature ELSE d.family END,"
                     " count(DISTINCT d.path), min(d.signature)"
                     " FROM detections d JOIN machines m ON m.id = d.machine_id"
                     " WHERE d.detected_at >= $1 AND d.detected_at < $2"
                     " AND d.status <> 'false_positive'"
                     " GROUP BY d.machine_id, m.hostname, m.ips, m.os,"
                     " CASE WHEN d.family = '' THEN d.signature ELSE d.family END"
                     " ORDER BY d.machine_id, 5 LIMIT $3",
                     "iii", b->start, b->end, (int64_t)EDXML_MAX_LINES + 1);
    for (; s == STORE_ROW; s = store_step(st)) {
        const char *id = store_col_text(st, 0), *name = store_col_text(st, 4);
        if (id == NULL)
            continue;
        if (machine == NULL || strcmp(id, last) != 0) {
            if (b->st.malware_machines >= EDXML_MAX_MACHINES) {
                b->st.omitted++;
                continue;
            }
            first_ip(ip, store_col_text(st, 2));
            if ((machine = add_machine(sec, ip, store_col_text(st, 1))) == NULL)
                goto nomem;
            snprintf(last, sizeof(last), "%s", id);
            b->st.malware_machines++;
        }
        if (b->lines >= EDXML_MAX_LINES) {
            b->st.omitted++;
            continue;
        }
        const char *type = edxml_malware_type(name);
        if (strcmp(type, "Malware") == 0)
            type = edxml_malware_type(store_col_text(st, 6));
        xmlNodePtr info = child(machine, NULL, N_MALWARE_INFO);
        if (info == NULL || add(info, NULL, N_MALWARE_NAME, name) == NULL ||
            add(info, NULL, N_MALWARE_TYPE, type) == NULL ||
            add(info, NULL, N_MALWARE_BEHAV, "") == NULL ||
            add(info, NULL, N_DEVICE_TYPE, edxml_device_type(store_col_text(st, 3))) == NULL ||
            add_int(info, N_NUMBER_FILE, store_col_int(st, 5)) == NULL)
            goto nomem;
        b->lines++;
        b->st.malware_lines++;
    }
    store_finalize(st);
    return s < 0 ? store_failed(b, "reading detections", s) : 0;
nomem:
    store_finalize(st);
    snprintf(b->err, b->errlen, "out of memory building the Malware section");
    return -1;
}

/* Connection/Machine/ConnectionInfo: per internal host (within its agency:
 * one private address in two agencies is two machines) and destination,
 * the C&C contacts of the period that are not false positives. The
 * destination is the address the host connected to, or the indicator when
 * the sensor saw only a name (a DNS query). The sensor knows neither the
 * program nor a file, so Program, md5 and Sha2 are empty; the machine's
 * name is that of a managed machine of the agency holding that address. */
static int connection_section(struct build *b, xmlNodePtr report)
{
    struct store_stmt *st = NULL;
    xmlNodePtr sec = child(report, NULL, N_CONNECTION), machine = NULL;
    char last[128] = "", key[128];
    int s;

    if (sec == NULL)
        goto nomem;
    s = store_queryf(
        b->db, &st,
        "SELECT g.agency_id, g.host, g.target,"
        " COALESCE((SELECT m.hostname FROM machines m WHERE m.agency_id = g.agency_id"
        " AND m.retired = 0 AND (' ' || m.ips || ' ') LIKE ('% ' || g.host || ' %')"
        " ORDER BY m.last_seen DESC LIMIT 1), '')"
        " FROM (SELECT agency_id, host,"
        " CASE WHEN dest_ip <> '' THEN dest_ip ELSE indicator END AS target FROM c2_hits"
        " WHERE last_seen >= $1 AND first_seen < $2 AND status <> 'false_positive'"
        " GROUP BY agency_id, host, CASE WHEN dest_ip <> '' THEN dest_ip ELSE indicator END) g"
        " ORDER BY g.agency_id, g.host, g.target LIMIT $3",
        "iii", b->start, b->end, (int64_t)EDXML_MAX_LINES + 1);
    for (; s == STORE_ROW; s = store_step(st)) {
        const char *host = store_col_text(st, 1);
        snprintf(key, sizeof(key), "%lld/%s", (long long)store_col_int(st, 0),
                 host != NULL ? host : "");
        if (machine == NULL || strcmp(key, last) != 0) {
            if (b->st.connection_machines >= EDXML_MAX_MACHINES) {
                b->st.omitted++;
                continue;
            }
            if ((machine = add_machine(sec, host, store_col_text(st, 3))) == NULL)
                goto nomem;
            snprintf(last, sizeof(last), "%s", key);
            b->st.connection_machines++;
        }
        if (b->lines >= EDXML_MAX_LINES) {
            b->st.omitted++;
            continue;
        }
        xmlNodePtr info = child(machine, NULL, N_CONN_INFO);
        if (info == NULL || add(info, NULL, N_PROGRAM, "") == NULL ||
            add(info, NULL, N_MD5, "") == NULL || add(info, NULL, N_SHA2, "") == NULL ||
            add(info, NULL, N_TARGET_IP, store_col_text(st, 2)) == NULL)
            goto nomem;
        b->lines++;
        b->st.connection_lines++;
    }
    store_finalize(st);
    return s < 0 ? store_failed(b, "reading C&C hits", s) : 0;
nomem:
    store_finalize(st);
    snprintf(b->err, b->errlen, "out of memory building the Connection section");
    return -1;
}

/* OS/Machine and QualityFeature/Machine: every managed machine (enrolled
 * agents, not retired) as it stands when the report is built, and the
 * count of those whose signature database is older than stale_days at the
 * period's end. */
static int machine_sections(struct build *b, xmlNodePtr report)
{
    struct store_stmt *st = NULL;
    xmlNodePtr os = NULL, upd, quality = NULL;
    int64_t stale = 0;
    char ip[64];
    int s;

    /* Vulnerability: Khiên has no vulnerability data yet; the element is
     * there, empty, so the receiver sees the section it expects. */
    if (child(report, NULL, N_VULNERABILITY) == NULL || (os = child(report, NULL, N_OS)) == NULL)
        goto nomem;
    s = store_query_int(b->db, &stale,
                        "SELECT count(*) FROM machines WHERE retired = 0 AND role = 'agent'"
                        " AND db_time < $1",
                        "i", b->end - (int64_t)b->cfg->stale_days * 86400);
    if (s < 0)
        return store_failed(b, "counting machines not updated", s);
    b->st.stale_machines = (unsigned)stale;
    if ((upd = child(report, NULL, N_UPDATE)) == NULL ||
        add_int(upd, N_NOT_UPDATED, stale) == NULL ||
        (quality = child(report, NULL, N_QUALITY)) == NULL)
        goto nomem;

    s = store_queryf(b->db, &st,
                     "SELECT hostname, ips, os, db_time, rtp, firewall FROM machines"
                     " WHERE retired = 0 AND role = 'agent' ORDER BY agency_id, hostname, id"
                     " LIMIT $1",
                     "i", (int64_t)EDXML_MAX_MACHINES + 1);
    for (; s == STORE_ROW; s = store_step(st)) {
        if (b->st.os_machines >= EDXML_MAX_MACHINES) {
            b->st.omitted++;
            continue;
        }
        first_ip(ip, store_col_text(st, 1));
        xmlNodePtr m = add_machine(os, ip, store_col_text(st, 0));
        xmlNodePtr q = add_machine(quality, ip, store_col_text(st, 0));
        if (m == NULL || q == NULL || add(m, NULL, N_OS_NAME, store_col_text(st, 2)) == NULL ||
            add_int(m, N_LAST_UPDATE, store_col_int(st, 3)) == NULL ||
            add(q, NULL, N_AUTO_PROTECT, store_col_int(st, 4) ? V_YES : V_NO) == NULL ||
            add(q, NULL, N_FIREWALL, store_col_int(st, 5) ? V_YES : V_NO) == NULL)
            goto nomem;
        b->st.os_machines++;
    }
    store_finalize(st);
    return s < 0 ? store_failed(b, "reading machines", s) : 0;
nomem:
    store_finalize(st);
    snprintf(b->err, b->errlen, "out of memory building the machine sections");
    return -1;
}

/* ------------------------------------------------------------------------ */
/* The document.                                                             */
/* ------------------------------------------------------------------------ */

static int header(xmlNodePtr env, xmlNsPtr ns, const struct srv_report_config *cfg, int64_t end)
{
    xmlNodePtr h = child(env, ns, N_HEADER);
    xmlNodePtr mh = h != NULL ? child(h, ns, N_MSG_HEADER) : NULL;
    xmlNodePtr from = mh != NULL ? child(mh, ns, N_FROM) : NULL;
    char subject[128];
    struct tm tm;
    time_t t = (time_t)(end + cfg->utc_offset);

    if (from == NULL || add(from, ns, N_ORGAN_ID, cfg->org_id) == NULL ||
        add(from, ns, N_ORGAN_NAME, cfg->org_name) == NULL ||
        add(from, ns, N_ORGAN_ADD, cfg->org_address) == NULL ||
        add(from, ns, N_EMAIL, cfg->org_email) == NULL ||
        add(from, ns, N_TELEPHONE, cfg->org_phone) == NULL ||
        add(from, ns, N_FAX, cfg->org_fax) == NULL ||
        add(from, ns, N_WEBSITE, cfg->org_website) == NULL)
        return -1;
    /* The subject names the period's end in the province's time. */
    gmtime_r(&t, &tm);
    snprintf(subject, sizeof(subject), SUBJECT_FORMAT, tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    return add(mh, NULL, N_SUBJECT, subject) == NULL ? -1 : 0;
}

int edxml_build(struct store_db *db, const struct srv_report_config *cfg, int64_t start,
                int64_t end, xmlDocPtr *out, struct edxml_stats *stats, char *err, size_t errlen)
{
    struct build b = {
        .db = db, .cfg = cfg, .start = start, .end = end, .err = err, .errlen = errlen};
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr env = NULL, body, report;
    xmlNsPtr ns;
    char buf[TEXT_MAX];
    int r = -1;

    if (doc == NULL || (env = xmlNewNode(NULL, BAD_CAST N_ENVELOPE)) == NULL) {
        xmlFreeNode(env);
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    xmlDocSetRootElement(doc, env);
    if ((ns = xmlNewNs(env, BAD_CAST EDXML_NS, BAD_CAST EDXML_NS_PREFIX)) == NULL)
        goto nomem;
    xmlSetNs(env, ns);
    if (header(env, ns, cfg, end) != 0 || (body = child(env, ns, N_BODY)) == NULL ||
        (report = child(body, NULL, N_AVREPORT)) == NULL ||
        xmlNewProp(report, BAD_CAST A_AVREPORT_NAME, BAD_CAST clean_text(buf, cfg->product_name)) ==
            NULL ||
        add_int(report, N_DATETIME, end) == NULL)
        goto nomem;
    if (malware_section(&b, report) != 0 || connection_section(&b, report) != 0 ||
        machine_sections(&b, report) != 0)
        goto out;
    if (stats != NULL)
        *stats = b.st;
    *out = doc;
    doc = NULL;
    r = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory building the envelope");
out:
    xmlFreeDoc(doc);
    return r;
}

xmlNodePtr edxml_signature_parent(xmlDocPtr doc)
{
    xmlNodePtr root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
    if (root == NULL)
        return NULL;
    for (xmlNodePtr c = root->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST N_HEADER) &&
            c->ns != NULL && xmlStrEqual(c->ns->href, BAD_CAST EDXML_NS))
            return c;
    return NULL;
}
