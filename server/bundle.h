/*
 * Signature bundles on the server (bundle.c): compiling the enabled sources
 * with libkhien into a .kdb, adding the enabled indicator lists (normalised,
 * without duplicates) as its indicator section, wrapping both in a signed
 * bundle (the format is in
 * lib/common/bundle.c and docs/internals/bundle.md, so the agent verifies with
 * the same code), storing it as the next numbered version in the database (in
 * chunks, so every server process can serve every version), pruning to the
 * last N, and reading a version back for download (cached in DATA/cache/).
 */
#ifndef KHIEN_SERVER_BUNDLE_H
#define KHIEN_SERVER_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct srv_signer;
struct khx_buf;

/* The source kind whose files are indicator lists (lib/ioc/ioc.h), which go
 * into a bundle's indicator section instead of the signature compiler. */
#define SRV_KIND_INDICATORS "indicators"

/* Creates DATA/bundle.key (Ed25519 secret key, 0600) and bundle.pub if absent. */
int srv_signer_init_dir(const char *dir, char *err, size_t errlen);
int srv_signer_open(const char *dir, struct srv_signer **out, char *err, size_t errlen);
void srv_signer_free(struct srv_signer *signer);
/* The public key as base64 (44 characters) and its key id (first 16 hex
 * characters of SHA-256 of the key). Owned by signer. */
const char *srv_signer_public_b64(const struct srv_signer *signer);
const char *srv_signer_key_id(const struct srv_signer *signer);

struct srv_bundle_info {
    int64_t version;
    char sha256[65]; /* of the whole bundle file as served */
    int64_t size;
    int64_t created_at;
    int64_t signatures; /* signature count in the .kdb */
};

/* Compiles every enabled source into a new bundle, signs it and stores it as
 * version (latest + 1), then deletes versions older than cfg.keep_bundles.
 * Indicator lists are normalised line by line; any bad line fails the
 * publish. At least one signature source must be enabled. Returns 0 with
 * *version set, or -1 with the reason (a source that failed to load names
 * file:line) in err. */
int srv_bundle_publish(struct srv *s, struct store_db *db, int64_t user_id, int64_t *version,
                       char *err, size_t errlen);

/* Called for each line of an indicator list that is not an indicator. */
typedef void (*srv_indicator_diag)(void *ud, const char *list, unsigned line, const char *why);

/* Checks and normalises the indicator list `name` (data, len) line by line
 * with ioc_normalize_line(); a line that names no source gets the list's
 * name (made a source word). Appends the normalised lines, each ending in a
 * newline, to `out` when it is not NULL, sets *count (may be NULL) to the
 * number of indicators and calls `diag` (may be NULL) for each bad line.
 * Returns the number of bad lines, or -1 when `out` reached its limit. */
int srv_indicators_check(const char *name, const void *data, size_t len, struct khx_buf *out,
                         size_t *count, srv_indicator_diag diag, void *ud);

/* The newest published version: STORE_ROW with *info filled, STORE_DONE when
 * there is none, or a negative store code. */
int srv_bundle_latest(struct store_db *db, struct srv_bundle_info *info);

/* Opens version `version` for sending: returns an fd positioned at 0 (the
 * caller owns it) of a file in DATA/cache/ written from the database on first
 * use, with *info filled. STORE_DONE when no such version. */
int srv_bundle_open(struct srv *s, struct store_db *db, int64_t version,
                    struct srv_bundle_info *info, int *fd);

#endif
