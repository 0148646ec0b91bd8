/*
 * Tests for the ASCII and HTML normalisers (lib/engine/normalize.c), the views
 * ClamAV's target types 7 and 3 are matched against. The expected outputs were
 * taken from ClamAV 1.4's sigtool (--ascii-normalise, --html-normalise).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "khx.h"

/* ------------------------------------------------------------------------ */
/* Normalisation (expected outputs from ClamAV 1.4 sigtool)                  */
/* ------------------------------------------------------------------------ */

/* Normalises into a buffer of exactly len bytes (ASan catches a write past
 * it) and compares. */
static void check_norm(int html, const char *in, const char *want)
{
    size_t len = strlen(in);
    uint8_t *out = malloc(len ? len : 1);
    assert_non_null(out);
    size_t n = html ? khx_normalize_html((const uint8_t *)in, len, out)
                    : khx_normalize_ascii((const uint8_t *)in, len, out);
    assert_true(n <= len);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        printf("  in  [%s]\n  got [%.*s]\n  want[%s]\n", in, (int)n, (char *)out, want);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    free(out);
}

static void ascii_normalise_like_clamav(void **state)
{
    (void)state;
    check_norm(0, "  Hello\t\tWORLD \001x\303\244y  \n\nEnd  ", " hello world xy end ");
    check_norm(0,
               "ABC\x7F"
               "def",
               "abc\x7F"
               "def");
    check_norm(0, "", "");
    check_norm(0, "\r\n\r\n", " ");
    /* In place works: the output never overtakes the input. */
    char buf[] = "  Mixed   CASE\tText ";
    size_t n = khx_normalize_ascii((uint8_t *)buf, strlen(buf), (uint8_t *)buf);
    assert_int_equal(n, strlen(" mixed case text "));
    assert_memory_equal(buf, " mixed case text ", n);
}

static void html_normalise_text_and_whitespace(void **state)
{
    (void)state;
    check_norm(1, "Hello   World", "hello world");
    check_norm(1, "  a  b  ", "a b");
    check_norm(1, "tab\tx\ny\nz", "tab x y z");
    check_norm(1, "<p>  a  </p>  x", "<p>a </p>x");
    check_norm(1, "<p>a</p>\n<p>b</p>", "<p>a</p><p>b</p>");
    check_norm(1, "<title> A </title>", "<title>a </title>");
}

static void html_normalise_comments_like_clamav(void **state)
{
    (void)state;
    check_norm(1, "a<!-- x -->b", "ab");
    check_norm(1, "a <!-- x --> b", "a b");
    check_norm(1, "a<!DOCTYPE html>b", "ab");
    check_norm(1, "<![CDATA[ x ]]>", "");
    /* ClamAV ends a comment at its first '>'. */
    check_norm(1, "a<!-- <b>x</b> -->b", "ax</b>-->b");
    check_norm(1, "<!-- unterminated", "");
}

static void html_normalise_tags_and_attributes(void **state)
{
    (void)state;
    check_norm(1, "<P  CLASS=Foo   ID=\"X\">T</P>", "<p class=foo id=\"x\">t</p>");
    check_norm(1, "<p a='x\"y'>", "<p a=\"x\"y\">");
    check_norm(1, "<a  href = \"X Y\" >", "<a href=\"x y\">");
    check_norm(1, "</P >", "</p>");
    check_norm(1, "< p>", "<p>");
    check_norm(1, "<p a = \"1\"b=2>", "<p a=\"1\" b=2>");
    check_norm(1, "<p a=\"x\" / >", "<p a=\"x\" />");
    check_norm(1, "<p A=\"&lt;&#65;\">", "<p a=\"<a\">");
    check_norm(1, "<p a=\"x>y\">", "<p a=\"x>y\">");
    check_norm(1, "<p a=\" 1 \">", "<p a=\" 1 \">");
    check_norm(1, "<p \"a\"b>", "<p \"a\"b>");
    check_norm(1, "x<?php echo 1 ?>y", "x<?php echo 1 ?>y");
    check_norm(1, "a<b", "a<b");
    check_norm(1, "<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>");
}

static void html_normalise_script_and_style(void **state)
{
    (void)state;
    check_norm(1, "<script>var X = \"A\";  y</script>", "<script>varx=\"a\";y</script>");
    check_norm(1, "<script>a('b')</script>", "<script>a(\"b\")</script>");
    check_norm(1, "<SCRIPT>w(\"<B CLASS=X>X  Y</B>\")</SCRIPT> x y",
               "<script>w(\"<bclass=x>xy</b>\")</script>x y");
    check_norm(1, "<script>a<!-- b --> c</script>", "<script>a<!--b-->c</script>");
    check_norm(1, "<style>a  \"b\"  c</style>", "<style>a\"b\"c</style>");
    check_norm(1, "<scripts>x  y</scripts>", "<scripts>x y</scripts>");
}

static void html_normalise_character_references(void **state)
{
    (void)state;
    check_norm(1, "x &lt; y &gt; z &quot; &apos; &#39; &#x27;", "x < y > z \" ' ' '");
    check_norm(1, "&#65;&#66;", "ab");
    check_norm(1, "&#X41;", "a");
    check_norm(1, "&AMP;", "&amp;");
    check_norm(1, "&nbsp;", "\xA0");
    check_norm(1, "a&eacute;b",
               "a\xE9"
               "b");
    check_norm(1, "&Eacute;", "\xC9");
    check_norm(1, "&eacutex;", "&eacutex;");
    check_norm(1, "a &#x20; b", "a   b");
    check_norm(1, "&#233;&#160;", "\xE9\xA0");
    /* Above 0xFE ClamAV writes "&#xNNNN;", when the consumed input leaves
     * room for it (here the folded white space does). */
    check_norm(1, "          &#256;", "&#x0100;");
    check_norm(1, "          &euro;", "&#x20ac;");
    /* Without room the reference stays as written: the output never grows. */
    check_norm(1, "&#256;", "&#256;");
    check_norm(1, "&#;", "&#;");
    check_norm(1, "&#99999999999;", "&#99999999999;");
}

static void html_normalise_never_grows(void **state)
{
    (void)state;
    /* Dense references that all want to expand, and quote-space insertions. */
    const char *worst[] = {
        "&#256;&#256;&#256;&#256;&#256;&#256;",
        "&euro;&euro;&euro;&euro;",
        "<p a='1'b a='1'b a='1'b a='1'b>",
        "&#x10FFFF;&#x10FFFF;",
    };
    for (size_t i = 0; i < KHX_ARRAY_LEN(worst); i++) {
        size_t len = strlen(worst[i]);
        uint8_t *out = malloc(len);
        assert_non_null(out);
        size_t n = khx_normalize_html((const uint8_t *)worst[i], len, out);
        assert_true(n <= len);
        free(out);
    }
    uint32_t x = 99;
    for (int round = 0; round < 2000; round++) {
        static const char alphabet[] = "<>&#x;=\"' \t\nAaZ09!-/script";
        size_t len = 1 + round % 64;
        uint8_t in[64];
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            in[i] = (uint8_t)alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
        }
        uint8_t *out = malloc(len);
        assert_non_null(out);
        assert_true(khx_normalize_html(in, len, out) <= len);
        assert_true(khx_normalize_ascii(in, len, out) <= len);
        free(out);
    }
    assert_int_equal(khx_normalize_html(NULL, 5, (uint8_t *)"x"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ascii_normalise_like_clamav),
        cmocka_unit_test(html_normalise_text_and_whitespace),
        cmocka_unit_test(html_normalise_comments_like_clamav),
        cmocka_unit_test(html_normalise_tags_and_attributes),
        cmocka_unit_test(html_normalise_script_and_style),
        cmocka_unit_test(html_normalise_character_references),
        cmocka_unit_test(html_normalise_never_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
