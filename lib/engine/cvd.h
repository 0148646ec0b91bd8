/*
 * ClamAV database containers and patches: .cvd (signed, gzip'd tar), .cld
 * (locally patched, plain or gzip'd tar), their .info manifests, and .cdiff
 * delta scripts.
 *
 * Verification follows ClamAV: for a CVD, the MD5 of everything after the
 * 512-byte header must equal the header's MD5 field, and the header's dsig
 * field (RSA over that MD5, ClamAV's 1024-bit key) must decode to it. For a
 * CVD or CLD, the <db>.info member lists every other member's size and SHA-256
 * and ends with a DSIG line (RSA-2048, PSS-like, SHA-256) over the lines
 * before it. A .cdiff carries a DSIG over its header and gzip'd script.
 * The public keys are parameters so tests can sign their own containers.
 */
#ifndef KHX_CVD_H
#define KHX_CVD_H

#include <stddef.h>
#include <stdint.h>

struct khx_cvd_header {
    char name[64];       /* from the file name, e.g. "daily" (set by the caller, may be "") */
    char build_time[64]; /* the textual build time field */
    uint32_t version;
    uint32_t sigs;
    uint32_t flevel;
    char md5[33]; /* hex, or "X" in CLD headers */
    char dsig[400];
    char builder[64];
    int64_t stime; /* build time, Unix seconds */
};

/* An RSA public key given as decimal strings (modulus, exponent). */
struct khx_rsa_key {
    const char *n;
    const char *e;
};

/* Whether a database or member name is a plain file name safe to create in a
 * folder: 1 to 100 of letters, digits, '.', '_' and '-', not starting with
 * '.', no "..". (ClamAV itself allows letters, digits and '.'; '_' and '-'
 * are harmless and appear in third-party databases.) */
int khx_cvd_name_ok(const char *s, size_t n);

/* ClamAV's built-in keys: header dsig (1024-bit), .info DSIG and .cdiff DSIG (2048-bit). */
extern const struct khx_rsa_key khx_clamav_cvd_key;
extern const struct khx_rsa_key khx_clamav_info_key;
extern const struct khx_rsa_key khx_clamav_cdiff_key;

struct khx_cvd_keys {
    const struct khx_rsa_key *cvd; /* NULL: the built-in key */
    const struct khx_rsa_key *info;
    const struct khx_rsa_key *cdiff;
};

/* Parses the 512-byte header. Returns 0 or KH_EFORMAT. */
int khx_cvd_parse_header(const uint8_t *buf, size_t len, struct khx_cvd_header *out, char *err,
                         size_t errlen);

/* Called for each member file; return non-zero to stop (the value is returned). */
typedef int (*khx_cvd_member_fn)(void *ud, const char *name, const uint8_t *data, size_t len);

enum {
    KHX_CVD_NO_VERIFY = 1, /* skip signature checks (still parses everything) */
    KHX_CVD_IS_CLD = 2,    /* the file is a .cld (header MD5/dsig may be "X") */
};

/* Opens a CVD or CLD image: checks the header (MD5 and dsig unless it is a
 * CLD), unpacks the tar (gzip'd or not, detected), checks the .info member's
 * DSIG and every member's size and SHA-256, then calls `fn` for each member
 * other than the .info, COPYING and .sign files, in tar order. Members are
 * limited to 512 MiB each and 4 GiB in all. Returns 0, KH_EFORMAT,
 * KH_ESIGNATURE (reason in err) or what `fn` returned. */
int khx_cvd_open(const uint8_t *buf, size_t len, unsigned flags, const struct khx_cvd_keys *keys,
                 struct khx_cvd_header *hdr, khx_cvd_member_fn fn, void *ud, char *err,
                 size_t errlen);

/* Verifies ClamAV's legacy RSA "versig" (header dsig over an MD5, hex). */
int khx_versig_md5(const char *dsig, const char *md5_hex, const struct khx_rsa_key *key);
/* Verifies ClamAV's "versig2" (PSS-like, SHA-256) of `sha256` (32 bytes). */
int khx_versig2(const char *dsig, const uint8_t sha256[32], const struct khx_rsa_key *key);

/* Applies a .cdiff patch to the unpacked database in directory `dir`
 * (verifying its DSIG unless flags has KHX_CVD_NO_VERIFY). Every command is
 * checked before anything is written: a failed patch leaves `dir` unchanged.
 * Returns 0, KH_EFORMAT / KH_ESIGNATURE (reason and script line in err). */
int khx_cdiff_apply(const uint8_t *cdiff, size_t len, const char *dir, unsigned flags,
                    const struct khx_cvd_keys *keys, char *err, size_t errlen);

/* Unpacks a CVD/CLD (verified as khx_cvd_open does) into directory `dir`,
 * including the .info file, as `sigtool -u` would. */
int khx_cvd_unpack(const uint8_t *buf, size_t len, unsigned flags, const struct khx_cvd_keys *keys,
                   const char *dir, struct khx_cvd_header *hdr, char *err, size_t errlen);

/* Packs directory `dir` (as produced by khx_cvd_unpack and patched) into a
 * CLD image: the header line from <name>.info padded to 512 bytes, then an
 * uncompressed tar of the files. *out is malloc'd. */
int khx_cld_pack(const char *dir, const char *name, uint8_t **out, size_t *out_len, char *err,
                 size_t errlen);

#endif
