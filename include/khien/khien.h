/*
 * libkhien: the public interface of Khiên's scanning engine.
 *
 * The flow a caller sees has three stages, each with its own handle:
 *
 *   kh_builder   reads signature sources (ClamAV databases and containers, YARA
 *                rules, plain hash lists) and compiles them into one .kdb image;
 *   kh_engine    maps a .kdb image read-only and shares it between threads;
 *   kh_scanner   is one thread's scanning context over an engine.
 *
 * Functions return 0 (KH_OK) on success and a negative kh_err on failure;
 * kh_strerror() names the error. Every _new or _open function has a NULL-safe _free.
 * Objects returned through an out-parameter belong to the caller only when the
 * call succeeded.
 */
#ifndef KHIEN_KHIEN_H
#define KHIEN_KHIEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ClamAV functionality level we implement. Signatures whose minimum level
 * is above it, or whose maximum is below it, are skipped and counted. */
#define KH_FLEVEL 212

typedef enum kh_err {
    KH_OK = 0,
    KH_ENOMEM = -1,       /* out of memory */
    KH_EIO = -2,          /* a file could not be read or written */
    KH_EFORMAT = -3,      /* malformed input (signature line, file, .kdb) */
    KH_EUNSUPPORTED = -4, /* well-formed but not supported by this engine */
    KH_ESIGNATURE = -5,   /* checksum or digital signature does not verify */
    KH_ELIMIT = -6,       /* a configured limit was reached */
    KH_EINVAL = -7,       /* invalid argument */
    KH_ETIMEOUT = -8,     /* the scan time limit was reached */
    KH_EMATCHER = -9,     /* Hyperscan, libyara or PCRE2 reported an error */
    KH_ESTRICT = -10,     /* a source had errors and strict loading was asked for */
    KH_ENOTFOUND = -11,   /* no such file, entry or signature */
    KH_EABORTED = -12,    /* the caller's callback asked to stop */
} kh_err;

/* Returns a static English description of err. Never NULL. */
const char *kh_strerror(int err);

/* Returns the library version string, e.g. "0.1.0". */
const char *kh_version(void);

/* ------------------------------------------------------------------------ */
/* Building a database                                                       */
/* ------------------------------------------------------------------------ */

typedef struct kh_builder kh_builder;

/* Called once for each problem found in a source: `source` is the file name
 * (inside a container: "daily.cvd:daily.ndb"), `line` is 1-based or 0 when the
 * problem is not tied to a line, `msg` is one English sentence fragment. */
typedef void (*kh_diag_fn)(void *ud, const char *source, unsigned line, const char *msg);

struct kh_build_opts {
    int strict;          /* any bad line fails the load with KH_ESTRICT */
    int pua;             /* also load PUA databases (.hdu .ndu ...) */
    int skip_cvd_verify; /* accept CVD/CLD files whose signature fails (testing only) */
    int portable;        /* build the pattern matcher for any CPU Hyperscan supports, not
                            only for this machine's (for databases sent to other machines) */
    kh_diag_fn diag;     /* NULL: problems are only counted */
    void *diag_ud;
};

int kh_builder_new(const struct kh_build_opts *opts, kh_builder **out);
void kh_builder_free(kh_builder *b);

/* Adds a signature file, or every signature file in a directory (not
 * recursive). The extension selects the parser; files of unknown type in a
 * directory are ignored, a named file of unknown type is an error. */
int kh_builder_add_path(kh_builder *b, const char *path);

/* Adds a signature source held in memory; `name`'s extension selects the parser. */
int kh_builder_add_mem(kh_builder *b, const char *name, const void *data, size_t len);

/* Compiles everything added so far into a .kdb image. On success *image is
 * malloc'd and owned by the caller. */
int kh_builder_compile(kh_builder *b, void **image, size_t *image_len);

/* Compiles and writes the image to `path` atomically (temporary file + rename). */
int kh_builder_write(kh_builder *b, const char *path);

/* ClamAV database maintenance, as a private mirror does it. Both verify
 * every signature (CVD header, .info DSIG, .cdiff DSIG) with ClamAV's keys.
 *
 * kh_clamav_unpack writes the members of a .cvd/.cld, .info included, into
 * the existing directory `dir` (as `sigtool -u`).
 *
 * kh_clamav_patch applies .cdiff patches, in the order given, to a .cvd or
 * .cld and writes the result as a .cld to `out` (atomically). A patch that
 * does not apply leaves nothing written. On failure `err` says which file and
 * script line. */
int kh_clamav_unpack(const char *cvd, const char *dir, char *err, size_t errlen);
int kh_clamav_patch(const char *cvd, const char *const *cdiffs, size_t ncdiffs, const char *out,
                    char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Database information                                                      */
/* ------------------------------------------------------------------------ */

/* Signature kinds, used for counts and in detections. */
enum kh_sigkind {
    KH_SIG_HASH = 0,  /* whole-file MD5/SHA1/SHA256 (.hdb .hsb, hash lists) */
    KH_SIG_PESECT,    /* PE section hash (.mdb .msb) */
    KH_SIG_IMPHASH,   /* PE import table hash (.imp) */
    KH_SIG_BODY,      /* extended body signature (.ndb) */
    KH_SIG_LOGICAL,   /* logical signature (.ldb) */
    KH_SIG_YARA,      /* YARA rule */
    KH_SIG_ALLOW,     /* allowlist entry (.fp .sfp) */
    KH_SIG_HEURISTIC, /* built-in finding: encrypted, corrupt, over a limit */
    KH_SIG_KIND_COUNT
};

/* Returns "hash", "pe-section", "imphash", "body", "logical", "yara", "allow", "heuristic". */
const char *kh_sigkind_name(int kind);

struct kh_source_info {
    const char *name;    /* file name as added, e.g. "daily.cvd" or "local.ndb" */
    uint32_t version;    /* CVD/CLD version, 0 for plain files */
    uint32_t signatures; /* signatures loaded from it */
    uint32_t skipped;    /* outside our FLEVEL range, or of an unsupported kind */
    uint32_t errors;     /* malformed lines */
    int64_t built;       /* CVD build time (Unix seconds), 0 if unknown */
};

struct kh_db_info {
    uint32_t format_version;
    int64_t created; /* Unix seconds */
    uint64_t image_size;
    uint64_t counts[KH_SIG_KIND_COUNT]; /* signatures per kind */
    uint64_t ignored;                   /* dropped by .ign2 */
    uint32_t nsources;
    const struct kh_source_info *sources; /* valid while the engine lives */
};

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct kh_engine kh_engine;

/* Maps a .kdb file read-only and checks its header and checksum. No signature
 * is parsed or compiled. On failure, if err is not NULL, a message is written. */
int kh_engine_open(const char *path, kh_engine **out, char *err, size_t errlen);

/* Uses an image in memory (for example straight from kh_builder_compile). The
 * engine takes ownership of `image` whether or not the call succeeds: it is
 * free()d with the engine, or before returning an error. */
int kh_engine_open_image(void *image, size_t len, kh_engine **out, char *err, size_t errlen);

/* Engines are reference counted so that a scanner can keep using one while a
 * newer engine replaces it; kh_engine_free drops one reference. */
kh_engine *kh_engine_ref(kh_engine *e);
void kh_engine_free(kh_engine *e);

int kh_engine_info(const kh_engine *e, struct kh_db_info *info);

/* ------------------------------------------------------------------------ */
/* Scanning                                                                  */
/* ------------------------------------------------------------------------ */

struct kh_limits {
    uint64_t max_filesize;    /* larger files (and container members) are not scanned */
    uint64_t max_scansize;    /* total bytes scanned for one top-level file */
    uint32_t max_recursion;   /* container nesting depth */
    uint32_t max_files;       /* members extracted from one top-level file */
    uint32_t max_ratio;       /* uncompressed:compressed ratio above which a member is a bomb */
    uint32_t max_scantime_ms; /* wall time for one top-level file, 0 = none */
};

/* Fills in safe defaults (ClamAV's, where they exist). */
void kh_limits_default(struct kh_limits *l);

struct kh_scan_opts {
    struct kh_limits limits;
    int allmatch;      /* report every matching signature, not just the first */
    int scan_archives; /* default 1 */
    int want_sha256;   /* always compute kh_scan_result.sha256 (otherwise only for
                          files with a detection, or when a signature needed it) */
};

void kh_scan_opts_default(struct kh_scan_opts *o);

enum kh_severity {
    KH_SEV_MALWARE = 0, /* a signature matched */
    KH_SEV_NOTICE = 1,  /* content not fully scanned: encrypted, corrupt, over a limit */
};

struct kh_detection {
    const char *name;       /* e.g. "Eicar-Test-Signature", "Heuristics.Encrypted.Zip" */
    int kind;               /* enum kh_sigkind */
    int severity;           /* enum kh_severity */
    const char *source;     /* the source file the signature came from ("" for heuristics) */
    const char *inner_path; /* path inside containers, members joined by "/"; NULL at top level */
    uint32_t depth;         /* 0 for the scanned file itself */
};

/* Called for each detection; return non-zero to stop the scan (KH_EABORTED). */
typedef int (*kh_detect_fn)(void *ud, const struct kh_detection *d);

struct kh_scan_result {
    uint64_t size;       /* size of the top-level object */
    int sha256_valid;    /* sha256 was computed (see kh_scan_opts.want_sha256) */
    uint8_t sha256[32];  /* SHA-256 of the top-level object */
    uint32_t detections; /* KH_SEV_MALWARE detections reported */
    uint32_t notices;    /* KH_SEV_NOTICE findings reported */
    uint32_t objects;    /* objects scanned, the file itself and its members */
    uint64_t bytes_scanned;
};

typedef struct kh_scanner kh_scanner;

/* A scanner holds one thread's scratch space; use one per thread. It keeps a
 * reference to the engine. */
int kh_scanner_new(kh_engine *e, const struct kh_scan_opts *opts, kh_scanner **out);
void kh_scanner_free(kh_scanner *s);

/* Scans a file by path (mapped read-only). Returns KH_OK whether or not
 * something was found; result->detections tells. */
int kh_scan_file(kh_scanner *s, const char *path, kh_detect_fn cb, void *ud,
                 struct kh_scan_result *result);

/* Scans a buffer; `name` is used only in messages. */
int kh_scan_mem(kh_scanner *s, const void *data, size_t len, const char *name, kh_detect_fn cb,
                void *ud, struct kh_scan_result *result);

/* ------------------------------------------------------------------------ */
/* Long-lived scanning service                                               */
/* ------------------------------------------------------------------------ */

/* A service owns the current engine and a pool of scanners for it, so that a
 * daemon (the agent, `khien daemon`) can scan files from any number of
 * threads while a new database replaces the old one: kh_service_reload()
 * opens the new .kdb and makes it current atomically; scans already running
 * finish on the old engine, which is freed when the last of them ends. Only
 * the mapped image and the small Hyperscan databases are per engine, so a
 * reload never holds two copies of the signature tables in anonymous memory. */
typedef struct kh_service kh_service;

int kh_service_new(const char *kdb_path, const struct kh_scan_opts *opts, kh_service **out,
                   char *err, size_t errlen);
void kh_service_free(kh_service *svc);

/* Opens `kdb_path` and makes it the current database. On failure the
 * current database stays in use. Thread-safe. */
int kh_service_reload(kh_service *svc, const char *kdb_path, char *err, size_t errlen);

/* Scans with the current database. Thread-safe; each call uses its own
 * scanner from the pool. */
int kh_service_scan_file(kh_service *svc, const char *path, kh_detect_fn cb, void *ud,
                         struct kh_scan_result *result);
int kh_service_scan_mem(kh_service *svc, const void *data, size_t len, const char *name,
                        kh_detect_fn cb, void *ud, struct kh_scan_result *result);

/* Describes the current database (valid until the next reload), and counts
 * the reloads so far. */
int kh_service_info(kh_service *svc, struct kh_db_info *info, uint64_t *generation);

/* Asks the scan running in `s` (from another thread or a signal handler) to
 * stop as soon as possible; it returns KH_EABORTED. The request stays until
 * kh_scanner_reset_cancel(). Async-signal-safe. */
void kh_scanner_cancel(kh_scanner *s);
void kh_scanner_reset_cancel(kh_scanner *s);

#ifdef __cplusplus
}
#endif
#endif
