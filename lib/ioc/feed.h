/*
 * Feed readers (feed_*.c): turn the indicator lists that threat-intelligence
 * sources publish into normalised records (struct ioc_record), one callback
 * per indicator, for the store builder (store.h) or the server's bundle
 * compiler. Every reader streams over an in-memory text (a feed file the
 * caller read or mmapped), never trusts it, and counts what it rejects with
 * the first reason ("line 17: ..." or "object 3: ..."). None allocates per
 * record beyond what it frees before returning.
 *
 * Normalisation (ioc_normalize_value) is shared by every reader: IPv4/IPv6
 * as inet_ntop writes them (IPv4-mapped IPv6 as IPv4), CIDRs with host bits
 * cleared (a /32 or /128 is an address), "[v6]:port" and "v4:port", domains
 * lowercased without a trailing dot, IDNA left as punycode ("xn--"), defanged
 * forms undone ("[.]", "(.)", "[:]", "hxxp", "hXXps"), URLs as "host/path"
 * (scheme, user info, default port and fragment dropped, host lowercased,
 * query kept), JA3 as 32 lowercase hex, JA4 as its text.
 */
#ifndef KHIEN_IOC_FEED_H
#define KHIEN_IOC_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "ioc.h"

/* The longest normalised value (a URL is cut to this, and refused beyond). */
#define IOC_VALUE_MAX 1024
/* The longest category, source or family word. */
#define IOC_WORD_MAX 64

/* One indicator as a reader produced it. Strings belong to the reader and are
 * valid only during the callback (copy what you keep). */
struct ioc_record {
    int kind;             /* enum ioc_kind */
    const char *value;    /* normalised, NUL-terminated */
    const char *category; /* lowercase word: c2, distribution, phishing, apt,
                             malware, scanner, suspicious, ... never NULL */
    const char *source;   /* the feed's id, never NULL */
    const char *family;   /* malware family or actor, or NULL */
    uint8_t confidence;   /* 0..100; readers without one give 50 */
    int64_t expires;      /* Unix seconds, 0 = never */
};

/* Called once per record; a non-zero return stops the reader, which then
 * returns that value. */
typedef int (*ioc_record_fn)(void *ctx, const struct ioc_record *r);

enum ioc_format {
    IOC_FMT_AUTO = 0,    /* guess from the name and the first bytes */
    IOC_FMT_PLAIN,       /* Khiên's text form (ioc.h), hosts files, one value per line */
    IOC_FMT_CSV,         /* CSV with a header naming the columns (value/ioc/indicator/
                            dst_ip/url/domain, category/threat_type, malware,
                            confidence, first_seen/expires) or value,category,source */
    IOC_FMT_MALTRAIL,    /* maltrail static trail files and trails.csv */
    IOC_FMT_IPSUM,       /* ipsum.txt: "IP<TAB>count" */
    IOC_FMT_FIREHOL,     /* firehol .netset/.ipset */
    IOC_FMT_IPREP,       /* Suricata iprep "ip-or-cidr,category-id,score" */
    IOC_FMT_ZEEK_INTEL,  /* Zeek intel TSV with a #fields line */
    IOC_FMT_STIX,        /* STIX 2.1 bundle (JSON) */
    IOC_FMT_MISP_EVENT,  /* MISP event JSON ({"Event": ...} or a list of them) */
    IOC_FMT_WARNINGLIST, /* MISP warninglist JSON: an allowlist */
    IOC_FMT_COUNT
};

/* Options a reader may use; a zeroed struct gives the defaults. */
struct ioc_read_opts {
    const char *source;   /* feed id for records (default: the format's name) */
    const char *category; /* category when the feed has none (default "malware";
                             ipsum "attacker", warninglists "allowlist") */
    const char *family;   /* family when the feed has none (default NULL; a
                             maltrail static file's name when read by path) */
    uint8_t confidence;   /* when the feed has none (0 = 50) */
    int64_t now;          /* for expiry decisions (0 = time(NULL)) */
    int keep_expired;     /* records whose expiry passed are skipped unless set */
    /* Suricata iprep: the categories file text ("id,shortname,description"
     * lines) that maps category ids to names; NULL = "iprep-<id>". */
    const char *iprep_categories;
    size_t iprep_categories_len;
    uint8_t ipsum_min_lists; /* ipsum: keep IPs named by at least this many lists (0 = 1) */
};

struct ioc_read_stats {
    size_t records;        /* passed to the callback */
    size_t rejected;       /* malformed or unsupported entries */
    size_t skipped;        /* expired, to_ids=false, revoked, comments excluded */
    char first_error[256]; /* where and why the first rejected entry was refused */
};

/* Reads one feed text. Returns KH_OK (even with rejected entries; see
 * stats), KH_EFORMAT when the text is not that format at all (not JSON for a
 * JSON format, no #fields line for Zeek), the callback's non-zero value, or
 * KH_ENOMEM. stats may be NULL. */
int ioc_read_feed(enum ioc_format fmt, const char *text, size_t len,
                  const struct ioc_read_opts *opts, ioc_record_fn fn, void *ctx,
                  struct ioc_read_stats *stats);

/* Reads a MISP feed folder (manifest.json + <uuid>.json events) or a single
 * file of any format (format guessed when IOC_FMT_AUTO). Same returns, plus
 * KH_EIO with the path in stats->first_error. */
int ioc_read_path(const char *path, enum ioc_format fmt, const struct ioc_read_opts *opts,
                  ioc_record_fn fn, void *ctx, struct ioc_read_stats *stats);

/* Guesses a format from a file name (may be NULL) and the first bytes. */
enum ioc_format ioc_format_guess(const char *name, const char *text, size_t len);
const char *ioc_format_name(enum ioc_format fmt);       /* "plain", "csv", ... */
enum ioc_format ioc_format_from_name(const char *name); /* IOC_FMT_COUNT if unknown */

/* Normalises one value of an expected kind (or any kind when kind < 0) into
 * out[IOC_VALUE_MAX + 1]. Returns the kind found (enum ioc_kind), or -1 with
 * a reason in err. */
int ioc_normalize_value(int kind, const char *value, size_t len, char *out, char *err,
                        size_t errlen);

/* Maps free-text threat names to our category words ("botnet_cc" -> "c2",
 * "payload_delivery" -> "distribution", "Phishing" -> "phishing",
 * "apt_sofacy" -> "apt", ...). Returns a static string; unknown -> "malware". */
const char *ioc_category_word(const char *text, size_t len);

#endif
