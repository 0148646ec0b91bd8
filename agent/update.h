/*
 * Database updates (update_): verifying a downloaded bundle and installing it
 * so that a running agent can switch to it atomically and go back to the
 * previous one. The database folder holds one subfolder per installed
 * version (v<N>/ with db.kdb, iocs.txt and manifest.json) and a symlink
 * "current" to the one in use, replaced with rename(2); the previous version
 * is kept for rollback and older ones are removed.
 */
#ifndef KHIEN_AGENT_UPDATE_H
#define KHIEN_AGENT_UPDATE_H

#include <stddef.h>
#include <stdint.h>

struct update_db {
    int64_t version; /* 0 when nothing is installed */
    int64_t created_at;
    int64_t signatures;
    int64_t indicators;
    char kdb_path[4096]; /* DIR/v<N>/db.kdb */
    char ioc_path[4096]; /* DIR/v<N>/iocs.txt ("" when the bundle carried none) */
};

/* Verifies `bundle_file` against the trusted Ed25519 key `pk` (32 bytes) —
 * layout, signature, sizes and digests — and refuses a version not newer
 * than `min_version`. On success unpacks it into dir/v<N>/ (fsync'd) WITHOUT
 * switching to it, and fills *db. Returns KH_OK; KH_ESIGNATURE for a bundle
 * that is tampered or signed by another key; KH_EFORMAT for a malformed one;
 * KH_EINVAL for one not newer than min_version. err says which. */
int update_unpack(const char *bundle_file, const uint8_t pk[32], const char *dir,
                  int64_t min_version, struct update_db *db, char *err, size_t errlen);

/* Makes version `version` (already unpacked) current, keeps the one it
 * replaces as previous and removes any older. */
int update_switch(const char *dir, int64_t version, char *err, size_t errlen);

/* Makes the previous version current again (after the new one failed to
 * load). KH_ENOTFOUND when there is none. */
int update_rollback(const char *dir, struct update_db *db, char *err, size_t errlen);

/* Describes the current version; db->version is 0 when none is installed. */
int update_current(const char *dir, struct update_db *db);

/* Installs a plain .kdb (no bundle, no signature) as version 0's stand-in:
 * for `khien-agent run --db FILE` on a machine without a server. */
int update_install_local(const char *dir, const char *kdb_file, char *err, size_t errlen);

#endif
