/*
 * XML-DSig signing of the AVReport envelope (docs/internals/sharing.md):
 * an enveloped signature with exclusive C14N, RSA-SHA256 and a SHA-256
 * digest, transforms enveloped-signature + exc-c14n, and KeyInfo/X509Data
 * with the signer's subject name and certificate, made with libxmlsec1's
 * OpenSSL backend. The key comes from a PKCS#12 file (password in a file)
 * or from a PKCS#11 token through the OpenSSL pkcs11 engine (libp11), the
 * certificate then from a PEM file.
 *
 * libxml2, xmlsec and the engine are initialised once per process on first
 * use (pthread_once) and never shut down while the server runs; signing is
 * serialised by one mutex, because xmlsec's OpenSSL key loading and the
 * engine's token session are not safe to share between threads.
 */
#ifndef KHIEN_REPORT_XMLDSIG_H
#define KHIEN_REPORT_XMLDSIG_H

#include <stddef.h>

#include <libxml/tree.h>

#include "server.h"

/* Initialises libxml2 and xmlsec (once; later calls return the first
 * result). 0, or -1 with err set. */
int xmldsig_init(char *err, size_t errlen);

/* Signs doc with a Signature element appended to `parent`, with the key
 * named by cfg (share_pkcs12 + share_pkcs12_pass_file, or
 * share_pkcs11_module + share_pkcs11_key + share_pkcs11_pin_file +
 * share_cert). 0, or -1 with err set (the document is then unchanged). */
int xmldsig_sign(xmlDocPtr doc, xmlNodePtr parent, const struct srv_report_config *cfg, char *err,
                 size_t errlen);

/* Whether cfg names a key at all (either source, fully). */
int xmldsig_configured(const struct srv_report_config *cfg);

#endif
