/*
 * Indicator sets (ioc_): the network indicators a bundle carries to agents —
 * IPv4 and IPv6 addresses, CIDR prefixes (longest prefix wins), address:port
 * pairs and domains (a listed domain matches itself and every name below it) —
 * each with its category and source. The agent checks its live connections
 * against the address kinds; domains travel with it for the sensor and for
 * platforms whose DNS client can be watched.
 *
 * The text form, one indicator per line, is both what the server compiles into
 * a bundle and what ioc_set_load() reads back:
 *
 *   # comment
 *   <value> [<category> [<source>]]
 *
 * value: 203.0.113.7 | 203.0.113.0/24 | 2001:db8::1 | 2001:db8::/32 |
 *        203.0.113.7:443 | [2001:db8::1]:443 | evil.example.com
 * category: a word such as c2, distribution, phishing, apt (default "malware");
 * source: a word naming the list (default "-"). Fields are separated by blanks
 * or tabs; a line may be at most 1024 bytes.
 *
 * The reader also takes the shapes published lists come in: "#" starts a
 * comment anywhere on a line; a line with a comma is CSV
 * ("value,category,source", fields trimmed, one pair of double quotes
 * removed); a hosts-file line "0.0.0.0 evil.example" (or 127.0.0.1, ::,
 * ::1) lists the name. Values are canonicalised: addresses as inet_ntop
 * writes them, IPv4-mapped IPv6 as IPv4, prefixes with their host bits
 * cleared (a /32 or /128 is an address), domains lowercased without a
 * trailing dot. A domain needs two labels or more (labels of letters,
 * digits, '-' and '_', 1 to 63 long, 253 in all; not all-numeric last
 * label). Category and source words are [A-Za-z0-9._-], 1 to 64 long.
 * URLs, /0 prefixes, unspecified addresses and ports 0 are refused. Of
 * several entries for one value the first line's wins.
 */
#ifndef KHIEN_IOC_H
#define KHIEN_IOC_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/* The kinds of indicator. ioc_set (this header) holds the first four; the
 * compiled store (store.h) and the feed readers (feed.h) hold all of them.
 * IOC_URL values are "host/path" (scheme dropped, host lowercased, no
 * fragment); IOC_JA3 values are 32 lowercase hex digits (the JA3 MD5);
 * IOC_JA4 values are the JA4 text ("t13d1516h2_8daaf6152771_e5627efa2ab1"). */
enum ioc_kind {
    IOC_IP = 0,
    IOC_CIDR,
    IOC_IP_PORT,
    IOC_DOMAIN,
    IOC_URL,
    IOC_JA3,
    IOC_JA4,
    IOC_KIND_COUNT
};

/* An output buffer of this size always holds a normalised line. */
#define IOC_NORMALIZED_MAX 400

struct ioc_match {
    int kind;          /* enum ioc_kind */
    const char *value; /* the indicator as written in the list, normalised */
    const char *category;
    const char *source;
};

struct ioc_set;

/* Parses the text form. Bad lines are skipped and counted in *bad (may be
 * NULL); the first bad line's number and reason go to err ("line N: ...").
 * Returns KH_OK with *out set (the caller frees it with ioc_set_free),
 * KH_ENOMEM, or KH_ELIMIT beyond `max` indicators (0 = 10 million), 65,535
 * distinct category/source pairs or 4 GiB of strings. */
int ioc_set_load(const char *text, size_t len, size_t max, struct ioc_set **out, size_t *bad,
                 char *err, size_t errlen);
void ioc_set_free(struct ioc_set *s);

/* Counts per kind (after duplicates are removed). */
void ioc_set_counts(const struct ioc_set *s, size_t counts[IOC_KIND_COUNT]);

/* The bytes the set holds on the heap (arrays, tables and strings). */
size_t ioc_set_memory(const struct ioc_set *s);

/* Looks up an address (AF_INET: 4 bytes, AF_INET6: 16 bytes, network order)
 * and port (host order, 0 = any): an IP:port entry first, then the exact
 * address, then the longest prefix. Returns 1 with *m filled (pointers valid
 * while the set lives; m may be NULL), or 0. IPv4-mapped IPv6 addresses are
 * looked up as IPv4. With port 0 an address:port entry for the address, on
 * any port, matches last. Lookups only read the set: threads may share it. */
int ioc_match_addr(const struct ioc_set *s, int family, const void *addr, uint16_t port,
                   struct ioc_match *m);

/* Looks up a domain name (case-insensitive, a trailing dot ignored): the name
 * itself, then each parent ("a.b.example.com" -> "b.example.com" -> ...). */
int ioc_match_domain(const struct ioc_set *s, const char *name, struct ioc_match *m);

/* Normalises one line of an indicator list into the text form above (used by
 * the server when it compiles lists into a bundle). Returns 1 and writes a
 * NUL-terminated line into out, 0 for a blank or comment line, or -1 with the
 * reason in err for a bad line. */
int ioc_normalize_line(const char *line, size_t len, char *out, size_t outlen, char *err,
                       size_t errlen);

#endif
