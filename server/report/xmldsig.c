/*
 * XML-DSig of the AVReport envelope with libxmlsec1 (xmldsig.h). The
 * signature template is built with xmlsec's template functions and filled
 * by xmlSecDSigCtxSign. Keys:
 *
 *   PKCS#12   xmlSecCryptoAppKeyLoad(file, Pkcs12, password) brings the key
 *             and its certificate together.
 *   PKCS#11   xmlSecCryptoAppKeyLoad("pkcs11;<pkcs11: URI>", Engine): xmlsec
 *             asks OpenSSL for the engine "pkcs11" (libp11) by name and
 *             loads the key through it. OpenSSL keeps an engine loaded by
 *             name in its list, so configuring that same engine first (the
 *             module's path, the PIN from the PIN file) is how the module
 *             and PIN reach it without an openssl.cnf. The certificate is
 *             then added from share_cert (PEM).
 *
 * Errors from xmlsec are caught by an error callback into a per-thread
 * buffer so that err names the cause rather than "signing failed".
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* ENGINE: the token route of xmlsec 1.2 */
#include "xmldsig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <xmlsec/app.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/templates.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include "khx.h"

enum { SECRET_MAX = 256 }; /* longest password or PIN read from a file */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result = -1;
static char init_error[256];
static pthread_mutex_t sign_lock = PTHREAD_MUTEX_INITIALIZER;
static char engine_module[600]; /* the module the engine was given; under sign_lock */

static __thread char last_error[512];

/* xmlsec reports each failure from the inside out; the first one of a call
 * is the cause, so later ones are kept only while nothing was recorded. */
static void on_xmlsec_error(const char *file, int line, const char *func, const char *object,
                            const char *subject, int reason, const char *msg)
{
    (void)file, (void)line, (void)object, (void)reason;
    if (last_error[0] != '\0')
        return;
    unsigned long e = ERR_peek_last_error();
    char ossl[200] = "";
    if (e != 0)
        ERR_error_string_n(e, ossl, sizeof(ossl));
    snprintf(last_error, sizeof(last_error), "%s%s%s%s%s%s%s", func != NULL ? func : "",
             subject != NULL ? " (" : "", subject != NULL ? subject : "",
             subject != NULL ? ")" : "", msg != NULL ? ": " : "", msg != NULL ? msg : "",
             ossl[0] != '\0' ? " [openssl]" : "");
    if (ossl[0] != '\0') {
        size_t n = strlen(last_error);
        snprintf(last_error + n, sizeof(last_error) - n, " %s", ossl);
    }
}

static void do_init(void)
{
    xmlInitParser();
    if (xmlSecInit() < 0) {
        snprintf(init_error, sizeof(init_error), "xmlsec: initialisation failed");
        return;
    }
    if (xmlSecCheckVersion() != 1) {
        snprintf(init_error, sizeof(init_error),
                 "xmlsec: the library is not the version built for");
        return;
    }
    if (xmlSecCryptoAppInit(NULL) < 0 || xmlSecCryptoInit() < 0) {
        snprintf(init_error, sizeof(init_error), "xmlsec: the OpenSSL backend did not start");
        return;
    }
    /* After the backend's start, which installs its own. */
    xmlSecErrorsSetCallback(on_xmlsec_error);
    init_result = 0;
}

int xmldsig_init(char *err, size_t errlen)
{
    pthread_once(&init_once, do_init);
    if (init_result != 0)
        snprintf(err, errlen, "%s", init_error);
    return init_result;
}

int xmldsig_configured(const struct srv_report_config *cfg)
{
    if (cfg->share_pkcs12[0] != '\0')
        return 1;
    return cfg->share_pkcs11_module[0] != '\0' && cfg->share_pkcs11_key[0] != '\0' &&
           cfg->share_cert[0] != '\0';
}

/* The first line of a secret file, without its newline. The caller wipes
 * and frees it. */
static int read_secret(const char *path, const char *what, char **out, char *err, size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;

    if (path[0] == '\0') {
        *out = strdup("");
        return *out != NULL ? 0 : -1;
    }
    if (khx_read_file(path, SECRET_MAX, &data, &len) != 0) {
        snprintf(err, errlen, "cannot read the %s file %s (missing, unreadable or over %d bytes)",
                 what, path, SECRET_MAX);
        return -1;
    }
    len = strcspn((char *)data, "\r\n");
    data[len] = '\0';
    *out = (char *)data;
    return 0;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Configures OpenSSL's "pkcs11" engine with the module and PIN before
 * xmlsec asks for it by name. A process can use one module: libp11 loads it
 * when the engine is first initialised. */
static int engine_prepare(const struct srv_report_config *cfg, char *err, size_t errlen)
{
    char *pin = NULL;
    ENGINE *e = NULL;
    int r = -1;

    if (engine_module[0] != '\0' && strcmp(engine_module, cfg->share_pkcs11_module) != 0) {
        snprintf(err, errlen, "the PKCS#11 module changed from %s; restart the server",
                 engine_module);
        return -1;
    }
    if (read_secret(cfg->share_pkcs11_pin_file, "PIN", &pin, err, errlen) != 0)
        return -1;
    ENGINE_load_builtin_engines();
    if ((e = ENGINE_by_id("pkcs11")) == NULL) {
        snprintf(err, errlen,
                 "the OpenSSL pkcs11 engine is not installed (Debian: libengine-pkcs11-openssl)");
        goto out;
    }
    if (engine_module[0] == '\0') {
        if (!ENGINE_ctrl_cmd_string(e, "MODULE_PATH", cfg->share_pkcs11_module, 0)) {
            snprintf(err, errlen, "the pkcs11 engine refused the module %s",
                     cfg->share_pkcs11_module);
            goto out;
        }
        snprintf(engine_module, sizeof(engine_module), "%s", cfg->share_pkcs11_module);
    }
    if (pin[0] != '\0' && !ENGINE_ctrl_cmd_string(e, "PIN", pin, 0)) {
        snprintf(err, errlen, "the pkcs11 engine refused the PIN");
        goto out;
    }
    r = 0;
out:
    ENGINE_free(e); /* the engine list keeps its own reference */
    wipe_free(pin);
    return r;
}

static xmlSecKeyPtr load_key(const struct srv_report_config *cfg, char *err, size_t errlen)
{
    xmlSecKeyPtr key = NULL;
    char *pass = NULL, spec[700];

    if (cfg->share_pkcs12[0] != '\0') {
        if (read_secret(cfg->share_pkcs12_pass_file, "PKCS#12 password", &pass, err, errlen) != 0)
            return NULL;
        key =
            xmlSecCryptoAppKeyLoad(cfg->share_pkcs12, xmlSecKeyDataFormatPkcs12, pass, NULL, NULL);
        wipe_free(pass);
        if (key == NULL)
            snprintf(err, errlen, "cannot load the key from %s (wrong password?): %s",
                     cfg->share_pkcs12, last_error);
        return key;
    }
    if (!xmldsig_configured(cfg)) {
        snprintf(err, errlen,
                 "no signing key: set share_pkcs12, or share_pkcs11_module, share_pkcs11_key and "
                 "share_cert");
        return NULL;
    }
    if (engine_prepare(cfg, err, errlen) != 0)
        return NULL;
    snprintf(spec, sizeof(spec), "pkcs11;%s", cfg->share_pkcs11_key);
    key = xmlSecCryptoAppKeyLoad(spec, xmlSecKeyDataFormatEngine, NULL, NULL, NULL);
    if (key == NULL) {
        snprintf(err, errlen, "cannot load the key %s from the token: %s", cfg->share_pkcs11_key,
                 last_error);
        return NULL;
    }
    if (xmlSecCryptoAppKeyCertLoad(key, cfg->share_cert, xmlSecKeyDataFormatPem) < 0) {
        snprintf(err, errlen, "cannot load the certificate %s: %s", cfg->share_cert, last_error);
        xmlSecKeyDestroy(key);
        return NULL;
    }
    return key;
}

/* xmlsec 1.2 leaves X509SubjectName empty when signing (it fills it only
 * when reading); Appendix A's connector sends it, so it is written here
 * from the key's certificate, RFC 2253 style. KeyInfo lies inside the
 * Signature, which the enveloped transform removes before digesting, so
 * this does not touch what was signed. */
static int fill_subject(xmlNodePtr sig, xmlSecKeyPtr key)
{
    xmlNodePtr n = xmlSecFindNode(sig, xmlSecNodeX509SubjectName, xmlSecDSigNs);
    xmlSecKeyDataPtr data = xmlSecKeyGetData(key, xmlSecOpenSSLKeyDataX509Id);
    X509 *cert = data != NULL ? xmlSecOpenSSLKeyDataX509GetKeyCert(data) : NULL;
    BIO *mem = NULL;
    char *text = NULL;
    long len;
    int r = -1;

    if (n == NULL)
        return 0;
    if (n->children != NULL)
        return 0; /* a later xmlsec filled it */
    if (cert == NULL && data != NULL && xmlSecOpenSSLKeyDataX509GetCertsSize(data) > 0)
        cert = xmlSecOpenSSLKeyDataX509GetCert(data, 0);
    if (cert == NULL || (mem = BIO_new(BIO_s_mem())) == NULL ||
        X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0,
                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0 ||
        (len = BIO_get_mem_data(mem, &text)) <= 0)
        goto out;
    char *copy = strndup(text, (size_t)len);
    if (copy == NULL)
        goto out;
    xmlNodeAddContent(n, BAD_CAST copy);
    free(copy);
    r = 0;
out:
    BIO_free(mem);
    return r;
}

/* The signature template: enveloped (URI ""), exclusive C14N, RSA-SHA256,
 * SHA-256, and KeyInfo/X509Data with the subject name and certificate. */
static xmlNodePtr add_template(xmlDocPtr doc, xmlNodePtr parent)
{
    xmlNodePtr sig, ref, ki, x509;

    sig =
        xmlSecTmplSignatureCreate(doc, xmlSecTransformExclC14NId, xmlSecTransformRsaSha256Id, NULL);
    if (sig == NULL)
        return NULL;
    if (xmlAddChild(parent, sig) == NULL) {
        xmlFreeNode(sig);
        return NULL;
    }
    if ((ref = xmlSecTmplSignatureAddReference(sig, xmlSecTransformSha256Id, NULL, BAD_CAST "",
                                               NULL)) == NULL ||
        xmlSecTmplReferenceAddTransform(ref, xmlSecTransformEnvelopedId) == NULL ||
        xmlSecTmplReferenceAddTransform(ref, xmlSecTransformExclC14NId) == NULL ||
        (ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL)) == NULL ||
        (x509 = xmlSecTmplKeyInfoAddX509Data(ki)) == NULL ||
        xmlSecTmplX509DataAddSubjectName(x509) == NULL ||
        xmlSecTmplX509DataAddCertificate(x509) == NULL) {
        xmlUnlinkNode(sig);
        xmlFreeNode(sig);
        return NULL;
    }
    return sig;
}

int xmldsig_sign(xmlDocPtr doc, xmlNodePtr parent, const struct srv_report_config *cfg, char *err,
                 size_t errlen)
{
    xmlSecDSigCtxPtr ctx = NULL;
    xmlSecKeyPtr key = NULL;
    xmlNodePtr sig = NULL;
    int r = -1;

    if (xmldsig_init(err, errlen) != 0)
        return -1;
    if (doc == NULL || parent == NULL) {
        snprintf(err, errlen, "no place for the signature in the document");
        return -1;
    }
    pthread_mutex_lock(&sign_lock);
    last_error[0] = '\0';
    ERR_clear_error();
    if ((key = load_key(cfg, err, errlen)) == NULL)
        goto out;
    if ((sig = add_template(doc, parent)) == NULL) {
        snprintf(err, errlen, "out of memory building the signature template");
        goto out;
    }
    if ((ctx = xmlSecDSigCtxCreate(NULL)) == NULL) {
        snprintf(err, errlen, "out of memory creating the signature context");
        goto out;
    }
    ctx->signKey = key;
    key = NULL;
    if (xmlSecDSigCtxSign(ctx, sig) < 0) {
        snprintf(err, errlen, "signing failed: %s", last_error[0] ? last_error : "unknown cause");
        goto out;
    }
    if (fill_subject(sig, ctx->signKey) != 0) {
        snprintf(err, errlen, "cannot write the certificate's subject name into KeyInfo");
        goto out;
    }
    sig = NULL;
    r = 0;
out:
    if (sig != NULL) {
        xmlUnlinkNode(sig);
        xmlFreeNode(sig);
    }
    if (ctx != NULL)
        xmlSecDSigCtxDestroy(ctx);
    if (key != NULL)
        xmlSecKeyDestroy(key);
    ERR_clear_error();
    pthread_mutex_unlock(&sign_lock);
    return r;
}
