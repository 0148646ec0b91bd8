/*
 * XML-DSig of the AVReport envelope with libxmlsec1 (xmldsig.h). The
 * signature template is built with xmlsec's template functions. Keys:
 *
 *   PKCS#12   xmlSecCryptoAppKeyLoad(file, Pkcs12, password) brings the key
 *             and its certificate; xmlSecDSigCtxSign does the rest.
 *   PKCS#11   the key is loaded through OpenSSL's "pkcs11" engine (libp11),
 *             configured here with the module's path and the PIN from the
 *             PIN file, and the certificate from share_cert (PEM). The
 *             straightforward route, xmlSecCryptoAppKeyLoad("pkcs11;URI",
 *             Engine), loads the key, but xmlsec 1.2 on OpenSSL 3 then
 *             judges it a public key and will not sign (the xmlsec1 command
 *             fails the same way with --privkey-openssl-engine), so
 *             token_sign() lets xmlsec build the digest and SignedInfo and
 *             signs SignedInfo itself with EVP on the token's key.
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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <libxml/c14n.h>
#include <xmlsec/app.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/evp.h>
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

/* The token's key through OpenSSL's "pkcs11" engine (libp11), which is
 * loaded once per process with the module's path and kept; the PIN is
 * given before every load. A process can use one module. */
static ENGINE *engine;

static EVP_PKEY *token_key(const struct srv_report_config *cfg, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    char *pin = NULL;

    if (engine != NULL && strcmp(engine_module, cfg->share_pkcs11_module) != 0) {
        snprintf(err, errlen, "the PKCS#11 module changed from %s; restart the server",
                 engine_module);
        return NULL;
    }
    if (read_secret(cfg->share_pkcs11_pin_file, "PIN", &pin, err, errlen) != 0)
        return NULL;
    if (engine == NULL) {
        ENGINE *e;
        ENGINE_load_builtin_engines();
        if ((e = ENGINE_by_id("pkcs11")) == NULL) {
            snprintf(err, errlen,
                     "the OpenSSL pkcs11 engine is not installed (Debian: "
                     "libengine-pkcs11-openssl)");
            goto out;
        }
        if (!ENGINE_ctrl_cmd_string(e, "MODULE_PATH", cfg->share_pkcs11_module, 0) ||
            !ENGINE_init(e)) {
            snprintf(err, errlen, "the pkcs11 engine cannot load the module %s",
                     cfg->share_pkcs11_module);
            ENGINE_free(e);
            goto out;
        }
        ENGINE_free(e); /* the functional reference from ENGINE_init stays */
        engine = e;
        snprintf(engine_module, sizeof(engine_module), "%s", cfg->share_pkcs11_module);
    }
    if (pin[0] != '\0' && !ENGINE_ctrl_cmd_string(engine, "PIN", pin, 0)) {
        snprintf(err, errlen, "the pkcs11 engine refused the PIN");
        goto out;
    }
    if ((key = ENGINE_load_private_key(engine, cfg->share_pkcs11_key, NULL, NULL)) == NULL) {
        unsigned long e = ERR_peek_last_error();
        char why[200] = "";
        if (e != 0)
            ERR_error_string_n(e, why, sizeof(why));
        snprintf(err, errlen, "cannot load the key %s from the token (wrong URI or PIN?) %s",
                 cfg->share_pkcs11_key, why);
    }
out:
    wipe_free(pin);
    return key;
}

static X509 *read_cert(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    X509 *c = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    if (c == NULL)
        snprintf(err, errlen, "cannot read the certificate %s (PEM)", path);
    return c;
}

static xmlSecKeyPtr load_pkcs12(const struct srv_report_config *cfg, char *err, size_t errlen)
{
    xmlSecKeyPtr key;
    char *pass = NULL;

    if (read_secret(cfg->share_pkcs12_pass_file, "PKCS#12 password", &pass, err, errlen) != 0)
        return NULL;
    key = xmlSecCryptoAppKeyLoad(cfg->share_pkcs12, xmlSecKeyDataFormatPkcs12, pass, NULL, NULL);
    wipe_free(pass);
    if (key == NULL)
        snprintf(err, errlen, "cannot load the key from %s (wrong password?): %s",
                 cfg->share_pkcs12, last_error);
    return key;
}

/* A throwaway software RSA key for the token route (see token_sign). */
static xmlSecKeyPtr scratch_key(void)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    xmlSecKeyDataPtr data = pk != NULL ? xmlSecOpenSSLEvpKeyAdopt(pk) : NULL;
    xmlSecKeyPtr key = data != NULL ? xmlSecKeyCreate() : NULL;

    if (data == NULL)
        EVP_PKEY_free(pk);
    if (key == NULL || xmlSecKeySetValue(key, data) < 0) {
        if (key != NULL)
            xmlSecKeyDestroy(key);
        if (data != NULL)
            xmlSecKeyDataDestroy(data);
        return NULL;
    }
    return key;
}

/* KeyInfo/X509Data's subject name (RFC 2253) and, when `with_cert`, the
 * certificate (base64 DER) from `cert`. xmlsec 1.2 leaves X509SubjectName
 * empty when signing (it fills it only when reading); Appendix A's
 * connector sends it. KeyInfo lies inside the Signature, which the
 * enveloped transform removes before digesting, and outside SignedInfo, so
 * writing it after signing changes nothing that was signed. */
static int fill_x509(xmlNodePtr sig, X509 *cert, int with_cert)
{
    xmlNodePtr sn = xmlSecFindNode(sig, xmlSecNodeX509SubjectName, xmlSecDSigNs);
    xmlNodePtr cn = xmlSecFindNode(sig, xmlSecNodeX509Certificate, xmlSecDSigNs);
    unsigned char *der = NULL, *b64 = NULL;
    BIO *mem = NULL;
    char *text = NULL, *copy = NULL;
    long len;
    int n, r = -1;

    if (cert == NULL)
        return -1;
    if (sn != NULL && sn->children == NULL) {
        if ((mem = BIO_new(BIO_s_mem())) == NULL ||
            X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0,
                               XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0 ||
            (len = BIO_get_mem_data(mem, &text)) <= 0 ||
            (copy = strndup(text, (size_t)len)) == NULL)
            goto out;
        xmlNodeAddContent(sn, BAD_CAST copy);
    }
    if (with_cert && cn != NULL) {
        if ((n = i2d_X509(cert, &der)) <= 0 ||
            (b64 = malloc(4 * (((size_t)n + 2) / 3) + 1)) == NULL)
            goto out;
        EVP_EncodeBlock(b64, der, n);
        xmlNodeSetContent(cn, b64);
    }
    r = 0;
out:
    free(copy);
    free(b64);
    OPENSSL_free(der);
    BIO_free(mem);
    return r;
}

/* The signature template: enveloped (URI ""), exclusive C14N, RSA-SHA256,
 * SHA-256, and when `keyinfo` KeyInfo/X509Data with the subject name and
 * certificate. */
static xmlNodePtr add_template(xmlDocPtr doc, xmlNodePtr parent, int keyinfo)
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
        xmlSecTmplReferenceAddTransform(ref, xmlSecTransformExclC14NId) == NULL)
        goto fail;
    if (keyinfo && ((ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL)) == NULL ||
                    (x509 = xmlSecTmplKeyInfoAddX509Data(ki)) == NULL ||
                    xmlSecTmplX509DataAddSubjectName(x509) == NULL ||
                    xmlSecTmplX509DataAddCertificate(x509) == NULL))
        goto fail;
    return sig;
fail:
    xmlUnlinkNode(sig);
    xmlFreeNode(sig);
    return NULL;
}

static void drop(xmlNodePtr sig)
{
    if (sig != NULL) {
        xmlUnlinkNode(sig);
        xmlFreeNode(sig);
    }
}

/* PKCS#12: xmlsec does everything with the file's key and certificate. */
static int pkcs12_sign(xmlDocPtr doc, xmlNodePtr parent, const struct srv_report_config *cfg,
                       char *err, size_t errlen)
{
    xmlSecDSigCtxPtr ctx = NULL;
    xmlSecKeyPtr key = NULL;
    xmlNodePtr sig = NULL;
    int r = -1;

    if ((key = load_pkcs12(cfg, err, errlen)) == NULL)
        goto out;
    if ((sig = add_template(doc, parent, 1)) == NULL || (ctx = xmlSecDSigCtxCreate(NULL)) == NULL) {
        snprintf(err, errlen, "out of memory building the signature");
        goto out;
    }
    ctx->signKey = key;
    key = NULL;
    if (xmlSecDSigCtxSign(ctx, sig) < 0) {
        snprintf(err, errlen, "signing failed: %s", last_error[0] ? last_error : "unknown cause");
        goto out;
    }
    xmlSecKeyDataPtr data = xmlSecKeyGetData(ctx->signKey, xmlSecOpenSSLKeyDataX509Id);
    X509 *cert = data != NULL ? xmlSecOpenSSLKeyDataX509GetKeyCert(data) : NULL;
    if (fill_x509(sig, cert, 0) != 0) {
        snprintf(err, errlen, "the PKCS#12 file %s has no certificate for its key",
                 cfg->share_pkcs12);
        goto out;
    }
    sig = NULL;
    r = 0;
out:
    drop(sig);
    if (ctx != NULL)
        xmlSecDSigCtxDestroy(ctx);
    if (key != NULL)
        xmlSecKeyDestroy(key);
    return r;
}

/* The c14n callback that keeps the subtree of `root` (SignedInfo):
 * namespace nodes come with their element as `parent`. */
static int in_subtree(void *root, xmlNodePtr node, xmlNodePtr parent)
{
    xmlNodePtr n = node != NULL && node->type != XML_NAMESPACE_DECL ? node : parent;
    for (; n != NULL; n = n->parent)
        if (n == (xmlNodePtr)root)
            return 1;
    return 0;
}

/* PKCS#11: xmlsec 1.2 with OpenSSL 3 loads an engine key but then judges
 * it a public key (it looks for the private exponent, which stays on the
 * token) and refuses to sign with it; the xmlsec1 command fails the same
 * way. So xmlsec computes the reference's digest and SignedInfo with a
 * throwaway software key, and the SignatureValue is then replaced by the
 * token's RSA-SHA256 signature over SignedInfo in exclusive C14N, which is
 * exactly what a verifier recomputes; KeyInfo is written from share_cert. */
static int token_sign(xmlDocPtr doc, xmlNodePtr parent, const struct srv_report_config *cfg,
                      char *err, size_t errlen)
{
    xmlSecDSigCtxPtr ctx = NULL;
    xmlNodePtr sig = NULL, si, sv, ki, x509;
    xmlOutputBufferPtr c14n = NULL;
    EVP_PKEY *pk = NULL;
    EVP_MD_CTX *md = NULL;
    X509 *cert = NULL;
    unsigned char *raw = NULL, *b64 = NULL;
    size_t rawlen = 0;
    int r = -1;

    if ((pk = token_key(cfg, err, errlen)) == NULL ||
        (cert = read_cert(cfg->share_cert, err, errlen)) == NULL)
        goto out;
    if (EVP_PKEY_eq(X509_get0_pubkey(cert), pk) != 1) {
        snprintf(err, errlen, "the certificate %s is not that of the token's key %s",
                 cfg->share_cert, cfg->share_pkcs11_key);
        goto out;
    }
    if ((sig = add_template(doc, parent, 0)) == NULL || (ctx = xmlSecDSigCtxCreate(NULL)) == NULL ||
        (ctx->signKey = scratch_key()) == NULL) {
        snprintf(err, errlen, "out of memory building the signature");
        goto out;
    }
    if (xmlSecDSigCtxSign(ctx, sig) < 0) {
        snprintf(err, errlen, "signing failed: %s", last_error[0] ? last_error : "unknown cause");
        goto out;
    }
    si = xmlSecFindChild(sig, xmlSecNodeSignedInfo, xmlSecDSigNs);
    sv = xmlSecFindChild(sig, xmlSecNodeSignatureValue, xmlSecDSigNs);
    if (si == NULL || sv == NULL || (c14n = xmlAllocOutputBuffer(NULL)) == NULL ||
        xmlC14NExecute(doc, in_subtree, si, XML_C14N_EXCLUSIVE_1_0, NULL, 0, c14n) < 0) {
        snprintf(err, errlen, "cannot canonicalise SignedInfo");
        goto out;
    }
    const xmlChar *data = xmlOutputBufferGetContent(c14n);
    size_t len = xmlOutputBufferGetSize(c14n);
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) != 1 ||
        EVP_DigestSign(md, NULL, &rawlen, data, len) != 1 || (raw = malloc(rawlen)) == NULL ||
        EVP_DigestSign(md, raw, &rawlen, data, len) != 1 ||
        (b64 = malloc(4 * ((rawlen + 2) / 3) + 1)) == NULL) {
        unsigned long e = ERR_peek_last_error();
        char why[200] = "";
        if (e != 0)
            ERR_error_string_n(e, why, sizeof(why));
        snprintf(err, errlen, "the token did not sign: %s", why);
        goto out;
    }
    EVP_EncodeBlock(b64, raw, (int)rawlen);
    xmlNodeSetContent(sv, b64);
    if ((ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL)) == NULL ||
        (x509 = xmlSecTmplKeyInfoAddX509Data(ki)) == NULL ||
        xmlSecTmplX509DataAddSubjectName(x509) == NULL ||
        xmlSecTmplX509DataAddCertificate(x509) == NULL || fill_x509(sig, cert, 1) != 0) {
        snprintf(err, errlen, "out of memory writing KeyInfo");
        goto out;
    }
    sig = NULL;
    r = 0;
out:
    drop(sig);
    if (ctx != NULL)
        xmlSecDSigCtxDestroy(ctx); /* destroys the scratch key too */
    if (c14n != NULL)
        xmlOutputBufferClose(c14n);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    X509_free(cert);
    free(raw);
    free(b64);
    return r;
}

int xmldsig_sign(xmlDocPtr doc, xmlNodePtr parent, const struct srv_report_config *cfg, char *err,
                 size_t errlen)
{
    int r;

    if (xmldsig_init(err, errlen) != 0)
        return -1;
    if (doc == NULL || parent == NULL) {
        snprintf(err, errlen, "no place for the signature in the document");
        return -1;
    }
    if (!xmldsig_configured(cfg)) {
        snprintf(err, errlen,
                 "no signing key: set share_pkcs12, or share_pkcs11_module, share_pkcs11_key and "
                 "share_cert");
        return -1;
    }
    pthread_mutex_lock(&sign_lock);
    last_error[0] = '\0';
    ERR_clear_error();
    r = cfg->share_pkcs12[0] != '\0' ? pkcs12_sign(doc, parent, cfg, err, errlen)
                                     : token_sign(doc, parent, cfg, err, errlen);
    ERR_clear_error();
    pthread_mutex_unlock(&sign_lock);
    return r;
}
