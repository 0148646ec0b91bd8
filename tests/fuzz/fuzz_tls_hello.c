/*
 * libFuzzer target for the TLS ClientHello parser (sensor/app_tls.c), which
 * reads the first bytes of every TCP connection the sensor sees and the
 * CRYPTO data of QUIC Initials. On each input, with and without the record
 * header and with either JA4 prefix:
 *
 *   - sen_tls_client_hello() never crashes and returns -1, 0 or 1;
 *   - a parsed hello has NUL-terminated fields, a 32-hex-digit JA3, a JA4
 *     of the form a_b_c (10 + 1 + 12 + 1 + 12 characters), and the MD5 of
 *     its JA3 string is its JA3 when the string was not truncated;
 *   - no shorter prefix of a parsed input is refused (-1): it asks for more
 *     bytes (0), which lets the decoder wait for the rest of a split hello,
 *     or, when the input has bytes after the hello, gives the same hello.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "khx.h"

static void check_hello(const struct sen_client_hello *ch, int quic)
{
    char hex[33];
    uint8_t md5[16];
    if (memchr(ch->sni, '\0', sizeof(ch->sni)) == NULL ||
        memchr(ch->alpn, '\0', sizeof(ch->alpn)) == NULL ||
        memchr(ch->ja3_string, '\0', sizeof(ch->ja3_string)) == NULL ||
        memchr(ch->ja4, '\0', sizeof(ch->ja4)) == NULL || strlen(ch->ja3) != 32)
        abort();
    if (strlen(ch->ja4) != 36 || ch->ja4[0] != (quic ? 'q' : 't') || ch->ja4[10] != '_' ||
        ch->ja4[23] != '_')
        abort();
    size_t n = strlen(ch->ja3_string);
    if (n + 1 < sizeof(ch->ja3_string)) {
        if (khx_md5(ch->ja3_string, n, md5) != 0)
            abort();
        khx_hex_encode(md5, 16, hex);
        if (strcmp(hex, ch->ja3) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sen_client_hello ch;
    for (int record = 0; record < 2; record++) {
        int quic = !record;
        int r = sen_tls_client_hello(data, size, record, quic, &ch);
        if (r < -1 || r > 1)
            abort();
        if (r != 1)
            continue;
        check_hello(&ch, quic);
        struct sen_client_hello part;
        size_t cuts[] = {0, size / 2, size - 1};
        for (size_t i = 0; i < 3; i++) {
            int pr = sen_tls_client_hello(data, cuts[i], record, quic, &part);
            if (pr == -1 || (pr == 1 && strcmp(part.ja4, ch.ja4) != 0))
                abort();
        }
    }
    return 0;
}
