/*
 * Small helpers every part of the sensor shares: the names of the places an
 * observation comes from, and address formatting.
 */
#include "sensor.h"

#include <arpa/inet.h>
#include <string.h>

static const char *const where_names[SEN_WHERE_COUNT] = {
    [SEN_IP_DST] = "ip.dst",         [SEN_IP_SRC] = "ip.src",       [SEN_DNS_QUERY] = "dns.query",
    [SEN_DNS_ANSWER] = "dns.answer", [SEN_TLS_SNI] = "tls.sni",     [SEN_TLS_JA3] = "tls.ja3",
    [SEN_TLS_JA4] = "tls.ja4",       [SEN_HTTP_HOST] = "http.host", [SEN_HTTP_URL] = "http.url",
    [SEN_QUIC_SNI] = "quic.sni",
};

const char *sen_where_name(int where)
{
    if (where < 0 || where >= SEN_WHERE_COUNT)
        return "unknown";
    return where_names[where];
}

void sen_addr_format(int family, const uint8_t *addr, char out[46])
{
    if ((family != AF_INET && family != AF_INET6) || inet_ntop(family, addr, out, 46) == NULL)
        strcpy(out, "-");
}
