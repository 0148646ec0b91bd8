/*
 * The server's certificate authority (server/pki.c): `server init` creates a
 * CA and a server certificate with the right names and constraints; signing
 * an agent's request issues a client certificate that carries nothing from
 * the request but its public key; bad requests are refused; and the client
 * check accepts only certificates of this CA meant for clients, in date.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../../server/pki.h"
#include "khx.h"

static const char machine_id[] = "0b6f5e1c-6a43-4c1e-9a55-2f3d7d1e8a90";

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    assert_non_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static X509 *read_cert_file(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    free(p);
    assert_non_null(x);
    return x;
}

static X509 *cert_from_pem(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    return x;
}

static unsigned char *cert_der(X509 *x, size_t *len)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

/* A PEM certificate request for `key`, signed by `signer` (normally the same
 * key), asking for everything a client certificate must not get when
 * `greedy`: another subject, CA:TRUE, a server name and serverAuth. */
static char *make_csr(EVP_PKEY *key, EVP_PKEY *signer, int greedy)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    X509_NAME *name = X509_REQ_get_subject_name(req);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"evil", -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"Evil Org", -1, -1, 0),
                     1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    if (greedy) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        sk_X509_EXTENSION_push(
            exts, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE"));
        sk_X509_EXTENSION_push(
            exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:evil.example"));
        sk_X509_EXTENSION_push(exts,
                               X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage, "serverAuth"));
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    assert_true(X509_REQ_sign(req, signer, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *out = malloc((size_t)len + 1);
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    BIO_free(bio);
    X509_REQ_free(req);
    return out;
}

struct ca_dir {
    char dir[256];
    struct srv_pki *pki;
};

static void ca_setup(struct ca_dir *c, const char *names)
{
    char err[256] = "";
    snprintf(c->dir, sizeof(c->dir), "%s", tu_mkdtemp());
    if (srv_pki_init_dir(c->dir, names, NULL, NULL, err, sizeof(err)) != 0)
        fail_msg("init: %s", err);
    if (srv_pki_open(c->dir, &c->pki, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
}

static void ca_teardown(struct ca_dir *c)
{
    srv_pki_free(c->pki);
    tu_rmtree(c->dir);
}

/* Issues a client certificate for a fresh EC key; returns the parsed cert. */
static X509 *issue(struct srv_pki *pki, const char *id, char serial[41], char sha[65])
{
    char err[256] = "";
    char *pem = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *csr = make_csr(key, key, 0);
    if (srv_pki_sign_csr(pki, csr, strlen(csr), id, 30, &pem, serial, sha, err, sizeof(err)) != 0)
        fail_msg("sign: %s", err);
    X509 *x = cert_from_pem(pem);
    free(pem);
    free(csr);
    EVP_PKEY_free(key);
    return x;
}

static void pki_init_writes_ca_and_server_files(void **state)
{
    (void)state;
    struct ca_dir c;
    struct stat st;
    ca_setup(&c, NULL);
    const char *files[] = {"ca.crt", "ca.key", "server.crt", "server.key"};
    for (size_t i = 0; i < 4; i++) {
        char *p = path_in(c.dir, files[i]);
        assert_int_equal(stat(p, &st), 0);
        if (strstr(files[i], ".key") != NULL)
            assert_int_equal(st.st_mode & 0777, 0600);
        free(p);
    }
    assert_non_null(strstr(srv_pki_ca_pem(c.pki), "-----BEGIN CERTIFICATE-----"));

    X509 *ca = read_cert_file(c.dir, "ca.crt");
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn));
    assert_int_equal(strncmp(cn, "Khien CA ", 9), 0);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    uint32_t ku = X509_get_key_usage(ca);
    assert_true(ku & KU_KEY_CERT_SIGN);
    assert_true(ku & KU_CRL_SIGN);
    /* About ten years. */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca), X509_get0_notAfter(ca)),
                     1);
    assert_true(days >= 3650 && days <= 3651);
    X509_free(ca);

    /* A second init changes nothing. */
    char *p = path_in(c.dir, "ca.crt");
    uint8_t *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    char err[256];
    assert_int_equal(khx_read_file(p, 1 << 20, &before, &nb), 0);
    assert_int_equal(srv_pki_init_dir(c.dir, "other.example", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(khx_read_file(p, 1 << 20, &after, &na), 0);
    assert_int_equal(nb, na);
    assert_memory_equal(before, after, nb);
    free(before);
    free(after);
    free(p);
    ca_teardown(&c);
}

static void pki_server_cert_has_requested_names(void **state)
{
    (void)state;
    struct ca_dir c;
    ca_setup(&c, "khien.example, 10.1.2.3,::1,localhost");
    X509 *x = read_cert_file(c.dir, "server.crt");
    X509 *ca = read_cert_file(c.dir, "ca.crt");

    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 4);
    int dns = 0, ip4 = 0, ip6 = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const char *s = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
            dns += strcmp(s, "khien.example") == 0 || strcmp(s, "localhost") == 0;
        } else if (g->type == GEN_IPADD) {
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            int n = ASN1_STRING_length(g->d.iPAddress);
            ip4 += n == 4 && a[0] == 10 && a[1] == 1 && a[2] == 2 && a[3] == 3;
            ip6 += n == 16 && a[15] == 1;
        }
    }
    GENERAL_NAMES_free(gens);
    assert_int_equal(dns, 2);
    assert_int_equal(ip4, 1);
    assert_int_equal(ip6, 1);
    assert_int_equal(X509_check_host(x, "khien.example", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "10.1.2.3", 0), 1);

    /* serverAuth, not a CA, signed by our CA, about 825 days. */
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_false(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_true(days >= 825 && days <= 826);
    X509_free(x);
    X509_free(ca);
    ca_teardown(&c);
}

static void pki_init_refuses_bad_names_and_checks_given_pairs(void **state)
{
    (void)state;
    char err[256] = "";
    const char *dir = tu_mkdtemp();
    char saved[256];
    snprintf(saved, sizeof(saved), "%s", dir);
    assert_int_equal(srv_pki_init_dir(saved, "bad name!,x", NULL, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad name!"));
    assert_int_equal(srv_pki_init_dir(saved, " , ", NULL, NULL, err, sizeof(err)), -1);

    /* A certificate and key of the caller's are checked and left in place. */
    struct ca_dir other;
    ca_setup(&other, NULL);
    char *crt = path_in(other.dir, "server.crt");
    char *key = path_in(other.dir, "server.key");
    char *cakey = path_in(other.dir, "ca.key");
    assert_int_equal(srv_pki_init_dir(saved, NULL, crt, key, err, sizeof(err)), 0);
    char *own = path_in(saved, "server.crt");
    assert_int_not_equal(access(own, F_OK), 0);
    assert_int_equal(srv_pki_init_dir(saved, NULL, crt, cakey, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not the key of"));
    assert_int_equal(srv_pki_init_dir(saved, NULL, crt, NULL, err, sizeof(err)), -1);

    /* A CA key others can read is refused. */
    char *mykey = path_in(saved, "ca.key");
    struct srv_pki *pki = NULL;
    assert_int_equal(chmod(mykey, 0644), 0);
    assert_int_equal(srv_pki_open(saved, &pki, err, sizeof(err)), -1);
    assert_null(pki);
    assert_non_null(strstr(err, "chmod 600"));
    free(crt);
    free(key);
    free(cakey);
    free(own);
    free(mykey);
    ca_teardown(&other);
    tu_rmtree(saved);
}

static void pki_sign_csr_takes_only_the_public_key(void **state)
{
    (void)state;
    struct ca_dir c;
    char err[256] = "", serial[41], sha[65], cn[128], sha2[65];
    char *pem = NULL;
    ca_setup(&c, NULL);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *csr = make_csr(key, key, 1);
    if (srv_pki_sign_csr(c.pki, csr, strlen(csr), machine_id, 30, &pem, serial, sha, err,
                         sizeof(err)) != 0)
        fail_msg("sign: %s", err);
    X509 *x = cert_from_pem(pem);

    /* Subject: exactly CN=machine_id. */
    X509_NAME *subj = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_entry_count(subj), 1);
    X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, machine_id);
    /* None of the request's extensions. */
    assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_false(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    /* The request's key, the CA as issuer, `days` days. */
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
    X509 *ca = read_cert_file(c.dir, "ca.crt");
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)), 0);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(ca)), 1);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_int_equal(days, 30);
    /* The serial and fingerprint reported are the certificate's. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    assert_int_equal(strcasecmp(hex, serial), 0);
    assert_true(BN_num_bits(bn) > 64);
    OPENSSL_free(hex);
    BN_free(bn);
    size_t dlen = 0;
    unsigned char *der = cert_der(x, &dlen);
    uint8_t md[32];
    char want[65];
    khx_sha256(der, dlen, md);
    khx_hex_encode(md, 32, want);
    assert_string_equal(sha, want);

    /* And the client check accepts it. */
    assert_int_equal(srv_pki_verify_client(c.pki, der, dlen, cn, sizeof(cn), sha2), 0);
    assert_string_equal(cn, machine_id);
    assert_string_equal(sha2, sha);
    /* Trailing bytes after the certificate are refused. */
    unsigned char *longer = malloc(dlen + 1);
    memcpy(longer, der, dlen);
    longer[dlen] = 0;
    assert_int_equal(srv_pki_verify_client(c.pki, longer, dlen + 1, cn, sizeof(cn), sha2), -1);
    /* A CN that does not fit the caller's buffer is refused, not cut. */
    assert_int_equal(srv_pki_verify_client(c.pki, der, dlen, cn, 8, sha2), -1);

    free(longer);
    OPENSSL_free(der);
    X509_free(ca);
    X509_free(x);
    free(pem);
    free(csr);
    EVP_PKEY_free(key);
    ca_teardown(&c);
}

static void expect_refused(struct srv_pki *pki, const char *csr, size_t len, const char *id,
                           unsigned days, const char *why)
{
    char err[256] = "", serial[41], sha[65];
    char *pem = NULL;
    assert_int_equal(srv_pki_sign_csr(pki, csr, len, id, days, &pem, serial, sha, err, sizeof(err)),
                     -1);
    assert_null(pem);
    if (strstr(err, why) == NULL)
        fail_msg("expected '%s' in '%s'", why, err);
}

static void pki_sign_csr_refuses_bad_requests(void **state)
{
    (void)state;
    struct ca_dir c;
    ca_setup(&c, NULL);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");
    char *good = make_csr(key, key, 0);

    expect_refused(c.pki, "hello", 5, machine_id, 30, "not a PEM");
    expect_refused(c.pki, "", 0, machine_id, 30, "1 to 16384 bytes");
    /* The same request in DER is not PEM. */
    BIO *bio = BIO_new_mem_buf(good, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    unsigned char *der = NULL;
    int dlen = i2d_X509_REQ(req, &der);
    expect_refused(c.pki, (const char *)der, (size_t)dlen, machine_id, 30, "not a PEM");
    OPENSSL_free(der);
    X509_REQ_free(req);
    BIO_free(bio);

    /* Over 16 KiB, even when the request inside is fine. */
    size_t big = 16 * 1024 + 1;
    char *huge = malloc(big);
    memset(huge, '\n', big);
    memcpy(huge, good, strlen(good));
    expect_refused(c.pki, huge, big, machine_id, 30, "1 to 16384 bytes");
    free(huge);

    /* Signed by another key than the one it carries. */
    char *forged = make_csr(key, other, 0);
    expect_refused(c.pki, forged, strlen(forged), machine_id, 30, "signature does not verify");
    free(forged);

    /* RSA below 2048 bits; 2048 is fine. */
    EVP_PKEY *rsa1024 = EVP_RSA_gen(1024);
    char *weak = make_csr(rsa1024, rsa1024, 0);
    expect_refused(c.pki, weak, strlen(weak), machine_id, 30, "1024 bits");
    free(weak);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY *rsa2048 = EVP_RSA_gen(2048);
    char *strong = make_csr(rsa2048, rsa2048, 0);
    char err[256] = "", serial[41], sha[65];
    char *pem = NULL;
    if (srv_pki_sign_csr(c.pki, strong, strlen(strong), machine_id, 30, &pem, serial, sha, err,
                         sizeof(err)) != 0)
        fail_msg("RSA 2048: %s", err);
    free(pem);
    free(strong);
    EVP_PKEY_free(rsa2048);

    /* An EC curve TLS libraries do not take. */
    EVP_PKEY *k1 = EVP_EC_gen("secp256k1");
    char *odd = make_csr(k1, k1, 0);
    expect_refused(c.pki, odd, strlen(odd), machine_id, 30, "secp256k1");
    free(odd);
    EVP_PKEY_free(k1);

    /* Bad machine ids and lifetimes. */
    expect_refused(c.pki, good, strlen(good), "", 30, "machine id");
    expect_refused(c.pki, good, strlen(good), "a/../b", 30, "machine id");
    expect_refused(c.pki, good, strlen(good), "CN=x,O=y", 30, "machine id");
    expect_refused(c.pki, good, strlen(good), machine_id, 0, "lifetime");

    free(good);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    ca_teardown(&c);
}

static void pki_verify_client_refuses_other_certificates(void **state)
{
    (void)state;
    struct ca_dir a, b;
    char serial[41], sha[65], cn[128], sha2[65];
    size_t len = 0;
    ca_setup(&a, NULL);
    ca_setup(&b, NULL);

    /* Issued by another CA. */
    X509 *foreign = issue(b.pki, machine_id, serial, sha);
    unsigned char *der = cert_der(foreign, &len);
    assert_int_equal(srv_pki_verify_client(b.pki, der, len, cn, sizeof(cn), sha2), 0);
    assert_int_equal(srv_pki_verify_client(a.pki, der, len, cn, sizeof(cn), sha2), -1);
    OPENSSL_free(der);
    X509_free(foreign);

    /* Our own server certificate and CA certificate are not client ones. */
    X509 *server = read_cert_file(a.dir, "server.crt");
    der = cert_der(server, &len);
    assert_int_equal(srv_pki_verify_client(a.pki, der, len, cn, sizeof(cn), sha2), -1);
    OPENSSL_free(der);
    X509_free(server);
    X509 *ca = read_cert_file(a.dir, "ca.crt");
    der = cert_der(ca, &len);
    assert_int_equal(srv_pki_verify_client(a.pki, der, len, cn, sizeof(cn), sha2), -1);
    OPENSSL_free(der);

    /* Signed by our CA key but expired. */
    char *kp = path_in(a.dir, "ca.key");
    FILE *f = fopen(kp, "r");
    EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    free(kp);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *old = X509_new();
    X509_set_version(old, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(old), 77);
    X509_gmtime_adj(X509_getm_notBefore(old), -10 * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(old), -86400L);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(old), "CN", MBSTRING_ASC,
                               (const unsigned char *)machine_id, -1, -1, 0);
    X509_set_issuer_name(old, X509_get_subject_name(ca));
    X509_set_pubkey(old, key);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage, "clientAuth");
    X509_add_ext(old, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(old, cakey, EVP_sha256()) > 0);
    der = cert_der(old, &len);
    assert_int_equal(srv_pki_verify_client(a.pki, der, len, cn, sizeof(cn), sha2), -1);
    /* The same certificate in date passes, so the dates were the reason. */
    X509_gmtime_adj(X509_getm_notAfter(old), 86400L);
    assert_true(X509_sign(old, cakey, EVP_sha256()) > 0);
    OPENSSL_free(der);
    der = cert_der(old, &len);
    assert_int_equal(srv_pki_verify_client(a.pki, der, len, cn, sizeof(cn), sha2), 0);
    OPENSSL_free(der);
    X509_free(old);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);

    /* Garbage. */
    static const unsigned char junk[] = {0x30, 0x82, 0x01, 0x00, 0x01, 0x02};
    assert_int_equal(srv_pki_verify_client(a.pki, junk, sizeof(junk), cn, sizeof(cn), sha2), -1);
    assert_int_equal(srv_pki_verify_client(a.pki, junk, 0, cn, sizeof(cn), sha2), -1);

    ca_teardown(&a);
    ca_teardown(&b);
}

struct signer_arg {
    struct srv_pki *pki;
    int failures;
};

static void *sign_many(void *p)
{
    struct signer_arg *a = p;
    for (int i = 0; i < 8; i++) {
        char err[256], serial[41], sha[65], cn[128], sha2[65];
        char *pem = NULL;
        EVP_PKEY *key = EVP_EC_gen("P-256");
        char *csr = make_csr(key, key, 0);
        if (srv_pki_sign_csr(a->pki, csr, strlen(csr), machine_id, 1, &pem, serial, sha, err,
                             sizeof(err)) != 0) {
            a->failures++;
        } else {
            BIO *bio = BIO_new_mem_buf(pem, -1);
            X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
            unsigned char *der = NULL;
            int n = i2d_X509(x, &der);
            if (n <= 0 ||
                srv_pki_verify_client(a->pki, der, (size_t)n, cn, sizeof(cn), sha2) != 0 ||
                strcmp(sha, sha2) != 0)
                a->failures++;
            OPENSSL_free(der);
            X509_free(x);
            BIO_free(bio);
        }
        free(pem);
        free(csr);
        EVP_PKEY_free(key);
    }
    return NULL;
}

static void pki_signs_and_verifies_from_many_threads(void **state)
{
    (void)state;
    struct ca_dir c;
    pthread_t t[4];
    struct signer_arg args[4];
    ca_setup(&c, NULL);
    for (int i = 0; i < 4; i++) {
        args[i].pki = c.pki;
        args[i].failures = 0;
        assert_int_equal(pthread_create(&t[i], NULL, sign_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    ca_teardown(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pki_init_writes_ca_and_server_files),
        cmocka_unit_test(pki_server_cert_has_requested_names),
        cmocka_unit_test(pki_init_refuses_bad_names_and_checks_given_pairs),
        cmocka_unit_test(pki_sign_csr_takes_only_the_public_key),
        cmocka_unit_test(pki_sign_csr_refuses_bad_requests),
        cmocka_unit_test(pki_verify_client_refuses_other_certificates),
        cmocka_unit_test(pki_signs_and_verifies_from_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
