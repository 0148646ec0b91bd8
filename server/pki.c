/*
 * The server's certificate authority (see pki.h), on OpenSSL 3's EVP and
 * X509 interfaces. `khien server init` creates a private CA and a server
 * certificate signed by it; enrollment turns each agent's certificate
 * request into a client certificate whose only name is the machine id; the
 * TLS layer asks srv_pki_verify_client() whether a presented certificate
 * chains to the CA and is meant for client authentication.
 *
 * Nothing of a request is trusted beyond its public key: the issued
 * certificate's subject and extensions are written here, so a request that
 * asks for CA:TRUE, serverAuth or another machine's name gets none of it.
 *
 * After srv_pki_open() every OpenSSL object in struct srv_pki is only read,
 * which OpenSSL 3 allows from many threads; signing additionally takes a
 * mutex because it is rare (enrollment) and that makes the reasoning about
 * the shared CA key trivial.
 */
#include "pki.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "khx.h"

#define CSR_MAX         (16 * 1024)
#define DER_MAX         (64 * 1024)
#define CA_DAYS         3650
#define SERVER_DAYS     825
#define CLIENT_DAYS_MAX 36500
#define RSA_BITS_MIN    2048
#define RSA_BITS_MAX    16384
#define MACHINE_ID_MAX  64
#define NAMES_MAX       4096
#define NAMES_COUNT_MAX 100
/* X.509's upper bound for a common name (ub-common-name). */
#define CN_MAX 64
/* Certificates start an hour in the past so that an agent whose clock is a
 * little behind the server's can use its certificate at once. */
#define BACKDATE_SECONDS 3600

struct srv_pki {
    X509 *ca;
    EVP_PKEY *key;
    X509_STORE *store;
    char *ca_pem;
    pthread_mutex_t sign_lock;
};

/* Formats "what: <OpenSSL's first queued error>" into err and clears the
 * queue, so a later failure does not report a stale reason. */
static void ssl_errf(char *err, size_t errlen, const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    if (buf[0] != '\0')
        khx_errf(err, errlen, "%s: %s", what, buf);
    else
        khx_errf(err, errlen, "%s", what);
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes a private key as unencrypted PKCS#8 PEM, mode 0600. The PEM text
 * lives in OpenSSL's secure heap and is wiped when the BIO is freed. */
static int write_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
    int r = -1;
    char *data = NULL;
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        ssl_errf(err, errlen, "cannot encode a private key");
        goto out;
    }
    long len = BIO_get_mem_data(bio, &data);
    if (len <= 0 || khx_write_file_mode(path, data, (size_t)len, 0600) != 0) {
        khx_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    r = 0;
out:
    BIO_free(bio);
    return r;
}

/* Encodes a certificate as PEM into a malloc'd, NUL-terminated string. */
static char *cert_pem(X509 *x)
{
    char *out = NULL, *data = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1)
        goto out;
    long len = BIO_get_mem_data(bio, &data);
    if (len <= 0 || (out = malloc((size_t)len + 1)) == NULL)
        goto out;
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
out:
    BIO_free(bio);
    return out;
}

static int write_cert(const char *path, X509 *x, char *err, size_t errlen)
{
    char *pem = cert_pem(x);
    if (pem == NULL) {
        ssl_errf(err, errlen, "cannot encode a certificate");
        return -1;
    }
    int r = khx_write_file_mode(path, pem, strlen(pem), 0644);
    if (r != 0)
        khx_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    free(pem);
    return r;
}

static X509 *read_cert(const char *path, char *err, size_t errlen)
{
    X509 *x = NULL;
    BIO *bio = BIO_new_file(path, "r");
    if (bio != NULL)
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x == NULL)
        ssl_errf(err, errlen, path);
    BIO_free(bio);
    return x;
}

/* Reads a private key. With `private_only` the file must not be accessible
 * to group or others, as OpenSSH insists for its keys: a CA key that others
 * can read lets them mint agents. */
static EVP_PKEY *read_key(const char *path, int private_only, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        ssl_errf(err, errlen, path);
        return NULL;
    }
    struct stat st;
    if (private_only && stat(path, &st) == 0 && (st.st_mode & 077) != 0) {
        khx_errf(err, errlen, "%s is accessible by other users (mode %03o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if ((key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL)
        ssl_errf(err, errlen, path);
out:
    BIO_free(bio);
    return key;
}

/* Sets a random positive 128-bit serial number and returns it in lowercase
 * hex. Randomness, rather than a counter, means several server processes
 * sharing one CA never need to agree on the next number. */
static int set_random_serial(X509 *x, char hex[41])
{
    uint8_t raw[16];
    int r = -1;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    char *h = NULL;
    do {
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            goto out;
        BN_free(bn);
        if ((bn = BN_bin2bn(raw, sizeof(raw), NULL)) == NULL)
            goto out;
    } while (BN_is_zero(bn));
    if ((ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || X509_set_serialNumber(x, ai) != 1)
        goto out;
    if ((h = BN_bn2hex(bn)) == NULL || strlen(h) > 40)
        goto out;
    for (size_t i = 0; h[i] != '\0'; i++)
        hex[i] = (char)tolower((unsigned char)h[i]);
    hex[strlen(h)] = '\0';
    r = 0;
out:
    OPENSSL_free(h);
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return r;
}

/* A version 3 certificate for `key` with subject CN=cn, issued by `issuer`
 * (NULL: self-issued), valid from an hour ago for `days` days. Unsigned. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, int days, char serial[41])
{
    char unused[41];
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    if (x == NULL)
        return NULL;
    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        set_random_serial(x, serial ? serial : unused) != 0)
        goto fail;
    if (X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL)
        goto fail;
    if ((name = X509_NAME_new()) == NULL ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_subject_name(x, name) != 1)
        goto fail;
    if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1 ||
        X509_set_pubkey(x, key) != 1)
        goto fail;
    X509_NAME_free(name);
    return x;
fail:
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

/* Adds one extension written in OpenSSL's configuration syntax. Only
 * constant strings from this file are passed here, never request data. */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static int valid_dns_name(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    /* A leading "*." wildcard is allowed; anything else is letters, digits,
     * hyphens and dots. */
    if (n > 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    }
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.'))
            return 0;
    return s[0] != '.' && s[0] != '-';
}

/* Splits "name,name,..." into subjectAltName entries: IPv4 and IPv6
 * addresses become IP entries, everything else must be a DNS name. The first
 * entry also becomes the certificate's CN. */
static int parse_names(const char *names, GENERAL_NAMES **out, char cn[CN_MAX + 1], char *err,
                       size_t errlen)
{
    char buf[NAMES_MAX];
    char *save = NULL;
    int r = -1, count = 0;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn = NULL;

    cn[0] = '\0';
    if (gens == NULL || strlen(names) >= sizeof(buf)) {
        khx_errf(err, errlen, "the list of server names is too long");
        goto out;
    }
    strcpy(buf, names);
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
            tok[--n] = '\0';
        if (n == 0)
            continue;
        if (++count > NAMES_COUNT_MAX) {
            khx_errf(err, errlen, "more than %d server names", NAMES_COUNT_MAX);
            goto out;
        }
        unsigned char addr[16];
        if ((gn = GENERAL_NAME_new()) == NULL)
            goto out;
        if (inet_pton(AF_INET, tok, addr) == 1 || inet_pton(AF_INET6, tok, addr) == 1) {
            ASN1_OCTET_STRING *ip = a2i_IPADDRESS(tok);
            if (ip == NULL) {
                khx_errf(err, errlen, "bad IP address '%s'", tok);
                goto out;
            }
            GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
        } else {
            if (!valid_dns_name(tok, n)) {
                char shown[80];
                khx_errf(err, errlen, "'%s' is neither an IP address nor a DNS name",
                         khx_printable(shown, sizeof(shown), tok, n));
                goto out;
            }
            ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
            if (dns == NULL || ASN1_STRING_set(dns, tok, (int)n) != 1) {
                ASN1_IA5STRING_free(dns);
                goto out;
            }
            GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
        }
        if (sk_GENERAL_NAME_push(gens, gn) <= 0)
            goto out;
        gn = NULL;
        if (cn[0] == '\0')
            snprintf(cn, CN_MAX + 1, "%.*s", CN_MAX, tok);
    }
    if (count == 0) {
        khx_errf(err, errlen, "no server names given");
        goto out;
    }
    *out = gens;
    gens = NULL;
    r = 0;
out:
    if (r != 0 && err != NULL && err[0] == '\0')
        ssl_errf(err, errlen, "cannot build the server's names");
    GENERAL_NAME_free(gn);
    sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
    return r;
}

static int create_ca(const char *crt_path, const char *key_path, char *err, size_t errlen)
{
    int r = -1;
    char host[256] = "";
    char cn[CN_MAX + 1];
    X509 *x = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL) {
        ssl_errf(err, errlen, "cannot generate the CA key");
        goto out;
    }
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    snprintf(cn, sizeof(cn), "Khien CA %.*s", CN_MAX - 9, host);
    if ((x = new_cert(key, cn, NULL, CA_DAYS, NULL)) == NULL ||
        add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
        add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        add_ext(x, NULL, NID_subject_key_identifier, "hash") != 0 ||
        X509_sign(x, key, EVP_sha256()) <= 0) {
        ssl_errf(err, errlen, "cannot create the CA certificate");
        goto out;
    }
    /* The key first: a certificate without its key would be unusable. */
    if (write_key(key_path, key, err, errlen) != 0 || write_cert(crt_path, x, err, errlen) != 0)
        goto out;
    r = 0;
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return r;
}

static int create_server(const char *crt_path, const char *key_path, const char *names, X509 *ca,
                         EVP_PKEY *ca_key, char *err, size_t errlen)
{
    int r = -1;
    char cn[CN_MAX + 1];
    GENERAL_NAMES *gens = NULL;
    X509 *x = NULL;
    EVP_PKEY *key = NULL;

    if (parse_names(names ? names : "localhost,127.0.0.1", &gens, cn, err, errlen) != 0)
        goto out;
    if ((key = EVP_EC_gen("P-256")) == NULL) {
        ssl_errf(err, errlen, "cannot generate the server key");
        goto out;
    }
    if ((x = new_cert(key, cn, ca, SERVER_DAYS, NULL)) == NULL ||
        add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, ca, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, ca, NID_ext_key_usage, "serverAuth") != 0 ||
        add_ext(x, ca, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, ca, NID_authority_key_identifier, "keyid:always") != 0 ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1 ||
        X509_sign(x, ca_key, EVP_sha256()) <= 0) {
        ssl_errf(err, errlen, "cannot create the server certificate");
        goto out;
    }
    if (write_key(key_path, key, err, errlen) != 0 || write_cert(crt_path, x, err, errlen) != 0)
        goto out;
    r = 0;
out:
    sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
    X509_free(x);
    EVP_PKEY_free(key);
    return r;
}

/* Loads a certificate and its key and checks that they belong together. */
static int load_pair(const char *crt_path, const char *key_path, int private_only, X509 **crt,
                     EVP_PKEY **key, char *err, size_t errlen)
{
    X509 *x = read_cert(crt_path, err, errlen);
    EVP_PKEY *k = x ? read_key(key_path, private_only, err, errlen) : NULL;
    if (x == NULL || k == NULL)
        goto fail;
    if (X509_check_private_key(x, k) != 1) {
        ERR_clear_error();
        khx_errf(err, errlen, "%s is not the key of %s", key_path, crt_path);
        goto fail;
    }
    *crt = x;
    *key = k;
    return 0;
fail:
    X509_free(x);
    EVP_PKEY_free(k);
    return -1;
}

int srv_pki_init_dir(const char *dir, const char *names, const char *cert_path,
                     const char *key_path, char *err, size_t errlen)
{
    char ca_crt[PATH_MAX], ca_key[PATH_MAX], srv_crt[PATH_MAX], srv_key[PATH_MAX];
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *cakey = NULL, *k = NULL;
    int r = -1;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (dir == NULL || path_join(ca_crt, sizeof(ca_crt), dir, "ca.crt") != 0 ||
        path_join(ca_key, sizeof(ca_key), dir, "ca.key") != 0 ||
        path_join(srv_crt, sizeof(srv_crt), dir, "server.crt") != 0 ||
        path_join(srv_key, sizeof(srv_key), dir, "server.key") != 0) {
        khx_errf(err, errlen, "bad data folder name");
        return -1;
    }
    if ((cert_path == NULL) != (key_path == NULL)) {
        khx_errf(err, errlen, "give both a server certificate and its key, or neither");
        return -1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        khx_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    /* The CA certificate is what agents trust: it is only ever created when
     * absent. A key without its certificate cannot have been handed out, so
     * it is replaced. */
    if (!file_exists(ca_crt) && create_ca(ca_crt, ca_key, err, errlen) != 0)
        goto out;
    if (load_pair(ca_crt, ca_key, 1, &ca, &cakey, err, errlen) != 0)
        goto out;
    if (cert_path != NULL) {
        if (load_pair(cert_path, key_path, 0, &x, &k, err, errlen) != 0)
            goto out;
    } else if (file_exists(srv_crt)) {
        if (load_pair(srv_crt, srv_key, 0, &x, &k, err, errlen) != 0)
            goto out;
    } else if (create_server(srv_crt, srv_key, names, ca, cakey, err, errlen) != 0) {
        goto out;
    }
    r = 0;
out:
    X509_free(ca);
    X509_free(x);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(k);
    return r;
}

int srv_pki_open(const char *dir, struct srv_pki **out, char *err, size_t errlen)
{
    char ca_crt[PATH_MAX], ca_key[PATH_MAX];
    struct srv_pki *pki = NULL;
    int r = -1;

    *out = NULL;
    if (dir == NULL || path_join(ca_crt, sizeof(ca_crt), dir, "ca.crt") != 0 ||
        path_join(ca_key, sizeof(ca_key), dir, "ca.key") != 0) {
        khx_errf(err, errlen, "bad data folder name");
        return -1;
    }
    if ((pki = calloc(1, sizeof(*pki))) == NULL) {
        khx_errf(err, errlen, "out of memory");
        return -1;
    }
    if (pthread_mutex_init(&pki->sign_lock, NULL) != 0) {
        free(pki);
        khx_errf(err, errlen, "cannot create a mutex");
        return -1;
    }
    if (load_pair(ca_crt, ca_key, 1, &pki->ca, &pki->key, err, errlen) != 0)
        goto out;
    if (X509_check_ca(pki->ca) < 1) {
        khx_errf(err, errlen, "%s is not a CA certificate", ca_crt);
        goto out;
    }
    if ((pki->store = X509_STORE_new()) == NULL || X509_STORE_add_cert(pki->store, pki->ca) != 1 ||
        (pki->ca_pem = cert_pem(pki->ca)) == NULL) {
        ssl_errf(err, errlen, "cannot set up the CA");
        goto out;
    }
    *out = pki;
    pki = NULL;
    r = 0;
out:
    srv_pki_free(pki);
    return r;
}

void srv_pki_free(struct srv_pki *pki)
{
    if (pki == NULL)
        return;
    X509_STORE_free(pki->store);
    X509_free(pki->ca);
    EVP_PKEY_free(pki->key);
    free(pki->ca_pem);
    pthread_mutex_destroy(&pki->sign_lock);
    free(pki);
}

const char *srv_pki_ca_pem(const struct srv_pki *pki)
{
    return pki ? pki->ca_pem : NULL;
}

/* Machine ids are UUIDs chosen by the server; accepting only their
 * alphabet keeps the CN free of anything a log or a DN parser could
 * misread. */
static int valid_machine_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > MACHINE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)id[i]) || id[i] == '-' || id[i] == '_' || id[i] == '.'))
            return 0;
    return 1;
}

/* Accepts EC keys on the NIST curves TLS libraries support and RSA keys of
 * 2048 bits or more (capped, so a request cannot make every handshake
 * expensive). */
static int check_request_key(EVP_PKEY *key, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen) != 1) {
            ERR_clear_error();
            khx_errf(err, errlen, "the request's EC key does not use a named curve");
            return -1;
        }
        if (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0 &&
            strcmp(group, "secp521r1") != 0) {
            khx_errf(err, errlen, "the request's EC curve %s is not supported", group);
            return -1;
        }
        return 0;
    }
    if (EVP_PKEY_is_a(key, "RSA")) {
        int bits = EVP_PKEY_get_bits(key);
        if (bits < RSA_BITS_MIN || bits > RSA_BITS_MAX) {
            khx_errf(err, errlen, "the request's RSA key has %d bits (2048 to 16384 accepted)",
                     bits);
            return -1;
        }
        return 0;
    }
    khx_errf(err, errlen, "the request's key type is not supported (use EC P-256 or RSA)");
    return -1;
}

int srv_pki_sign_csr(struct srv_pki *pki, const char *csr_pem, size_t csr_len,
                     const char *machine_id, unsigned days, char **cert_pem_out, char serial[41],
                     char sha256[65], char *err, size_t errlen)
{
    BIO *bio = NULL;
    X509_REQ *req = NULL;
    X509 *x = NULL;
    char *pem = NULL;
    char ser[41];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int r = -1;

    if (pki == NULL || csr_pem == NULL || cert_pem_out == NULL || serial == NULL ||
        sha256 == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return -1;
    }
    *cert_pem_out = NULL;
    if (csr_len == 0 || csr_len > CSR_MAX) {
        khx_errf(err, errlen, "the certificate request must be 1 to %d bytes", CSR_MAX);
        return -1;
    }
    if (!valid_machine_id(machine_id)) {
        khx_errf(err, errlen, "bad machine id");
        return -1;
    }
    if (days == 0 || days > CLIENT_DAYS_MAX) {
        khx_errf(err, errlen, "a certificate lifetime of %u days is out of range", days);
        return -1;
    }
    if ((bio = BIO_new_mem_buf(csr_pem, (int)csr_len)) == NULL ||
        (req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL)) == NULL) {
        ERR_clear_error();
        khx_errf(err, errlen, "the certificate request is not a PEM CERTIFICATE REQUEST");
        goto out;
    }
    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    if (key == NULL) {
        ssl_errf(err, errlen, "the certificate request has no usable public key");
        goto out;
    }
    if (check_request_key(key, err, errlen) != 0)
        goto out;
    if (X509_REQ_verify(req, key) != 1) {
        ERR_clear_error();
        khx_errf(err, errlen, "the certificate request's signature does not verify");
        goto out;
    }
    /* Only the public key is taken from the request. */
    if ((x = new_cert(key, machine_id, pki->ca, (int)days, ser)) == NULL ||
        add_ext(x, pki->ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, pki->ca, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, pki->ca, NID_ext_key_usage, "clientAuth") != 0 ||
        add_ext(x, pki->ca, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, pki->ca, NID_authority_key_identifier, "keyid:always") != 0) {
        ssl_errf(err, errlen, "cannot build the client certificate");
        goto out;
    }
    pthread_mutex_lock(&pki->sign_lock);
    int signed_len = X509_sign(x, pki->key, EVP_sha256());
    pthread_mutex_unlock(&pki->sign_lock);
    if (signed_len <= 0 || X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32 ||
        (pem = cert_pem(x)) == NULL) {
        ssl_errf(err, errlen, "cannot sign the client certificate");
        goto out;
    }
    khx_hex_encode(md, 32, sha256);
    memcpy(serial, ser, sizeof(ser));
    *cert_pem_out = pem;
    pem = NULL;
    r = 0;
out:
    free(pem);
    X509_free(x);
    X509_REQ_free(req);
    BIO_free(bio);
    return r;
}

/* Copies the certificate's single common name as UTF-8, refusing names
 * with control characters or embedded NULs. */
static int copy_cn(X509 *x, char *cn, size_t cnlen)
{
    X509_NAME *name = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
        return -1;
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, data);
    int r = -1;
    if (n <= 0 || (size_t)n >= cnlen)
        goto out;
    for (int i = 0; i < n; i++)
        if (utf8[i] < 0x20 || utf8[i] == 0x7f)
            goto out;
    memcpy(cn, utf8, (size_t)n);
    cn[n] = '\0';
    r = 0;
out:
    OPENSSL_free(utf8);
    return r;
}

int srv_pki_verify_client(struct srv_pki *pki, const uint8_t *der, size_t der_len, char *cn,
                          size_t cnlen, char sha256[65])
{
    X509 *x = NULL;
    X509_STORE_CTX *ctx = NULL;
    uint8_t md[32];
    int r = -1;

    if (pki == NULL || der == NULL || der_len == 0 || der_len > DER_MAX || cn == NULL ||
        cnlen == 0 || sha256 == NULL)
        return -1;
    const unsigned char *p = der;
    /* The whole buffer must be one certificate: trailing bytes would make
     * the fingerprint below describe something else than what was checked. */
    if ((x = d2i_X509(NULL, &p, (long)der_len)) == NULL || p != der + der_len)
        goto out;
    if ((ctx = X509_STORE_CTX_new()) == NULL ||
        X509_STORE_CTX_init(ctx, pki->store, x, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1)
        goto out;
    if (X509_verify_cert(ctx) != 1)
        goto out;
    if (copy_cn(x, cn, cnlen) != 0 || khx_sha256(der, der_len, md) != 0)
        goto out;
    khx_hex_encode(md, sizeof(md), sha256);
    r = 0;
out:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_free(x);
    return r;
}
