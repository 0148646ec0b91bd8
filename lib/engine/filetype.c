/*
 * File typing from magic bytes.
 *
 * khx_filetype() looks only at the bytes it is given and decides what the
 * rest of the engine should do with them: run the executable parsers, unpack
 * a container, normalise text or HTML, or match the bytes as they are. The
 * checks run from the most specific to the least: executables first (so a
 * self-extracting archive is scanned as the program it is), then archive and
 * compression magics at offset 0, then the formats whose magic sits further
 * in (tar at 257, ISO 9660 at 32769, a zip's end-of-central-directory record
 * at its end), then e-mail, and only then the text heuristics.
 *
 * Every check tests the length before it reads; no input can make this file
 * read outside buf[0..len).
 *
 * The scanner calls this once for every file and every unpacked member, so
 * its cost is bounded and kept small: apart from the fixed offsets above it
 * reads at most the first TEXT_WINDOW bytes (text, HTML and mail tests) and
 * the last 64 KiB + 22 (the zip record, found with memrchr rather than byte
 * by byte), and the text window is classified eight bytes at a time where
 * it is plain ASCII and searched for HTML markers in one pass.
 */
#include "container.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "khx.h"

/* How much of the start of a file the text and HTML heuristics look at. */
#define TEXT_WINDOW 4096

static int has_prefix(const uint8_t *buf, size_t len, size_t off, const void *magic, size_t n)
{
    return len >= off && len - off >= n && memcmp(buf + off, magic, n) == 0;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A PE image: "MZ", then e_lfanew at 0x3C pointing at "PE\0\0" inside the
 * buffer. A bare "MZ" (a DOS program, or a text file that starts with those
 * two letters) is not enough. */
static int is_pe(const uint8_t *buf, size_t len)
{
    if (!has_prefix(buf, len, 0, "MZ", 2) || len < 0x40)
        return 0;
    uint32_t lfanew = le32(buf + 0x3C);
    if (lfanew < 0x40 || lfanew > len || len - lfanew < 4)
        return 0;
    return memcmp(buf + lfanew, "PE\0\0", 4) == 0;
}

/* A .lzma ("LZMA alone") stream has no magic: a properties byte, a 32-bit
 * dictionary size and a 64-bit uncompressed size. We accept only the values
 * real encoders write, so that random binary data is not mistaken for it:
 * lc/lp/pb within range, a dictionary size that is 2^n or 2^n + 2^(n-1) from
 * 4 KiB upwards, and an uncompressed size that is either "unknown" (all ones)
 * or below 2^48. */
static int is_lzma_alone(const uint8_t *buf, size_t len)
{
    if (len < 13 || buf[0] >= 9 * 5 * 5)
        return 0;
    uint32_t dict = le32(buf + 1);
    int dict_ok = 0;
    for (int n = 12; n <= 31 && !dict_ok; n++) {
        uint32_t p = (uint32_t)1 << n;
        if (dict == p || (n > 12 && dict == p + (p >> 1)))
            dict_ok = 1;
    }
    if (!dict_ok)
        return 0;
    int all_ones = 1;
    for (int i = 5; i < 13; i++)
        if (buf[i] != 0xFF)
            all_ones = 0;
    if (all_ones)
        return 1;
    /* Below 2^48: the two most significant bytes are zero. */
    return buf[11] == 0 && buf[12] == 0;
}

static int is_octal_field(const uint8_t *p, size_t n)
{
    int digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= '0' && p[i] <= '7')
            digits++;
        else if (p[i] != ' ' && p[i] != 0)
            return 0;
    }
    return digits > 0;
}

/* A tar header: the "ustar" magic at 257 (POSIX "ustar\0" and GNU
 * "ustar  \0"), or a pre-POSIX (v7) header whose checksum at 148 matches the
 * sum of its 512 bytes with the checksum field counted as spaces. The
 * checksum test is what keeps arbitrary data from passing as an old tar. */
static int is_tar(const uint8_t *buf, size_t len)
{
    if (len < 512)
        return 0;
    if (memcmp(buf + 257, "ustar", 5) == 0)
        return 1;
    if (buf[0] == 0 || !is_octal_field(buf + 148, 8) || !is_octal_field(buf + 124, 12))
        return 0;
    uint32_t want = 0;
    for (size_t i = 148; i < 156 && buf[i] >= '0' && buf[i] <= '7'; i++)
        want = want * 8 + (uint32_t)(buf[i] - '0');
    uint32_t sum = 0;
    for (size_t i = 0; i < 512; i++)
        sum += (i >= 148 && i < 156) ? ' ' : buf[i];
    return sum == want;
}

/* cpio: the ASCII variants by their six-digit magic, the old binary one by
 * 070707 in either byte order plus a plausible name size (a name of at least
 * one byte that fits in the first block). */
static int is_cpio(const uint8_t *buf, size_t len)
{
    if (has_prefix(buf, len, 0, "070707", 6) || has_prefix(buf, len, 0, "070701", 6) ||
        has_prefix(buf, len, 0, "070702", 6))
        return 1;
    if (len < 26)
        return 0;
    unsigned namesize;
    if (buf[0] == 0xC7 && buf[1] == 0x71)
        namesize = (unsigned)buf[20] | (unsigned)buf[21] << 8;
    else if (buf[0] == 0x71 && buf[1] == 0xC7)
        namesize = (unsigned)buf[20] << 8 | (unsigned)buf[21];
    else
        return 0;
    return namesize >= 1 && namesize <= 1024;
}

/* LHA: the method id "-lh?-" or "-lz?-" at offset 2 and a header level of 0
 * to 3 at offset 20. */
static int is_lha(const uint8_t *buf, size_t len)
{
    if (len < 22 || buf[2] != '-' || buf[3] != 'l' || buf[6] != '-')
        return 0;
    if (buf[4] != 'h' && buf[4] != 'z')
        return 0;
    return buf[20] <= 3;
}

/* Whether buf[e..e + 22) is a zip end-of-central-directory record that
 * describes a directory ending right at e, for is_zip_eocd below. Returns 1
 * or 0 when the record settles the question, -1 when e holds no such record
 * and the search should go on. The caller ensures e + 22 <= len. */
static int eocd_verdict(const uint8_t *buf, size_t len, size_t e)
{
    if (memcmp(buf + e, "PK\5\6", 4) != 0)
        return -1;
    size_t comment = le16(buf + e + 20);
    uint32_t cd_size = le32(buf + e + 12);
    uint16_t entries = le16(buf + e + 10);
    if (comment > len - e - 22 || cd_size > e)
        return -1;
    /* The directory's recorded offset must be its real one: then the
     * archive's offsets count from the start of this buffer (a split part,
     * or a zip whose first bytes were damaged). Data with a zip appended (a
     * picture, an installer) records the offset from where the zip begins;
     * such files keep their own type and the zip is found by
     * khx_embedded_walk. */
    if ((uint64_t)le32(buf + e + 16) + cd_size != e)
        return -1;
    if (entries == 0)
        return cd_size == 0;
    return cd_size >= 46 && memcmp(buf + e - cd_size, "PK\1\2", 4) == 0;
}

/* A zip that does not start with a local header: the last part of a split
 * archive, or a zip with data prepended. Its end-of-central-directory record
 * ("PK\5\6", 22 bytes plus a comment of at most 64 KiB) sits near the end,
 * and the central directory it describes ends right where the record starts,
 * at the offset the record gives, beginning with "PK\1\2". All must hold,
 * which random data does not do.
 *
 * The candidates e run from `lowest` up to len - 22 and the highest one that
 * eocd_verdict settles decides. Rather than test every position, memrchr
 * finds the next '\6' (the record's fourth byte, rare in text, unlike 'P')
 * below `top`, which is one past the highest candidate still to test; the
 * bytes searched, buf[lowest + 3 .. top + 2], end at len - 19 at most. Data
 * dense with '\6' would make that one call per byte, several times slower
 * than stepping, so while memrchr has stopped more often than once per 64
 * bytes (after a grace of 64 stops) the loop tests the next 64 positions one
 * by one instead, and goes back to memrchr once the stops have thinned out.
 * Either way each position is tested once, highest first. */
static int is_zip_eocd(const uint8_t *buf, size_t len)
{
    if (len < 22)
        return 0;
    size_t lowest = len > 22 + 65535 ? len - 22 - 65535 : 0;
    size_t end = len - 22 + 1;
    size_t top = end, stops = 0;
    while (top > lowest) {
        if (stops < (end - top) / 64 + 64) {
            const uint8_t *six = memrchr(buf + lowest + 3, '\6', top - lowest);
            if (six == NULL)
                return 0;
            stops++;
            top = (size_t)(six - buf) - 3;
            if (buf[top] == 'P') {
                int v = eocd_verdict(buf, len, top);
                if (v >= 0)
                    return v;
            }
            continue;
        }
        size_t block_end = top - lowest > 64 ? top - 64 : lowest;
        while (top > block_end) {
            top--;
            if (buf[top] == 'P' && buf[top + 3] == '\6') {
                int v = eocd_verdict(buf, len, top);
                if (v >= 0)
                    return v;
            }
        }
    }
    return 0;
}

/* A line of an RFC 822 header block: a field name of printable ASCII up to a
 * colon (comments in parentheses included, as some mailers write them), or a
 * folded continuation starting with white space. Returns the length of the
 * name (0 for a continuation), or -1 if the line is neither. */
static int header_line(const uint8_t *p, size_t n)
{
    if (n > 0 && (p[0] == ' ' || p[0] == '\t'))
        return 0;
    size_t i = 0;
    while (i < n && i < 78 && p[i] > ' ' && p[i] < 0x7F && p[i] != ':')
        i++;
    if (i == 0 || i >= n || p[i] != ':')
        return -1;
    return (int)i;
}

/* Whether the header name p[0..n) (case-insensitive) is one a mail message
 * typically starts with. */
static int mail_header_name(const uint8_t *p, size_t n)
{
    static const char *const names[] = {
        "received",
        "return-path",
        "delivered-to",
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "x-mailer",
        "reply-to",
        "sender",
        "cc",
        "x-originating-ip",
        "dkim-signature",
        "authentication-results",
        "x-received",
        "x-sender",
        "envelope-to",
        "x-envelope-from",
        "arc-seal",
        "x-apparently-to",
        "in-reply-to",
        "references",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], (const char *)p, n) == 0)
            return 1;
    return 0;
}

/* E-mail: an mbox "From " separator line, a BinHex 4.0 text, or a header
 * block whose first field is one a message starts with and whose next line
 * is a header line too. Mail bodies may be 8-bit, so this does not ask for
 * the whole window to be text: the header shape is what is tested. */
static int is_mail(const uint8_t *buf, size_t len)
{
    static const char binhex[] = "(This file must be converted with BinHex";
    if (has_prefix(buf, len, 0, binhex, sizeof(binhex) - 1))
        return 1;
    size_t n = KHX_MIN(len, (size_t)TEXT_WINDOW);
    int mbox = has_prefix(buf, len, 0, "From ", 5);
    /* In an mbox the separator is line 0 and any header may follow it. */
    size_t first = mbox ? 1 : 0;
    size_t pos = 0;
    for (size_t line = 0; line <= first + 1; line++) {
        const uint8_t *nl = pos < n ? memchr(buf + pos, '\n', n - pos) : NULL;
        if (nl == NULL)
            return 0;
        size_t l = (size_t)(nl - (buf + pos));
        if (l > 0 && buf[pos + l - 1] == '\r')
            l--;
        if (line == 0 && mbox) {
            /* "From sender date": a sender right after the space. */
            if (l < 6 || buf[5] == ' ')
                return 0;
        } else {
            int name = header_line(buf + pos, l);
            if (name < 0)
                return 0;
            if (line == first &&
                (name == 0 || (!mbox && !mail_header_name(buf + pos, (size_t)name))))
                return 0;
        }
        pos = (size_t)(nl - buf) + 1;
    }
    return 1;
}

/* zstd frames, including a leading skippable frame (magic 0x184D2A5?). */
static int is_zstd(const uint8_t *buf, size_t len)
{
    if (has_prefix(buf, len, 0, "\x28\xB5\x2F\xFD", 4))
        return 1;
    return len >= 8 && (buf[0] & 0xF0) == 0x50 && buf[1] == 0x2A && buf[2] == 0x4D &&
           buf[3] == 0x18;
}

static int is_bzip2(const uint8_t *buf, size_t len)
{
    return len >= 10 && buf[0] == 'B' && buf[1] == 'Z' && buf[2] == 'h' && buf[3] >= '1' &&
           buf[3] <= '9' &&
           (memcmp(buf + 4, "1AY&SY", 6) == 0 ||
            memcmp(buf + 4, "\x17\x72\x45\x38\x50\x90", 6) == 0);
}

/* Length of the valid UTF-8 sequence at p (2 to 4), or 0. A sequence cut off
 * by the end of the window counts as valid: the file goes on past it. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    size_t need;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        need = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        need = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        need = 4;
    else
        return 0;
    for (size_t i = 1; i < need; i++) {
        if (i >= n)
            return n;
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    return need;
}

/* The control bytes text may hold, one bit each: \t \n \v \f \r and ESC
 * (which ANSI-coloured logs are full of). */
#define TEXT_CONTROLS                                                                              \
    ((1u << '\t') | (1u << '\n') | (1u << '\v') | (1u << '\f') | (1u << '\r') | (1u << 0x1B))

/* Whether the 8 bytes at p are all printable ASCII (0x20 to 0x7E), tested
 * on one 64-bit word so that runs of plain text skip the byte-by-byte tests
 * in looks_like_text. When no byte is 0x80 or above, w - 0x2020... sets some
 * byte's top bit exactly when some byte is below 0x20 (the lowest such byte
 * wraps, whatever borrows follow it), and w + 0x0101... sets one exactly
 * where a byte is 0x7F (no byte carries into the next). */
static int printable8(const uint8_t *p)
{
    const uint64_t ones = 0x0101010101010101u, tops = 0x8080808080808080u;
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return ((w | (w - 0x20 * ones) | (w + ones)) & tops) == 0;
}

/* Mostly printable: no NUL byte, and at most one byte in 16 that is neither
 * printable ASCII, common white space, nor part of valid UTF-8. The margin
 * lets Latin-1 or Windows-1258 text through. Once the bad bytes are over
 * the margin the answer cannot change, so the loop stops there: random
 * data is turned down after a few dozen bytes. */
static int looks_like_text(const uint8_t *buf, size_t len, size_t *start)
{
    size_t n = KHX_MIN(len, (size_t)TEXT_WINDOW);
    size_t bad = 0, i = 0;
    if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    *start = i;
    size_t max_bad = n / 16;
    while (i < n) {
        if (n - i >= 8 && printable8(buf + i)) {
            i += 8;
            continue;
        }
        uint8_t c = buf[i];
        size_t step = 1;
        int good;
        if (c == 0)
            return 0;
        if (c < 0x20)
            good = (TEXT_CONTROLS >> c) & 1;
        else if (c < 0x7F)
            good = 1;
        else if (c == 0x7F)
            good = 0;
        else {
            size_t s = utf8_seq(buf + i, n - i);
            good = s > 0;
            step = good ? s : 1;
        }
        if (!good && ++bad > max_bad)
            return 0;
        i += step;
    }
    return n > 0;
}

/* ASCII-only lowercasing: the tags are ASCII, and folding other bytes (as
 * tolower() might in some locales) would let non-ASCII text match them. */
static uint8_t ascii_lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* Whether the `avail` bytes at p start with `lower`, a NUL-terminated
 * lowercase string, with ASCII A-Z folded to a-z; other bytes must match
 * exactly, and all of `lower` must fit in the `avail` bytes. */
static int starts_nocase(const uint8_t *p, size_t avail, const char *lower)
{
    for (size_t j = 0; lower[j] != 0; j++)
        if (j >= avail || ascii_lower(p[j]) != (uint8_t)lower[j])
            return 0;
    return 1;
}

/* HTML: text that carries one of the tags a browser-rendered page starts
 * with, within the text window. A text file that merely mentions "<b>" stays
 * text; one with "<script" or "<iframe" is treated as HTML because those are
 * what HTML signatures are written against. Every tag starts with '<', so
 * one memchr pass visits each '<' of the window and tests the tags there,
 * instead of searching the window once per tag. A tag must end inside the
 * window, as it had to when each was searched for on its own. */
static int looks_like_html(const uint8_t *buf, size_t len, size_t start)
{
    static const char *const tags[] = {
        "<!doctype html", "<html",  "<head",     "<body",   "<script", "<iframe",
        "<meta",          "<title", "<frameset", "<object", "<embed",  "<svg",
    };
    size_t n = KHX_MIN(len, (size_t)TEXT_WINDOW);
    size_t i = start;
    while (i < n) {
        const uint8_t *lt = memchr(buf + i, '<', n - i);
        if (lt == NULL)
            return 0;
        i = (size_t)(lt - buf);
        size_t avail = n - i;
        /* Every tag is longer than two bytes, so none fits after a '<'
         * that ends the window, and no '<' follows it. */
        if (avail < 2)
            return 0;
        /* The byte after '<' rules out all tags but one or two. */
        uint8_t c1 = ascii_lower(lt[1]);
        for (size_t t = 0; t < KHX_ARRAY_LEN(tags); t++)
            if ((uint8_t)tags[t][1] == c1 && starts_nocase(lt + 2, avail - 2, tags[t] + 2))
                return 1;
        i++;
    }
    return 0;
}

enum khx_ftype khx_filetype(const uint8_t *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return KHX_FT_BINARY;

    if (is_pe(buf, len))
        return KHX_FT_PE;
    if (has_prefix(buf, len, 0,
                   "\x7F"
                   "ELF",
                   4))
        return KHX_FT_ELF;

    if (has_prefix(buf, len, 0, "PK\x03\x04", 4) || has_prefix(buf, len, 0, "PK\x05\x06", 4) ||
        has_prefix(buf, len, 0, "PK\x07\x08", 4))
        return KHX_FT_ZIP;
    if (has_prefix(buf, len, 0, "7z\xBC\xAF\x27\x1C", 6))
        return KHX_FT_7Z;
    if (has_prefix(buf, len, 0, "Rar!\x1A\x07\x00", 7) ||
        has_prefix(buf, len, 0, "Rar!\x1A\x07\x01\x00", 8))
        return KHX_FT_RAR;
    if (has_prefix(buf, len, 0, "MSCF\0\0\0\0", 8))
        return KHX_FT_CAB;
    if (has_prefix(buf, len, 0, "\x1F\x8B\x08", 3))
        return KHX_FT_GZ;
    if (is_bzip2(buf, len))
        return KHX_FT_BZ2;
    if (has_prefix(buf, len, 0,
                   "\xFD"
                   "7zXZ\0",
                   6))
        return KHX_FT_XZ;
    if (is_zstd(buf, len))
        return KHX_FT_ZSTD;
    if (has_prefix(buf, len, 0, "!<arch>\n", 8))
        return KHX_FT_AR;
    if (is_cpio(buf, len))
        return KHX_FT_CPIO;
    if (is_lha(buf, len))
        return KHX_FT_LHA;
    if (is_tar(buf, len))
        return KHX_FT_TAR;
    if (has_prefix(buf, len, 32769, "CD001", 5))
        return KHX_FT_ISO;
    if (is_zip_eocd(buf, len))
        return KHX_FT_ZIP;
    if (is_mail(buf, len))
        return KHX_FT_MAIL;

    size_t start;
    if (looks_like_text(buf, len, &start))
        return looks_like_html(buf, len, start) ? KHX_FT_HTML : KHX_FT_TEXT;

    /* Last, because it has no real magic: only data that is neither text nor
     * anything above gets this guess. */
    if (is_lzma_alone(buf, len))
        return KHX_FT_LZMA;
    return KHX_FT_BINARY;
}

struct ftype_names {
    const char *name;   /* short name for messages */
    const char *cltype; /* ClamAV's CL_TYPE_* */
    const char *heur;   /* the <Type> in Heuristics.Encrypted.<Type> */
};

/* ClamAV has one name per cpio variant and tells old tar from POSIX tar; we
 * use the most common of each (the .ldb matcher is told about the others).
 * ar and LZMA-alone have no ClamAV type: ClamAV does not unpack them, so the
 * names below cannot collide with a real ClamAV signature. */
static const struct ftype_names names[KHX_FT_COUNT] = {
    [KHX_FT_BINARY] = {"binary", "CL_TYPE_BINARY_DATA", "Binary"},
    [KHX_FT_TEXT] = {"text", "CL_TYPE_TEXT_ASCII", "Text"},
    [KHX_FT_HTML] = {"html", "CL_TYPE_HTML", "HTML"},
    [KHX_FT_PE] = {"pe", "CL_TYPE_MSEXE", "Executable"},
    [KHX_FT_ELF] = {"elf", "CL_TYPE_ELF", "Executable"},
    [KHX_FT_ZIP] = {"zip", "CL_TYPE_ZIP", "Zip"},
    [KHX_FT_7Z] = {"7z", "CL_TYPE_7Z", "7Zip"},
    [KHX_FT_RAR] = {"rar", "CL_TYPE_RAR", "RAR"},
    [KHX_FT_TAR] = {"tar", "CL_TYPE_POSIX_TAR", "Tar"},
    [KHX_FT_GZ] = {"gzip", "CL_TYPE_GZ", "GZip"},
    [KHX_FT_BZ2] = {"bzip2", "CL_TYPE_BZ", "BZip2"},
    [KHX_FT_XZ] = {"xz", "CL_TYPE_XZ", "XZ"},
    [KHX_FT_CAB] = {"cab", "CL_TYPE_MSCAB", "CAB"},
    [KHX_FT_ISO] = {"iso", "CL_TYPE_ISO9660", "ISO9660"},
    [KHX_FT_CPIO] = {"cpio", "CL_TYPE_CPIO_NEWC", "CPIO"},
    [KHX_FT_LHA] = {"lha", "CL_TYPE_LHA_LZH", "LHA"},
    [KHX_FT_AR] = {"ar", "CL_TYPE_AR", "AR"},
    [KHX_FT_ZSTD] = {"zstd", "CL_TYPE_ZSTD", "Zstd"},
    [KHX_FT_LZMA] = {"lzma", "CL_TYPE_LZMA", "LZMA"},
    [KHX_FT_MAIL] = {"mail", "CL_TYPE_MAIL", "Mail"},
};

static const struct ftype_names *lookup(enum khx_ftype t)
{
    if ((int)t < 0 || t >= KHX_FT_COUNT)
        return &names[KHX_FT_BINARY];
    return &names[t];
}

const char *khx_ftype_cltype(enum khx_ftype t)
{
    return lookup(t)->cltype;
}

const char *khx_ftype_name(enum khx_ftype t)
{
    return lookup(t)->name;
}

int khx_ftype_is_container(enum khx_ftype t)
{
    return t >= KHX_FT_ZIP && t <= KHX_FT_MAIL;
}

void khx_walk_issue_name(int issue, enum khx_ftype t, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0)
        return;
    switch (issue) {
    case KHX_WALK_ENCRYPTED:
        snprintf(out, outlen, "Heuristics.Encrypted.%s", lookup(t)->heur);
        break;
    case KHX_WALK_CORRUPT:
        snprintf(out, outlen, "Heuristics.Broken.%s", lookup(t)->heur);
        break;
    case KHX_WALK_MAX_FILESIZE:
        snprintf(out, outlen, "Heuristics.Limits.Exceeded.MaxFileSize");
        break;
    case KHX_WALK_MAX_SCANSIZE:
        snprintf(out, outlen, "Heuristics.Limits.Exceeded.MaxScanSize");
        break;
    case KHX_WALK_MAX_FILES:
        snprintf(out, outlen, "Heuristics.Limits.Exceeded.MaxFiles");
        break;
    case KHX_WALK_MAX_RATIO:
        snprintf(out, outlen, "Heuristics.Limits.Exceeded.MaxCompressionRatio");
        break;
    case KHX_WALK_MAX_TIME:
        snprintf(out, outlen, "Heuristics.Limits.Exceeded.MaxScanTime");
        break;
    default:
        snprintf(out, outlen, "Heuristics.Unknown.%s", lookup(t)->heur);
        break;
    }
}
