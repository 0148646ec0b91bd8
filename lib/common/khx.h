/*
 * Shared helpers (khx_ prefix) used by the library, the command line and the
 * tests: bounded growable buffers, hex decoding, line iteration, small string
 * utilities and file mapping. Nothing here knows about signatures or scanning.
 */
#ifndef KHX_H
#define KHX_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>

#include <khien/khien.h>

#define KHX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define KHX_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define KHX_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* A growable byte buffer with a declared maximum size. Appending past `max`
 * fails with KH_ELIMIT and leaves the buffer unchanged. */
struct khx_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
};

void khx_buf_init(struct khx_buf *b, size_t max);
void khx_buf_free(struct khx_buf *b);
int khx_buf_reserve(struct khx_buf *b, size_t extra);
int khx_buf_append(struct khx_buf *b, const void *p, size_t n);
int khx_buf_append_u8(struct khx_buf *b, uint8_t v);
int khx_buf_append_u32(struct khx_buf *b, uint32_t v); /* little-endian */
int khx_buf_append_u64(struct khx_buf *b, uint64_t v); /* little-endian */
int khx_buf_printf(struct khx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Pads with zero bytes up to a multiple of `align` (a power of two). */
int khx_buf_align(struct khx_buf *b, size_t align);
/* Hands the data to the caller (who frees it) and resets the buffer. */
uint8_t *khx_buf_steal(struct khx_buf *b, size_t *len);

/* Growable array of fixed-size elements, with a maximum count. */
struct khx_vec {
    void *items;
    size_t len;
    size_t cap;
    size_t elem;
    size_t max;
};
void khx_vec_init(struct khx_vec *v, size_t elem, size_t max);
void khx_vec_free(struct khx_vec *v);
/* Appends a zeroed element and returns a pointer to it, or NULL (ENOMEM/limit). */
void *khx_vec_push(struct khx_vec *v);
#define KHX_VEC_AT(v, type, i) (&((type *)(v)->items)[i])

/* Decodes one hex digit, or returns -1. */
static inline int khx_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes exactly 2*n hex characters into out[n]. Returns 0 or KH_EFORMAT. */
int khx_hex_decode(const char *hex, size_t n, uint8_t *out);
/* Writes 2*n lowercase hex characters and a NUL to out. */
void khx_hex_encode(const uint8_t *in, size_t n, char *out);

/* Parses a decimal unsigned integer covering all of s[0..len). */
int khx_parse_u64(const char *s, size_t len, uint64_t *out);

/* Iterates lines of a text buffer. Strips a trailing "\r". `lineno` is 1-based.
 * Returns 1 while a line is available, 0 at the end. */
struct khx_lines {
    const char *p, *end;
    unsigned lineno;
};
void khx_lines_init(struct khx_lines *it, const void *data, size_t len);
int khx_lines_next(struct khx_lines *it, const char **line, size_t *len);

/* Splits s[0..len) on `sep` into at most `max` fields; returns the number of
 * fields found, or max+1 if there were more. */
size_t khx_split(const char *s, size_t len, char sep, const char **fields, size_t *lens,
                 size_t max);

/* Returns the extension of a file name, without the dot, or "" */
const char *khx_path_ext(const char *name);
/* Returns the last component of a path. */
const char *khx_path_base(const char *path);

char *khx_strndup(const char *s, size_t n);

/* Maps a whole file read-only. Empty files give data=NULL, len=0. */
struct khx_map {
    const uint8_t *data;
    size_t len;
    int mapped; /* 1: munmap on close; 0: malloc'd (or empty) */
};
int khx_map_file(const char *path, struct khx_map *m);
void khx_map_close(struct khx_map *m);

/* Reads a whole file into a malloc'd buffer (NUL-terminated for convenience),
 * refusing files larger than `max`. */
int khx_read_file(const char *path, size_t max, uint8_t **data, size_t *len);

/* Writes all of data to fd, retrying short writes and EINTR. Returns KH_OK or
 * KH_EIO (errno says why). */
int khx_write_all(int fd, const void *data, size_t len);

/* Writes a file atomically with the given mode: a fresh temporary file in
 * the same folder (created 0600 by mkstemp, so a secret is never briefly
 * readable by others), fsync, rename over the final name. Returns KH_OK or
 * KH_EIO. */
int khx_write_file_mode(const char *path, const void *data, size_t len, mode_t mode);

/* Writes a file atomically: a temporary file in the same directory, fsync, rename. */
int khx_write_file_atomic(const char *path, const void *data, size_t len);

/* One-shot digests (OpenSSL). Return 0 or KH_ENOMEM. */
int khx_md5(const void *data, size_t len, uint8_t out[16]);
int khx_sha1(const void *data, size_t len, uint8_t out[20]);
int khx_sha256(const void *data, size_t len, uint8_t out[32]);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t khx_now_ms(void);

/* A random version-4 UUID (libsodium's generator): 36 characters and a NUL. */
void khx_uuid4(char out[37]);

/* Copies at most cap-1 bytes of untrusted text for a message, with anything
 * but printable ASCII shown as '?'; returns dst. */
const char *khx_printable(char *dst, size_t cap, const char *s, size_t n);

/* Length of the valid UTF-8 sequence at s (at most n bytes: 1..4), or 0 if
 * it is not one: overlong forms, surrogates and code points past U+10FFFF
 * are invalid. *cp (may be NULL) gets the code point. */
size_t khx_utf8_len(const unsigned char *s, size_t n, uint32_t *cp);

/* Removes the regular files in `dir` (not recursively) and then `dir`. */
int khx_remove_flat_dir(const char *dir);

/* Diagnostics: a printf-style helper that formats into a caller's buffer. */
void khx_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
