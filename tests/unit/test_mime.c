/*
 * Tests for the e-mail walker (lib/engine/mime.c) and mail typing
 * (filetype.c): MIME multiparts, the transfer encodings, uuencode and
 * BinHex blocks, part names (RFC 2231, RFC 2047), mbox files, the boundary
 * tricks used to slip attachments past mail gateways, the walk limits, and
 * malformed input. Messages are written by the tests; ClamAV's sample mails
 * from ../shared/data are used when present (a SKIP line otherwise).
 */
#include "testutil.h"
#include "walkutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "khx.h"

#define MARKER_B64 "S0hYLU1BUktFUi03ZjNh" /* base64 of TU_MARKER */

static int walk_lim(const char *msg, size_t len, const struct khx_walk_limits *lim,
                    struct tu_rec *r)
{
    uint64_t total = 0;
    struct khx_walk_cb cb = tu_rec_cb(r);
    return khx_mail_walk((const uint8_t *)msg, len, lim, &total, &cb);
}

static int walk(const char *msg, struct tu_rec *r)
{
    return walk_lim(msg, strlen(msg), &tu_generous, r);
}

static int is_mail(const char *s)
{
    return khx_filetype((const uint8_t *)s, strlen(s)) == KHX_FT_MAIL;
}

/* ------------------------------------------------------------------------ */
/* Typing                                                                    */
/* ------------------------------------------------------------------------ */

static void filetype_mail_headers_mbox_and_binhex(void **state)
{
    (void)state;
    assert_true(is_mail("From: a@example.org\nTo: b@example.org\n\nhi\n"));
    assert_true(is_mail("Received: from x by y;\n\tMon, 1 Jan 2024\nSubject: s\n\n"));
    assert_true(is_mail("Subject: s\r\nContent-Type(meow): text/plain\r\n\r\nbody\r\n"));
    assert_true(is_mail("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n"));
    assert_true(is_mail("From someone@example.org Thu Jul 31 13:49:50 2008\n"
                        "X-Mozilla-Status: 0001\nSubject: s\n\n"));
    assert_true(is_mail("(This file must be converted with BinHex 4.0)\n:abc:\n"));
    assert_string_equal(khx_ftype_name(KHX_FT_MAIL), "mail");
    assert_string_equal(khx_ftype_cltype(KHX_FT_MAIL), "CL_TYPE_MAIL");
    char name[64];
    khx_walk_issue_name(KHX_WALK_CORRUPT, KHX_FT_MAIL, name, sizeof(name));
    assert_string_equal(name, "Heuristics.Broken.Mail");
}

static void filetype_mail_negatives(void **state)
{
    (void)state;
    /* Prose that starts like a header or an mbox line. */
    assert_false(is_mail("From here we go\nand on it goes\n"));
    assert_false(is_mail("Dear: friend\nhow are you\n"));
    assert_false(is_mail("Subject: only one line and no more"));
    assert_false(is_mail("Subject: x\nthen prose, not a header\n"));
    assert_false(is_mail("From  two spaces\nSubject: x\n\n"));
    assert_false(is_mail("<html><body>From: x</body></html>\n"));
    assert_int_equal(khx_filetype((const uint8_t *)"To: x\n", 6), KHX_FT_TEXT);
}

/* ------------------------------------------------------------------------ */
/* Parts and encodings                                                       */
/* ------------------------------------------------------------------------ */

static void mime_multipart_base64_attachment_named(void **state)
{
    (void)state;
    static const char msg[] = "From: a@example.org\r\n"
                              "MIME-Version: 1.0\r\n"
                              "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
                              "\r\n"
                              "preamble\r\n"
                              "--b1\r\n"
                              "Content-Type: text/plain\r\n"
                              "\r\n"
                              "just words\r\n"
                              "--b1\r\n"
                              "Content-Type: application/octet-stream; name=\"wrong.bin\"\r\n"
                              "Content-Transfer-Encoding: base64\r\n"
                              "Content-Disposition: attachment; filename=\"right.exe\"\r\n"
                              "\r\n" MARKER_B64 "\r\n"
                              "--b1--\r\n"
                              "epilogue\r\n";
    struct tu_rec r = {0};
    assert_int_equal(walk(msg, &r), 0);
    tu_rec_dump(&r);
    /* The plain text part is in the message as it is: not delivered. */
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "right.exe");
    assert_int_equal(r.lens[0], strlen(TU_MARKER));
    assert_true(r.marker[0]);
    assert_int_equal(r.nissues, 0);
}

static void mime_part_names_rfc2231_and_rfc2047(void **state)
{
    (void)state;
    static const char msg[] =
        "Subject: names\n"
        "Content-Type: multipart/mixed; boundary=zz\n"
        "\n"
        "--zz\n"
        "Content-Disposition: attachment; filename*=utf-8''na%C3%AFve%20one.exe\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" MARKER_B64 "\n"
        "--zz\n"
        "Content-Disposition: attachment;\n"
        " filename*0=\"ab\"; filename*1=\"cd.exe\"\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" MARKER_B64 "\n"
        "--zz\n"
        "Content-Type: application/x-foo; name=\"=?UTF-8?B?w6lsw6h2ZS5kb2M=?=\"\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" MARKER_B64 "\n"
        "--zz\n"
        "Content-Type: application/x-foo; name==?iso-8859-1?Q?a_b=41.txt?=\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" MARKER_B64 "\n"
        "--zz\n"
        "Content-Type: application/x-foo\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" MARKER_B64 "\n"
        "--zz--\n";
    struct tu_rec r = {0};
    assert_int_equal(walk(msg, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 5);
    assert_string_equal(r.names[0], "na\xC3\xAFve one.exe");
    assert_string_equal(r.names[1], "abcd.exe");
    assert_string_equal(r.names[2], "\xC3\xA9l\xC3\xA8ve.doc");
    assert_string_equal(r.names[3], "a bA.txt");
    assert_string_equal(r.names[4], "part-1");
    for (int i = 0; i < 5; i++)
        assert_true(r.marker[i]);
}

static void mime_quoted_printable_html_delivered(void **state)
{
    (void)state;
    static const char msg[] = "From: a@example.org\n"
                              "Content-Type: text/html; charset=us-ascii\n"
                              "Content-Transfer-Encoding: quoted-printable\n"
                              "\n"
                              "=3Cscript=3E KHX-MARK=\n"
                              "ER-7f3a =3D=3d =ZZ end=\n";
    struct tu_rec r = {0};
    assert_int_equal(walk(msg, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "part-1");
    /* Soft breaks joined, escapes decoded in either case, bad escapes kept. */
    assert_string_equal((const char *)r.data[0], "<script> " TU_MARKER " == =ZZ end");
}

static void mime_uuencoded_block_in_text_and_as_encoding(void **state)
{
    (void)state;
    /* "KHX-TU_MARKER-7f3a" uuencoded. */
    static const char uu[] = "begin 644 evil.exe\n"
                             "/2TA8+4U!4DM%4BTW9C-A\n"
                             "`\n"
                             "end\n";
    char msg[1024];
    snprintf(msg, sizeof(msg), "From: a@example.org\nSubject: s\n\nSee attached.\n%sThanks.\n", uu);
    struct tu_rec r = {0};
    assert_int_equal(walk(msg, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "evil.exe");
    assert_int_equal(r.lens[0], strlen(TU_MARKER));
    assert_true(r.marker[0]);

    snprintf(msg, sizeof(msg),
             "From: a@example.org\nContent-Type: application/octet-stream\n"
             "Content-Transfer-Encoding: x-uuencode\n\n%s",
             uu);
    struct tu_rec r2 = {0};
    assert_int_equal(walk(msg, &r2), 0);
    assert_int_equal(r2.nmembers, 1);
    assert_true(r2.marker[0]);

    /* Declared uuencode without a begin line: said, not silent. */
    struct tu_rec r3 = {0};
    assert_int_equal(walk("From: a@b\nContent-Type: application/octet-stream\n"
                          "Content-Transfer-Encoding: uuencode\n\nnothing here\n",
                          &r3),
                     0);
    assert_int_equal(r3.nmembers, 0);
    assert_true(tu_find_issue(&r3, KHX_WALK_CORRUPT) >= 0);
}

/* BinHex 4.0 encoding of a file with the given data fork, for the tests:
 * header, data, zero CRCs, run-length escaping of 0x90, 6-bit text. */
static char *binhex_encode(const char *name, const uint8_t *data, size_t n, size_t *outlen)
{
    static const char alphabet[] =
        "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
    struct khx_buf raw;
    khx_buf_init(&raw, 1 << 20);
    size_t nl = strlen(name);
    khx_buf_append_u8(&raw, (uint8_t)nl);
    khx_buf_append(&raw, name, nl);
    uint8_t fixed[1 + 4 + 4 + 2] = {0};
    khx_buf_append(&raw, fixed, sizeof(fixed));
    uint8_t be[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    khx_buf_append(&raw, be, 4);
    khx_buf_append(&raw, "\0\0\0\0\0\0", 6); /* resource length, header CRC */
    for (size_t i = 0; i < n; i++) {
        khx_buf_append_u8(&raw, data[i]);
        if (data[i] == 0x90)
            khx_buf_append_u8(&raw, 0);
    }
    khx_buf_append(&raw, "\0\0\0\0", 4); /* data CRC, resource CRC */
    struct khx_buf out;
    khx_buf_init(&out, 1 << 20);
    khx_buf_printf(&out, "(This file must be converted with BinHex 4.0)\n:");
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < raw.len; i++) {
        acc = (acc << 8) | raw.data[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            khx_buf_append_u8(&out, (uint8_t)alphabet[(acc >> bits) & 0x3F]);
        }
    }
    if (bits > 0)
        khx_buf_append_u8(&out, (uint8_t)alphabet[(acc << (6 - bits)) & 0x3F]);
    khx_buf_printf(&out, ":\n");
    khx_buf_append_u8(&out, 0);
    khx_buf_free(&raw);
    return (char *)khx_buf_steal(&out, outlen);
}

static void mime_binhex_file_data_fork(void **state)
{
    (void)state;
    uint8_t data[64];
    size_t n = strlen(TU_MARKER);
    memcpy(data, TU_MARKER, n);
    data[n++] = 0x90; /* a literal 0x90 must survive the run-length coding */
    data[n++] = 'z';
    size_t len;
    char *hqx = binhex_encode("payload.exe", data, n, &len);
    assert_true(is_mail(hqx));
    struct tu_rec r = {0};
    assert_int_equal(walk(hqx, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 1);
    assert_string_equal(r.names[0], "payload.exe");
    assert_int_equal(r.lens[0], n);
    assert_memory_equal(r.data[0], data, n);
    free(hqx);

    /* Truncated right after the mark: reported, nothing delivered. */
    struct tu_rec r2 = {0};
    assert_int_equal(walk("(This file must be converted with BinHex 4.0)\n:!!!:\n", &r2), 0);
    assert_int_equal(r2.nmembers, 0);
    assert_true(tu_find_issue(&r2, KHX_WALK_CORRUPT) >= 0);
}

static void mime_binhex_run_length_bounded(void **state)
{
    (void)state;
    /* 'A' then many "0x90 0xFF" runs: 32 KiB of output from a few hundred
     * bytes of text. With a 1 KiB member limit the expansion stops. */
    static const char alphabet[] =
        "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
    struct khx_buf raw, out;
    khx_buf_init(&raw, 1 << 20);
    khx_buf_init(&out, 1 << 20);
    khx_buf_append_u8(&raw, 'A');
    for (int i = 0; i < 128; i++)
        khx_buf_append(&raw, "\x90\xFF", 2);
    khx_buf_printf(&out, "(This file must be converted with BinHex 4.0)\n:");
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < raw.len; i++) {
        acc = (acc << 8) | raw.data[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            khx_buf_append_u8(&out, (uint8_t)alphabet[(acc >> bits) & 0x3F]);
        }
    }
    khx_buf_printf(&out, ":\n");
    khx_buf_append_u8(&out, 0);
    struct khx_walk_limits lim = tu_generous;
    lim.max_member_size = 1024;
    struct tu_rec r = {0};
    assert_int_equal(walk_lim((const char *)out.data, out.len - 1, &lim, &r), 0);
    tu_rec_dump(&r);
    assert_true(tu_find_issue(&r, KHX_WALK_MAX_FILESIZE) >= 0);
    khx_buf_free(&raw);
    khx_buf_free(&out);
}

static void mime_nested_multipart_and_message_rfc822(void **state)
{
    (void)state;
    static const char msg[] = "From: a@example.org\n"
                              "Content-Type: multipart/mixed; boundary=outer\n"
                              "\n"
                              "--outer\n"
                              "Content-Type: multipart/alternative; boundary=inner\n"
                              "\n"
                              "--inner\n"
                              "Content-Type: text/html\n"
                              "\n"
                              "<b>" TU_MARKER "</b>\n"
                              "--inner--\n"
                              "--outer\n"
                              "Content-Type: message/rfc822\n"
                              "\n"
                              "From: b@example.org\n"
                              "Content-Type: application/zip; name=fwd.zip\n"
                              "Content-Transfer-Encoding: base64\n"
                              "\n" MARKER_B64 "\n"
                              "--outer--\n";
    struct tu_rec r = {0};
    assert_int_equal(walk(msg, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 2);
    assert_string_equal(r.names[0], "part-1");
    assert_true(r.marker[0]);
    assert_string_equal(r.names[1], "fwd.zip");
    assert_true(r.marker[1]);
}

static void mime_mbox_every_message(void **state)
{
    (void)state;
    static const char msg[] = "From a@example.org Thu Jul 31 13:49:50 2008\n"
                              "From: a@example.org\n"
                              "Content-Type: application/octet-stream; name=one.bin\n"
                              "Content-Transfer-Encoding: base64\n"
                              "\n" MARKER_B64 "\n"
                              "\n"
                              "From b@example.org Thu Jul 31 13:50:00 2008\n"
                              "From: b@example.org\n"
                              "Content-Type: application/octet-stream; name=two.bin\n"
                              "Content-Transfer-Encoding: base64\n"
                              "\n" MARKER_B64 "\n";
    assert_true(is_mail(msg));
    struct tu_rec r = {0};
    assert_int_equal(walk(msg, &r), 0);
    tu_rec_dump(&r);
    assert_int_equal(r.nmembers, 2);
    assert_string_equal(r.names[0], "one.bin");
    assert_string_equal(r.names[1], "two.bin");
    assert_true(r.marker[0] && r.marker[1]);
}

/* The attachment is behind boundary Y; the headers make a strict parser
 * split at X (or nowhere). Each variant must still give the attachment. */
static void mime_boundary_tricks_all_readings_taken(void **state)
{
    (void)state;
    static const char *const heads[] = {
        "Content-Type: multipart/mixed; boundary=X; boundary=Y\n",
        "Content-Type: multipart/mixed; boundary=X\nContent-Type: multipart/mixed; boundary=Y\n",
        "Content-Disposition: attachment; boundary=\"X\"\n"
        "Content-Type: multipart/mixed; boundary=\"Y\"\n",
        "Content-Type(meow): multipart/mixed; boundary=\"Y\"\n",
        "Content-Type: multipart/mixed; boundary=\"Y\"\n"
        "Content-Disposition: attachment; boundary*=utf-8''X\n",
        "Content-Type: multipart/mixed; boundary=\"X;\"\n",
        "Content-Type: multipart/mixed (a comment); boundary=Q\n",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(heads); i++) {
        const char *y = strstr(heads[i], "X;") ? "X;" : "Y";
        char msg[2048];
        snprintf(msg, sizeof(msg),
                 "Subject: trick\nFrom: a@example.org\nMIME-Version: 1.0\n%s\n"
                 "--X\nContent-Type: text/plain\n\nbypass\n--X--\n"
                 "--%s\nContent-Type: application/octet-stream\n"
                 "Content-Transfer-Encoding: base64\n"
                 "Content-Disposition: attachment; filename=\"clam.exe\"\n\n" MARKER_B64
                 "\n--%s--\n",
                 heads[i], y, y);
        assert_true(is_mail(msg));
        struct tu_rec r = {0};
        assert_int_equal(walk(msg, &r), 0);
        printf("variant %zu\n", i);
        tu_rec_dump(&r);
        int m = tu_find_member(&r, "clam.exe");
        assert_true(m >= 0);
        assert_true(r.marker[m]);
    }
}

/* ------------------------------------------------------------------------ */
/* Limits and hostile input                                                  */
/* ------------------------------------------------------------------------ */

static char *many_parts(int n)
{
    struct khx_buf b;
    khx_buf_init(&b, 1 << 20);
    khx_buf_printf(&b, "From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n");
    for (int i = 0; i < n; i++)
        khx_buf_printf(&b,
                       "--b\nContent-Type: application/octet-stream; name=f%d.bin\n"
                       "Content-Transfer-Encoding: base64\n\n" MARKER_B64 "\n",
                       i);
    khx_buf_printf(&b, "--b--\n");
    khx_buf_append_u8(&b, 0);
    return (char *)khx_buf_steal(&b, NULL);
}

static void mime_limits_members_size_budget_deadline(void **state)
{
    (void)state;
    char *msg = many_parts(10);
    size_t len = strlen(msg);

    struct khx_walk_limits lim = tu_generous;
    lim.max_members = 3;
    struct tu_rec r = {0};
    assert_int_equal(walk_lim(msg, len, &lim, &r), 0);
    assert_int_equal(r.nmembers, 3);
    assert_true(tu_find_issue(&r, KHX_WALK_MAX_FILES) >= 0);

    lim = tu_generous;
    lim.max_member_size = 4;
    struct tu_rec r2 = {0};
    assert_int_equal(walk_lim(msg, len, &lim, &r2), 0);
    assert_int_equal(r2.nmembers, 0);
    assert_true(tu_find_issue(&r2, KHX_WALK_MAX_FILESIZE) >= 0);

    lim = tu_generous;
    lim.max_total = 2 * strlen(TU_MARKER) + 1;
    struct tu_rec r3 = {0};
    assert_int_equal(walk_lim(msg, len, &lim, &r3), 0);
    assert_int_equal(r3.nmembers, 2);
    assert_true(tu_find_issue(&r3, KHX_WALK_MAX_SCANSIZE) >= 0);

    lim = tu_generous;
    lim.deadline_ms = 1; /* long past */
    struct tu_rec r4 = {0};
    assert_int_equal(walk_lim(msg, len, &lim, &r4), 0);
    assert_int_equal(r4.nmembers, 0);
    assert_true(tu_find_issue(&r4, KHX_WALK_MAX_TIME) >= 0);

    struct tu_rec r5 = {.stop_after = 2, .stop_value = 42};
    assert_int_equal(walk_lim(msg, len, &tu_generous, &r5), 42);
    assert_int_equal(r5.nmembers, 2);
    free(msg);
}

static void mime_deep_nesting_bounded(void **state)
{
    (void)state;
    struct khx_buf b;
    khx_buf_init(&b, 1 << 20);
    khx_buf_printf(&b, "From: a@example.org\n");
    for (int i = 0; i < 300; i++)
        khx_buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
    khx_buf_printf(&b, "Content-Type: application/x-y; name=deep.bin\n"
                       "Content-Transfer-Encoding: base64\n\n" MARKER_B64 "\n");
    khx_buf_append_u8(&b, 0);
    struct tu_rec r = {0};
    assert_int_equal(walk((const char *)b.data, &r), 0);
    tu_rec_dump(&r);
    /* Whatever is split, nothing recurses past the bound. */
    assert_true(r.nmembers <= 1);
    khx_buf_free(&b);
}

static void mime_malformed_input_is_survived(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "From: \n",
        "Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        "Content-Type: multipart/mixed; boundary=\"unterminated\n\n--x\n",
        "Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: text/plain",
        "Content-Type: text/plain; name*0*=''%; name*1*=%4\n"
        "Content-Transfer-Encoding: base64\n\n====!!!!\n",
        "Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n",
        "Subject: x\nContent-Transfer-Encoding: quoted-printable\n"
        "Content-Type: text/html\n\n=",
        "Subject: x\nFrom: y\n\nbegin 644 x\nM\n",
        "Subject: x\nFrom: y\n\n(This file must be converted with BinHex 4.0)\n",
        "From x\n\nFrom y\n\nFrom z\n",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(bad); i++) {
        struct tu_rec r = {0};
        assert_int_equal(walk_lim(bad[i], strlen(bad[i]), &tu_generous, &r), 0);
    }
    uint64_t total = 0;
    struct khx_walk_cb cb = {tu_rec_member, tu_rec_issue, NULL};
    assert_int_equal(khx_mail_walk(NULL, 1, &tu_generous, &total, &cb), KH_EINVAL);
    assert_int_equal(khx_mail_walk((const uint8_t *)"x", 1, NULL, &total, &cb), KH_EINVAL);
    assert_int_equal(khx_mail_walk((const uint8_t *)"x", 1, &tu_generous, NULL, &cb), KH_EINVAL);
    struct khx_walk_cb nocb = {NULL, NULL, NULL};
    assert_int_equal(khx_mail_walk((const uint8_t *)"x", 1, &tu_generous, &total, &nocb),
                     KH_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* ClamAV's sample mails                                                     */
/* ------------------------------------------------------------------------ */

static int sample_sha_cb(void *ud, const char *name, const uint8_t *data, size_t len)
{
    int *hits = ud;
    uint8_t h[32];
    char hex[65];
    (void)name;
    assert_int_equal(khx_sha256(data, len, h), 0);
    khx_hex_encode(h, 32, hex);
    /* clam.exe, MANIFEST.md */
    if (strncmp(hex, "71e7b604", 8) == 0 && len == 544)
        (*hits)++;
    return 0;
}

static void mime_clamav_sample_mails_give_clam_exe(void **state)
{
    (void)state;
    static const char *const files[] = {
        "clam.mail",
        "clam.exe.mbox.base64",
        "clam.exe.mbox.uu",
        "clam.exe.binhex",
        "clam.mail-boundary-content-disposition.eml",
        "clam.mail-comment-header-name.eml",
        "clam.mail-disposition-rfc2231-boundary.eml",
        "clam.mail-multiple-boundaries.eml",
        "clam.mail-multiple-content-type.eml",
        "clam.mail-nested-comment-header-name.eml",
        "clam.mail-semicolon-boundary.eml",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(files); i++) {
        size_t len;
        uint8_t *data = tu_load_clamav_xor(files[i], &len);
        if (data == NULL)
            return;
        assert_int_equal(khx_filetype(data, len), KHX_FT_MAIL);
        int hits = 0;
        uint64_t total = 0;
        struct khx_walk_cb cb = {sample_sha_cb, NULL, &hits};
        assert_int_equal(khx_container_walk(data, len, KHX_FT_MAIL, &tu_generous, &total, &cb), 0);
        printf("  %s: clam.exe found %d time(s)\n", files[i], hits);
        assert_true(hits >= 1);
        free(data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(filetype_mail_headers_mbox_and_binhex),
        cmocka_unit_test(filetype_mail_negatives),
        cmocka_unit_test(mime_multipart_base64_attachment_named),
        cmocka_unit_test(mime_part_names_rfc2231_and_rfc2047),
        cmocka_unit_test(mime_quoted_printable_html_delivered),
        cmocka_unit_test(mime_uuencoded_block_in_text_and_as_encoding),
        cmocka_unit_test(mime_binhex_file_data_fork),
        cmocka_unit_test(mime_binhex_run_length_bounded),
        cmocka_unit_test(mime_nested_multipart_and_message_rfc822),
        cmocka_unit_test(mime_mbox_every_message),
        cmocka_unit_test(mime_boundary_tricks_all_readings_taken),
        cmocka_unit_test(mime_limits_members_size_budget_deadline),
        cmocka_unit_test(mime_deep_nesting_bounded),
        cmocka_unit_test(mime_malformed_input_is_survived),
        cmocka_unit_test(mime_clamav_sample_mails_give_clam_exe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
