/*
 * libFuzzer target for the NetFlow v5 / v9 / IPFIX parser (sensor/
 * netflow.c), which reads UDP datagrams from anyone who can reach the
 * collector's port. The input is a sequence of datagrams, each prefixed
 * by a 2-byte length and a 1-byte exporter number, fed to one parser so
 * that templates from one datagram are used by the next (and the template
 * cache sees many exporters). Every flow observation must be an ip.dst
 * with an IPv4 or IPv6 address equal to the tuple's destination.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "logs.h"

static void check(void *ctx, const struct sen_obs *o)
{
    (void)ctx;
    if (o->where != SEN_IP_DST)
        abort();
    if (o->addr_family != AF_INET && o->addr_family != AF_INET6)
        abort();
    if (o->t.family != o->addr_family ||
        memcmp(o->addr, o->t.dst, o->addr_family == AF_INET ? 4 : 16) != 0)
        abort();
    if (o->evidence == NULL || strlen(o->evidence) > 512)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sen_netflow *nf = NULL;
    struct sen_netflow_stats st;
    size_t off = 0;
    uint64_t n = 0;

    if (sen_netflow_new(&nf) != 0)
        return 0;
    while (off + 3 <= size) {
        size_t len = (size_t)data[off] << 8 | data[off + 1];
        uint8_t exporter[4] = {192, 0, 2, data[off + 2]};
        int rc;
        off += 3;
        if (len > size - off)
            len = size - off;
        /* An exact-size copy lets ASan see any read past the datagram. */
        uint8_t *dg = malloc(len ? len : 1);
        if (dg == NULL)
            break;
        memcpy(dg, data + off, len);
        rc = sen_netflow_datagram(nf, AF_INET, exporter, dg, len, 1, check, NULL);
        free(dg);
        if (rc < -1)
            abort();
        off += len;
        n++;
    }
    sen_netflow_stats(nf, &st);
    if (st.datagrams != n || (st.malformed > 0 && st.first_error[0] == '\0'))
        abort();
    sen_netflow_free(nf);
    return 0;
}
