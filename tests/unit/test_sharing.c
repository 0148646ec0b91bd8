/*
 * Sharing with the national malware monitoring system (server/report/
 * edxml.c, xmldsig.c, sharing.c, server/api_sharing.c). A SQLite store is
 * seeded with one agency, three managed machines (a Windows workstation
 * with two files of one family, a Windows server, a retired machine), a
 * false positive, a sensor and a C&C hit; test keys and certificates are
 * made with the openssl command.
 *
 * What is proved: the AVReport has the element tree of the regulations'
 * Appendix A with the store's figures; no file path, user name or observed
 * query reaches it; the signed document verifies with the `xmlsec1`
 * command against the test CA and fails once a figure is changed; the job
 * creates one row per slot, and against a local HTTPS receiver that
 * answers 500 and then 200 the row goes failed -> accepted with two
 * attempts, the backoff respected and the answer recorded; the API shows
 * the submissions without secrets, refuses officers and returns the
 * document. The store tests run on SQLite and, when KHIEN_PG_URL names a
 * server, again on PostgreSQL. With KHIEN_TEST_PKCS11_* set (tests/integration/
 * sharing_softhsm.sh), it also signs through a PKCS#11 token.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <microhttpd.h>

#include "api.h"
#include "edxml.h"
#include "jobs.h"
#include "khx.h"
#include "server.h"
#include "sharing.h"
#include "store/store.h"
#include "xmldsig.h"

#define M_WS       "11111111-0000-4000-8000-000000000001"
#define M_SRV      "11111111-0000-4000-8000-000000000002"
#define M_OLD      "11111111-0000-4000-8000-000000000003"
#define M_SEN      "11111111-0000-4000-8000-000000000004"
#define PERIOD_END 1800000000 /* 2027-01-15 08:00 UTC */
#define DAY        86400

static const char *pg_url; /* the PostgreSQL run's database, else NULL */

struct fixture {
    char dir[512];
    struct store_db *db;
    struct srv srv;
    int have_pki;
};

/* ------------------------------------------------------------------------ */
/* Keys and certificates.                                                    */
/* ------------------------------------------------------------------------ */

/* A CA, a signer (PKCS#12, password in a file) and a TLS certificate for
 * 127.0.0.1, all from the openssl command. 0, or -1 when it is missing. */
static int make_pki(const char *dir)
{
    char cmd[4096];
    static const char sign[] = "keyUsage=critical,digitalSignature,nonRepudiation\n",
                      tls[] = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
                      pass[] = "test-pass\n";
    char *a = tu_write(dir, "sign.cnf", sign, strlen(sign));
    char *b = tu_write(dir, "tls.cnf", tls, strlen(tls));
    char *c = tu_write(dir, "p12.pass", pass, strlen(pass));
    free(a), free(b), free(c);
    snprintf(
        cmd, sizeof(cmd),
        "cd '%s' && {"
        " openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30"
        " -subj '/CN=Khien Test CA' -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign &&"
        " openssl req -newkey rsa:2048 -nodes -keyout signer.key -out signer.csr"
        " -subj '/C=VN/O=So TTTT Test/CN=Khien AVReport Signer' &&"
        " openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out signer.pem -days 30 -extfile sign.cnf &&"
        " openssl pkcs12 -export -inkey signer.key -in signer.pem -out signer.p12"
        " -passout pass:test-pass &&"
        " openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj /CN=127.0.0.1 &&"
        " openssl x509 -req -in tls.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
        " -out tls.pem -days 30 -extfile tls.cnf; } >pki.log 2>&1",
        dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void use_pkcs12(struct fixture *f)
{
    struct srv_report_config *c = &f->srv.cfg.report;
    snprintf(c->share_pkcs12, sizeof(c->share_pkcs12), "%s/signer.p12", f->dir);
    snprintf(c->share_pkcs12_pass_file, sizeof(c->share_pkcs12_pass_file), "%s/p12.pass", f->dir);
}

/* ------------------------------------------------------------------------ */
/* The store.                                                                */
/* ------------------------------------------------------------------------ */

static void machine(struct fixture *f, int64_t agency, const char *id, const char *host,
                    const char *ips, const char *os, int64_t db_time, int rtp, int fw, int retired,
                    const char *role)
{
    assert_int_equal(
        store_execf(
            f->db, NULL,
            "INSERT INTO machines (id, agency_id, hostname, ips, os, db_time, rtp, firewall,"
            " retired, role, inventory, cert_sha256, enrolled_at, last_seen)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " '{\"users\":[\"tranthib\"],\"email\":\"tranthib@example.vn\"}', 'x', $11, $11)",
            "titttiiiiti", id, agency, host, ips, os, db_time, (int64_t)rtp, (int64_t)fw,
            (int64_t)retired, role, (int64_t)PERIOD_END - DAY),
        0);
}

static void detection(struct fixture *f, int64_t agency, const char *m, const char *ev,
                      const char *path, const char *sig, const char *family, const char *status,
                      int64_t at)
{
    assert_int_equal(
        store_execf(f->db, NULL,
                    "INSERT INTO detections (event_id, machine_id, agency_id, path, sha256, md5,"
                    " signature, family, detected_at, received_at, status, status_at)"
                    " VALUES ($1, $2, $3, $4, 'aa', 'bb', $5, $6, $7, $7, $8, $7)",
                    "ttitttit", ev, m, agency, path, sig, family, at, status),
        0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct srv_report_config *c;
    int64_t ag = 0;

    assert_non_null(f);
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "%s", tu_mkdtemp());
    if ((f->db = tu_store_open(f->dir, pg_url, 0)) == NULL)
        return 0;
    srv_report_config_defaults(&f->srv.cfg.report);
    c = &f->srv.cfg.report;
    snprintf(c->org_id, sizeof(c->org_id), "000.00.00.H34");
    snprintf(c->org_name, sizeof(c->org_name), "Sở Thông tin và Truyền thông tỉnh Kon Tum");
    snprintf(c->org_email, sizeof(c->org_email), "stttt@kontum.gov.vn");
    snprintf(c->product_name, sizeof(c->product_name), "Khien & co");
    f->have_pki = make_pki(f->dir) == 0;

    assert_int_equal(store_query_int(f->db, &ag,
                                     "INSERT INTO agencies (code, name, path, created_at)"
                                     " VALUES ('A', 'A', '/', 1) RETURNING id",
                                     ""),
                     STORE_ROW);
    machine(f, ag, M_WS, "KT-PC-07", "10.1.2.5 fe80::1", "Windows 10 Pro", PERIOD_END - 2 * DAY, 1,
            0, 0, "agent");
    machine(f, ag, M_SRV, "KT-SRV-01", "10.1.2.9", "Windows Server 2019", PERIOD_END - 40 * DAY, 0,
            1, 0, "agent");
    machine(f, ag, M_OLD, "KT-OLD", "10.1.2.77", "Windows 7", 0, 0, 0, 1, "agent");
    machine(f, ag, M_SEN, "sensor-1", "10.1.0.2", "Debian 12", 0, 0, 0, 0, "sensor");
    /* Two files of one family, a second family, a false positive, one
     * outside the period. */
    detection(f, ag, M_WS, "e1", "C:\\Users\\nguyenvana\\Downloads\\a.exe", "Win.Trojan.Agent-1",
              "Win.Trojan.Agent", "new", PERIOD_END - 3600);
    detection(f, ag, M_WS, "e2", "C:\\Users\\nguyenvana\\Desktop\\b.exe", "Win.Trojan.Agent-2",
              "Win.Trojan.Agent", "resolved", PERIOD_END - 7200);
    detection(f, ag, M_WS, "e3", "C:\\Users\\nguyenvana\\Downloads\\a.exe", "Win.Trojan.Agent-1",
              "Win.Trojan.Agent", "new", PERIOD_END - 60);
    detection(f, ag, M_SRV, "e4", "D:\\share\\ketoan\\luong.xlsm", "Doc.Dropper.Macro-9", "", "new",
              PERIOD_END - 3600);
    detection(f, ag, M_SRV, "e5", "D:\\share\\fp.exe", "Win.Ransomware.Fake", "Win.Ransomware.Fake",
              "false_positive", PERIOD_END - 3600);
    detection(f, ag, M_SRV, "e6", "D:\\share\\old.exe", "Win.Worm.Old", "Win.Worm.Old", "new",
              PERIOD_END - 2 * DAY);
    assert_int_equal(
        store_execf(f->db, NULL,
                    "INSERT INTO c2_hits (event_id, machine_id, agency_id, host, indicator, kind,"
                    " seen_in, observed, dest_ip, hit_count, first_seen, last_seen, received_at)"
                    " VALUES ('h1', $1, $2, '10.1.2.5', 'evil.example', 'domain', 'dns.query',"
                    " 'private-query.evil.example', '', 3, $3, $3, $3),"
                    " ('h2', $1, $2, '10.1.2.5', '203.0.113.9', 'ip', 'flow', '', '203.0.113.9', 1,"
                    " $3, $3, $3)",
                    "tii", M_SEN, ag, (int64_t)PERIOD_END - 600),
        0);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->db);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

#define NEED_STORE(f)                                                                              \
    do {                                                                                           \
        if ((f)->db == NULL) {                                                                     \
            print_message("SKIP: no store\n");                                                     \
            skip();                                                                                \
        }                                                                                          \
    } while (0)
#define NEED_PKI(f)                                                                                \
    do {                                                                                           \
        if (!(f)->have_pki) {                                                                      \
            print_message("SKIP: the openssl command could not make test keys\n");                 \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------------ */
/* XPath.                                                                    */
/* ------------------------------------------------------------------------ */

static char *xpath_string(xmlDocPtr doc, const char *expr)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    assert_non_null(ctx);
    xmlXPathRegisterNs(ctx, BAD_CAST "e", BAD_CAST "http://www.mic.gov.vn/TBT/QCVN_102_2016");
    xmlXPathRegisterNs(ctx, BAD_CAST "ds", BAD_CAST "http://www.w3.org/2000/09/xmldsig#");
    char wrapped[600];
    snprintf(wrapped, sizeof(wrapped), "string(%s)", expr);
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST wrapped, ctx);
    if (o == NULL)
        fail_msg("bad XPath %s", expr);
    char *s = strdup((const char *)o->stringval);
    xmlXPathFreeObject(o);
    xmlXPathFreeContext(ctx);
    return s;
}

static void xpath_is(xmlDocPtr doc, const char *expr, const char *want)
{
    char *got = xpath_string(doc, expr);
    if (strcmp(got, want) != 0)
        fail_msg("%s is \"%s\", wanted \"%s\"", expr, got, want);
    free(got);
}

#define BODY "/e:edXMLEnvelope/e:edXMLBody/AVReport"

/* ------------------------------------------------------------------------ */
/* Tests.                                                                    */
/* ------------------------------------------------------------------------ */

static void malware_types_and_slots_follow_their_rules(void **state)
{
    (void)state;
    assert_string_equal(edxml_malware_type("Win.Trojan.Agent-1"), "Trojan");
    assert_string_equal(edxml_malware_type("Doc.Dropper.Macro-9"), "Dropper");
    assert_string_equal(edxml_malware_type("Worm.Mydoom"), "Worm");
    assert_string_equal(edxml_malware_type("Win.Ransom.WannaCry"), "Ransomware");
    assert_string_equal(edxml_malware_type("Eicar-Signature"), "Malware");
    assert_string_equal(edxml_malware_type(""), "Malware");
    assert_string_equal(edxml_device_type("Windows Server 2019"), "Server");
    assert_string_equal(edxml_device_type("Windows 11 Pro"), "Workstation");
    assert_string_equal(edxml_device_type("Ubuntu 22.04"), "");

    /* Daily slots start at local midnight (+07:00 = 17:00 UTC). */
    assert_int_equal(share_slot(1800000000, 86400, 7 * 3600), 1799946000);
    assert_int_equal(share_slot(1799946000, 86400, 7 * 3600), 1799946000);
    assert_int_equal(share_slot(1799945999, 86400, 7 * 3600), 1799946000 - 86400);
    assert_int_equal(share_slot(1800000000, 3600, 0), 1800000000 - 1800000000 % 3600);
    /* 10 min, 20, 40 ... at most 6 h. */
    assert_int_equal(share_backoff(600, 1), 600);
    assert_int_equal(share_backoff(600, 2), 1200);
    assert_int_equal(share_backoff(600, 3), 2400);
    assert_int_equal(share_backoff(600, 30), 6 * 3600);
}

static void the_avreport_has_the_appendix_a_tree_and_the_store_figures(void **state)
{
    struct fixture *f = *state;
    struct edxml_stats st;
    xmlDocPtr doc = NULL;
    char err[256] = "";
    NEED_STORE(f);

    if (edxml_build(f->db, &f->srv.cfg.report, PERIOD_END - DAY, PERIOD_END, &doc, &st, err,
                    sizeof(err)) != 0)
        fail_msg("edxml_build: %s", err);
    xpath_is(doc, "/e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader/e:From/e:OrganId",
             "000.00.00.H34");
    xpath_is(doc, "/e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader/e:From/e:OrganName",
             "Sở Thông tin và Truyền thông tỉnh Kon Tum");
    xpath_is(doc, "/e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader/e:From/e:Email",
             "stttt@kontum.gov.vn");
    xpath_is(doc, "/e:edXMLEnvelope/e:edXMLHeader/e:MessageHeader/Subject",
             "Anti Virus Report on 15-01-2027 15:00:00");
    xpath_is(doc, BODY "/@name", "Khien & co");
    xpath_is(doc, BODY "/Datetime", "1800000000");
    /* Malware: the workstation's two files of one family (the same file
     * twice counts once), the server's dropper; not the false positive,
     * not the detection before the period. */
    xpath_is(doc, "count(" BODY "/Malware/Machine)", "2");
    xpath_is(doc, "count(" BODY "/Malware/Machine/MalwareInfo)", "2");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-PC-07']/@ip", "10.1.2.5");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-PC-07']/MalwareInfo/MalwareName",
             "Win.Trojan.Agent");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-PC-07']/MalwareInfo/MalwareType", "Trojan");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-PC-07']/MalwareInfo/TypeOfDevice",
             "Workstation");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-PC-07']/MalwareInfo/NumberFile", "2");
    xpath_is(doc, "count(" BODY "/Malware/Machine[@name='KT-PC-07']/MalwareInfo/MalwareBehavior)",
             "1");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-SRV-01']/MalwareInfo/MalwareName",
             "Doc.Dropper.Macro-9");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-SRV-01']/MalwareInfo/MalwareType", "Dropper");
    xpath_is(doc, BODY "/Malware/Machine[@name='KT-SRV-01']/MalwareInfo/TypeOfDevice", "Server");
    /* Connection: one internal host, two destinations, named after the
     * managed machine holding its address. */
    xpath_is(doc, "count(" BODY "/Connection/Machine)", "1");
    xpath_is(doc, BODY "/Connection/Machine/@ip", "10.1.2.5");
    xpath_is(doc, BODY "/Connection/Machine/@name", "KT-PC-07");
    xpath_is(doc, "count(" BODY "/Connection/Machine/ConnectionInfo)", "2");
    xpath_is(doc, BODY "/Connection/Machine/ConnectionInfo[TargetIP='203.0.113.9']/Program", "");
    xpath_is(doc, "count(" BODY "/Connection/Machine/ConnectionInfo[TargetIP='evil.example'])",
             "1");
    xpath_is(doc, "count(" BODY "/Connection/Machine/ConnectionInfo/md5)", "2");
    xpath_is(doc, "count(" BODY "/Connection/Machine/ConnectionInfo/Sha2)", "2");
    /* Vulnerability: present and empty. */
    xpath_is(doc, "count(" BODY "/Vulnerability)", "1");
    xpath_is(doc, "count(" BODY "/Vulnerability/*)", "0");
    /* OS and QualityFeature: the two managed agents, not the retired
     * machine or the sensor. */
    xpath_is(doc, "count(" BODY "/OS/Machine)", "2");
    xpath_is(doc, BODY "/OS/Machine[@name='KT-SRV-01']/OSName", "Windows Server 2019");
    xpath_is(doc, BODY "/OS/Machine[@name='KT-SRV-01']/LastUpdate", "1796544000");
    xpath_is(doc, BODY "/Update/NumberMachineNotUpdateOn15Day", "1");
    xpath_is(doc, "count(" BODY "/QualityFeature/Machine)", "2");
    xpath_is(doc, BODY "/QualityFeature/Machine[@name='KT-PC-07']/AutoProtect", "1");
    xpath_is(doc, BODY "/QualityFeature/Machine[@name='KT-PC-07']/EnableFirewall", "0");
    xpath_is(doc, BODY "/QualityFeature/Machine[@name='KT-SRV-01']/EnableFirewall", "1");
    assert_int_equal(st.omitted, 0);
    assert_int_equal(st.stale_machines, 1);

    /* Private data: nothing of paths, users or what the sensor observed. */
    xmlChar *text = NULL;
    int n = 0;
    xmlDocDumpMemoryEnc(doc, &text, &n, "UTF-8");
    assert_non_null(text);
    const char *banned[] = {"nguyenvana", "Users",         "\\",     "ketoan",   "luong",
                            "tranthib",   "private-query", "KT-OLD", "sensor-1", M_WS};
    for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++)
        if (strstr((const char *)text, banned[i]) != NULL)
            fail_msg("the document holds \"%s\":\n%s", banned[i], text);
    xmlFree(text);
    xmlFreeDoc(doc);

    /* What an agent sent that is not text (SQLite keeps such bytes;
     * PostgreSQL refuses them at ingest) still gives a well-formed
     * document. */
    if (store_kind(f->db) != STORE_SQLITE)
        return;
    assert_int_equal(store_execf(f->db, NULL, "UPDATE machines SET os = $1 WHERE id = $2", "tt",
                                 "Win\x01"
                                 "dows\xff\xc0\xaf Server",
                                 M_SRV),
                     0);
    assert_int_equal(edxml_build(f->db, &f->srv.cfg.report, PERIOD_END - DAY, PERIOD_END, &doc, &st,
                                 err, sizeof(err)),
                     0);
    xmlDocDumpMemoryEnc(doc, &text, &n, "UTF-8");
    xmlFreeDoc(doc);
    doc = xmlReadMemory((const char *)text, n, "x.xml", NULL, XML_PARSE_NONET);
    xmlFree(text);
    if (doc == NULL)
        fail_msg("the document with bad bytes does not parse");
    xpath_is(doc, BODY "/OS/Machine[@name='KT-SRV-01']/OSName", "Win?dows??? Server");
    xmlFreeDoc(doc);
}

/* Writes doc to dir/name and runs `xmlsec1 --verify` on it with `trust`
 * (a CA or the certificate itself). Returns xmlsec1's exit status, or -1
 * when the command is missing. */
static int xmlsec1_verify(const char *dir, const char *name, const char *doc, size_t len,
                          const char *trust)
{
    char cmd[2048];
    if (system("command -v xmlsec1 >/dev/null 2>&1") != 0)
        return -1;
    free(tu_write(dir, name, doc, len));
    snprintf(cmd, sizeof(cmd), "xmlsec1 --verify --trusted-pem '%s' '%s/%s' >'%s/%s.log' 2>&1",
             trust, dir, name, dir, name);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

static void check_signed(struct fixture *f, const char *doc, size_t len, const char *trust)
{
    xmlDocPtr x = xmlReadMemory(doc, (int)len, "doc.xml", NULL, XML_PARSE_NONET);
    assert_non_null(x);
    /* The signature sits in edXMLHeader, as in Appendix A. */
    xpath_is(x, "count(/e:edXMLEnvelope/e:edXMLHeader/ds:Signature)", "1");
    xpath_is(x,
             "/e:edXMLEnvelope/e:edXMLHeader/ds:Signature/ds:SignedInfo/"
             "ds:CanonicalizationMethod/@Algorithm",
             "http://www.w3.org/2001/10/xml-exc-c14n#");
    xpath_is(x,
             "/e:edXMLEnvelope/e:edXMLHeader/ds:Signature/ds:SignedInfo/"
             "ds:SignatureMethod/@Algorithm",
             "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256");
    xpath_is(x, "//ds:Reference/@URI", "");
    xpath_is(x, "//ds:Reference/ds:DigestMethod/@Algorithm",
             "http://www.w3.org/2001/04/xmlenc#sha256");
    xpath_is(x, "//ds:Reference/ds:Transforms/ds:Transform[1]/@Algorithm",
             "http://www.w3.org/2000/09/xmldsig#enveloped-signature");
    xpath_is(x, "//ds:Reference/ds:Transforms/ds:Transform[2]/@Algorithm",
             "http://www.w3.org/2001/10/xml-exc-c14n#");
    char *subject = xpath_string(x, "//ds:KeyInfo/ds:X509Data/ds:X509SubjectName");
    char *cert = xpath_string(x, "//ds:KeyInfo/ds:X509Data/ds:X509Certificate");
    if (strstr(subject, "CN=") == NULL || strlen(cert) < 500)
        fail_msg("KeyInfo lacks the subject (\"%s\") or the certificate:\n%.*s", subject,
                 (int)(len > 3000 ? 3000 : len), len > 3000 ? doc + len - 3000 : doc);
    free(subject), free(cert);
    xmlFreeDoc(x);

    int rc = xmlsec1_verify(f->dir, "signed.xml", doc, len, trust);
    if (rc < 0) {
        print_message("SKIP: xmlsec1 is not installed; the signature was not verified\n");
        return;
    }
    if (rc != 0) {
        char log[600];
        snprintf(log, sizeof(log), "cat '%s/signed.xml.log' >&2", f->dir);
        (void)system(log);
        fail_msg("xmlsec1 --verify refused the signed document (exit %d)", rc);
    }
    /* One figure changed: the digest no longer matches. */
    char *bad = strdup(doc);
    char *p = strstr(bad, "<NumberFile>2</NumberFile>");
    assert_non_null(p);
    p[12] = '3';
    assert_int_not_equal(xmlsec1_verify(f->dir, "tampered.xml", bad, len, trust), 0);
    free(bad);
}

static void the_signed_document_verifies_with_xmlsec1_and_tampering_breaks_it(void **state)
{
    struct fixture *f = *state;
    char err[512] = "", *doc = NULL, trust[600];
    size_t len = 0;
    NEED_STORE(f);
    NEED_PKI(f);

    /* No key configured: a clear error, not a crash. */
    assert_int_equal(share_build_document(f->db, &f->srv.cfg.report, PERIOD_END - DAY, PERIOD_END,
                                          &doc, &len, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "no signing key"));
    /* A wrong password is named. */
    use_pkcs12(f);
    free(tu_write(f->dir, "bad.pass", "nope\n", 5));
    char good[600];
    snprintf(good, sizeof(good), "%s", f->srv.cfg.report.share_pkcs12_pass_file);
    snprintf(f->srv.cfg.report.share_pkcs12_pass_file,
             sizeof(f->srv.cfg.report.share_pkcs12_pass_file), "%s/bad.pass", f->dir);
    assert_int_equal(share_build_document(f->db, &f->srv.cfg.report, PERIOD_END - DAY, PERIOD_END,
                                          &doc, &len, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "signer.p12"));
    snprintf(f->srv.cfg.report.share_pkcs12_pass_file,
             sizeof(f->srv.cfg.report.share_pkcs12_pass_file), "%s", good);

    if (share_build_document(f->db, &f->srv.cfg.report, PERIOD_END - DAY, PERIOD_END, &doc, &len,
                             err, sizeof(err)) != 0)
        fail_msg("share_build_document: %s", err);
    snprintf(trust, sizeof(trust), "%s/ca.pem", f->dir);
    check_signed(f, doc, len, trust);
    free(doc);
}

static void signs_through_a_pkcs11_token_when_one_is_given(void **state)
{
    struct fixture *f = *state;
    struct srv_report_config *c = &f->srv.cfg.report;
    const char *module = getenv("KHIEN_TEST_PKCS11_MODULE"), *uri = getenv("KHIEN_TEST_PKCS11_URI");
    const char *pin = getenv("KHIEN_TEST_PKCS11_PIN_FILE"),
               *cert = getenv("KHIEN_TEST_PKCS11_CERT");
    char err[512] = "", *doc = NULL;
    size_t len = 0;
    NEED_STORE(f);

    if (module == NULL || uri == NULL || pin == NULL || cert == NULL) {
        print_message("SKIP: no token (tests/integration/sharing_softhsm.sh sets "
                      "KHIEN_TEST_PKCS11_MODULE, _URI, _PIN_FILE and _CERT)\n");
        skip();
    }
    snprintf(c->share_pkcs11_module, sizeof(c->share_pkcs11_module), "%s", module);
    snprintf(c->share_pkcs11_key, sizeof(c->share_pkcs11_key), "%s", uri);
    snprintf(c->share_pkcs11_pin_file, sizeof(c->share_pkcs11_pin_file), "%s", pin);
    snprintf(c->share_cert, sizeof(c->share_cert), "%s", cert);
    if (share_build_document(f->db, c, PERIOD_END - DAY, PERIOD_END, &doc, &len, err,
                             sizeof(err)) != 0)
        fail_msg("signing through the token: %s", err);
    check_signed(f, doc, len, cert);
    free(doc);
}

/* ------------------------------------------------------------------------ */
/* A local HTTPS receiver that answers 500 and then 200.                     */
/* ------------------------------------------------------------------------ */

struct receiver {
    struct MHD_Daemon *d;
    pthread_mutex_t lock;
    unsigned requests;
    char content_type[64];
    size_t last_len;
    int last_signed;
};

struct upload {
    struct khx_buf body;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_len, void **con_cls)
{
    struct receiver *rc = cls;
    struct upload *u = *con_cls;
    (void)url, (void)version;

    if (u == NULL) {
        if ((u = calloc(1, sizeof(*u))) == NULL)
            return MHD_NO;
        khx_buf_init(&u->body, 64u << 20);
        *con_cls = u;
        return MHD_YES;
    }
    if (*data_len > 0) {
        if (khx_buf_append(&u->body, data, *data_len) != 0)
            return MHD_NO;
        *data_len = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rc->lock);
    unsigned n = ++rc->requests;
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    snprintf(rc->content_type, sizeof(rc->content_type), "%s", ct != NULL ? ct : "");
    rc->last_len = u->body.len;
    rc->last_signed = strcmp(method, "POST") == 0 && u->body.len > 0 &&
                      memmem(u->body.data, u->body.len, "SignatureValue", 14) != NULL;
    pthread_mutex_unlock(&rc->lock);
    static const char busy[] = "<error>busy, try later</error>",
                      ok[] = "<result>OK: đã nhận</result>";
    const char *text = n == 1 ? busy : ok;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result r = MHD_queue_response(conn, n == 1 ? 500 : 200, resp);
    MHD_destroy_response(resp);
    return r;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    struct upload *u = *con_cls;
    (void)cls, (void)conn, (void)toe;
    if (u != NULL) {
        khx_buf_free(&u->body);
        free(u);
        *con_cls = NULL;
    }
}

static int receiver_start(struct receiver *rc, const char *dir, unsigned *port)
{
    uint8_t *key = NULL, *cert = NULL;
    size_t kl, cl;
    char p[700];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    snprintf(p, sizeof(p), "%s/tls.key", dir);
    if (khx_read_file(p, 1 << 16, &key, &kl) != 0)
        return -1;
    snprintf(p, sizeof(p), "%s/tls.pem", dir);
    if (khx_read_file(p, 1 << 16, &cert, &cl) != 0) {
        free(key);
        return -1;
    }
    pthread_mutex_init(&rc->lock, NULL);
    rc->d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS, 0, NULL, NULL, on_request,
                         rc, MHD_OPTION_HTTPS_MEM_KEY, (const char *)key, MHD_OPTION_HTTPS_MEM_CERT,
                         (const char *)cert, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, on_done, rc, MHD_OPTION_END);
    free(key), free(cert);
    if (rc->d == NULL)
        return -1;
    *port = MHD_get_daemon_info(rc->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static void row(struct fixture *f, int64_t slot, const char *status, int64_t attempts, int64_t http,
                const char *response_has)
{
    struct store_stmt *st = NULL;
    assert_int_equal(store_queryf(f->db, &st,
                                  "SELECT status, attempts, http_status, response, error"
                                  " FROM share_submissions WHERE slot = $1",
                                  "i", slot),
                     STORE_ROW);
    if (strcmp(store_col_text(st, 0), status) != 0 || store_col_int(st, 1) != attempts ||
        store_col_int(st, 2) != http || strstr(store_col_text(st, 3), response_has) == NULL)
        fail_msg("slot %lld: %s, %lld attempts, HTTP %lld, \"%s\", error \"%s\"; wanted %s, %lld, "
                 "%lld, \"%s\"",
                 (long long)slot, store_col_text(st, 0), (long long)store_col_int(st, 1),
                 (long long)store_col_int(st, 2), store_col_text(st, 3), store_col_text(st, 4),
                 status, (long long)attempts, (long long)http, response_has);
    store_finalize(st);
}

static int64_t count_rows(struct fixture *f)
{
    int64_t n = -1;
    assert_int_equal(store_query_int(f->db, &n, "SELECT count(*) FROM share_submissions", ""),
                     STORE_ROW);
    return n;
}

static void a_submission_is_retried_until_the_receiver_accepts_it(void **state)
{
    struct fixture *f = *state;
    struct srv_report_config *c = &f->srv.cfg.report;
    struct receiver rc = {0};
    unsigned port = 0;
    char msg[512];
    NEED_STORE(f);
    NEED_PKI(f);

    if (receiver_start(&rc, f->dir, &port) != 0)
        fail_msg("the test receiver did not start");
    use_pkcs12(f);
    snprintf(c->share_url, sizeof(c->share_url), "https://127.0.0.1:%u/AVReport/server.php", port);
    snprintf(c->share_ca, sizeof(c->share_ca), "%s/ca.pem", f->dir);
    c->share_retry = 600;
    c->share_interval = 86400;
    assert_int_equal(share_job_interval(&f->srv.cfg), 300);

    /* The slot of T: the row for [slot - 1 d, slot) is made, built, posted
     * through the job runner, refused with 500. */
    int64_t t = PERIOD_END + 3600, slot = share_slot(t, 86400, c->utc_offset);
    assert_true(jobs_run_due(&f->srv, f->db, "test", t) >= 1);
    assert_int_equal(count_rows(f), 1);
    row(f, slot, "failed", 1, 500, "busy");
    int64_t next = 0;
    assert_int_equal(store_query_int(f->db, &next,
                                     "SELECT next_attempt FROM share_submissions WHERE slot = $1",
                                     "i", slot),
                     STORE_ROW);
    assert_int_equal(next, t + 600);
    assert_int_equal(rc.requests, 1);
    assert_true(rc.last_signed);
    assert_string_equal(rc.content_type, "text/xml");

    /* Before the retry is due: nothing is sent. */
    assert_int_equal(share_job_run(&f->srv, f->db, t + 599, msg, sizeof(msg)), 0);
    assert_int_equal(rc.requests, 1);
    row(f, slot, "failed", 1, 500, "busy");

    /* When it is due: accepted, with the answer kept. */
    assert_int_equal(share_job_run(&f->srv, f->db, t + 600, msg, sizeof(msg)), 0);
    assert_int_equal(rc.requests, 2);
    row(f, slot, "accepted", 2, 200, "OK: đã nhận");
    int64_t accepted_at = 0;
    assert_int_equal(store_query_int(f->db, &accepted_at,
                                     "SELECT accepted_at FROM share_submissions WHERE slot = $1",
                                     "i", slot),
                     STORE_ROW);
    assert_int_equal(accepted_at, t + 600);

    /* Accepted is final, and the same slot gets no second row. */
    assert_int_equal(share_job_run(&f->srv, f->db, t + 7200, msg, sizeof(msg)), 0);
    assert_int_equal(rc.requests, 2);
    assert_int_equal(count_rows(f), 1);
    /* The next slot gets its own row. */
    assert_int_equal(share_job_run(&f->srv, f->db, t + 86400, msg, sizeof(msg)), 0);
    assert_int_equal(count_rows(f), 2);
    assert_int_equal(rc.requests, 3);

    /* The API: the submissions without secrets; officers refused; the
     * document as it was sent. */
    struct srv_principal admin, officer = {.role = SRV_ROLE_OFFICER, .agency_id = 1},
                                auditor = {.role = SRV_ROLE_AUDITOR};
    unsigned status = 0;
    tu_principal_admin(&admin);
    json_t *j = tu_call_handler(&f->srv, f->db, api_sharing_get, &auditor, "GET", NULL, NULL, NULL,
                                1, &status);
    assert_int_equal(status, 200);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_null(strstr(text, "test-pass"));
    assert_null(strstr(text, "p12.pass"));
    assert_non_null(strstr(text, "\"key_source\":\"pkcs12\""));
    json_t *items = json_object_get(j, "submissions");
    assert_int_equal(json_array_size(items), 2);
    json_t *first = json_array_get(items, 1);
    assert_string_equal(json_string_value(json_object_get(first, "status")), "accepted");
    assert_int_equal(json_integer_value(json_object_get(first, "attempts")), 2);
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(first, "id")));
    free(text);
    json_decref(j);
    j = tu_call_handler(&f->srv, f->db, api_sharing_get, &officer, "GET", NULL, NULL, NULL, 1,
                        &status);
    assert_int_equal(status, 403);
    json_decref(j);
    j = tu_call_handler(&f->srv, f->db, api_sharing_document, &admin, "GET", id, NULL, NULL, 0,
                        &status);
    assert_int_equal(status, 200);
    json_decref(j);
    j = tu_call_handler(&f->srv, f->db, api_sharing_send_now, &admin, "POST", NULL, NULL, "{}", 1,
                        &status);
    assert_int_equal(status, 202);
    json_decref(j);

    MHD_stop_daemon(rc.d);
    pthread_mutex_destroy(&rc.lock);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(malware_types_and_slots_follow_their_rules),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test_setup_teardown(the_avreport_has_the_appendix_a_tree_and_the_store_figures,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            the_signed_document_verifies_with_xmlsec1_and_tampering_breaks_it, setup, teardown),
        cmocka_unit_test_setup_teardown(signs_through_a_pkcs11_token_when_one_is_given, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_submission_is_retried_until_the_receiver_accepts_it,
                                        setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("sharing", plain, NULL, NULL);

    failed += cmocka_run_group_tests_name("sqlite", with_store, NULL, NULL);
    pg_url = tu_pg_private_url();
    if (pg_url != NULL)
        failed += cmocka_run_group_tests_name("postgresql", with_store, NULL, NULL);
    else
        printf("SKIP: the PostgreSQL run needs KHIEN_PG_URL (scripts/pg-throwaway start DIR)\n");
    return failed;
}
