/*
 * libFuzzer target for QUIC Initial decryption (sensor/app_quic.c), which
 * reads every UDP datagram that looks like a QUIC long-header packet. The
 * first input byte chooses how the rest is used:
 *
 *   - even: the bytes are a datagram, given to sen_quic_initial() as is
 *     (header parsing, key derivation, tag failure paths);
 *   - odd: the bytes are the plaintext frames of a client Initial, sealed
 *     here with the version-1 Initial keys of a fixed DCID, so that the
 *     frame walk, the CRYPTO joining and the ClientHello parser see bytes
 *     the fuzzer controls instead of AES output. A sealed packet must never
 *     be reported as "not an Initial" by its header: it gives 1, 0 or -1
 *     from its frames only;
 *   - 3 (mod 4): the bytes are several packets' plaintext frames separated
 *     by "JOIN", each sealed with its own packet number and given in turn
 *     to sen_quic_initial_join() for one connection (and the second byte
 *     picks another connection for some of them), so that joining CRYPTO
 *     data across packets, its conflicts and its bounds are exercised. The
 *     table is freed at the end with whatever is left in it.
 *
 * Every result is -1, 0 or 1, and a parsed hello has a JA4 starting "q".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "decode.h"

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
    if (HMAC(EVP_sha256(), secret, 32, info, k, t, &tl) == NULL)
        abort();
    memcpy(out, t, n);
}

/* Seals frames[flen] (padded to 1162 bytes) into out with packet number
 * pn; returns its length. */
static size_t seal(const uint8_t *frames, size_t flen, unsigned pn, uint8_t *out)
{
    static const uint8_t salt[] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                   0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
    static const uint8_t dcid[] = {8, 7, 6, 5, 4, 3, 2, 1};
    static uint8_t pt[4096];
    uint8_t initial[32], client[32], key[16], iv[12], hp[16], mask[16];
    unsigned il = 0;
    int n = 0;
    size_t len = 0, payload = flen < 1162 ? 1162 : flen;

    if (HMAC(EVP_sha256(), salt, sizeof(salt), dcid, sizeof(dcid), initial, &il) == NULL)
        abort();
    expand_label(initial, "client in", client, 32);
    expand_label(client, "quic key", key, 16);
    expand_label(client, "quic iv", iv, 12);
    expand_label(client, "quic hp", hp, 16);
    out[len++] = 0xc1;
    out[len++] = 0, out[len++] = 0, out[len++] = 0, out[len++] = 1;
    out[len++] = sizeof(dcid);
    memcpy(out + len, dcid, sizeof(dcid));
    len += sizeof(dcid);
    out[len++] = 0;
    out[len++] = 0;
    size_t length = 2 + payload + 16;
    out[len++] = (uint8_t)(0x40 | (length >> 8));
    out[len++] = (uint8_t)(length & 0xff);
    size_t pn_off = len;
    out[len++] = (uint8_t)(pn >> 8), out[len++] = (uint8_t)pn;
    uint8_t nonce[12];
    memcpy(nonce, iv, 12);
    nonce[10] ^= (uint8_t)(pn >> 8);
    nonce[11] ^= (uint8_t)pn;
    memset(pt, 0, payload);
    memcpy(pt, frames, flen);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, out, (int)len) != 1 ||
        EVP_EncryptUpdate(c, out + len, &n, pt, (int)payload) != 1 ||
        EVP_EncryptFinal_ex(c, out + len + payload, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + len + payload) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    len += payload + 16;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, hp, NULL) != 1 ||
        EVP_EncryptUpdate(c, mask, &n, out + pn_off + 4, 16) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    out[0] ^= mask[0] & 0x0f;
    out[pn_off] ^= mask[1];
    out[pn_off + 1] ^= mask[2];
    return len;
}

static void check(int r, const struct sen_client_hello *ch)
{
    if (r < -1 || r > 1)
        abort();
    if (r == 1 && (ch->ja4[0] != 'q' || strlen(ch->ja4) != 36 ||
                   memchr(ch->sni, '\0', sizeof(ch->sni)) == NULL))
        abort();
}

/* Mode 3: packets separated by "JOIN", joined for one or two connections. */
static void joined(const uint8_t *data, size_t size)
{
    static uint8_t pkt[4096 + 64];
    struct sen_client_hello ch;
    struct sen_tuple a, b;
    struct sen_quic_joins *t = sen_quic_joins_new(2, 10);
    if (t == NULL || size < 1)
        goto out;
    memset(&a, 0, sizeof(a));
    a.family = AF_INET;
    a.sport = 50000;
    a.dport = 443;
    b = a;
    b.sport = 50001;
    uint8_t which = data[0];
    data++, size--;
    for (unsigned part = 0; size > 0 && part < 8; part++) {
        const uint8_t *end = memmem(data, size, "JOIN", 4);
        size_t n = end != NULL ? (size_t)(end - data) : size;
        if (n <= 4096 - 64) {
            size_t len = seal(data, n, part, pkt);
            int r = sen_quic_initial_join(t, (which >> part) & 1 ? &b : &a, part, pkt, len, &ch);
            check(r, &ch);
        }
        if (end == NULL)
            break;
        data += n + 4;
        size -= n + 4;
    }
    sen_quic_joins_expire(t, 5 * 1000000);
out:
    sen_quic_joins_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pkt[4096 + 64];
    struct sen_client_hello ch;
    int r;

    if (size < 1)
        return 0;
    if ((data[0] & 3) == 3) {
        joined(data + 1, size - 1);
        return 0;
    }
    if ((data[0] & 1) == 0) {
        r = sen_quic_initial(data + 1, size - 1, &ch);
    } else {
        if (size - 1 > 4096 - 64)
            return 0;
        size_t n = seal(data + 1, size - 1, 0, pkt);
        r = sen_quic_initial(pkt, n, &ch);
    }
    check(r, &ch);
    return 0;
}
