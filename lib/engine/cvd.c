/*
 * ClamAV database containers: the 512-byte CVD/CLD header, the two legacy
 * RSA signature schemes ("versig" over an MD5 and the PSS-like "versig2"
 * over a SHA-256), the signed <db>.info manifest, reading the (gzip'd) tar
 * body with libarchive, unpacking it into a folder and packing a folder back
 * into a CLD. The .cdiff patcher lives in cdiff.c.
 *
 * Everything here reads hostile bytes. The container is read twice: the first
 * pass hashes every member without keeping it and checks the header MD5 and
 * dsig, the .info DSIG and each member's size and SHA-256; only when all of
 * that holds does the second pass hand members to the caller, one at a time,
 * so memory stays bounded by the largest member rather than the whole image.
 */
#include "cvd.h"

#include "khx.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CVD_HEADER_LEN  512
#define CVD_MEMBER_MAX  ((uint64_t)512 << 20) /* one member */
#define CVD_TOTAL_MAX   ((uint64_t)4 << 30)   /* all members together */
#define CVD_MEMBERS_MAX 4096                  /* members in one container */
#define CVD_INFO_MAX    ((size_t)1 << 20)     /* the .info manifest */
#define CVD_NAME_MAX    100                   /* a tar name field holds 100 bytes */
#define CVD_DSIG_MAX    399                   /* fits struct khx_cvd_header.dsig */
#define CVD_CHUNK       (64 * 1024)
#define PSS_LEN         256 /* RSA-2048 block */
#define PSS_HASH        32
#define PSS_DB_LEN      (PSS_LEN - PSS_HASH - 1)
#define PSS_SALT        32

/* ClamAV's public keys. These are published facts (ClamAV's dsig.c, readdb.c
 * and cdiff code carry them as decimal strings); the private halves are held
 * by Cisco Talos, which is why tests sign with keys of their own. */
const struct khx_rsa_key khx_clamav_cvd_key = {
    .n = "11864099555164534260307000165845318975152777441202774374659940574324314260746414"
         "47673610606406558447497607888900222834249227624889175655510024677711096695981894"
         "10434699034532232228621591089508178591428456220796841621637175567590476666928698"
         "770143328137383952820383197532047771780196576957695822641224262693037",
    .e = "100001027",
};

const struct khx_rsa_key khx_clamav_info_key = {
    .n = "11088894983048545473659556106627194923928941791795047620591658697413581043322715"
         "91217249680652538105588096452061840022433332053466029923398375534174067950286682"
         "99096799557343913926683783612215242053966310901051516412708572770803107343209516"
         "53700508941717419168723942507890702904702707587451621691050754307850383399865346"
         "48720379846417853739221140278648135982446119723110289541509377039421666632448459"
         "39357624084685168266331921408266679234948220458053478099328484548458869717064243"
         "60558667862775876072059437703365380209101697738577515476935085469455279994113145"
         "977994084618328482151013142393373316337519977244732747977",
    .e = "100002049",
};

const struct khx_rsa_key khx_clamav_cdiff_key = {
    .n = "14783905874077467090262228516557917570254599638376203532031989214105552847269687"
         "48977197579212344218581728769495194980090879152754201711560050130339477861853586"
         "48452357000415900563182301024496122174585490160893133065913885907907965158196541"
         "02320725712300822356348724011232654837503241736177907784198700834440681124727060"
         "54003575469965810589505009657622675300859688169882818565242490192166875832657846"
         "20032479064709820922981067896572119054889862810783463614695244848295595608862271"
         "98091995498440676639639830463593211386055065360288422394053998134458623712540683"
         "294034953818412458362198117811990006021989844180721010947",
    .e = "100002053",
};

/* ------------------------------------------------------------------------ */
/* Hashes and the two RSA signature schemes                                  */
/* ------------------------------------------------------------------------ */

static int digest(const EVP_MD *md, const void *p, size_t n, uint8_t *out)
{
    return EVP_Digest(p, n, out, NULL, md, NULL) == 1 ? KH_OK : KH_ENOMEM;
}

/* Maps a signature character to its 6-bit value. ClamAV's alphabet looks like
 * base-64 but orders lowercase first, so it cannot be decoded as base-64. */
static int dsig_char_value(int c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Parses a decimal string into a BIGNUM, insisting that every character is
 * a digit (BN_dec2bn silently stops at the first non-digit). */
static int bn_from_decimal(BIGNUM **bn, const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 2048)
        return KH_EINVAL;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return KH_EINVAL;
    if (BN_dec2bn(bn, s) != (int)strlen(s))
        return KH_ENOMEM;
    return KH_OK;
}

/* Undoes ClamAV's textbook RSA: reads the signature characters as a number
 * (first character least significant), raises it to e mod n and writes the
 * result big-endian into out[plen]. The signature must be below n and the
 * result must fit in plen bytes; ClamAV keeps only the low plen bytes, but an
 * honest signer never produces more, so anything larger is a forgery. */
static int dsig_decode(const char *dsig, const struct khx_rsa_key *key, uint8_t *out, size_t plen)
{
    int r = KH_ENOMEM;
    BN_CTX *ctx = NULL;
    BIGNUM *n = NULL, *e = NULL, *c = NULL, *m = NULL;
    size_t len = dsig ? strnlen(dsig, CVD_DSIG_MAX + 1) : 0;

    if (len == 0 || len > CVD_DSIG_MAX) {
        r = KH_ESIGNATURE;
        goto out;
    }
    if ((ctx = BN_CTX_new()) == NULL || (c = BN_new()) == NULL || (m = BN_new()) == NULL)
        goto out;
    if ((r = bn_from_decimal(&n, key->n)) != 0 || (r = bn_from_decimal(&e, key->e)) != 0)
        goto out;
    if (BN_is_zero(e) || BN_cmp(n, BN_value_one()) <= 0 || (size_t)BN_num_bytes(n) < plen) {
        r = KH_EINVAL;
        goto out;
    }
    r = KH_ENOMEM;
    BN_zero(c);
    for (size_t i = len; i-- > 0;) {
        int v = dsig_char_value((unsigned char)dsig[i]);
        if (v < 0) {
            r = KH_ESIGNATURE;
            goto out;
        }
        if (!BN_lshift(c, c, 6) || !BN_add_word(c, (BN_ULONG)v))
            goto out;
    }
    if (BN_cmp(c, n) >= 0) {
        r = KH_ESIGNATURE;
        goto out;
    }
    if (!BN_mod_exp(m, c, e, n, ctx))
        goto out;
    if ((size_t)BN_num_bytes(m) > plen) {
        r = KH_ESIGNATURE;
        goto out;
    }
    if (BN_bn2binpad(m, out, (int)plen) != (int)plen)
        goto out;
    r = KH_OK;
out:
    BN_free(n);
    BN_free(e);
    BN_free(c);
    BN_free(m);
    BN_CTX_free(ctx);
    return r;
}

int khx_versig_md5(const char *dsig, const char *md5_hex, const struct khx_rsa_key *key)
{
    uint8_t want[16], got[16];
    int r;

    if (dsig == NULL || md5_hex == NULL)
        return KH_EINVAL;
    if (key == NULL)
        key = &khx_clamav_cvd_key;
    if (strnlen(md5_hex, 33) != 32 || khx_hex_decode(md5_hex, 16, want) != 0)
        return KH_ESIGNATURE;
    if ((r = dsig_decode(dsig, key, got, sizeof(got))) != 0)
        return r;
    return CRYPTO_memcmp(want, got, sizeof(got)) == 0 ? KH_OK : KH_ESIGNATURE;
}

/* MGF1 with SHA-256 over a 32-byte seed, as in PKCS #1. */
static int mgf1_sha256(const uint8_t seed[PSS_HASH], uint8_t *mask, size_t len)
{
    uint8_t in[PSS_HASH + 4], block[PSS_HASH];
    int r;

    memcpy(in, seed, PSS_HASH);
    for (uint32_t counter = 0, done = 0; done < len; counter++) {
        in[PSS_HASH] = (uint8_t)(counter >> 24);
        in[PSS_HASH + 1] = (uint8_t)(counter >> 16);
        in[PSS_HASH + 2] = (uint8_t)(counter >> 8);
        in[PSS_HASH + 3] = (uint8_t)counter;
        if ((r = digest(EVP_sha256(), in, sizeof(in), block)) != 0)
            return r;
        size_t take = KHX_MIN((size_t)PSS_HASH, len - done);
        memcpy(mask + done, block, take);
        done += (uint32_t)take;
    }
    return KH_OK;
}

/* ClamAV's versig2 is EMSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt
 * on a 256-byte block: maskedDB(223) || H(32) || 0xbc. ClamAV only looks for
 * the first 0x01 in DB; we also insist on the zero padding before it, which
 * every honest signature has. */
int khx_versig2(const char *dsig, const uint8_t sha256[32], const struct khx_rsa_key *key)
{
    uint8_t em[PSS_LEN], db[PSS_DB_LEN], m_prime[8 + 2 * PSS_HASH], h[PSS_HASH];
    int r;

    if (dsig == NULL || sha256 == NULL || key == NULL)
        return KH_EINVAL;
    if ((r = dsig_decode(dsig, key, em, sizeof(em))) != 0)
        return r;
    if (em[PSS_LEN - 1] != 0xbc)
        return KH_ESIGNATURE;
    if ((r = mgf1_sha256(em + PSS_DB_LEN, db, sizeof(db))) != 0)
        return r;
    for (size_t i = 0; i < sizeof(db); i++)
        db[i] ^= em[i];
    db[0] &= 0x7f;
    size_t one = PSS_DB_LEN - PSS_SALT - 1;
    for (size_t i = 0; i < one; i++)
        if (db[i] != 0)
            return KH_ESIGNATURE;
    if (db[one] != 0x01)
        return KH_ESIGNATURE;
    memset(m_prime, 0, 8);
    memcpy(m_prime + 8, sha256, PSS_HASH);
    memcpy(m_prime + 8 + PSS_HASH, db + one + 1, PSS_SALT);
    if ((r = digest(EVP_sha256(), m_prime, sizeof(m_prime), h)) != 0)
        return r;
    return CRYPTO_memcmp(h, em + PSS_DB_LEN, PSS_HASH) == 0 ? KH_OK : KH_ESIGNATURE;
}

/* ------------------------------------------------------------------------ */
/* Header                                                                    */
/* ------------------------------------------------------------------------ */

static int field_copy(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return KH_EFORMAT;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return KH_OK;
}

static int field_u32(const char *s, size_t n, uint32_t *out)
{
    uint64_t v;
    if (khx_parse_u64(s, n, &v) != 0 || v > UINT32_MAX)
        return KH_EFORMAT;
    *out = (uint32_t)v;
    return KH_OK;
}

/* Parses one header line, "ClamAV-VDB:time:version:sigs:flevel:md5:dsig:
 * builder[:stime]", already stripped of padding. Writes every field of *out
 * except name, and only on success. */
static int parse_header_text(const char *s, size_t len, struct khx_cvd_header *out, char *err,
                             size_t errlen)
{
    static const char magic[] = "ClamAV-VDB:";
    const char *f[10];
    size_t fl[10];
    struct khx_cvd_header h;
    uint64_t stime = 0;

    memset(&h, 0, sizeof(h));
    if (len < sizeof(magic) - 1 || memcmp(s, magic, sizeof(magic) - 1) != 0) {
        khx_errf(err, errlen, "header does not start with \"ClamAV-VDB:\"");
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
            khx_errf(err, errlen, "header byte %zu is not printable ASCII", i);
            return KH_EFORMAT;
        }
    }
    size_t nf = khx_split(s, len, ':', f, fl, 9);
    if (nf != 8 && nf != 9) {
        khx_errf(err, errlen, "header has %s fields, expected 8 or 9",
                 nf > 9 ? "too many" : "too few");
        return KH_EFORMAT;
    }
    if (field_copy(h.build_time, sizeof(h.build_time), f[1], fl[1]) != 0) {
        khx_errf(err, errlen, "header build time is empty or longer than %zu bytes",
                 sizeof(h.build_time) - 1);
        return KH_EFORMAT;
    }
    if (field_u32(f[2], fl[2], &h.version) != 0 || field_u32(f[3], fl[3], &h.sigs) != 0 ||
        field_u32(f[4], fl[4], &h.flevel) != 0) {
        khx_errf(err, errlen, "header version, signature count or FLEVEL is not a number");
        return KH_EFORMAT;
    }
    uint8_t tmp[16];
    if (!(fl[5] == 1 && f[5][0] == 'X') && (fl[5] != 32 || khx_hex_decode(f[5], 16, tmp) != 0)) {
        khx_errf(err, errlen, "header MD5 is neither 32 hex digits nor \"X\"");
        return KH_EFORMAT;
    }
    memcpy(h.md5, f[5], fl[5]);
    h.md5[fl[5]] = '\0';
    if (field_copy(h.dsig, sizeof(h.dsig), f[6], fl[6]) != 0) {
        khx_errf(err, errlen, "header dsig is empty or longer than %d characters", CVD_DSIG_MAX);
        return KH_EFORMAT;
    }
    if (strcmp(h.dsig, "X") != 0) {
        for (size_t i = 0; i < fl[6]; i++) {
            if (dsig_char_value((unsigned char)h.dsig[i]) < 0) {
                khx_errf(err, errlen, "header dsig has a character outside its alphabet");
                return KH_EFORMAT;
            }
        }
    }
    if (field_copy(h.builder, sizeof(h.builder), f[7], fl[7]) != 0) {
        khx_errf(err, errlen, "header builder is empty or longer than %zu bytes",
                 sizeof(h.builder) - 1);
        return KH_EFORMAT;
    }
    if (nf == 9 && (khx_parse_u64(f[8], fl[8], &stime) != 0 || stime > INT64_MAX)) {
        khx_errf(err, errlen, "header build time in seconds is not a number");
        return KH_EFORMAT;
    }
    h.stime = (int64_t)stime;

    memcpy(out->build_time, h.build_time, sizeof(h.build_time));
    out->version = h.version;
    out->sigs = h.sigs;
    out->flevel = h.flevel;
    memcpy(out->md5, h.md5, sizeof(h.md5));
    memcpy(out->dsig, h.dsig, sizeof(h.dsig));
    memcpy(out->builder, h.builder, sizeof(h.builder));
    out->stime = h.stime;
    return KH_OK;
}

int khx_cvd_parse_header(const uint8_t *buf, size_t len, struct khx_cvd_header *out, char *err,
                         size_t errlen)
{
    if (buf == NULL || out == NULL) {
        khx_errf(err, errlen, "no header given");
        return KH_EFORMAT;
    }
    if (len < CVD_HEADER_LEN) {
        khx_errf(err, errlen, "header truncated: %zu of %d bytes", len, CVD_HEADER_LEN);
        return KH_EFORMAT;
    }
    /* ClamAV pads the header with spaces (a CLD's may also end in the
     * newline of the .info line it was copied from); strip both. */
    size_t n = CVD_HEADER_LEN;
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    return parse_header_text((const char *)buf, n, out, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Member names and the .info manifest                                       */
/* ------------------------------------------------------------------------ */

/* A member name must be a plain file name that is safe to create in a
 * folder: see khx_cvd_name_ok. This excludes '/', "..", absolute paths and
 * control characters. */
int khx_cvd_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > CVD_NAME_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
        if (c == '.' && i > 0 && s[i - 1] == '.')
            return 0;
    }
    return 1;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* Members that are not signatures: the manifest itself, the licence and
 * detached signature files. They are not handed to the member callback. */
static int is_meta_member(const char *name)
{
    return has_suffix(name, ".info") || strcmp(name, "COPYING") == 0 || has_suffix(name, ".sign");
}

struct member {
    char name[CVD_NAME_MAX + 1];
    uint64_t size;
    uint8_t sha256[32];
};

struct info_entry {
    char name[CVD_NAME_MAX + 1];
    uint64_t size;
    uint8_t sha256[32];
    int present; /* found in the archive */
};

struct info {
    struct khx_cvd_header hdr;
    struct khx_vec entries; /* struct info_entry */
    int has_dsig;
    size_t signed_len; /* bytes before the DSIG line */
    char dsig[CVD_DSIG_MAX + 1];
};

/* Parses a .info manifest: the header line, "name:size:sha256" lines and a
 * final "DSIG:" line, after which nothing may follow. `what` names the file
 * in messages. */
static int info_parse(const uint8_t *p, size_t n, const char *what, struct info *inf, char *err,
                      size_t errlen)
{
    size_t pos = 0;
    unsigned lineno = 0;

    while (pos < n) {
        const uint8_t *nl = memchr(p + pos, '\n', n - pos);
        size_t next = nl ? (size_t)(nl - p) + 1 : n;
        const char *line = (const char *)p + pos;
        size_t len = (nl ? (size_t)(nl - p) : n) - pos;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        lineno++;

        if (lineno > 1 && len >= 5 && memcmp(line, "DSIG:", 5) == 0) {
            if (next != n) {
                khx_errf(err, errlen, "%s line %u: data follows the DSIG line", what, lineno);
                return KH_EFORMAT;
            }
            if (field_copy(inf->dsig, sizeof(inf->dsig), line + 5, len - 5) != 0) {
                khx_errf(err, errlen, "%s line %u: DSIG is empty or too long", what, lineno);
                return KH_EFORMAT;
            }
            inf->has_dsig = 1;
            inf->signed_len = pos;
            return KH_OK;
        }
        if (lineno == 1) {
            char herr[160];
            if (parse_header_text(line, len, &inf->hdr, herr, sizeof(herr)) != 0) {
                khx_errf(err, errlen, "%s line 1: %s", what, herr);
                return KH_EFORMAT;
            }
        } else {
            const char *f[3];
            size_t fl[3];
            struct info_entry *ent;
            if (khx_split(line, len, ':', f, fl, 3) != 3 || fl[2] != 64) {
                khx_errf(err, errlen, "%s line %u: expected name:size:sha256", what, lineno);
                return KH_EFORMAT;
            }
            if (!khx_cvd_name_ok(f[0], fl[0])) {
                khx_errf(err, errlen, "%s line %u: bad file name", what, lineno);
                return KH_EFORMAT;
            }
            for (size_t i = 0; i < inf->entries.len; i++) {
                ent = KHX_VEC_AT(&inf->entries, struct info_entry, i);
                if (strlen(ent->name) == fl[0] && memcmp(ent->name, f[0], fl[0]) == 0) {
                    khx_errf(err, errlen, "%s line %u: %s is listed twice", what, lineno,
                             ent->name);
                    return KH_EFORMAT;
                }
            }
            if ((ent = khx_vec_push(&inf->entries)) == NULL) {
                khx_errf(err, errlen, "%s line %u: too many entries", what, lineno);
                return KH_ELIMIT;
            }
            memcpy(ent->name, f[0], fl[0]);
            ent->name[fl[0]] = '\0';
            if (khx_parse_u64(f[1], fl[1], &ent->size) != 0 ||
                khx_hex_decode(f[2], 32, ent->sha256) != 0) {
                khx_errf(err, errlen, "%s line %u: bad size or SHA-256", what, lineno);
                return KH_EFORMAT;
            }
        }
        pos = next;
    }
    if (lineno == 0) {
        khx_errf(err, errlen, "%s is empty", what);
        return KH_EFORMAT;
    }
    return KH_OK; /* no DSIG line: the caller decides whether that is fatal */
}

/* ------------------------------------------------------------------------ */
/* Reading the tar body                                                      */
/* ------------------------------------------------------------------------ */

static int tar_open(const uint8_t *p, size_t n, struct archive **out, char *err, size_t errlen)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return KH_ENOMEM;
    /* Only tar, optionally gzip'd: every other format and filter stays
     * disabled so hostile bytes cannot reach code we do not need. */
    if (archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
        archive_read_support_format_tar(a) != ARCHIVE_OK) {
        khx_errf(err, errlen, "libarchive lacks gzip or tar support");
        archive_read_free(a);
        return KH_EUNSUPPORTED;
    }
    if (n == 0 || archive_read_open_memory(a, p, n) != ARCHIVE_OK) {
        khx_errf(err, errlen, "body is not a tar or gzip'd tar: %s",
                 n == 0 ? "it is empty" : archive_error_string(a));
        archive_read_free(a);
        return KH_EFORMAT;
    }
    *out = a;
    return KH_OK;
}

/* Reads the next entry header and checks that it is a regular file with a
 * safe name and a bounded size. Returns 1 at the end of the archive. */
static int tar_next(struct archive *a, size_t index, char *name, uint64_t *size, char *err,
                    size_t errlen)
{
    struct archive_entry *e;
    int ar = archive_read_next_header(a, &e);
    if (ar == ARCHIVE_EOF)
        return 1;
    if (ar != ARCHIVE_OK) {
        khx_errf(err, errlen, "tar entry %zu: %s", index + 1, archive_error_string(a));
        return KH_EFORMAT;
    }
    const char *path = archive_entry_pathname(e);
    size_t plen = path ? strlen(path) : 0;
    if (!khx_cvd_name_ok(path ? path : "", plen)) {
        char show[CVD_NAME_MAX + 1];
        khx_errf(err, errlen, "tar entry %zu: refusing member name \"%s\"", index + 1,
                 khx_printable(show, sizeof(show), path ? path : "", plen));
        return KH_EFORMAT;
    }
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) != NULL ||
        archive_entry_symlink(e) != NULL) {
        khx_errf(err, errlen, "tar member %s is not a regular file", path);
        return KH_EFORMAT;
    }
    if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0 ||
        (uint64_t)archive_entry_size(e) > CVD_MEMBER_MAX) {
        khx_errf(err, errlen, "tar member %s is larger than %llu bytes", path,
                 (unsigned long long)CVD_MEMBER_MAX);
        return KH_ELIMIT;
    }
    memcpy(name, path, plen + 1);
    *size = (uint64_t)archive_entry_size(e);
    return KH_OK;
}

/* Reads the current entry's data, exactly `size` bytes. With `keep` set the
 * bytes land in *data (malloc'd, owned by the caller); the SHA-256 is
 * computed either way. */
static int tar_read_member(struct archive *a, const char *name, uint64_t size, int keep,
                           uint8_t **data, uint8_t sha256[32], char *err, size_t errlen)
{
    int r = KH_ENOMEM;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t *buf = NULL, *chunk = NULL;
    uint64_t got = 0;

    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    if (keep) {
        if ((buf = malloc(size ? (size_t)size : 1)) == NULL)
            goto out;
    } else if ((chunk = malloc(CVD_CHUNK)) == NULL) {
        goto out;
    }
    for (;;) {
        uint8_t *dst = keep ? buf + got : chunk;
        size_t room = keep ? (size_t)(size - got) : CVD_CHUNK;
        /* One spare byte of room detects an entry longer than its header said. */
        if (keep && room == 0) {
            uint8_t extra;
            la_ssize_t k = archive_read_data(a, &extra, 1);
            if (k == 0)
                break;
            khx_errf(err, errlen, "tar member %s: %s", name,
                     k < 0 ? archive_error_string(a) : "longer than its header says");
            r = KH_EFORMAT;
            goto out;
        }
        la_ssize_t k = archive_read_data(a, dst, room);
        if (k < 0) {
            khx_errf(err, errlen, "tar member %s: %s", name, archive_error_string(a));
            r = KH_EFORMAT;
            goto out;
        }
        if (k == 0)
            break;
        got += (uint64_t)k;
        if (got > size) {
            khx_errf(err, errlen, "tar member %s is longer than its header says", name);
            r = KH_EFORMAT;
            goto out;
        }
        if (EVP_DigestUpdate(md, dst, (size_t)k) != 1)
            goto out;
    }
    if (got != size) {
        khx_errf(err, errlen, "tar member %s is truncated: %llu of %llu bytes", name,
                 (unsigned long long)got, (unsigned long long)size);
        r = KH_EFORMAT;
        goto out;
    }
    if (EVP_DigestFinal_ex(md, sha256, NULL) != 1)
        goto out;
    if (keep) {
        *data = buf;
        buf = NULL;
    }
    r = KH_OK;
out:
    EVP_MD_CTX_free(md);
    free(buf);
    free(chunk);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Opening a container                                                       */
/* ------------------------------------------------------------------------ */

/* The first pass: hash every member, keep only the .info, then check
 * everything the manifest promises. On success `members` lists the archive
 * in tar order. */
static int cvd_verify_body(const uint8_t *body, size_t blen, unsigned flags,
                           const struct khx_cvd_keys *keys, const struct khx_cvd_header *hdr,
                           struct khx_vec *members, char *err, size_t errlen)
{
    int r;
    struct archive *a = NULL;
    uint8_t *info_data = NULL;
    uint64_t info_size = 0, total = 0;
    char info_name[CVD_NAME_MAX + 1] = "";
    struct info inf;
    int verify = !(flags & KHX_CVD_NO_VERIFY);

    memset(&inf, 0, sizeof(inf));
    khx_vec_init(&inf.entries, sizeof(struct info_entry), CVD_MEMBERS_MAX);
    if ((r = tar_open(body, blen, &a, err, errlen)) != 0)
        goto out;
    for (;;) {
        char name[CVD_NAME_MAX + 1];
        uint64_t size;
        struct member *m;
        if ((r = tar_next(a, members->len, name, &size, err, errlen)) == 1)
            break;
        if (r != 0)
            goto out;
        for (size_t i = 0; i < members->len; i++) {
            if (strcmp(KHX_VEC_AT(members, struct member, i)->name, name) == 0) {
                khx_errf(err, errlen, "tar member %s appears twice", name);
                r = KH_EFORMAT;
                goto out;
            }
        }
        if (size > CVD_TOTAL_MAX - total) {
            khx_errf(err, errlen, "members exceed %llu bytes in all",
                     (unsigned long long)CVD_TOTAL_MAX);
            r = KH_ELIMIT;
            goto out;
        }
        total += size;
        if ((m = khx_vec_push(members)) == NULL) {
            khx_errf(err, errlen, "more than %d members", CVD_MEMBERS_MAX);
            r = KH_ELIMIT;
            goto out;
        }
        memcpy(m->name, name, sizeof(name));
        m->size = size;
        int is_info = has_suffix(name, ".info");
        if (is_info) {
            if (info_data != NULL) {
                khx_errf(err, errlen, "two manifests: %s and %s", info_name, name);
                r = KH_EFORMAT;
                goto out;
            }
            if (size > CVD_INFO_MAX) {
                khx_errf(err, errlen, "%s is larger than %zu bytes", name, CVD_INFO_MAX);
                r = KH_ELIMIT;
                goto out;
            }
            memcpy(info_name, name, sizeof(name));
            info_size = size;
        }
        if ((r = tar_read_member(a, name, size, is_info, is_info ? &info_data : NULL, m->sha256,
                                 err, errlen)) != 0)
            goto out;
    }

    if (info_data == NULL) {
        if (verify) {
            khx_errf(err, errlen, "no .info manifest in the container");
            r = KH_ESIGNATURE;
            goto out;
        }
        r = KH_OK;
        goto out;
    }
    if ((r = info_parse(info_data, (size_t)info_size, info_name, &inf, err, errlen)) != 0)
        goto out;
    if (!verify) {
        r = KH_OK;
        goto out;
    }

    const struct khx_rsa_key *ikey = keys && keys->info ? keys->info : &khx_clamav_info_key;
    uint8_t sum[32];
    if (!inf.has_dsig) {
        khx_errf(err, errlen, "%s has no DSIG line", info_name);
        r = KH_ESIGNATURE;
        goto out;
    }
    if ((r = digest(EVP_sha256(), info_data, inf.signed_len, sum)) != 0)
        goto out;
    if ((r = khx_versig2(inf.dsig, sum, ikey)) != 0) {
        khx_errf(err, errlen, "the DSIG of %s does not verify%s", info_name,
                 r == KH_EINVAL ? " (bad key)" : "");
        goto out;
    }
    /* The 512-byte header is not covered by any signature; the copy inside
     * the signed .info is, so the version we report must agree with it. */
    if (inf.hdr.version != hdr->version) {
        khx_errf(err, errlen, "header version %u differs from the signed %s (%u)", hdr->version,
                 info_name, inf.hdr.version);
        r = KH_ESIGNATURE;
        goto out;
    }
    for (size_t i = 0; i < members->len; i++) {
        struct member *m = KHX_VEC_AT(members, struct member, i);
        struct info_entry *ent = NULL;
        if (strcmp(m->name, info_name) == 0)
            continue;
        for (size_t j = 0; j < inf.entries.len && ent == NULL; j++)
            if (strcmp(KHX_VEC_AT(&inf.entries, struct info_entry, j)->name, m->name) == 0)
                ent = KHX_VEC_AT(&inf.entries, struct info_entry, j);
        if (ent == NULL) {
            if (is_meta_member(m->name))
                continue;
            khx_errf(err, errlen, "member %s is not listed in %s", m->name, info_name);
            r = KH_ESIGNATURE;
            goto out;
        }
        ent->present = 1;
        if (ent->size != m->size) {
            khx_errf(err, errlen, "member %s has %llu bytes but %s says %llu", m->name,
                     (unsigned long long)m->size, info_name, (unsigned long long)ent->size);
            r = KH_ESIGNATURE;
            goto out;
        }
        if (CRYPTO_memcmp(ent->sha256, m->sha256, 32) != 0) {
            khx_errf(err, errlen, "member %s: SHA-256 differs from %s", m->name, info_name);
            r = KH_ESIGNATURE;
            goto out;
        }
    }
    for (size_t j = 0; j < inf.entries.len; j++) {
        struct info_entry *ent = KHX_VEC_AT(&inf.entries, struct info_entry, j);
        if (!ent->present) {
            khx_errf(err, errlen, "%s lists %s, which is missing from the container", info_name,
                     ent->name);
            r = KH_ESIGNATURE;
            goto out;
        }
    }
    r = KH_OK;
out:
    if (a)
        archive_read_free(a);
    free(info_data);
    khx_vec_free(&inf.entries);
    return r;
}

/* The second pass: hand every member (or only the signature files) to fn.
 * The bytes are hashed again so that what fn sees is what was verified even
 * if the caller's buffer changed between the passes. */
static int cvd_deliver(const uint8_t *body, size_t blen, unsigned flags, int all,
                       const struct khx_vec *members, khx_cvd_member_fn fn, void *ud, char *err,
                       size_t errlen)
{
    int r;
    struct archive *a = NULL;
    uint8_t *data = NULL;

    if ((r = tar_open(body, blen, &a, err, errlen)) != 0)
        goto out;
    for (size_t i = 0;; i++) {
        char name[CVD_NAME_MAX + 1];
        uint64_t size;
        uint8_t sum[32];
        if ((r = tar_next(a, i, name, &size, err, errlen)) == 1) {
            r = i == members->len ? KH_OK : KH_EFORMAT;
            if (r != 0)
                khx_errf(err, errlen, "the archive changed while it was read");
            break;
        }
        if (r != 0)
            goto out;
        const struct member *m = i < members->len ? KHX_VEC_AT(members, struct member, i) : NULL;
        if (m == NULL || strcmp(m->name, name) != 0 || m->size != size) {
            khx_errf(err, errlen, "the archive changed while it was read");
            r = KH_EFORMAT;
            goto out;
        }
        if (!all && is_meta_member(name))
            continue; /* libarchive skips unread data by itself */
        if ((r = tar_read_member(a, name, size, 1, &data, sum, err, errlen)) != 0)
            goto out;
        if (!(flags & KHX_CVD_NO_VERIFY) && CRYPTO_memcmp(sum, m->sha256, 32) != 0) {
            khx_errf(err, errlen, "member %s changed while it was read", name);
            r = KH_ESIGNATURE;
            goto out;
        }
        if ((r = fn(ud, name, data, (size_t)size)) != 0)
            goto out;
        free(data);
        data = NULL;
    }
out:
    free(data);
    if (a)
        archive_read_free(a);
    return r;
}

/* Opens, verifies and delivers. `all` also delivers the .info, COPYING and
 * .sign members (for unpacking). */
static int cvd_open_impl(const uint8_t *buf, size_t len, unsigned flags,
                         const struct khx_cvd_keys *keys, struct khx_cvd_header *hdr, int all,
                         khx_cvd_member_fn fn, void *ud, char *err, size_t errlen)
{
    int r;
    struct khx_cvd_header h;
    struct khx_vec members;
    int verify = !(flags & KHX_CVD_NO_VERIFY);

    khx_vec_init(&members, sizeof(struct member), CVD_MEMBERS_MAX);
    memset(&h, 0, sizeof(h));
    if (buf == NULL && len > 0) {
        khx_errf(err, errlen, "no data");
        r = KH_EINVAL;
        goto out;
    }
    if ((r = khx_cvd_parse_header(buf, len, &h, err, errlen)) != 0)
        goto out;
    if (hdr != NULL) {
        char name[sizeof(hdr->name)];
        memcpy(name, hdr->name, sizeof(name));
        name[sizeof(name) - 1] = '\0';
        *hdr = h;
        memcpy(hdr->name, name, sizeof(name));
    }

    const uint8_t *body = buf + CVD_HEADER_LEN;
    size_t blen = len - CVD_HEADER_LEN;
    /* A CLD's header is a copy of its .info line with "X" for MD5 and dsig;
     * its integrity rests on the .info DSIG alone. */
    if (verify && !(flags & KHX_CVD_IS_CLD)) {
        uint8_t sum[16];
        char hex[33];
        if (strcmp(h.md5, "X") == 0 || strcmp(h.dsig, "X") == 0) {
            khx_errf(err, errlen, "CVD header has no MD5 or dsig (\"X\"): is it a CLD?");
            r = KH_ESIGNATURE;
            goto out;
        }
        if ((r = digest(EVP_md5(), body, blen, sum)) != 0)
            goto out;
        khx_hex_encode(sum, sizeof(sum), hex);
        if (strcasecmp(hex, h.md5) != 0) {
            khx_errf(err, errlen, "body MD5 %s does not match the header's %s", hex, h.md5);
            r = KH_ESIGNATURE;
            goto out;
        }
        const struct khx_rsa_key *ckey = keys && keys->cvd ? keys->cvd : &khx_clamav_cvd_key;
        if ((r = khx_versig_md5(h.dsig, hex, ckey)) != 0) {
            khx_errf(err, errlen, "header dsig does not verify%s",
                     r == KH_EINVAL ? " (bad key)" : "");
            goto out;
        }
    }
    if ((r = cvd_verify_body(body, blen, flags, keys, &h, &members, err, errlen)) != 0)
        goto out;
    if (fn != NULL)
        r = cvd_deliver(body, blen, flags, all, &members, fn, ud, err, errlen);
out:
    khx_vec_free(&members);
    return r;
}

int khx_cvd_open(const uint8_t *buf, size_t len, unsigned flags, const struct khx_cvd_keys *keys,
                 struct khx_cvd_header *hdr, khx_cvd_member_fn fn, void *ud, char *err,
                 size_t errlen)
{
    return cvd_open_impl(buf, len, flags, keys, hdr, 0, fn, ud, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Unpacking and packing                                                     */
/* ------------------------------------------------------------------------ */

struct unpack_ctx {
    const char *dir;
    char *err;
    size_t errlen;
};

static int unpack_member(void *ud, const char *name, const uint8_t *data, size_t len)
{
    struct unpack_ctx *u = ud;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", u->dir, name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        khx_errf(u->err, u->errlen, "path for %s is too long", name);
        return KH_EINVAL;
    }
    int r = khx_write_file_atomic(path, data, len);
    if (r != 0)
        khx_errf(u->err, u->errlen, "cannot write %s: %s", path, kh_strerror(r));
    return r;
}

int khx_cvd_unpack(const uint8_t *buf, size_t len, unsigned flags, const struct khx_cvd_keys *keys,
                   const char *dir, struct khx_cvd_header *hdr, char *err, size_t errlen)
{
    struct stat st;
    if (dir == NULL || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        khx_errf(err, errlen, "%s is not a folder", dir ? dir : "(null)");
        return KH_EINVAL;
    }
    struct unpack_ctx u = {.dir = dir, .err = err, .errlen = errlen};
    return cvd_open_impl(buf, len, flags, keys, hdr, 1, unpack_member, &u, err, errlen);
}

static la_ssize_t pack_write_cb(struct archive *a, void *ud, const void *p, size_t n)
{
    struct khx_buf *b = ud;
    (void)a;
    return khx_buf_append(b, p, n) == 0 ? (la_ssize_t)n : -1;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Lists the files to pack: every non-hidden entry, which must be a regular
 * file with a member-safe name. Hidden files are temporaries of ours. */
static int pack_list(const char *dir, struct khx_vec *names, char *err, size_t errlen)
{
    int r = KH_OK;
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL) {
        khx_errf(err, errlen, "cannot read folder %s: %s", dir, strerror(errno));
        return KH_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat st;
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.')
            continue;
        if (!khx_cvd_name_ok(de->d_name, n)) {
            khx_errf(err, errlen, "%s/%s: name cannot be a database member", dir, de->d_name);
            r = KH_EFORMAT;
            break;
        }
        int k = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (k < 0 || (size_t)k >= sizeof(path) || lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            khx_errf(err, errlen, "%s is not a regular file", path);
            r = KH_EFORMAT;
            break;
        }
        char *slot = khx_vec_push(names);
        if (slot == NULL) {
            khx_errf(err, errlen, "more than %d files in %s", CVD_MEMBERS_MAX, dir);
            r = KH_ELIMIT;
            break;
        }
        memcpy(slot, de->d_name, n + 1);
    }
    closedir(d);
    return r;
}

/* Adds one file to the tar being written. */
static int pack_add(struct archive *a, const char *dir, const char *name, uint64_t *total,
                    char *err, size_t errlen)
{
    int r;
    char path[PATH_MAX];
    uint8_t *data = NULL;
    size_t n = 0;
    struct archive_entry *e = NULL;

    int k = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= sizeof(path)) {
        khx_errf(err, errlen, "path for %s is too long", name);
        return KH_EINVAL;
    }
    if ((r = khx_read_file(path, (size_t)CVD_MEMBER_MAX, &data, &n)) != 0) {
        khx_errf(err, errlen, "cannot read %s: %s", path, kh_strerror(r));
        goto out;
    }
    if ((uint64_t)n > CVD_TOTAL_MAX - *total) {
        khx_errf(err, errlen, "files exceed %llu bytes in all", (unsigned long long)CVD_TOTAL_MAX);
        r = KH_ELIMIT;
        goto out;
    }
    *total += n;
    if ((e = archive_entry_new()) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    /* Fixed metadata keeps the output reproducible from the files alone. */
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_entry_set_mtime(e, 0, 0);
    if (archive_write_header(a, e) != ARCHIVE_OK ||
        (n > 0 && archive_write_data(a, data, n) != (la_ssize_t)n)) {
        khx_errf(err, errlen, "cannot add %s to the tar: %s", name, archive_error_string(a));
        r = KH_ENOMEM;
        goto out;
    }
    r = KH_OK;
out:
    archive_entry_free(e);
    free(data);
    return r;
}

int khx_cld_pack(const char *dir, const char *name, uint8_t **out, size_t *out_len, char *err,
                 size_t errlen)
{
    int r;
    char info_name[CVD_NAME_MAX + 1], path[PATH_MAX];
    uint8_t *info = NULL;
    size_t info_len = 0;
    struct khx_vec names;
    struct khx_buf b;
    struct archive *a = NULL;
    uint64_t total = 0;
    struct khx_cvd_header h;

    khx_vec_init(&names, CVD_NAME_MAX + 1, CVD_MEMBERS_MAX);
    khx_buf_init(&b, (size_t)KHX_MIN((uint64_t)SIZE_MAX, CVD_TOTAL_MAX + ((uint64_t)64 << 20)));
    if (dir == NULL || name == NULL || out == NULL || out_len == NULL) {
        khx_errf(err, errlen, "missing argument");
        r = KH_EINVAL;
        goto out;
    }
    int k = snprintf(info_name, sizeof(info_name), "%s.info", name);
    if (k < 0 || (size_t)k >= sizeof(info_name) || !khx_cvd_name_ok(info_name, (size_t)k)) {
        khx_errf(err, errlen, "bad database name \"%s\"", name);
        r = KH_EINVAL;
        goto out;
    }
    k = snprintf(path, sizeof(path), "%s/%s", dir, info_name);
    if (k < 0 || (size_t)k >= sizeof(path)) {
        khx_errf(err, errlen, "path for %s is too long", info_name);
        r = KH_EINVAL;
        goto out;
    }
    if ((r = khx_read_file(path, CVD_INFO_MAX, &info, &info_len)) != 0) {
        khx_errf(err, errlen, "cannot read %s: %s", path, kh_strerror(r));
        goto out;
    }

    /* The CLD header is the first line of the .info, space padded. */
    const uint8_t *nl = memchr(info, '\n', info_len);
    size_t hlen = nl ? (size_t)(nl - info) : 0;
    if (hlen > 0 && info[hlen - 1] == '\r')
        hlen--;
    if (nl == NULL || hlen > CVD_HEADER_LEN) {
        khx_errf(err, errlen, "%s: first line is missing or longer than %d bytes", info_name,
                 CVD_HEADER_LEN);
        r = KH_EFORMAT;
        goto out;
    }
    char herr[160];
    if (parse_header_text((const char *)info, hlen, &h, herr, sizeof(herr)) != 0) {
        khx_errf(err, errlen, "%s line 1: %s", info_name, herr);
        r = KH_EFORMAT;
        goto out;
    }
    if ((r = khx_buf_reserve(&b, CVD_HEADER_LEN)) != 0)
        goto out;
    memset(b.data, ' ', CVD_HEADER_LEN);
    memcpy(b.data, info, hlen);
    b.len = CVD_HEADER_LEN;

    if ((r = pack_list(dir, &names, err, errlen)) != 0)
        goto out;
    qsort(names.items, names.len, names.elem, name_cmp);

    if ((a = archive_write_new()) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if (archive_write_set_format_ustar(a) != ARCHIVE_OK ||
        archive_write_add_filter_none(a) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open(a, &b, NULL, pack_write_cb, NULL) != ARCHIVE_OK) {
        khx_errf(err, errlen, "cannot start the tar: %s", archive_error_string(a));
        r = KH_ENOMEM;
        goto out;
    }
    /* ClamAV reads the manifest before the files it describes, so COPYING
     * and the .info go first, as freshclam writes them. */
    int has_copying = 0;
    for (size_t i = 0; i < names.len; i++)
        if (strcmp((char *)names.items + i * names.elem, "COPYING") == 0)
            has_copying = 1;
    if (has_copying && (r = pack_add(a, dir, "COPYING", &total, err, errlen)) != 0)
        goto out;
    if ((r = pack_add(a, dir, info_name, &total, err, errlen)) != 0)
        goto out;
    for (size_t i = 0; i < names.len; i++) {
        const char *n = (char *)names.items + i * names.elem;
        if (strcmp(n, "COPYING") == 0 || strcmp(n, info_name) == 0)
            continue;
        if ((r = pack_add(a, dir, n, &total, err, errlen)) != 0)
            goto out;
    }
    if (archive_write_close(a) != ARCHIVE_OK) {
        khx_errf(err, errlen, "cannot finish the tar: %s", archive_error_string(a));
        r = KH_ENOMEM;
        goto out;
    }
    *out = khx_buf_steal(&b, out_len);
    r = KH_OK;
out:
    if (a)
        archive_write_free(a);
    khx_buf_free(&b);
    khx_vec_free(&names);
    free(info);
    return r;
}
