/*
 * libFuzzer target for the sensor's HTTP request-head parser
 * (sensor/app_http.c, sen_http_request). A parsed request must give
 * NUL-terminated fields within their sizes, a lowercase host without a
 * port, and a URL that starts with the host.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[256], url[1025], line[512];
    uint8_t *copy = malloc(size ? size : 1);
    int r;

    memcpy(copy, data, size);
    r = sen_http_request(copy, size, host, url, line);
    free(copy);
    if (r == 1) {
        size_t hn = strnlen(host, sizeof(host));
        if (hn == sizeof(host) || strnlen(url, sizeof(url)) == sizeof(url) ||
            strnlen(line, sizeof(line)) == sizeof(line))
            abort();
        for (size_t i = 0; i < hn; i++)
            if (host[i] >= 'A' && host[i] <= 'Z')
                abort();
        if (strncmp(url, host, hn) != 0)
            abort();
    }
    return 0;
}
