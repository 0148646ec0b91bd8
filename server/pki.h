/*
 * The server's certificate authority (pki.c, OpenSSL). `khien server init`
 * creates a CA key and certificate and a server certificate signed by it (or
 * takes a given certificate and key); enrollment signs each agent's
 * certificate request with the CA, and the TLS layer trusts client
 * certificates that chain to it. Files in the data folder:
 *   ca.crt ca.key (0600)  server.crt server.key (0600)
 * Keys are EC P-256: fast to generate and to verify on every handshake.
 */
#ifndef KHIEN_SERVER_PKI_H
#define KHIEN_SERVER_PKI_H

#include <stddef.h>
#include <stdint.h>

struct srv_pki;

/* Creates ca.crt/ca.key in `dir` if absent, and server.crt/server.key unless
 * the caller supplies its own (cert_path and key_path not NULL: they are
 * checked to match and left where they are). `names` is a comma-separated
 * list of DNS names and IP addresses for the server certificate's
 * subjectAltName ("localhost,127.0.0.1" when NULL). Returns 0 or -1 with a
 * message in err. */
int srv_pki_init_dir(const char *dir, const char *names, const char *cert_path,
                     const char *key_path, char *err, size_t errlen);

/* Loads the CA (certificate and key) from `dir`. The caller frees with
 * srv_pki_free() (NULL-safe). */
int srv_pki_open(const char *dir, struct srv_pki **out, char *err, size_t errlen);
void srv_pki_free(struct srv_pki *pki);

/* The CA certificate in PEM, for agents (returned at enrollment) and for the
 * TLS layer's client-certificate trust. Owned by pki. */
const char *srv_pki_ca_pem(const struct srv_pki *pki);

/* Checks a PEM certificate request (its self-signature, an EC or RSA >= 2048
 * key, size <= 16 KiB) and issues a client certificate with CN = machine_id,
 * a random serial, extendedKeyUsage clientAuth, valid for `days`. On success
 * *cert_pem is malloc'd (caller frees) and serial/sha256 hold hex strings.
 * Returns 0, or -1 with the reason in err (for a 400 reply). Thread-safe. */
int srv_pki_sign_csr(struct srv_pki *pki, const char *csr_pem, size_t csr_len,
                     const char *machine_id, unsigned days, char **cert_pem, char serial[41],
                     char sha256[65], char *err, size_t errlen);

/* Verifies a DER certificate against the CA (signature, validity dates,
 * clientAuth) and extracts its CN and SHA-256 fingerprint (hex).
 * Returns 0 or -1. Thread-safe. */
int srv_pki_verify_client(struct srv_pki *pki, const uint8_t *der, size_t der_len, char *cn,
                          size_t cnlen, char sha256[65]);

#endif
