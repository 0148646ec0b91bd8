/*
 * Tests for the TLS ClientHello parser and the QUIC Initial decryptor
 * (sensor/app_tls.c, sensor/app_quic.c): hand-built ClientHellos whose JA3
 * and JA4 were worked out independently of the code (GREASE, no SNI, no
 * ALPN, no extensions, a hello split over records and segments), the
 * RFC 9001 and RFC 9369 client Initial test vectors, Initials sealed here
 * with CRYPTO frames out of order, with gaps and with conflicts, and then
 * real captures: the suricata-verify ja3/ja4/quic tests against their
 * expected fingerprints, and every capture in ../shared/data/net against
 * tshark's SNI, JA3 and JA3 string.
 *
 * The capture reader is local to this file (libpcap for the file formats,
 * a minimal Ethernet/VLAN/PPPoE/SLL/IPv4/IPv6/TCP/UDP walk, and in-order
 * joining of a client's first TCP bytes) so that these tests do not depend
 * on the packet decoder they serve.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pcap/pcap.h>

#include "decode.h"
#include "pcapgen.h"
#include "khx.h"
#include "testutil.h"

/* ---- building ClientHellos ---- */

struct hb {
    uint8_t b[8192];
    size_t n;
};

static void put8(struct hb *h, unsigned v)
{
    assert_true(h->n < sizeof(h->b));
    h->b[h->n++] = (uint8_t)v;
}

static void put16(struct hb *h, unsigned v)
{
    put8(h, v >> 8);
    put8(h, v & 0xff);
}

static void putn(struct hb *h, const void *p, size_t n)
{
    if (n == 0)
        return;
    assert_true(h->n + n <= sizeof(h->b));
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

/* Length prefixes are written as placeholders and filled in at close. */
static size_t open_len(struct hb *h, int bytes)
{
    size_t at = h->n;
    for (int i = 0; i < bytes; i++)
        put8(h, 0);
    return at;
}

static void close_len(struct hb *h, size_t at, int bytes)
{
    size_t len = h->n - at - (size_t)bytes;
    for (int i = bytes - 1; i >= 0; i--, len >>= 8)
        h->b[at + (size_t)i] = (uint8_t)(len & 0xff);
}

static void ext_u16_list(struct hb *h, unsigned type, int prefix, const unsigned *v, size_t n)
{
    put16(h, type);
    size_t e = open_len(h, 2), l = open_len(h, prefix);
    for (size_t i = 0; i < n; i++)
        put16(h, v[i]);
    close_len(h, l, prefix);
    close_len(h, e, 2);
}

static void ext_sni(struct hb *h, const char *name)
{
    put16(h, 0x0000);
    size_t e = open_len(h, 2), l = open_len(h, 2);
    put8(h, 0);
    put16(h, (unsigned)strlen(name));
    putn(h, name, strlen(name));
    close_len(h, l, 2);
    close_len(h, e, 2);
}

static void ext_alpn(struct hb *h, const char *const *protos, const size_t *lens, size_t n)
{
    put16(h, 0x0010);
    size_t e = open_len(h, 2), l = open_len(h, 2);
    for (size_t i = 0; i < n; i++) {
        put8(h, (unsigned)lens[i]);
        putn(h, protos[i], lens[i]);
    }
    close_len(h, l, 2);
    close_len(h, e, 2);
}

static void ext_raw(struct hb *h, unsigned type, const void *p, size_t n)
{
    put16(h, type);
    put16(h, (unsigned)n);
    putn(h, p, n);
}

/* Starts a handshake message (type 1) with version, random, session id,
 * ciphers and the null compression method; returns the offset of its
 * length for hello_end. */
static size_t hello_begin(struct hb *h, unsigned version, const unsigned *ciphers, size_t nc,
                          size_t sid_len)
{
    uint8_t random[32], sid[32];
    memset(random, 0x11, sizeof(random));
    memset(sid, 0x22, sizeof(sid));
    put8(h, 1);
    size_t at = open_len(h, 3);
    put16(h, version);
    putn(h, random, 32);
    put8(h, (unsigned)sid_len);
    putn(h, sid, sid_len);
    put16(h, (unsigned)(2 * nc));
    for (size_t i = 0; i < nc; i++)
        put16(h, ciphers[i]);
    put8(h, 1);
    put8(h, 0);
    return at;
}

/* Wraps handshake bytes in TLS records of at most `max_record` bytes each. */
static void wrap_records(const struct hb *hs, size_t max_record, struct hb *out)
{
    out->n = 0;
    for (size_t off = 0; off < hs->n;) {
        size_t k = hs->n - off < max_record ? hs->n - off : max_record;
        put8(out, 22);
        put16(out, 0x0301);
        put16(out, (unsigned)k);
        putn(out, hs->b + off, k);
        off += k;
    }
}

/* Hello A: a TLS 1.3 browser-like hello with GREASE in the ciphers, the
 * extensions, the groups and the versions, SNI in mixed case, ALPN h2. */
static void hello_a(struct hb *h)
{
    static const unsigned ciphers[] = {0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f};
    static const unsigned groups[] = {0x3a3a, 0x001d, 0x0017, 0x0018};
    static const unsigned sigalgs[] = {0x0403, 0x0804, 0x0401};
    static const unsigned versions[] = {0x5a5a, 0x0304, 0x0303};
    static const char *const alpn[] = {"h2", "http/1.1"};
    static const size_t alpn_len[] = {2, 8};
    static const uint8_t formats[] = {1, 0}, reneg[] = {0}, keyshare[] = {0, 0}, one[] = {0};

    h->n = 0;
    size_t at = hello_begin(h, 0x0303, ciphers, 6, 32);
    size_t ext = open_len(h, 2);
    ext_raw(h, 0x0a0a, NULL, 0);
    ext_sni(h, "Example.COM");
    ext_raw(h, 0x0017, NULL, 0);
    ext_raw(h, 0xff01, reneg, 1);
    ext_u16_list(h, 0x000a, 2, groups, 4);
    ext_raw(h, 0x000b, formats, 2);
    ext_alpn(h, alpn, alpn_len, 2);
    ext_u16_list(h, 0x000d, 2, sigalgs, 3);
    ext_u16_list(h, 0x002b, 1, versions, 3);
    ext_raw(h, 0x0033, keyshare, 2);
    ext_raw(h, 0x1a1a, one, 1);
    close_len(h, ext, 2);
    close_len(h, at, 3);
}

/* Values worked out by hand from the lists above (JA3: decimal, GREASE
 * dropped; JA4: FoxIO's definition), hashed with Python's hashlib. */
#define HELLO_A_JA3S "771,4865-4866-4867-49195-49199,0-23-65281-10-11-16-13-43-51,29-23-24,0"
#define HELLO_A_JA3  "0625ddd21fa6f022ea716c1dc0f5d661"
#define HELLO_A_JA4  "t13d0509h2_e133e205ac38_f5e0aee4b195"

static void tls_hello_with_grease_gives_sni_alpn_ja3_ja4(void **state)
{
    (void)state;
    struct hb hs, rec;
    struct sen_client_hello ch;
    hello_a(&hs);
    wrap_records(&hs, 16384, &rec);

    assert_int_equal(sen_tls_client_hello(rec.b, rec.n, 1, 0, &ch), 1);
    assert_string_equal(ch.sni, "example.com");
    assert_string_equal(ch.alpn, "h2");
    assert_string_equal(ch.ja3_string, HELLO_A_JA3S);
    assert_string_equal(ch.ja3, HELLO_A_JA3);
    assert_string_equal(ch.ja4, HELLO_A_JA4);

    /* The same message without a record header (as QUIC carries it) and
     * with the QUIC flag: only JA4's first letter changes. */
    assert_int_equal(sen_tls_client_hello(hs.b, hs.n, 0, 1, &ch), 1);
    assert_string_equal(ch.ja3, HELLO_A_JA3);
    assert_string_equal(ch.ja4, "q13d0509h2_e133e205ac38_f5e0aee4b195");
}

static void tls_hello_without_sni_alpn_or_extensions(void **state)
{
    (void)state;
    static const unsigned ciphers_b[] = {0x002f, 0x0035}, groups[] = {0x0017};
    static const unsigned sigalgs[] = {0x0401, 0x0201}, cipher_c[] = {0x002f};
    static const uint8_t formats[] = {3, 0, 1, 2};
    struct hb hs, rec;
    struct sen_client_hello ch;

    /* Hello B: TLS 1.2, no session id, no SNI, no ALPN. */
    hs.n = 0;
    size_t at = hello_begin(&hs, 0x0303, ciphers_b, 2, 0);
    size_t ext = open_len(&hs, 2);
    ext_u16_list(&hs, 0x000a, 2, groups, 1);
    ext_raw(&hs, 0x000b, formats, 4);
    ext_u16_list(&hs, 0x000d, 2, sigalgs, 2);
    close_len(&hs, ext, 2);
    close_len(&hs, at, 3);
    wrap_records(&hs, 16384, &rec);
    assert_int_equal(sen_tls_client_hello(rec.b, rec.n, 1, 0, &ch), 1);
    assert_string_equal(ch.sni, "");
    assert_string_equal(ch.alpn, "");
    assert_string_equal(ch.ja3_string, "771,47-53,10-11-13,23,0-1-2");
    assert_string_equal(ch.ja3, "f322350ba5ec56b5471cdcab7ea3db82");
    assert_string_equal(ch.ja4, "t12i020300_f54dd463d39b_6ad1371b2b82");

    /* Hello C: TLS 1.0, one cipher, no extensions block at all. */
    hs.n = 0;
    at = hello_begin(&hs, 0x0301, cipher_c, 1, 0);
    close_len(&hs, at, 3);
    wrap_records(&hs, 16384, &rec);
    assert_int_equal(sen_tls_client_hello(rec.b, rec.n, 1, 0, &ch), 1);
    assert_string_equal(ch.ja3_string, "769,47,,,");
    assert_string_equal(ch.ja3, "b02be259814e870a469a20ce9b2a7900");
    assert_string_equal(ch.ja4, "t10i010000_ba72b8082249_000000000000");
}

static void tls_alpn_that_is_not_alphanumeric_uses_hex_digits(void **state)
{
    (void)state;
    static const unsigned ciphers[] = {0x1301};
    static const char bin[] = {(char)0xab, (char)0xcd};
    const char *const protos[] = {bin};
    const size_t lens[] = {2};
    struct hb hs;
    struct sen_client_hello ch;

    hs.n = 0;
    size_t at = hello_begin(&hs, 0x0303, ciphers, 1, 0);
    size_t ext = open_len(&hs, 2);
    ext_alpn(&hs, protos, lens, 1);
    close_len(&hs, ext, 2);
    close_len(&hs, at, 3);
    assert_int_equal(sen_tls_client_hello(hs.b, hs.n, 0, 0, &ch), 1);
    assert_string_equal(ch.alpn, ""); /* not printable: not copied */
    assert_memory_equal(ch.ja4, "t12i0101ad_", 11);
}

static void tls_split_hello_needs_more_bytes_until_complete(void **state)
{
    (void)state;
    struct hb hs, rec;
    struct sen_client_hello ch;
    hello_a(&hs);

    /* One record, cut anywhere: always "need more". */
    wrap_records(&hs, 16384, &rec);
    for (size_t n = 0; n < rec.n; n++)
        assert_int_equal(sen_tls_client_hello(rec.b, n, 1, 0, &ch), 0);
    for (size_t n = 0; n < hs.n; n++)
        assert_int_equal(sen_tls_client_hello(hs.b, n, 0, 0, &ch), 0);

    /* The message spread over records of 3 and 100 bytes (the handshake
     * header itself split): the same fingerprints once all are there. */
    size_t sizes[] = {3, 100};
    for (size_t s = 0; s < 2; s++) {
        wrap_records(&hs, sizes[s], &rec);
        for (size_t n = 0; n < rec.n; n++)
            assert_int_equal(sen_tls_client_hello(rec.b, n, 1, 0, &ch), 0);
        assert_int_equal(sen_tls_client_hello(rec.b, rec.n, 1, 0, &ch), 1);
        assert_string_equal(ch.ja4, HELLO_A_JA4);
        assert_string_equal(ch.sni, "example.com");
    }
}

static void tls_other_messages_and_bad_lengths_are_refused(void **state)
{
    (void)state;
    struct hb hs, rec;
    struct sen_client_hello ch;
    static const uint8_t appdata[] = {23, 3, 3, 0, 5, 1, 2, 3, 4, 5};
    static const uint8_t server_hello[] = {22, 3, 3, 0, 6, 2, 0, 0, 2, 3, 3};
    static const uint8_t huge[] = {22, 3, 1, 0, 9, 1, 0x10, 0, 0, 3, 3};
    static const uint8_t bad_version[] = {22, 9, 1, 0, 9};
    static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x03, 0x01};

    assert_int_equal(sen_tls_client_hello(appdata, sizeof(appdata), 1, 0, &ch), -1);
    assert_int_equal(sen_tls_client_hello(server_hello, sizeof(server_hello), 1, 0, &ch), -1);
    assert_int_equal(sen_tls_client_hello(huge, sizeof(huge), 1, 0, &ch), -1);
    assert_int_equal(sen_tls_client_hello(bad_version, sizeof(bad_version), 1, 0, &ch), -1);
    assert_int_equal(sen_tls_client_hello(sslv2, sizeof(sslv2), 1, 0, &ch), -1);

    /* An extension claiming more bytes than its block holds. */
    hello_a(&hs);
    size_t ext0 = 4 + 2 + 32 + 1 + 32 + 2 + 12 + 2 + 2; /* first extension's type */
    assert_int_equal(hs.b[ext0], 0x0a);
    hs.b[ext0 + 2] = 0x7f;
    wrap_records(&hs, 16384, &rec);
    assert_int_equal(sen_tls_client_hello(rec.b, rec.n, 1, 0, &ch), -1);

    /* A record that follows with another content type in the middle of a
     * message split over records. */
    hello_a(&hs);
    wrap_records(&hs, 100, &rec);
    rec.b[105] = 23;
    assert_int_equal(sen_tls_client_hello(rec.b, rec.n, 1, 0, &ch), -1);
}

/* ---- QUIC ---- */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    assert_int_equal(khx_hex_decode(hex, n, out), 0);
    return n;
}

/* RFC 9001 appendix A.2: the client Initial, 1200 bytes, DCID
 * 0x8394c8f03e515708, packet number 2, a ClientHello for example.com. */
static const char rfc9001_client_initial[] =
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934";

/* RFC 9369 appendix A.2: the same ClientHello in a QUIC version 2 Initial. */
static const char rfc9369_client_initial[] =
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc";

/* The RFC's ClientHello, worked out by hand from its bytes: 2 ciphers,
 * 11 extensions, ALPN "alpn", no point formats. */
#define RFC_HELLO_JA4 "q13d0211an_62ed6f6ca7ad_4d634acda6c0"
#define RFC_HELLO_JA3 "41bc9ae914d6cb3bd0bd0a5453ab7d7f"

static void quic_rfc9001_and_rfc9369_client_initials_decrypt(void **state)
{
    (void)state;
    uint8_t pkt[1200];
    struct sen_client_hello ch;
    const char *vectors[] = {rfc9001_client_initial, rfc9369_client_initial};

    for (size_t v = 0; v < 2; v++) {
        size_t n = unhex(vectors[v], pkt, sizeof(pkt));
        assert_int_equal(n, 1200);
        assert_int_equal(sen_quic_initial(pkt, n, &ch), 1);
        assert_string_equal(ch.sni, "example.com");
        assert_string_equal(ch.alpn, "alpn");
        assert_string_equal(ch.ja4, RFC_HELLO_JA4);
        assert_string_equal(ch.ja3, RFC_HELLO_JA3);
        assert_string_equal(ch.ja3_string,
                            "771,4865-4866,0-65281-10-16-5-51-43-13-45-28-57,29-23-24,");

        /* Cut short: the Length field says more than is there. */
        assert_int_equal(sen_quic_initial(pkt, 600, &ch), -1);
        /* Another DCID gives other keys: nothing readable, not malformed. */
        pkt[6] ^= 0x01;
        assert_int_equal(sen_quic_initial(pkt, n, &ch), 0);
        pkt[6] ^= 0x01;
        /* An unknown version and a short header are not Initials. */
        pkt[4] ^= 0x40;
        assert_int_equal(sen_quic_initial(pkt, n, &ch), 0);
        pkt[4] ^= 0x40;
        pkt[0] &= 0x7f;
        assert_int_equal(sen_quic_initial(pkt, n, &ch), 0);
    }
}

/* Seals a version-1 client Initial around `frames` the way a client does
 * (RFC 9001 section 5), independently of app_quic.c, so that frame layouts
 * the captures do not have can be tested. */
static void expand_label(const uint8_t *secret, const char *label, uint8_t *out, size_t n)
{
    uint8_t info[64], t[32];
    size_t k = 0, ll = strlen(label);
    unsigned tl = 0;
    info[k++] = 0;
    info[k++] = (uint8_t)n;
    info[k++] = (uint8_t)(6 + ll);
    memcpy(info + k, "tls13 ", 6);
    k += 6;
    memcpy(info + k, label, ll);
    k += ll;
    info[k++] = 0;
    info[k++] = 1;
    assert_non_null(HMAC(EVP_sha256(), secret, 32, info, k, t, &tl));
    memcpy(out, t, n);
}

/* Seals with DCID 1..7,dcid_last and packet number pn. */
static size_t seal_initial_pn(const uint8_t *frames, size_t flen, unsigned pn, uint8_t dcid_last,
                              uint8_t *out, size_t cap)
{
    static const uint8_t salt[] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                   0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
    uint8_t dcid[] = {1, 2, 3, 4, 5, 6, 7, dcid_last};
    uint8_t initial[32], client[32], key[16], iv[12], hp[16], mask[16];
    unsigned il = 0;
    int n = 0;
    size_t len = 0, payload = flen < 1162 ? 1162 : flen; /* padded like a client does */

    assert_true(payload + 16 + 64 <= cap);
    assert_non_null(HMAC(EVP_sha256(), salt, sizeof(salt), dcid, sizeof(dcid), initial, &il));
    expand_label(initial, "client in", client, 32);
    expand_label(client, "quic key", key, 16);
    expand_label(client, "quic iv", iv, 12);
    expand_label(client, "quic hp", hp, 16);

    out[len++] = 0xc1; /* long header, Initial, 2-byte packet number */
    out[len++] = 0, out[len++] = 0, out[len++] = 0, out[len++] = 1;
    out[len++] = sizeof(dcid);
    memcpy(out + len, dcid, sizeof(dcid));
    len += sizeof(dcid);
    out[len++] = 0; /* SCID */
    out[len++] = 0; /* token */
    size_t length = 2 + payload + 16;
    out[len++] = (uint8_t)(0x40 | (length >> 8));
    out[len++] = (uint8_t)(length & 0xff);
    size_t pn_off = len;
    out[len++] = (uint8_t)(pn >> 8), out[len++] = (uint8_t)pn;
    uint8_t nonce[12];
    memcpy(nonce, iv, 12);
    nonce[10] ^= (uint8_t)(pn >> 8);
    nonce[11] ^= (uint8_t)pn;
    uint8_t *pt = calloc(1, payload);
    assert_non_null(pt);
    memcpy(pt, frames, flen);

    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, nonce), 1);
    assert_int_equal(EVP_EncryptUpdate(c, NULL, &n, out, (int)len), 1);
    assert_int_equal(EVP_EncryptUpdate(c, out + len, &n, pt, (int)payload), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, out + len + payload, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + len + payload), 1);
    EVP_CIPHER_CTX_free(c);
    free(pt);
    len += payload + 16;

    c = EVP_CIPHER_CTX_new();
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, hp, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(c, mask, &n, out + pn_off + 4, 16), 1);
    EVP_CIPHER_CTX_free(c);
    out[0] ^= mask[0] & 0x0f;
    out[pn_off] ^= mask[1];
    out[pn_off + 1] ^= mask[2];
    return len;
}

static size_t seal_initial(const uint8_t *frames, size_t flen, uint8_t *out, size_t cap)
{
    return seal_initial_pn(frames, flen, 7, 8, out, cap);
}

/* Appends a CRYPTO frame for hs[off, off+n) with 2-byte varints. */
static void crypto_frame(struct hb *f, const struct hb *hs, size_t off, size_t n)
{
    put8(f, 0x06);
    put16(f, 0x4000 | (unsigned)off);
    put16(f, 0x4000 | (unsigned)n);
    putn(f, hs->b + off, n);
}

static void quic_crypto_frames_join_by_offset_and_gaps_wait(void **state)
{
    (void)state;
    struct hb hs, f;
    static uint8_t pkt[4096];
    struct sen_client_hello ch;
    hello_a(&hs);
    size_t a = 50, b = 120;

    /* Out of order, with PING, PADDING, an ACK and an overlap that agrees. */
    f.n = 0;
    put8(&f, 0x01);
    crypto_frame(&f, &hs, b, hs.n - b);
    put8(&f, 0x00);
    put8(&f, 0x02), put8(&f, 0), put8(&f, 0), put8(&f, 1), put8(&f, 0), put8(&f, 0), put8(&f, 0);
    crypto_frame(&f, &hs, a, b - a + 10);
    crypto_frame(&f, &hs, 0, a);
    size_t n = seal_initial(f.b, f.n, pkt, sizeof(pkt));
    assert_int_equal(sen_quic_initial(pkt, n, &ch), 1);
    assert_string_equal(ch.sni, "example.com");
    assert_string_equal(ch.ja4, "q13d0509h2_e133e205ac38_f5e0aee4b195");

    /* A gap: the rest is in another packet. */
    f.n = 0;
    crypto_frame(&f, &hs, 0, a);
    crypto_frame(&f, &hs, b, hs.n - b);
    n = seal_initial(f.b, f.n, pkt, sizeof(pkt));
    assert_int_equal(sen_quic_initial(pkt, n, &ch), 0);

    /* Only a later part: nothing starts here. */
    f.n = 0;
    crypto_frame(&f, &hs, b, hs.n - b);
    n = seal_initial(f.b, f.n, pkt, sizeof(pkt));
    assert_int_equal(sen_quic_initial(pkt, n, &ch), 0);

    /* Two frames that disagree about the same bytes. */
    f.n = 0;
    crypto_frame(&f, &hs, 0, hs.n);
    crypto_frame(&f, &hs, 0, a);
    f.b[f.n - 1] ^= 0xff;
    n = seal_initial(f.b, f.n, pkt, sizeof(pkt));
    assert_int_equal(sen_quic_initial(pkt, n, &ch), -1);

    /* A CRYPTO frame longer than the payload. */
    f.n = 0;
    put8(&f, 0x06), put8(&f, 0), put16(&f, 0x7fff);
    n = seal_initial(f.b, f.n, pkt, sizeof(pkt));
    assert_int_equal(sen_quic_initial(pkt, n, &ch), -1);
}

/* Hello A with a post-quantum key share of `share` bytes (X25519MLKEM768,
 * 0x11ec, is 1,216 bytes from a client), as Chrome and Firefox send it: the
 * hello no longer fits in one Initial. JA3 and JA4 do not look at the key
 * share's contents, so they stay Hello A's. */
static void hello_big(struct hb *h, size_t share)
{
    static const unsigned ciphers[] = {0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f};
    static const unsigned groups[] = {0x3a3a, 0x001d, 0x0017, 0x0018};
    static const unsigned sigalgs[] = {0x0403, 0x0804, 0x0401};
    static const unsigned versions[] = {0x5a5a, 0x0304, 0x0303};
    static const char *const alpn[] = {"h2", "http/1.1"};
    static const size_t alpn_len[] = {2, 8};
    static const uint8_t formats[] = {1, 0}, reneg[] = {0}, one[] = {0};
    h->n = 0;
    size_t at = hello_begin(h, 0x0303, ciphers, 6, 32);
    size_t ext = open_len(h, 2);
    ext_raw(h, 0x0a0a, NULL, 0);
    ext_sni(h, "pq.Example.COM");
    ext_raw(h, 0x0017, NULL, 0);
    ext_raw(h, 0xff01, reneg, 1);
    ext_u16_list(h, 0x000a, 2, groups, 4);
    ext_raw(h, 0x000b, formats, 2);
    ext_alpn(h, alpn, alpn_len, 2);
    ext_u16_list(h, 0x000d, 2, sigalgs, 3);
    ext_u16_list(h, 0x002b, 1, versions, 3);
    put16(h, 0x0033);
    size_t e = open_len(h, 2), l = open_len(h, 2);
    put16(h, 0x11ec);
    put16(h, (unsigned)share);
    for (size_t i = 0; i < share; i++)
        put8(h, (unsigned)(i * 7 + 3));
    close_len(h, l, 2);
    close_len(h, e, 2);
    ext_raw(h, 0x1a1a, one, 1);
    close_len(h, ext, 2);
    close_len(h, at, 3);
}

static struct sen_tuple client_tuple(uint16_t sport)
{
    struct sen_tuple t;
    memset(&t, 0, sizeof(t));
    t.family = AF_INET;
    t.proto = IPPROTO_UDP;
    t.sport = sport;
    t.dport = 443;
    t.src[0] = 10, t.src[3] = 5;
    t.dst[0] = 203, t.dst[2] = 113, t.dst[3] = 9;
    return t;
}

/* Seals hs[from, to) as one Initial (CRYPTO frames of at most 1,000 bytes,
 * in the order given by `reverse`). */
static size_t seal_part(const struct hb *hs, size_t from, size_t to, unsigned pn, int reverse,
                        uint8_t *pkt, size_t cap)
{
    static struct hb f;
    f.n = 0;
    size_t cuts[8], nc = 0;
    for (size_t o = from; o < to && nc < 8; o += 1000)
        cuts[nc++] = o;
    for (size_t k = 0; k < nc; k++) {
        size_t i = reverse ? nc - 1 - k : k;
        size_t end = i + 1 < nc ? cuts[i + 1] : to;
        crypto_frame(&f, hs, cuts[i], end - cuts[i]);
    }
    while (f.n < 1170) /* PADDING, so that the datagram is 1,200 bytes or more */
        put8(&f, 0);
    return seal_initial_pn(f.b, f.n, pn, 8, pkt, cap);
}

static void quic_client_hello_across_two_and_three_initials_is_joined(void **state)
{
    (void)state;
    static struct hb hs;
    static uint8_t p1[4096], p2[4096], p3[4096];
    struct sen_client_hello ch;
    struct sen_quic_joins *t = sen_quic_joins_new(4, 10);
    assert_non_null(t);
    struct sen_tuple tu = client_tuple(50000);
    uint64_t joined, dropped;

    /* Two packets, in order: the first waits, the second completes. */
    hello_big(&hs, 1216);
    assert_true(hs.n > 1300 && hs.n < 2000);
    size_t n1 = seal_part(&hs, 0, 1100, 0, 0, p1, sizeof(p1));
    size_t n2 = seal_part(&hs, 1100, hs.n, 1, 0, p2, sizeof(p2));
    assert_int_equal(sen_quic_initial(p1, n1, &ch), 0); /* alone, it cannot */
    assert_int_equal(sen_quic_initial_join(t, &tu, 1000, p1, n1, &ch), 0);
    assert_int_equal(sen_quic_joins_count(t), 1);
    assert_int_equal(sen_quic_initial_join(t, &tu, 2000, p2, n2, &ch), 1);
    assert_string_equal(ch.sni, "pq.example.com");
    assert_string_equal(ch.ja4, "q13d0509h2_e133e205ac38_f5e0aee4b195");
    assert_string_equal(ch.ja3, HELLO_A_JA3);
    assert_int_equal(sen_quic_joins_count(t), 0);

    /* Three packets arriving 3, 1, 2, with the frames inside each reversed. */
    hello_big(&hs, 2600);
    assert_true(hs.n > 2400);
    size_t third = hs.n / 3;
    n1 = seal_part(&hs, 0, third, 0, 1, p1, sizeof(p1));
    n2 = seal_part(&hs, third, 2 * third, 1, 1, p2, sizeof(p2));
    size_t n3 = seal_part(&hs, 2 * third, hs.n, 2, 1, p3, sizeof(p3));
    assert_int_equal(sen_quic_initial_join(t, &tu, 3000, p3, n3, &ch), 0);
    assert_int_equal(sen_quic_initial_join(t, &tu, 3001, p1, n1, &ch), 0);
    assert_int_equal(sen_quic_joins_count(t), 1);
    memset(&ch, 0, sizeof(ch));
    assert_int_equal(sen_quic_initial_join(t, &tu, 3002, p2, n2, &ch), 1);
    assert_string_equal(ch.sni, "pq.example.com");
    assert_string_equal(ch.ja4, "q13d0509h2_e133e205ac38_f5e0aee4b195");
    assert_int_equal(sen_quic_joins_count(t), 0);
    sen_quic_joins_stats(t, &joined, &dropped);
    assert_int_equal(joined, 2);
    assert_int_equal(dropped, 0);

    /* Another connection (other port) does not complete this one. */
    struct sen_tuple other = client_tuple(50001);
    assert_int_equal(sen_quic_initial_join(t, &tu, 4000, p1, n1, &ch), 0);
    assert_int_equal(sen_quic_initial_join(t, &other, 4001, p2, n2, &ch), 0);
    assert_int_equal(sen_quic_initial_join(t, &other, 4002, p3, n3, &ch), 0);
    assert_int_equal(sen_quic_joins_count(t), 2);

    /* A retransmission that repeats bytes is fine; one that changes them is
     * refused and drops the connection. */
    assert_int_equal(sen_quic_initial_join(t, &tu, 4003, p1, n1, &ch), 0);
    n2 = seal_part(&hs, third, 2 * third, 1, 0, p2, sizeof(p2));
    assert_int_equal(sen_quic_initial_join(t, &tu, 4004, p2, n2, &ch), 0);
    static struct hb bad;
    bad = hs;
    bad.b[third + 5] ^= 0x55;
    size_t nb = seal_part(&bad, third, 2 * third, 3, 0, p2, sizeof(p2));
    assert_int_equal(sen_quic_initial_join(t, &tu, 4005, p2, nb, &ch), -1);
    assert_int_equal(sen_quic_joins_count(t), 1);
    sen_quic_joins_free(t);
}

/* A connection whose next packet never comes is dropped after the timeout
 * or when the table needs room, and nothing is reported for it. The
 * sanitizer build checks that its buffer is freed. */
static void quic_incomplete_client_hello_is_dropped_without_a_hit(void **state)
{
    (void)state;
    static struct hb hs;
    static uint8_t p1[4096];
    struct sen_client_hello ch;
    uint64_t joined, dropped;
    hello_big(&hs, 1216);
    size_t n1 = seal_part(&hs, 0, 1100, 0, 0, p1, sizeof(p1));

    struct sen_quic_joins *t = sen_quic_joins_new(2, 10);
    assert_non_null(t);
    struct sen_tuple a = client_tuple(1), b = client_tuple(2), c = client_tuple(3);
    assert_int_equal(sen_quic_initial_join(t, &a, 1000000, p1, n1, &ch), 0);
    assert_int_equal(sen_quic_initial_join(t, &b, 2000000, p1, n1, &ch), 0);
    /* Full: the oldest (a) makes room for c. */
    assert_int_equal(sen_quic_initial_join(t, &c, 3000000, p1, n1, &ch), 0);
    assert_int_equal(sen_quic_joins_count(t), 2);
    sen_quic_joins_stats(t, &joined, &dropped);
    assert_int_equal(dropped, 1);
    /* 10 s later b goes, c stays; then c goes too. */
    sen_quic_joins_expire(t, 12500000);
    assert_int_equal(sen_quic_joins_count(t), 1);
    sen_quic_joins_expire(t, 13500000);
    assert_int_equal(sen_quic_joins_count(t), 0);
    sen_quic_joins_stats(t, &joined, &dropped);
    assert_int_equal(joined, 0);
    assert_int_equal(dropped, 3);
    /* One left waiting is freed with the table. */
    assert_int_equal(sen_quic_initial_join(t, &a, 20000000, p1, n1, &ch), 0);
    sen_quic_joins_free(t);
    sen_quic_joins_free(NULL);
}

static void count_quic_sni(void *ctx, const struct sen_obs *o)
{
    if (o->where == SEN_QUIC_SNI && o->text != NULL && strcmp(o->text, "pq.example.com") == 0)
        (*(int *)ctx)++;
}

/* Through the packet decoder: the two datagrams of one connection give one
 * quic.sni, and the stats say it was joined. */
static void decoder_joins_a_quic_client_hello_from_two_datagrams(void **state)
{
    (void)state;
    static struct hb hs;
    static uint8_t p1[4096], p2[4096], frame[8192];
    struct sen_decoder *d = NULL;
    int hits = 0;
    hello_big(&hs, 1216);
    size_t n1 = seal_part(&hs, 0, 1100, 0, 0, p1, sizeof(p1));
    size_t n2 = seal_part(&hs, 1100, hs.n, 1, 0, p2, sizeof(p2));
    assert_int_equal(sen_decoder_new(NULL, count_quic_sni, &hits, &d), 0);
    const uint8_t *pl[2] = {p1, p2};
    size_t pn[2] = {n1, n2};
    for (int i = 0; i < 2; i++) {
        struct pg_spec sp = {.family = AF_INET, .src = "10.0.0.5", .dst = "203.0.113.9"};
        sp.proto = IPPROTO_UDP;
        sp.sport = 50000;
        sp.dport = 443;
        sp.payload = pl[i];
        sp.plen = pn[i];
        size_t n = pg_frame(&sp, frame, sizeof(frame));
        assert_true(n > 0);
        sen_decode_packet(d, pg_link_dlt(sp.link), frame, n, 1700000000000000LL + i);
    }
    struct sen_decode_stats st;
    sen_decoder_stats(d, &st);
    assert_int_equal(hits, 1);
    assert_int_equal(st.quic_initials, 2);
    assert_int_equal(st.quic_joined, 1);
    assert_int_equal(st.malformed_quic, 0);
    sen_decoder_free(d);
}

/* ---- captures ---- */

/* One ClientHello found in a capture. */
struct found {
    char proto; /* 't' or 'q' */
    struct sen_client_hello ch;
};

struct found_list {
    struct found *v;
    size_t n, cap;
};

static void found_add(struct found_list *l, char proto, const struct sen_client_hello *ch)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        assert_non_null(l->v);
    }
    l->v[l->n].proto = proto;
    l->v[l->n].ch = *ch;
    l->n++;
}

/* A client's first TCP bytes, joined in sequence order until they make a
 * ClientHello or cannot. */
struct tcp_stream {
    uint8_t key[37];
    uint32_t next_seq;
    int done;
    uint8_t buf[65536];
    size_t n;
};

#define MAX_STREAMS 64

struct walk {
    struct found_list found;
    struct tcp_stream *streams;
    size_t n_streams;
};

static void on_tcp(struct walk *w, const uint8_t *key, const uint8_t *tcp, size_t len)
{
    if (len < 20)
        return;
    size_t hl = (size_t)(tcp[12] >> 4) * 4;
    if (hl < 20 || hl > len || len == hl)
        return;
    uint32_t seq =
        ((uint32_t)tcp[4] << 24) | ((uint32_t)tcp[5] << 16) | ((uint32_t)tcp[6] << 8) | tcp[7];
    const uint8_t *p = tcp + hl;
    size_t n = len - hl;
    struct tcp_stream *s = NULL;
    for (size_t i = 0; i < w->n_streams; i++) {
        if (memcmp(w->streams[i].key, key, sizeof(s->key)) == 0)
            s = &w->streams[i];
    }
    if (s == NULL) {
        if (p[0] != 22 || w->n_streams == MAX_STREAMS)
            return;
        s = &w->streams[w->n_streams++];
        memcpy(s->key, key, sizeof(s->key));
        s->next_seq = seq;
        s->n = 0;
        s->done = 0;
    }
    if (s->done || seq != s->next_seq || s->n + n > sizeof(s->buf))
        return;
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    s->next_seq = seq + (uint32_t)n;
    struct sen_client_hello ch;
    int r = sen_tls_client_hello(s->buf, s->n, 1, 0, &ch);
    if (r == 1)
        found_add(&w->found, 't', &ch);
    if (r != 0)
        s->done = 1;
}

static void on_ip(struct walk *w, const uint8_t *p, size_t len)
{
    uint8_t key[37];
    size_t off;
    unsigned proto;
    memset(key, 0, sizeof(key));
    if (len < 1)
        return;
    if ((p[0] >> 4) == 4) {
        if (len < 20)
            return;
        off = (size_t)(p[0] & 0x0f) * 4;
        size_t tot = ((size_t)p[2] << 8) | p[3];
        if ((((unsigned)p[6] << 8 | p[7]) & 0x1fff) != 0 || off < 20 || tot < off)
            return; /* later fragments */
        if (tot < len)
            len = tot;
        proto = p[9];
        memcpy(key, p + 12, 8);
    } else if ((p[0] >> 4) == 6) {
        if (len < 40)
            return;
        proto = p[6];
        off = 40;
        memcpy(key, p + 8, 32);
        while (proto == 0 || proto == 43 || proto == 60 || proto == 44 || proto == 51) {
            if (len < off + 8)
                return;
            unsigned next = p[off];
            size_t el = proto == 44   ? 8
                        : proto == 51 ? ((size_t)p[off + 1] + 2) * 4
                                      : ((size_t)p[off + 1] + 1) * 8;
            proto = next;
            off += el;
        }
    } else {
        return;
    }
    if (off > len || len - off < 8)
        return;
    key[32] = (uint8_t)proto;
    memcpy(key + 33, p + off, 4);
    if (proto == 6) {
        on_tcp(w, key, p + off, len - off);
    } else if (proto == 17) {
        struct sen_client_hello ch;
        if (sen_quic_initial(p + off + 8, len - off - 8, &ch) == 1)
            found_add(&w->found, 'q', &ch);
    }
}

static void on_frame(struct walk *w, int dlt, const uint8_t *p, size_t len)
{
    size_t off = 0;
    unsigned type = 0;
    switch (dlt) {
    case DLT_EN10MB:
        if (len < 14)
            return;
        type = ((unsigned)p[12] << 8) | p[13];
        off = 14;
        while (type == 0x8100 || type == 0x88a8 || type == 0x9100) {
            if (len < off + 4)
                return;
            type = ((unsigned)p[off + 2] << 8) | p[off + 3];
            off += 4;
        }
        if (type == 0x8864) {
            if (len < off + 8)
                return;
            unsigned ppp = ((unsigned)p[off + 6] << 8) | p[off + 7];
            type = ppp == 0x0021 ? 0x0800 : ppp == 0x0057 ? 0x86dd : 0;
            off += 8;
        }
        if (type != 0x0800 && type != 0x86dd)
            return;
        break;
    case DLT_NULL:
    case DLT_LOOP:
        off = 4;
        break;
    case DLT_RAW:
        off = 0;
        break;
    case DLT_LINUX_SLL:
        off = 16;
        break;
    case DLT_LINUX_SLL2:
        off = 20;
        break;
    default:
        return;
    }
    if (off <= len)
        on_ip(w, p + off, len - off);
}

/* Reads every ClientHello of a capture (TCP and QUIC) in frame order.
 * Returns 0, or -1 when libpcap cannot open the file. */
static int read_capture(const char *path, struct found_list *out)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *pc = pcap_open_offline(path, err);
    struct pcap_pkthdr *hdr;
    const uint8_t *data;
    struct walk w;

    memset(&w, 0, sizeof(w));
    if (pc == NULL)
        return -1;
    w.streams = calloc(MAX_STREAMS, sizeof(*w.streams));
    assert_non_null(w.streams);
    int dlt = pcap_datalink(pc);
    while (pcap_next_ex(pc, &hdr, &data) == 1)
        on_frame(&w, dlt, data, hdr->caplen);
    pcap_close(pc);
    free(w.streams);
    *out = w.found;
    return 0;
}

static char *sv_path(const char *rel)
{
    const char *shared = tu_shared_data();
    char *p = NULL;
    if (shared == NULL)
        return NULL;
    assert_true(asprintf(&p, "%s/net/suricata-verify/tests/%s", shared, rel) > 0);
    return p;
}

/* Checks a suricata-verify test's expected "<proto>.ja4: X" filters
 * (count N) against the ClientHellos of its capture. */
static void check_sv_ja4(const char *test)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "%s/test.yaml", test);
    char *yaml_path = sv_path(rel);
    snprintf(rel, sizeof(rel), "%s/input.pcap", test);
    char *pcap_path = sv_path(rel);
    FILE *f = fopen(yaml_path, "r");
    char line[512];
    long count = -1;
    int checked = 0;
    struct found_list got = {0};

    assert_non_null(f);
    assert_int_equal(read_capture(pcap_path, &got), 0);
    while (fgets(line, sizeof(line), f) != NULL) {
        char proto[8], ja4[64];
        long c;
        if (sscanf(line, " count: %ld", &c) == 1)
            count = c;
        if (sscanf(line, " %7[a-z].ja4: %63s", proto, ja4) != 2)
            continue;
        char want = strcmp(proto, "quic") == 0 ? 'q' : 't';
        long have = 0;
        for (size_t i = 0; i < got.n; i++) {
            if (got.v[i].proto == want && strcmp(got.v[i].ch.ja4, ja4) == 0)
                have++;
        }
        printf("  %s: %s %s expected %ld, found %ld\n", test, proto, ja4, count, have);
        assert_int_equal(have, count);
        checked++;
    }
    fclose(f);
    assert_true(checked > 0);
    free(got.v);
    free(yaml_path);
    free(pcap_path);
}

static void captures_match_suricata_verify_ja3_ja4(void **state)
{
    (void)state;
    if (tu_shared_data() == NULL) {
        printf("SKIP: ../shared/data absent: suricata-verify ja3/ja4 captures not checked\n");
        skip();
    }
    check_sv_ja4("ja4-tls");
    check_sv_ja4("ja4-quic");
    check_sv_ja4("ja4-tls-quic");
    check_sv_ja4("ja4-rules");

    /* quic-v2-ja3 (a QUIC version 2 Initial on a DLT_NULL link): the JA3
     * string its rule sid 3 matches; quic-ietf-ja3: msquic's hello. */
    struct found_list got = {0};
    char *p = sv_path("quic-v2-ja3/input.pcap");
    assert_int_equal(read_capture(p, &got), 0);
    assert_int_equal(got.n, 1);
    assert_int_equal(got.v[0].proto, 'q');
    assert_string_equal(got.v[0].ch.ja3_string,
                        "771,4865-4866-4867,5-10-11-13-65281-23-16-18-43-51-57,29-23-24-25,0");
    assert_string_equal(got.v[0].ch.alpn, "h3");
    free(got.v);
    free(p);

    /* tls-client-hello-frag-01: a hello split over TCP segments (MTU 300). */
    memset(&got, 0, sizeof(got));
    p = sv_path("tls/tls-client-hello-frag-01/dump_mtu300.pcap");
    assert_int_equal(read_capture(p, &got), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.v[0].ch.sni, "www.google.com");
    free(got.v);
    free(p);
}

/* Collects capture paths under dir (recursively). */
static void list_captures(const char *dir, char ***paths, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *p = NULL;
        struct stat st;
        assert_true(asprintf(&p, "%s/%s", dir, e->d_name) > 0);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            list_captures(p, paths, n);
            free(p);
            continue;
        }
        size_t l = strlen(e->d_name);
        if ((l > 5 && strcmp(e->d_name + l - 5, ".pcap") == 0) ||
            (l > 7 && strcmp(e->d_name + l - 7, ".pcapng") == 0)) {
            *paths = realloc(*paths, (*n + 1) * sizeof(char *));
            assert_non_null(*paths);
            (*paths)[(*n)++] = p;
        } else {
            free(p);
        }
    }
    closedir(d);
}

static int tshark_present(void)
{
    return system("tshark -v > /dev/null 2>&1") == 0;
}

/* Captures where tshark is not the oracle. maltrail's generated QUIC
 * capture has an Initial whose AEAD tag is wrong: tshark (which checks the
 * tag) shows nothing, maltrail's manifest expects this SNI, and we read it
 * because the ClientHello parses completely from the decrypted bytes. */
static const struct {
    const char *suffix, *sni;
} tshark_exceptions[] = {
    {"/maltrail/sensor/tests/corpus/quic_sni.pcap", "quic-evil.example"},
};

static const char *tshark_exception(const char *path)
{
    size_t l = strlen(path);
    for (size_t i = 0; i < sizeof(tshark_exceptions) / sizeof(tshark_exceptions[0]); i++) {
        size_t k = strlen(tshark_exceptions[i].suffix);
        if (l >= k && strcmp(path + l - k, tshark_exceptions[i].suffix) == 0)
            return tshark_exceptions[i].sni;
    }
    return NULL;
}

/* Compares our ClientHellos with tshark's, in frame order: same count,
 * same SNI (tshark keeps the case), same JA3 hash and JA3 string. */
static void compare_with_tshark(const char *path, size_t *hellos)
{
    struct found_list got = {0};
    char *cmd = NULL, line[8192];
    size_t i = 0;

    if (read_capture(path, &got) != 0) {
        printf("  %s: libpcap cannot read it, not compared\n", path);
        return;
    }
    const char *exception = tshark_exception(path);
    if (exception != NULL) {
        printf("  %s: not tshark-readable; expecting the SNI %s\n", path, exception);
        assert_int_equal(got.n, 1);
        assert_string_equal(got.v[0].ch.sni, exception);
        free(got.v);
        return;
    }
    assert_true(asprintf(&cmd,
                         "tshark -n -r '%s' -Y 'tls.handshake.type == 1' -T fields -E "
                         "separator=/t -e tls.handshake.extensions_server_name -e "
                         "tls.handshake.ja3 -e tls.handshake.ja3_full 2>/dev/null",
                         path) > 0);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *sni = line, *ja3 = strchr(sni, '\t'), *full = NULL;
        assert_non_null(ja3);
        *ja3++ = '\0';
        full = strchr(ja3, '\t');
        assert_non_null(full);
        *full++ = '\0';
        if (i >= got.n) {
            printf("  %s: tshark has a ClientHello #%zu (%s) that we do not\n", path, i + 1, sni);
            fail();
        }
        if (strcasecmp(got.v[i].ch.sni, sni) != 0 || strcmp(got.v[i].ch.ja3, ja3) != 0 ||
            strcmp(got.v[i].ch.ja3_string, full) != 0) {
            printf("  %s #%zu: ours %s %s %s, tshark %s %s %s\n", path, i + 1, got.v[i].ch.sni,
                   got.v[i].ch.ja3, got.v[i].ch.ja3_string, sni, ja3, full);
            fail();
        }
        i++;
    }
    pclose(f);
    if (i != got.n) {
        printf("  %s: we found %zu ClientHellos, tshark %zu\n", path, got.n, i);
        fail();
    }
    *hellos += i;
    free(got.v);
    free(cmd);
}

static void captures_match_tshark_sni_and_ja3(void **state)
{
    (void)state;
    const char *shared = tu_shared_data();
    if (shared == NULL) {
        printf("SKIP: ../shared/data absent: tshark comparison not run\n");
        skip();
    }
    if (!tshark_present()) {
        printf("SKIP: tshark not installed: tshark comparison not run\n");
        skip();
    }
    char *net = NULL, **paths = NULL;
    size_t n = 0, hellos = 0;
    assert_true(asprintf(&net, "%s/net", shared) > 0);
    list_captures(net, &paths, &n);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        compare_with_tshark(paths[i], &hellos);
        free(paths[i]);
    }
    printf("  %zu captures, %zu ClientHellos equal to tshark's\n", n, hellos);
    assert_true(hellos >= 30);
    free(paths);
    free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tls_hello_with_grease_gives_sni_alpn_ja3_ja4),
        cmocka_unit_test(tls_hello_without_sni_alpn_or_extensions),
        cmocka_unit_test(tls_alpn_that_is_not_alphanumeric_uses_hex_digits),
        cmocka_unit_test(tls_split_hello_needs_more_bytes_until_complete),
        cmocka_unit_test(tls_other_messages_and_bad_lengths_are_refused),
        cmocka_unit_test(quic_rfc9001_and_rfc9369_client_initials_decrypt),
        cmocka_unit_test(quic_crypto_frames_join_by_offset_and_gaps_wait),
        cmocka_unit_test(quic_client_hello_across_two_and_three_initials_is_joined),
        cmocka_unit_test(quic_incomplete_client_hello_is_dropped_without_a_hit),
        cmocka_unit_test(decoder_joins_a_quic_client_hello_from_two_datagrams),
        cmocka_unit_test(captures_match_suricata_verify_ja3_ja4),
        cmocka_unit_test(captures_match_tshark_sni_and_ja3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
