/*
 * Text and HTML normalisation: the views ClamAV's target types 7 (ASCII) and
 * 3 (HTML) are matched against.
 *
 * Signatures for those targets are written against what ClamAV's normalisers
 * produce, not against the raw file, so a byte-for-byte different view would
 * make them miss. The rules below were taken from ClamAV's documented
 * behaviour and checked against `sigtool --ascii-normalise` and
 * `sigtool --html-normalise` (its nocomment.html output) on hand-made inputs;
 * docs/internals/container.md lists them and the places where we differ.
 *
 * Both functions write at most `len` bytes: the output never grows past the
 * input. Where ClamAV's HTML view would be longer than the input consumed so
 * far (a character reference re-encoded as "&#xNNNN;"), we keep the original
 * text instead, so the bound holds for every input.
 */
#include "container.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static int is_alnum(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

size_t khx_normalize_ascii(const uint8_t *in, size_t len, uint8_t *out)
{
    if (in == NULL || out == NULL)
        return 0;
    /* As ClamAV's text normaliser: white space (\t \n \v \f \r and space)
     * folds to one space, A-Z becomes a-z, the rest of 0x21..0x7F (DEL
     * included, as ClamAV does) is copied, and everything else (other
     * control bytes and every byte above 0x7F, so also UTF-8 sequences) is
     * dropped without ending a white-space run.
     * One output byte per input byte at most, so out == in works too. */
    size_t o = 0;
    int space_written = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
        if (is_space(c)) {
            if (!space_written)
                out[o++] = ' ';
            space_written = 1;
        } else if (c >= 0x21 && c <= 0x7F) {
            out[o++] = lower(c);
            space_written = 0;
        }
    }
    return o;
}

/* ------------------------------------------------------------------------ */
/* HTML                                                                      */
/* ------------------------------------------------------------------------ */

/* The named character references ClamAV decodes: the 252 of HTML 4 plus
 * XML's &apos;. Names are case-sensitive. Sorted by byte value for bsearch. */
struct entity {
    const char *name;
    uint32_t cp;
};
static const struct entity entities[] = {
    {"AElig", 198},    {"Aacute", 193},  {"Acirc", 194},   {"Agrave", 192},  {"Alpha", 913},
    {"Aring", 197},    {"Atilde", 195},  {"Auml", 196},    {"Beta", 914},    {"Ccedil", 199},
    {"Chi", 935},      {"Dagger", 8225}, {"Delta", 916},   {"ETH", 208},     {"Eacute", 201},
    {"Ecirc", 202},    {"Egrave", 200},  {"Epsilon", 917}, {"Eta", 919},     {"Euml", 203},
    {"Gamma", 915},    {"Iacute", 205},  {"Icirc", 206},   {"Igrave", 204},  {"Iota", 921},
    {"Iuml", 207},     {"Kappa", 922},   {"Lambda", 923},  {"Mu", 924},      {"Ntilde", 209},
    {"Nu", 925},       {"OElig", 338},   {"Oacute", 211},  {"Ocirc", 212},   {"Ograve", 210},
    {"Omega", 937},    {"Omicron", 927}, {"Oslash", 216},  {"Otilde", 213},  {"Ouml", 214},
    {"Phi", 934},      {"Pi", 928},      {"Prime", 8243},  {"Psi", 936},     {"Rho", 929},
    {"Scaron", 352},   {"Sigma", 931},   {"THORN", 222},   {"Tau", 932},     {"Theta", 920},
    {"Uacute", 218},   {"Ucirc", 219},   {"Ugrave", 217},  {"Upsilon", 933}, {"Uuml", 220},
    {"Xi", 926},       {"Yacute", 221},  {"Yuml", 376},    {"Zeta", 918},    {"aacute", 225},
    {"acirc", 226},    {"acute", 180},   {"aelig", 230},   {"agrave", 224},  {"alefsym", 8501},
    {"alpha", 945},    {"amp", 38},      {"and", 8743},    {"ang", 8736},    {"apos", 39},
    {"aring", 229},    {"asymp", 8776},  {"atilde", 227},  {"auml", 228},    {"bdquo", 8222},
    {"beta", 946},     {"brvbar", 166},  {"bull", 8226},   {"cap", 8745},    {"ccedil", 231},
    {"cedil", 184},    {"cent", 162},    {"chi", 967},     {"circ", 710},    {"clubs", 9827},
    {"cong", 8773},    {"copy", 169},    {"crarr", 8629},  {"cup", 8746},    {"curren", 164},
    {"dArr", 8659},    {"dagger", 8224}, {"darr", 8595},   {"deg", 176},     {"delta", 948},
    {"diams", 9830},   {"divide", 247},  {"eacute", 233},  {"ecirc", 234},   {"egrave", 232},
    {"empty", 8709},   {"emsp", 8195},   {"ensp", 8194},   {"epsilon", 949}, {"equiv", 8801},
    {"eta", 951},      {"eth", 240},     {"euml", 235},    {"euro", 8364},   {"exist", 8707},
    {"fnof", 402},     {"forall", 8704}, {"frac12", 189},  {"frac14", 188},  {"frac34", 190},
    {"frasl", 8260},   {"gamma", 947},   {"ge", 8805},     {"gt", 62},       {"hArr", 8660},
    {"harr", 8596},    {"hearts", 9829}, {"hellip", 8230}, {"iacute", 237},  {"icirc", 238},
    {"iexcl", 161},    {"igrave", 236},  {"image", 8465},  {"infin", 8734},  {"int", 8747},
    {"iota", 953},     {"iquest", 191},  {"isin", 8712},   {"iuml", 239},    {"kappa", 954},
    {"lArr", 8656},    {"lambda", 955},  {"lang", 9001},   {"laquo", 171},   {"larr", 8592},
    {"lceil", 8968},   {"ldquo", 8220},  {"le", 8804},     {"lfloor", 8970}, {"lowast", 8727},
    {"loz", 9674},     {"lrm", 8206},    {"lsaquo", 8249}, {"lsquo", 8216},  {"lt", 60},
    {"macr", 175},     {"mdash", 8212},  {"micro", 181},   {"middot", 183},  {"minus", 8722},
    {"mu", 956},       {"nabla", 8711},  {"nbsp", 160},    {"ndash", 8211},  {"ne", 8800},
    {"ni", 8715},      {"not", 172},     {"notin", 8713},  {"nsub", 8836},   {"ntilde", 241},
    {"nu", 957},       {"oacute", 243},  {"ocirc", 244},   {"oelig", 339},   {"ograve", 242},
    {"oline", 8254},   {"omega", 969},   {"omicron", 959}, {"oplus", 8853},  {"or", 8744},
    {"ordf", 170},     {"ordm", 186},    {"oslash", 248},  {"otilde", 245},  {"otimes", 8855},
    {"ouml", 246},     {"para", 182},    {"part", 8706},   {"permil", 8240}, {"perp", 8869},
    {"phi", 966},      {"pi", 960},      {"piv", 982},     {"plusmn", 177},  {"pound", 163},
    {"prime", 8242},   {"prod", 8719},   {"prop", 8733},   {"psi", 968},     {"quot", 34},
    {"rArr", 8658},    {"radic", 8730},  {"rang", 9002},   {"raquo", 187},   {"rarr", 8594},
    {"rceil", 8969},   {"rdquo", 8221},  {"real", 8476},   {"reg", 174},     {"rfloor", 8971},
    {"rho", 961},      {"rlm", 8207},    {"rsaquo", 8250}, {"rsquo", 8217},  {"sbquo", 8218},
    {"scaron", 353},   {"sdot", 8901},   {"sect", 167},    {"shy", 173},     {"sigma", 963},
    {"sigmaf", 962},   {"sim", 8764},    {"spades", 9824}, {"sub", 8834},    {"sube", 8838},
    {"sum", 8721},     {"sup", 8835},    {"sup1", 185},    {"sup2", 178},    {"sup3", 179},
    {"supe", 8839},    {"szlig", 223},   {"tau", 964},     {"there4", 8756}, {"theta", 952},
    {"thetasym", 977}, {"thinsp", 8201}, {"thorn", 254},   {"tilde", 732},   {"times", 215},
    {"trade", 8482},   {"uArr", 8657},   {"uacute", 250},  {"uarr", 8593},   {"ucirc", 251},
    {"ugrave", 249},   {"uml", 168},     {"upsih", 978},   {"upsilon", 965}, {"uuml", 252},
    {"weierp", 8472},  {"xi", 958},      {"yacute", 253},  {"yen", 165},     {"yuml", 255},
    {"zeta", 950},     {"zwj", 8205},    {"zwnj", 8204},
};

/* Longest name in the table ("thetasym"). */
#define ENTITY_NAME_MAX 8

static int entity_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const struct entity *)elem)->name);
}

/* The output cursor. `cap` is the caller's buffer size (the input length);
 * put() refuses to write past it, which no input should ever need, but it
 * keeps a logic error from becoming an overflow. */
struct html_out {
    uint8_t *out;
    size_t o;
    size_t cap;
};

static void put(struct html_out *w, uint8_t c)
{
    if (w->o < w->cap)
        w->out[w->o++] = c;
}

/* Writes in[from..to) lowercased: the fallback for references we do not
 * rewrite. One byte out per byte in, so it always fits. */
static void put_lowered(struct html_out *w, const uint8_t *in, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++)
        put(w, lower(in[k]));
}

/* Writes the normalised form of a decoded character reference that spans
 * in[start..end). ClamAV writes code points below 0xFF as that single byte
 * (lowercased if ASCII) and larger ones as "&#xNNNN;" (at least four hex
 * digits). The long form is used only if it fits in the input consumed so far
 * (`end` bytes); otherwise the reference stays as written. */
static void put_codepoint(struct html_out *w, uint32_t cp, const uint8_t *in, size_t start,
                          size_t end)
{
    if (cp < 0xFF) {
        put(w, lower((uint8_t)cp));
        return;
    }
    char tmp[16];
    int n = snprintf(tmp, sizeof(tmp), "&#x%04x;", (unsigned)cp);
    if (n > 0 && (size_t)n < sizeof(tmp) && w->o + (size_t)n <= end) {
        for (int k = 0; k < n; k++)
            put(w, (uint8_t)tmp[k]);
    } else {
        put_lowered(w, in, start, end);
    }
}

/* Decodes the character reference that starts with the '&' at in[i], writes
 * it, and returns how many input bytes it used; returns 0 if there is no
 * reference there (the caller then writes '&' as an ordinary byte).
 *
 * Numeric references (&#65; &#x41;) need at least one digit; the ';' is
 * optional, as browsers allow. Named references need the ';' and a name from
 * the table. Values above U+10FFFF are kept as written. */
static size_t put_reference(const uint8_t *in, size_t len, size_t i, struct html_out *w)
{
    size_t j = i + 1;
    if (j < len && in[j] == '#') {
        j++;
        int hex = 0;
        if (j < len && (in[j] == 'x' || in[j] == 'X')) {
            hex = 1;
            j++;
        }
        uint32_t cp = 0;
        int digits = 0, overflow = 0;
        while (j < len) {
            int d = hex ? khx_hexval(in[j]) : (in[j] >= '0' && in[j] <= '9' ? in[j] - '0' : -1);
            if (d < 0)
                break;
            if (!overflow) {
                cp = cp * (hex ? 16u : 10u) + (uint32_t)d;
                if (cp > 0x10FFFF)
                    overflow = 1;
            }
            digits++;
            j++;
        }
        if (digits == 0)
            return 0;
        if (j < len && in[j] == ';')
            j++;
        if (overflow)
            put_lowered(w, in, i, j);
        else
            put_codepoint(w, cp, in, i, j);
        return j - i;
    }

    char name[ENTITY_NAME_MAX + 1];
    size_t n = 0;
    while (j < len && is_alnum(in[j]) && n < ENTITY_NAME_MAX)
        name[n++] = (char)in[j++];
    if (n == 0 || j >= len || in[j] != ';')
        return 0;
    name[n] = '\0';
    const struct entity *e =
        bsearch(name, entities, KHX_ARRAY_LEN(entities), sizeof(entities[0]), entity_cmp);
    if (e == NULL)
        return 0;
    j++;
    put_codepoint(w, e->cp, in, i, j);
    return j - i;
}

/* A '<!' construct (comment, doctype, CDATA) runs to the next '>'. That is
 * ClamAV's rule, not HTML's: "<!-- a > b -->" ends at the first '>' and
 * " b -->" stays visible, so signatures written against ClamAV's view of such
 * a page still match ours. */
static size_t skip_declaration(const uint8_t *in, size_t len, size_t i)
{
    const uint8_t *gt = memchr(in + i, '>', len - i);
    return gt ? (size_t)(gt - in) + 1 : len;
}

/* The elements whose content ClamAV treats as script: white space dropped,
 * single quotes written as double quotes, no tags inside. */
static const char *raw_element(const uint8_t *in, size_t len, size_t j)
{
    static const char *const raw[] = {"script", "style"};
    for (size_t k = 0; k < KHX_ARRAY_LEN(raw); k++) {
        size_t n = strlen(raw[k]);
        if (len - j < n)
            continue;
        size_t m = 0;
        while (m < n && lower(in[j + m]) == (uint8_t)raw[k][m])
            m++;
        if (m == n && (j + n == len || !is_alnum(in[j + n])))
            return raw[k];
    }
    return NULL;
}

/* Writes a quoted attribute value starting at the quote in[j]: always with
 * double quotes, white space runs folded to one space, references decoded,
 * lowercased. Returns the index after the closing quote (or len). */
static size_t put_quoted(const uint8_t *in, size_t len, size_t j, struct html_out *w)
{
    uint8_t q = in[j++];
    int space = 0;
    put(w, '"');
    while (j < len && in[j] != q) {
        uint8_t c = in[j];
        if (is_space(c)) {
            space = 1;
            j++;
            continue;
        }
        if (space)
            put(w, ' ');
        space = 0;
        size_t used = c == '&' ? put_reference(in, len, j, w) : 0;
        if (used > 0) {
            j += used;
            continue;
        }
        put(w, lower(c));
        j++;
    }
    if (space)
        put(w, ' ');
    if (j < len) {
        put(w, '"');
        j++;
    }
    return j;
}

/* Writes the tag that starts with the '<' at in[i] and returns the index
 * after its '>' (or len if the input ends inside it). Inside a tag: the name
 * and attributes are lowercased, white space after '<', before '>' and around
 * '=' is dropped, other runs become one space, and quoted values are
 * rewritten by put_quoted. *raw is set when the tag opens script or style. */
static size_t put_tag(const uint8_t *in, size_t len, size_t i, struct html_out *w, const char **raw)
{
    size_t j = i + 1;
    put(w, '<');
    while (j < len && is_space(in[j]))
        j++;
    int closing = j < len && in[j] == '/';
    const char *name = closing ? NULL : raw_element(in, len, j);
    int space = 0, after_eq = 0;
    while (j < len) {
        uint8_t c = in[j];
        if (c == '>') {
            put(w, '>');
            *raw = name;
            return j + 1;
        }
        if (is_space(c)) {
            if (!after_eq)
                space = 1;
            j++;
            continue;
        }
        if (c == '=') {
            space = 0;
            after_eq = 1;
            put(w, '=');
            j++;
            continue;
        }
        /* A pending space is always backed by a white-space byte we dropped,
         * except the one ClamAV inserts after a closing quote; that one is
         * written only if earlier folding left room for it. */
        if (space && w->o < j)
            put(w, ' ');
        space = 0;
        if ((c == '"' || c == '\'') && after_eq) {
            after_eq = 0;
            j = put_quoted(in, len, j, w);
            if (j < len && !is_space(in[j]) && in[j] != '>')
                space = 1;
            continue;
        }
        after_eq = 0;
        size_t used = c == '&' ? put_reference(in, len, j, w) : 0;
        if (used > 0) {
            j += used;
            continue;
        }
        put(w, lower(c));
        j++;
    }
    return j;
}

/* True if in[i] starts the end tag of the raw element `raw` ("</script"). */
static int ends_raw(const uint8_t *in, size_t len, size_t i, const char *raw)
{
    size_t n = strlen(raw);
    if (len - i < n + 2 || in[i] != '<' || in[i + 1] != '/')
        return 0;
    for (size_t k = 0; k < n; k++)
        if (lower(in[i + 2 + k]) != (uint8_t)raw[k])
            return 0;
    return 1;
}

size_t khx_normalize_html(const uint8_t *in, size_t len, uint8_t *out)
{
    if (in == NULL || out == NULL)
        return 0;
    struct html_out w = {out, 0, len};
    const char *raw = NULL; /* inside script or style */
    int skip_ws = 1;        /* at the start, and after a tag or comment */
    int space = 0;          /* a white-space run waits to be written */
    size_t i = 0;
    while (i < len) {
        uint8_t c = in[i];
        if (raw != NULL && !ends_raw(in, len, i, raw)) {
            size_t used = c == '&' ? put_reference(in, len, i, &w) : 0;
            if (used > 0) {
                i += used;
                continue;
            }
            if (c == '\'')
                put(&w, '"');
            else if (!is_space(c))
                put(&w, lower(c));
            i++;
            continue;
        }
        raw = NULL;
        if (c == '<' && i + 1 < len && in[i + 1] == '!') {
            i = skip_declaration(in, len, i);
            skip_ws = 1;
            continue;
        }
        if (is_space(c)) {
            if (!skip_ws)
                space = 1;
            i++;
            continue;
        }
        /* The space stands for at least one dropped white-space byte, so
         * w.o < i holds here; the test only guards the bound. */
        if (space && w.o < i)
            put(&w, ' ');
        space = 0;
        if (c == '<') {
            i = put_tag(in, len, i, &w, &raw);
            skip_ws = 1;
            continue;
        }
        skip_ws = 0;
        size_t used = c == '&' ? put_reference(in, len, i, &w) : 0;
        if (used > 0) {
            i += used;
            continue;
        }
        put(&w, lower(c));
        i++;
    }
    /* A trailing white-space run is dropped, as ClamAV does. */
    return w.o;
}
