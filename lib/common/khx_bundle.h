/*
 * Signed signature bundles (khx_bundle_*): the file the management server
 * publishes and every agent downloads, verifies and installs. A bundle is a
 * compiled .kdb image, optionally followed by an indicator list, behind a
 * small JSON manifest and an Ed25519 signature over the header and manifest;
 * the manifest carries each part's size and SHA-256, so one signature check
 * plus one digest per part proves the whole file.
 *
 *   offset 0        "KHIENBND"                    8 bytes
 *   offset 8        manifest length M             u32 little-endian, 1..65536
 *   offset 12       manifest                      M bytes of JSON
 *   offset 12+M     Ed25519 detached signature    64 bytes, over bytes [0, 12+M)
 *   offset 76+M     the .kdb image                exactly kdb_size bytes
 *   then            the indicator list            exactly ioc_size bytes (may be 0), to the end
 *
 * The manifest is one JSON object:
 *   {"format":1,"version":N,"created_at":T,"kdb_sha256":"<64 hex>",
 *    "kdb_size":S,"key_id":"<16 hex>","signatures":n
 *    [,"ioc_size":I,"ioc_sha256":"<64 hex>","indicators":k]}
 * The three ioc fields are written only when the bundle carries indicators
 * (lib/ioc/ioc.h text form); absent, they read as 0 / none.
 * key_id is the first 16 hex characters of SHA-256 of the signing public key.
 * The server writes bundles with the same code the agent verifies them with;
 * docs/internals/bundle.md explains the choices.
 */
#ifndef KHX_BUNDLE_H
#define KHX_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "khx.h"

#define KHX_BUNDLE_MAGIC        "KHIENBND"
#define KHX_BUNDLE_MAGIC_LEN    8
#define KHX_BUNDLE_FORMAT       1
#define KHX_BUNDLE_MAX_MANIFEST (64u * 1024u)
#define KHX_BUNDLE_SIG_LEN      64
#define KHX_BUNDLE_PK_LEN       32
#define KHX_BUNDLE_SK_LEN       64
#define KHX_BUNDLE_KEY_ID_LEN   16
/* The header before the manifest: magic and manifest length. */
#define KHX_BUNDLE_PREFIX_LEN 12

struct khx_bundle_manifest {
    int64_t format;
    int64_t version;
    int64_t created_at;
    uint64_t kdb_size;
    uint8_t kdb_sha256[32];
    char key_id[KHX_BUNDLE_KEY_ID_LEN + 1];
    int64_t signatures;
    /* The indicator list (lib/ioc/ioc.h text form) that follows the .kdb;
     * both 0 / all-zero when the bundle carries none. */
    uint64_t ioc_size;
    uint8_t ioc_sha256[32];
    int64_t indicators; /* lines in it */
};

/* Writes the key id of an Ed25519 public key: the first 16 lowercase hex
 * characters of its SHA-256, and a NUL. Returns KH_OK or KH_ENOMEM. */
int khx_bundle_key_id(const uint8_t pk[KHX_BUNDLE_PK_LEN], char key_id[KHX_BUNDLE_KEY_ID_LEN + 1]);

/* Appends the bundle's header, manifest and signature (everything before the
 * .kdb bytes) to `out`, for a .kdb of kdb_size bytes whose SHA-256 is
 * kdb_sha256 followed by an indicator list of ioc_size bytes (0: none; then
 * ioc_sha256 may be NULL and indicators must be 0) whose SHA-256 is
 * ioc_sha256 and which holds `indicators` lines. The caller then appends or
 * streams the .kdb and the list. The key id is derived from `sk` (a
 * libsodium Ed25519 secret key, whose second half is the public key).
 * Returns KH_OK, KH_EINVAL or the buffer's error; on error `out` is
 * unchanged. */
int khx_bundle_header(int64_t version, int64_t created_at, int64_t nsigs, uint64_t kdb_size,
                      const uint8_t kdb_sha256[32], uint64_t ioc_size, const uint8_t ioc_sha256[32],
                      int64_t indicators, const uint8_t sk[KHX_BUNDLE_SK_LEN], struct khx_buf *out);

/* Appends a whole bundle (header, manifest, signature, kdb, indicator list)
 * to `out`. ioc may be NULL when ioc_len is 0 (a bundle without
 * indicators). */
int khx_bundle_build(const uint8_t *kdb, size_t kdb_len, const uint8_t *ioc, size_t ioc_len,
                     int64_t indicators, int64_t version, int64_t created_at, int64_t nsigs,
                     const uint8_t sk[KHX_BUNDLE_SK_LEN], struct khx_buf *out);

/* Parses a manifest's JSON (untrusted: it is parsed before the signature is
 * checked, so the key id can be compared first). Every field above must be
 * present with its type, except the optional ioc fields: when present they
 * must have their types too, ioc_sha256 is required when ioc_size > 0, and
 * indicators must be 0 when ioc_size is. Unknown fields are ignored,
 * duplicate ones refused. Returns KH_OK or KH_EFORMAT with the reason in why
 * (may be NULL). */
int khx_bundle_parse_manifest(const char *json, size_t len, struct khx_bundle_manifest *m,
                              char *why, size_t whylen);

/* Verifies a whole bundle held in memory (typically a mapping of the file)
 * against the trusted public key `pk`: the layout, the manifest, that the
 * key id is pk's, the signature, that the .kdb and the indicator list fill
 * the rest of the file exactly, and both SHA-256 digests. On success fills
 * *m (may be NULL) and *kdb_off (may be NULL): the .kdb is
 * data[*kdb_off .. *kdb_off + m->kdb_size) and the indicator list the
 * m->ioc_size bytes after it, to the end. Returns KH_OK, KH_EFORMAT for a
 * malformed or truncated file, or KH_ESIGNATURE when the file is well formed
 * but signed by another key, the signature does not verify, or a part is
 * not the one signed. why (may be NULL) gets one sentence fragment saying
 * which. */
int khx_bundle_verify(const uint8_t *data, size_t len, const uint8_t pk[KHX_BUNDLE_PK_LEN],
                      struct khx_bundle_manifest *m, size_t *kdb_off, char *why, size_t whylen);

#endif
