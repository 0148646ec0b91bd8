/*
 * The server's HTTPS client for sending upward (upward.h), on libcurl.
 * libcurl's global state is set up once per process: curl_global_init is
 * not thread-safe in every version still shipped.
 */
#include "upward.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct answer {
    char *data;
    size_t len, max;
};

/* Keeps the first `max` bytes and reads past the rest, so a long answer
 * neither grows memory nor fails the request. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t n = size * nmemb, keep = a->max - a->len;
    if (keep > n)
        keep = n;
    memcpy(a->data + a->len, p, keep);
    a->len += keep;
    return n;
}

int up_post(const struct up_request *rq, long *status, char **answer, size_t *answer_len, char *err,
            size_t errlen)
{
    struct curl_slist *headers = NULL, *tmp;
    struct answer a = {NULL, 0, rq->answer_max};
    char curl_err[CURL_ERROR_SIZE] = "";
    CURL *c = NULL;
    CURLcode cc = CURLE_OK;
    int r = -1;

    *status = 0;
    *answer = NULL;
    *answer_len = 0;
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK || (c = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "cannot start libcurl");
        goto out;
    }
    if ((a.data = malloc(a.max + 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* "Expect:" off: a receiver that does not answer 100-continue would
     * otherwise cost a second's wait per request. */
    for (size_t i = 0; rq->headers != NULL && rq->headers[i] != NULL; i++) {
        if ((tmp = curl_slist_append(headers, rq->headers[i])) == NULL)
            goto nomem;
        headers = tmp;
    }
    if ((tmp = curl_slist_append(headers, "Expect:")) == NULL)
        goto nomem;
    headers = tmp;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, curl_err);
    SET(CURLOPT_URL, rq->url);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (rq->ca != NULL && rq->ca[0] != '\0')
        SET(CURLOPT_CAINFO, rq->ca);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT, rq->connect_timeout);
    SET(CURLOPT_TIMEOUT, rq->timeout);
    SET(CURLOPT_USERAGENT, rq->user_agent);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, rq->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &a);
#undef SET
    if (cc == CURLE_OK)
        cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_err[0] != '\0' ? curl_err : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    a.data[a.len] = '\0';
    *answer = a.data;
    *answer_len = a.len;
    a.data = NULL;
    r = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    free(a.data);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return r;
}
