/*
 * Encoding and decoding of the sandbox wire messages (see proto.h for the
 * format). The decoders are the trust boundary in both directions, so they
 * check every length before reading, every count against its maximum and
 * every enum against its range, and name the field at fault.
 */
#include "proto.h"

#include <string.h>

#include "khx.h"

/* A cursor over an output buffer; `bad` latches the first overflow so that
 * the encoders can write field after field and check once. */
struct wr {
    uint8_t *p;
    size_t len, cap;
    int bad;
};

static void put(struct wr *w, const void *src, size_t n)
{
    if (w->bad || n > w->cap - w->len) {
        w->bad = 1;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_u16(struct wr *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(w, b, 2);
}

static void put_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}

static void put_u64(struct wr *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}

/* A string field of an array of `size` bytes: its length must leave room
 * for the terminator the decoder adds. */
static void put_str(struct wr *w, const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n >= size) {
        w->bad = 1;
        return;
    }
    put_u16(w, (uint16_t)n);
    put(w, s, n);
}

static void put_hdr(struct wr *w, int type, uint64_t id)
{
    put_u32(w, SBX_PROTO_MAGIC);
    put_u16(w, SBX_PROTO_VERSION);
    put_u16(w, (uint16_t)type);
    put_u64(w, id);
}

/* A cursor over an input record. */
struct rd {
    const uint8_t *p;
    size_t len, off;
};

static int get(struct rd *r, void *dst, size_t n)
{
    if (n > r->len - r->off)
        return -1;
    memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 0;
}

static int get_u16(struct rd *r, uint16_t *v)
{
    uint8_t b[2];
    if (get(r, b, 2) != 0)
        return -1;
    *v = (uint16_t)(b[0] | (b[1] << 8));
    return 0;
}

static int get_u32(struct rd *r, uint32_t *v)
{
    uint8_t b[4];
    if (get(r, b, 4) != 0)
        return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int get_u64(struct rd *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (get_u32(r, &lo) != 0 || get_u32(r, &hi) != 0)
        return -1;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

static int get_i32(struct rd *r, int *v)
{
    uint32_t u;
    if (get_u32(r, &u) != 0)
        return -1;
    *v = (int)(int32_t)u;
    return 0;
}

/* Reads a string field into dst[size]: -1 when truncated, -2 when too long
 * for the array, -3 when it holds a NUL byte. */
static int get_str(struct rd *r, char *dst, size_t size)
{
    uint16_t n;
    if (get_u16(r, &n) != 0)
        return -1;
    if (n >= size)
        return -2;
    if (get(r, dst, n) != 0)
        return -1;
    if (memchr(dst, '\0', n) != NULL)
        return -3;
    dst[n] = '\0';
    return 0;
}

static const char *str_problem(int rc)
{
    return rc == -1 ? "is truncated" : rc == -2 ? "is too long" : "holds a NUL byte";
}

/* Checks the header; returns the type, or 0 with err set. */
static int get_hdr(struct rd *r, uint64_t *id, const char *what, char *err, size_t errlen)
{
    uint32_t magic;
    uint16_t version, type;
    if (r->len < SBX_HDR_LEN) {
        khx_errf(err, errlen, "%s: %zu bytes, shorter than the header", what, r->len);
        return 0;
    }
    if (r->len > SBX_MSG_MAX) {
        khx_errf(err, errlen, "%s: %zu bytes, over the %d-byte limit", what, r->len, SBX_MSG_MAX);
        return 0;
    }
    (void)get_u32(r, &magic);
    (void)get_u16(r, &version);
    (void)get_u16(r, &type);
    (void)get_u64(r, id);
    if (magic != SBX_PROTO_MAGIC) {
        khx_errf(err, errlen, "%s: bad magic 0x%08x", what, magic);
        return 0;
    }
    if (version != SBX_PROTO_VERSION) {
        khx_errf(err, errlen, "%s: version %u, expected %d", what, version, SBX_PROTO_VERSION);
        return 0;
    }
    if (type == 0) {
        khx_errf(err, errlen, "%s: message type 0", what);
        return 0;
    }
    return type;
}

static int check_end(const struct rd *r, const char *what, char *err, size_t errlen)
{
    if (r->off == r->len)
        return KH_OK;
    khx_errf(err, errlen, "%s: %zu bytes left over after the last field", what, r->len - r->off);
    return KH_EFORMAT;
}

size_t sbx_proto_encode_request(const struct sbx_request *rq, uint8_t *buf, size_t cap)
{
    struct wr w = {buf, 0, cap, 0};
    if (rq->id == 0)
        return 0;
    put_hdr(&w, SBX_MSG_SCAN, rq->id);
    put_str(&w, rq->name, sizeof(rq->name));
    return w.bad ? 0 : w.len;
}

int sbx_proto_decode_request(const uint8_t *buf, size_t len, struct sbx_request *out, char *err,
                             size_t errlen)
{
    struct rd r = {buf, len, 0};
    int type = get_hdr(&r, &out->id, "request", err, errlen);
    if (type == 0)
        return KH_EFORMAT;
    if (type != SBX_MSG_SCAN) {
        khx_errf(err, errlen, "request: unknown type %d", type);
        return KH_EFORMAT;
    }
    if (out->id == 0) {
        khx_errf(err, errlen, "request: id 0");
        return KH_EFORMAT;
    }
    int rc = get_str(&r, out->name, sizeof(out->name));
    if (rc != 0) {
        khx_errf(err, errlen, "request %llu: name %s", (unsigned long long)out->id,
                 str_problem(rc));
        return KH_EFORMAT;
    }
    return check_end(&r, "request", err, errlen);
}

/* The checks shared by the encoder and the decoder of a RESULT: the worker
 * cannot claim more listed findings of a severity than it counted. */
static const char *result_problem(const struct sbx_result *res)
{
    if (res->status > 0 || res->status < KH_EABORTED)
        return "status is not an engine error code";
    if (res->sha256_valid != 0 && res->sha256_valid != 1)
        return "sha256_valid is neither 0 nor 1";
    if (res->ndetections > SBX_MAX_DETECTIONS)
        return "more detections than the maximum";
    uint32_t malware = 0, notice = 0;
    for (uint32_t i = 0; i < res->ndetections; i++) {
        const struct sbx_detection *d = &res->det[i];
        if (d->severity == KH_SEV_MALWARE)
            malware++;
        else if (d->severity == KH_SEV_NOTICE)
            notice++;
        else
            return "a detection's severity is out of range";
        if (d->kind < 0 || d->kind >= KH_SIG_KIND_COUNT)
            return "a detection's kind is out of range";
    }
    if (malware > res->detections || notice > res->notices)
        return "more detections listed than counted";
    return NULL;
}

size_t sbx_proto_encode_answer(const struct sbx_answer *a, uint8_t *buf, size_t cap)
{
    struct wr w = {buf, 0, cap, 0};
    switch (a->type) {
    case SBX_MSG_READY:
        put_hdr(&w, a->type, 0);
        put_u64(&w, (uint64_t)a->db_created);
        put_u64(&w, a->db_signatures);
        put_u32(&w, a->threads);
        if (a->threads == 0)
            return 0;
        break;
    case SBX_MSG_ERROR:
        if (a->code >= 0 || a->code < KH_EABORTED)
            return 0;
        put_hdr(&w, a->type, 0);
        put_u32(&w, (uint32_t)a->code);
        put_str(&w, a->msg, sizeof(a->msg));
        break;
    case SBX_MSG_RESULT: {
        const struct sbx_result *res = &a->result;
        if (a->id == 0 || result_problem(res) != NULL)
            return 0;
        put_hdr(&w, a->type, a->id);
        put_u32(&w, (uint32_t)res->status);
        put_u64(&w, res->size);
        uint8_t valid = (uint8_t)res->sha256_valid;
        put(&w, &valid, 1);
        put(&w, res->sha256, 32);
        put(&w, res->md5, 16);
        put_u32(&w, res->ndetections);
        put_u32(&w, res->detections);
        put_u32(&w, res->notices);
        for (uint32_t i = 0; i < res->ndetections; i++) {
            const struct sbx_detection *d = &res->det[i];
            put_u32(&w, (uint32_t)d->severity);
            put_u32(&w, (uint32_t)d->kind);
            put_str(&w, d->name, sizeof(d->name));
            put_str(&w, d->inner_path, sizeof(d->inner_path));
        }
        break;
    }
    default:
        return 0;
    }
    return w.bad ? 0 : w.len;
}

static int decode_result(struct rd *r, struct sbx_answer *out, char *err, size_t errlen)
{
    struct sbx_result *res = &out->result;
    unsigned long long id = (unsigned long long)out->id;
    uint8_t valid;
    if (get_i32(r, &res->status) != 0 || get_u64(r, &res->size) != 0 || get(r, &valid, 1) != 0 ||
        get(r, res->sha256, 32) != 0 || get(r, res->md5, 16) != 0 ||
        get_u32(r, &res->ndetections) != 0 || get_u32(r, &res->detections) != 0 ||
        get_u32(r, &res->notices) != 0) {
        khx_errf(err, errlen, "result %llu: truncated before the detections", id);
        return KH_EFORMAT;
    }
    res->sha256_valid = valid;
    if (res->ndetections > SBX_MAX_DETECTIONS) {
        khx_errf(err, errlen, "result %llu: %u detections, over the maximum of %d", id,
                 res->ndetections, SBX_MAX_DETECTIONS);
        return KH_EFORMAT;
    }
    for (uint32_t i = 0; i < res->ndetections; i++) {
        struct sbx_detection *d = &res->det[i];
        if (get_i32(r, &d->severity) != 0 || get_i32(r, &d->kind) != 0) {
            khx_errf(err, errlen, "result %llu: detection %u is truncated", id, i);
            return KH_EFORMAT;
        }
        int rc = get_str(r, d->name, sizeof(d->name));
        if (rc != 0) {
            khx_errf(err, errlen, "result %llu: detection %u's name %s", id, i, str_problem(rc));
            return KH_EFORMAT;
        }
        rc = get_str(r, d->inner_path, sizeof(d->inner_path));
        if (rc != 0) {
            khx_errf(err, errlen, "result %llu: detection %u's inner path %s", id, i,
                     str_problem(rc));
            return KH_EFORMAT;
        }
    }
    const char *problem = result_problem(res);
    if (problem != NULL) {
        khx_errf(err, errlen, "result %llu: %s", id, problem);
        return KH_EFORMAT;
    }
    return check_end(r, "result", err, errlen);
}

int sbx_proto_decode_answer(const uint8_t *buf, size_t len, struct sbx_answer *out, char *err,
                            size_t errlen)
{
    struct rd r = {buf, len, 0};
    uint64_t created;
    int rc;
    out->type = get_hdr(&r, &out->id, "answer", err, errlen);
    switch (out->type) {
    case 0:
        return KH_EFORMAT;
    case SBX_MSG_READY:
        if (out->id != 0 || get_u64(&r, &created) != 0 || get_u64(&r, &out->db_signatures) != 0 ||
            get_u32(&r, &out->threads) != 0 || out->threads == 0) {
            khx_errf(err, errlen, "ready: malformed");
            return KH_EFORMAT;
        }
        out->db_created = (int64_t)created;
        return check_end(&r, "ready", err, errlen);
    case SBX_MSG_ERROR:
        if (out->id != 0 || get_i32(&r, &out->code) != 0 || out->code >= 0 ||
            out->code < KH_EABORTED) {
            khx_errf(err, errlen, "error message: malformed");
            return KH_EFORMAT;
        }
        if ((rc = get_str(&r, out->msg, sizeof(out->msg))) != 0) {
            khx_errf(err, errlen, "error message: text %s", str_problem(rc));
            return KH_EFORMAT;
        }
        return check_end(&r, "error message", err, errlen);
    case SBX_MSG_RESULT:
        if (out->id == 0) {
            khx_errf(err, errlen, "result: id 0");
            return KH_EFORMAT;
        }
        return decode_result(&r, out, err, errlen);
    default:
        khx_errf(err, errlen, "answer: unknown type %d", out->type);
        return KH_EFORMAT;
    }
}
