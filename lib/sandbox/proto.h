/*
 * The messages between the agent and its sandboxed scan worker, and the pure
 * functions that encode and decode them (no I/O, no allocation), so that a
 * fuzzer can run both decoders on arbitrary bytes.
 *
 * Every message starts with the same 16-byte header, all integers little-endian:
 *
 *   u32 magic "KSBX"   u16 version   u16 type   u64 id
 *
 * and is sent as one SOCK_SEQPACKET record, so a record is exactly one
 * message and its length is known. Strings travel as a u16 length and that
 * many bytes, without a terminator; a decoder refuses a length at or above
 * the field's size and any NUL byte inside, so every decoded string is
 * NUL-terminated within its array. Each decoder also refuses a record that is
 * shorter or longer than its fields, a count above its maximum, and values
 * outside their enums: the agent treats the worker as untrusted (it parses
 * hostile files and may have been taken over by one), and the worker treats
 * the agent's requests with the same care.
 *
 * Agent -> worker: SCAN (id, name), with the file's descriptor attached as
 * SCM_RIGHTS ancillary data.
 * Worker -> agent: READY (once, after lockdown: database facts), ERROR (once,
 * instead of READY: why the worker could not start), RESULT (one per SCAN,
 * same id).
 */
#ifndef KHIEN_SANDBOX_PROTO_H
#define KHIEN_SANDBOX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox.h"

#define SBX_PROTO_MAGIC   0x5842534bu /* "KSBX" as bytes */
#define SBX_PROTO_VERSION 1
#define SBX_HDR_LEN       16
#define SBX_ERRMSG_MAX    256

/* The largest record either way: a RESULT with every detection at its
 * longest. Receive buffers are this size; a longer record is refused. */
#define SBX_RESULT_FIXED_LEN (4 + 8 + 1 + 32 + 16 + 4 + 4 + 4)
#define SBX_DET_MAX_LEN      (4 + 4 + 2 + (SBX_NAME_MAX - 1) + 2 + (SBX_INNER_MAX - 1))
#define SBX_MSG_MAX          (SBX_HDR_LEN + SBX_RESULT_FIXED_LEN + SBX_MAX_DETECTIONS * SBX_DET_MAX_LEN)

enum sbx_msg_type {
    SBX_MSG_SCAN = 1,
    SBX_MSG_READY = 2,
    SBX_MSG_ERROR = 3,
    SBX_MSG_RESULT = 4,
};

struct sbx_request {
    uint64_t id; /* never 0 */
    char name[SBX_NAME_MAX];
};

/* One message from the worker; which fields mean something depends on type. */
struct sbx_answer {
    int type;    /* SBX_MSG_READY, SBX_MSG_ERROR or SBX_MSG_RESULT */
    uint64_t id; /* RESULT: the request's id; 0 otherwise */
    /* READY */
    int64_t db_created;
    uint64_t db_signatures;
    uint32_t threads;
    /* ERROR */
    int code; /* a negative kh_err */
    char msg[SBX_ERRMSG_MAX];
    /* RESULT */
    struct sbx_result result;
};

/* Each encoder writes one record into buf[0..cap) and returns its length,
 * or 0 when the message is invalid (a string too long or holding a NUL, a
 * count or enum out of range) or does not fit: what the encoders accept is
 * exactly what the decoders accept. */
size_t sbx_proto_encode_request(const struct sbx_request *rq, uint8_t *buf, size_t cap);
size_t sbx_proto_encode_answer(const struct sbx_answer *a, uint8_t *buf, size_t cap);

/* Each decoder fills *out from one whole record and returns KH_OK, or
 * KH_EFORMAT with err naming the field at fault. On failure *out holds
 * nothing useful. Only the fields of the message's type are written (for a
 * RESULT: the counts, digests and the first ndetections entries of det[]). */
int sbx_proto_decode_request(const uint8_t *buf, size_t len, struct sbx_request *out, char *err,
                             size_t errlen);
int sbx_proto_decode_answer(const uint8_t *buf, size_t len, struct sbx_answer *out, char *err,
                            size_t errlen);

#endif
