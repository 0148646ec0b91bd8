/*
 * Tests of the server's reply helpers and router that need no database:
 * error messages quoting hostile client text stay valid JSON with the right
 * status (found by fuzz_api: a path with a byte like %FF used to turn a 404
 * into a 500 "out of memory"), unknown paths and methods, test accessors.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server.h"
#include "testutil.h"

static void req_init(struct srv_req *r, const char *method, const char *path)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->path = path;
    r->resp.fd = -1;
}

static void req_free(struct srv_req *r)
{
    free(r->resp.body);
    for (unsigned i = 0; i < r->resp.nheaders; i++) {
        free(r->resp.headers[i].name);
        free(r->resp.headers[i].value);
    }
}

static json_t *resp_json(struct srv_req *r)
{
    assert_non_null(r->resp.body);
    json_t *j = json_loadb(r->resp.body, r->resp.body_len, 0, NULL);
    assert_non_null(j);
    return j;
}

static void reply_error_invalid_utf8_stays_json(void **state)
{
    (void)state;
    struct srv_req r;
    req_init(&r, "GET", "/x");
    srv_reply_error(&r, 404, "not_found", "no such endpoint: %s", "/api/v1/nosuch\xff\xc3");
    assert_int_equal(r.resp.status, 404);
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "not_found");
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "no such endpoint: /api/v1/nosuch??");
    json_decref(j);
    req_free(&r);
}

static void reply_error_truncated_multibyte_stays_json(void **state)
{
    (void)state;
    struct srv_req r;
    char path[1200] = "/api/x";
    for (int i = 0; i < 300; i++)
        strcat(path, "\xc3\xa9"); /* é, cut somewhere by the 512-byte message */
    req_init(&r, "GET", path);
    srv_reply_error(&r, 404, "not_found", "no such endpoint: %s", path);
    assert_int_equal(r.resp.status, 404);
    json_decref(resp_json(&r));
    req_free(&r);
}

static void router_unknown_api_path_is_404_even_with_bad_bytes(void **state)
{
    (void)state;
    struct srv_req r;
    req_init(&r, "GET", "/api/v1/nosuch\xff");
    srv_dispatch(&r);
    assert_int_equal(r.resp.status, 404);
    json_decref(resp_json(&r));
    req_free(&r);
}

static void router_wrong_method_is_405(void **state)
{
    (void)state;
    struct srv_req r;
    req_init(&r, "DELETE", "/api/v1/users/\xff");
    srv_dispatch(&r);
    assert_int_equal(r.resp.status, 405);
    json_decref(resp_json(&r));
    req_free(&r);
}

static void test_accessors_read_query_and_headers(void **state)
{
    (void)state;
    static const char *const headers[] = {"Cookie", "a=1; khien_session=abc", "X-Test", "v", NULL};
    struct srv_req r;
    req_init(&r, "GET", "/");
    r.query_string = "page=3&per_page=20&q=a%20b+c";
    r.fake_headers = headers;
    const char *page = srv_query(&r, "page"), *per = srv_query(&r, "per_page");
    assert_string_equal(page, "3"); /* still valid after the second lookup */
    assert_string_equal(per, "20");
    assert_string_equal(srv_query(&r, "q"), "a b c");
    assert_null(srv_query(&r, "missing"));
    assert_string_equal(srv_header(&r, "x-test"), "v");
    assert_string_equal(srv_cookie(&r, "khien_session"), "abc");
    int64_t limit, offset;
    srv_paging(&r, &limit, &offset);
    assert_int_equal(limit, 20);
    assert_int_equal(offset, 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reply_error_invalid_utf8_stays_json),
        cmocka_unit_test(reply_error_truncated_multibyte_stays_json),
        cmocka_unit_test(router_unknown_api_path_is_404_even_with_bad_bytes),
        cmocka_unit_test(router_wrong_method_is_405),
        cmocka_unit_test(test_accessors_read_query_and_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
