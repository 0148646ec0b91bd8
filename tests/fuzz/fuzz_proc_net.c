/*
 * libFuzzer target for the /proc/net/{tcp,tcp6,udp,udp6} line parser
 * (plat_proc_net_parse_line in agent/linux/netconn.c), which reads text the
 * kernel writes but which a hostile mount namespace or a future kernel
 * could shape. The input's first byte picks the protocol and family; the
 * rest is split into lines as the /proc reader splits a file, and each line
 * is handed over in a buffer of exactly its length (no terminator), so that
 * AddressSanitizer sees any read past it. A parsed socket's fields are
 * checked against what the parser promises.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "khx.h"
#include "platform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int proto = (data[0] & 1) ? IPPROTO_UDP : IPPROTO_TCP;
    int family = (data[0] & 2) ? AF_INET6 : AF_INET;
    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = malloc(len ? len : 1);
        if (line == NULL)
            return 0;
        memcpy(line, p, len);
        struct plat_conn c;
        int rc = plat_proc_net_parse_line(line, len, proto, family, &c);
        if (rc != 0 && rc != 1 && rc != KH_EFORMAT)
            abort();
        if (rc == 1) {
            if (c.proto != proto || c.rport == 0 ||
                (c.family != family && !(family == AF_INET6 && c.family == AF_INET)))
                abort();
            if (proto == IPPROTO_TCP && c.state == 10)
                abort();
            if (proto == IPPROTO_UDP && c.state != 0)
                abort();
        }
        free(line);
        p += len + 1;
    }
    return 0;
}
