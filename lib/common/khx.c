/*
 * Shared helpers: bounded buffers and vectors, hex, line and field splitting,
 * paths and whole-file I/O. See khx.h for the contracts.
 */
#include "khx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

void khx_buf_init(struct khx_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void khx_buf_free(struct khx_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int khx_buf_reserve(struct khx_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return KH_ELIMIT;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return KH_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max)
        cap = b->max;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return KH_ENOMEM;
    b->data = p;
    b->cap = cap;
    return KH_OK;
}

int khx_buf_append(struct khx_buf *b, const void *p, size_t n)
{
    int r;
    if (n == 0)
        return KH_OK;
    if ((r = khx_buf_reserve(b, n)) != 0)
        return r;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return KH_OK;
}

int khx_buf_append_u8(struct khx_buf *b, uint8_t v)
{
    return khx_buf_append(b, &v, 1);
}

int khx_buf_append_u32(struct khx_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return khx_buf_append(b, t, 4);
}

int khx_buf_append_u64(struct khx_buf *b, uint64_t v)
{
    int r;
    if ((r = khx_buf_append_u32(b, (uint32_t)v)) != 0)
        return r;
    return khx_buf_append_u32(b, (uint32_t)(v >> 32));
}

int khx_buf_printf(struct khx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KH_EINVAL;
    int r;
    if ((r = khx_buf_reserve(b, (size_t)n + 1)) != 0)
        return r;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KH_OK;
}

int khx_buf_align(struct khx_buf *b, size_t align)
{
    static const uint8_t zeros[64];
    size_t pad = (align - (b->len & (align - 1))) & (align - 1);
    while (pad > 0) {
        size_t n = KHX_MIN(pad, sizeof(zeros));
        int r = khx_buf_append(b, zeros, n);
        if (r != 0)
            return r;
        pad -= n;
    }
    return KH_OK;
}

uint8_t *khx_buf_steal(struct khx_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void khx_vec_init(struct khx_vec *v, size_t elem, size_t max)
{
    v->items = NULL;
    v->len = v->cap = 0;
    v->elem = elem;
    v->max = max;
}

void khx_vec_free(struct khx_vec *v)
{
    if (v == NULL)
        return;
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

void *khx_vec_push(struct khx_vec *v)
{
    if (v->len >= v->max)
        return NULL;
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        if (cap > v->max)
            cap = v->max;
        if (cap > SIZE_MAX / v->elem)
            return NULL;
        void *p = realloc(v->items, cap * v->elem);
        if (p == NULL)
            return NULL;
        v->items = p;
        v->cap = cap;
    }
    void *slot = (char *)v->items + v->len * v->elem;
    memset(slot, 0, v->elem);
    v->len++;
    return slot;
}

int khx_hex_decode(const char *hex, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int hi = khx_hexval((unsigned char)hex[2 * i]);
        int lo = khx_hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return KH_EFORMAT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return KH_OK;
}

void khx_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int khx_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return KH_EFORMAT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return KH_EFORMAT;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return KH_EFORMAT;
        v = v * 10 + d;
    }
    *out = v;
    return KH_OK;
}

void khx_lines_init(struct khx_lines *it, const void *data, size_t len)
{
    it->p = data;
    it->end = (const char *)data + len;
    it->lineno = 0;
}

int khx_lines_next(struct khx_lines *it, const char **line, size_t *len)
{
    if (it->p == NULL || it->p >= it->end)
        return 0;
    const char *s = it->p;
    const char *nl = memchr(s, '\n', (size_t)(it->end - s));
    const char *e = nl ? nl : it->end;
    it->p = nl ? nl + 1 : it->end;
    it->lineno++;
    if (e > s && e[-1] == '\r')
        e--;
    *line = s;
    *len = (size_t)(e - s);
    return 1;
}

size_t khx_split(const char *s, size_t len, char sep, const char **fields, size_t *lens, size_t max)
{
    size_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == sep) {
            if (n == max)
                return max + 1;
            fields[n] = s + start;
            lens[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

const char *khx_path_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

const char *khx_path_ext(const char *name)
{
    const char *base = khx_path_base(name);
    const char *dot = strrchr(base, '.');
    return dot ? dot + 1 : "";
}

char *khx_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int khx_map_file(const char *path, struct khx_map *m)
{
    m->data = NULL;
    m->len = 0;
    m->mapped = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? KH_ENOTFOUND : KH_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return KH_EIO;
    }
    if (st.st_size == 0) {
        close(fd);
        return KH_OK;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return KH_ELIMIT;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return KH_EIO;
    m->data = p;
    m->len = (size_t)st.st_size;
    m->mapped = 1;
    return KH_OK;
}

void khx_map_close(struct khx_map *m)
{
    if (m == NULL)
        return;
    if (m->mapped && m->data)
        munmap((void *)m->data, m->len);
    else
        free((void *)m->data);
    m->data = NULL;
    m->len = 0;
    m->mapped = 0;
}

int khx_read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
    int r = KH_EIO;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? KH_ENOTFOUND : KH_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    if ((uint64_t)st.st_size > max) {
        r = KH_ELIMIT;
        goto out;
    }
    size_t n = (size_t)st.st_size;
    if ((buf = malloc(n + 1)) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto out;
        got += (size_t)k;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    buf = NULL;
    r = KH_OK;
out:
    free(buf);
    close(fd);
    return r;
}

int khx_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        /* Large buffers go in pieces: write(2) returns at most ~2 GiB. */
        ssize_t k = write(fd, p, KHX_MIN(len, (size_t)1 << 30));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return KH_EIO;
        p += k;
        len -= (size_t)k;
    }
    return KH_OK;
}

int khx_write_file_mode(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    int fd = -1, r = KH_EIO;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp) || (fd = mkstemp(tmp)) < 0)
        return KH_EIO;
    if (fchmod(fd, mode) != 0 || khx_write_all(fd, data, len) != KH_OK || fsync(fd) != 0)
        goto out;
    int c = close(fd);
    fd = -1;
    if (c != 0 || rename(tmp, path) != 0)
        goto out;
    r = KH_OK;
out:
    if (fd >= 0)
        close(fd);
    if (r != KH_OK)
        unlink(tmp);
    return r;
}

int khx_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return KH_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return KH_EIO;
    if (khx_write_all(fd, data, len) != KH_OK) {
        close(fd);
        unlink(tmp);
        return KH_EIO;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return KH_EIO;
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return KH_EIO;
    }
    return KH_OK;
}

void khx_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int khx_remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return KH_EIO;
    struct dirent *de;
    char path[PATH_MAX];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int n = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (n > 0 && (size_t)n < sizeof(path))
            unlink(path);
    }
    closedir(d);
    return rmdir(dir) == 0 ? KH_OK : KH_EIO;
}

const char *khx_printable(char *dst, size_t cap, const char *s, size_t n)
{
    size_t k = KHX_MIN(n, cap - 1);
    for (size_t i = 0; i < k; i++)
        dst[i] = s[i] >= 0x20 && s[i] <= 0x7e ? s[i] : '?';
    dst[k] = '\0';
    return dst;
}

void khx_uuid4(char out[37])
{
    uint8_t b[16];
    /* Idempotent; the generator needs it once. Even if it fails,
     * randombytes_buf reads the kernel's generator. */
    int ready = sodium_init();
    (void)ready;
    randombytes_buf(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

size_t khx_utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        len = 1, v = c, min = 0;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    if (cp != NULL)
        *cp = v;
    return len;
}
