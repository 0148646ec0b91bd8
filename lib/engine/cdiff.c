/*
 * ClamAV .cdiff patches: "ClamAV-Diff:<version>:<script length>:", a gzip'd
 * script, ':' and a versig2 signature over everything before that colon. The
 * script edits the files of an unpacked database (OPEN/ADD/DEL/XCHG/CLOSE,
 * MOVE, UNLINK).
 *
 * ClamAV applies each command to disk as it goes, so a patch that fails half
 * way leaves a half-patched database. Here every command is applied to copies
 * of the files held in memory; only when the whole script has succeeded are
 * the changed files written to temporary files and renamed into place. A
 * patch that is refused therefore leaves the folder as it was.
 */
#include "cvd.h"

#include "khx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CDIFF_HEADER_MAX 64
#define CDIFF_SCRIPT_MAX ((size_t)64 << 20)  /* decompressed script */
#define CDIFF_FILE_MAX   ((size_t)512 << 20) /* one database file */
#define CDIFF_WORK_MAX   ((uint64_t)2 << 30) /* all files held in memory */
#define CDIFF_FILES_MAX  1024
#define CDIFF_EDITS_MAX  (1u << 22)
#define CDIFF_NAME_MAX   100
#define CDIFF_DSIG_MAX   399

struct vfile {
    char name[CDIFF_NAME_MAX + 1];
    uint8_t *data; /* current content (malloc'd), NULL when empty or absent */
    size_t len;
    int exists;  /* in the patched view */
    int on_disk; /* existed before the patch */
    int changed;
};

/* A DEL or XCHG queued between OPEN and CLOSE. The strings point into the
 * decompressed script, which outlives the patch. */
struct edit {
    uint32_t lineno;
    int is_xchg;
    const char *prefix;
    size_t prefix_len;
    const char *repl;
    size_t repl_len;
    unsigned script_line;
};

struct add {
    const char *s;
    size_t len;
};

struct patch {
    const char *dir;
    struct khx_vec files; /* struct vfile */
    uint64_t held;        /* bytes of file content in memory */
    long open;            /* index into files, or -1 */
    struct khx_vec edits; /* struct edit, for the open file */
    struct khx_vec adds;  /* struct add, for the open file */
    unsigned line;        /* current script line */
    char *err;
    size_t errlen;
};

/* ClamAV's token rule: tokens are separated by single spaces; token `idx`
 * starts after `idx` spaces. With `rest` the token runs to the end of the
 * line. An empty token is missing. */
static int token(const char *s, size_t n, unsigned idx, int rest, const char **t, size_t *tlen)
{
    size_t i = 0;
    for (unsigned seen = 0; i < n && seen < idx; i++)
        if (s[i] == ' ')
            seen++;
    if (i >= n || (idx > 0 && s[i - 1] != ' '))
        return 0;
    size_t j = i;
    if (rest)
        j = n;
    else
        while (j < n && s[j] != ' ')
            j++;
    if (j == i)
        return 0;
    *t = s + i;
    *tlen = j - i;
    return 1;
}

static int parse_lineno(const char *s, size_t n, uint32_t *out)
{
    uint64_t v;
    if (khx_parse_u64(s, n, &v) != 0 || v == 0 || v > UINT32_MAX)
        return KH_EFORMAT;
    *out = (uint32_t)v;
    return KH_OK;
}

static void vfile_set(struct patch *p, struct vfile *f, uint8_t *data, size_t len)
{
    p->held -= f->len;
    free(f->data);
    f->data = data;
    f->len = len;
    p->held += len;
}

/* Finds a file by name, loading it from the folder on first use. A name that
 * is a folder, a symlink or anything but a regular file is refused. */
static int get_file(struct patch *p, const char *name, size_t n, long *index)
{
    char path[PATH_MAX];
    struct stat st;
    struct vfile *f;
    int r;

    for (size_t i = 0; i < p->files.len; i++) {
        f = KHX_VEC_AT(&p->files, struct vfile, i);
        if (strlen(f->name) == n && memcmp(f->name, name, n) == 0) {
            *index = (long)i;
            return KH_OK;
        }
    }
    int k = snprintf(path, sizeof(path), "%s/%.*s", p->dir, (int)n, name);
    if (k < 0 || (size_t)k >= sizeof(path)) {
        khx_errf(p->err, p->errlen, "line %u: path for %.*s is too long", p->line, (int)n, name);
        return KH_EINVAL;
    }
    int exists = 1;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) {
            khx_errf(p->err, p->errlen, "line %u: cannot stat %s: %s", p->line, path,
                     strerror(errno));
            return KH_EIO;
        }
        exists = 0;
    } else if (S_ISDIR(st.st_mode)) {
        khx_errf(p->err, p->errlen, "line %u: %.*s is a directory", p->line, (int)n, name);
        return KH_EFORMAT;
    } else if (!S_ISREG(st.st_mode)) {
        khx_errf(p->err, p->errlen, "line %u: %.*s is not a regular file", p->line, (int)n, name);
        return KH_EFORMAT;
    }
    if ((f = khx_vec_push(&p->files)) == NULL) {
        khx_errf(p->err, p->errlen, "line %u: more than %d files", p->line, CDIFF_FILES_MAX);
        return KH_ELIMIT;
    }
    memcpy(f->name, name, n);
    f->name[n] = '\0';
    f->exists = f->on_disk = exists;
    if (exists) {
        uint8_t *data = NULL;
        size_t len = 0;
        if ((r = khx_read_file(path, CDIFF_FILE_MAX, &data, &len)) != 0) {
            khx_errf(p->err, p->errlen, "line %u: cannot read %s: %s", p->line, path,
                     kh_strerror(r));
            p->files.len--;
            return r;
        }
        if ((uint64_t)len > CDIFF_WORK_MAX - p->held) {
            khx_errf(p->err, p->errlen, "line %u: patched files exceed %llu bytes", p->line,
                     (unsigned long long)CDIFF_WORK_MAX);
            free(data);
            p->files.len--;
            return KH_ELIMIT;
        }
        f->data = data;
        f->len = len;
        p->held += len;
    }
    *index = (long)(p->files.len - 1);
    return KH_OK;
}

static int edit_cmp(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->lineno != y->lineno)
        return x->lineno < y->lineno ? -1 : 1;
    return x->script_line < y->script_line ? -1 : x->script_line > y->script_line;
}

/* Appends to b, turning a limit into a message. */
static int out_append(struct patch *p, struct khx_buf *b, const void *s, size_t n, const char *name)
{
    int r = khx_buf_append(b, s, n);
    if (r == KH_ELIMIT)
        khx_errf(p->err, p->errlen, "line %u: %s would exceed %zu bytes", p->line, name,
                 CDIFF_FILE_MAX);
    return r;
}

/* CLOSE: applies the queued DEL/XCHG (by line number of the file as it was
 * opened, each line having to start with its prefix) and then the ADDs. */
static int cmd_close(struct patch *p)
{
    int r;
    struct vfile *f = KHX_VEC_AT(&p->files, struct vfile, (size_t)p->open);
    struct khx_buf out;
    struct edit *ed = p->edits.items;
    size_t ne = p->edits.len, next = 0;

    khx_buf_init(&out, CDIFF_FILE_MAX);
    if (ne == 0 && p->adds.len == 0) {
        r = KH_OK;
        goto done;
    }
    if (ne > 0 && !f->exists) {
        khx_errf(p->err, p->errlen, "line %u: DEL/XCHG on %s, which does not exist",
                 ed[0].script_line, f->name);
        r = KH_EFORMAT;
        goto out;
    }
    if (ne > 1)
        qsort(ed, ne, sizeof(*ed), edit_cmp);
    for (size_t i = 1; i < ne; i++) {
        if (ed[i].lineno == ed[i - 1].lineno) {
            khx_errf(p->err, p->errlen, "line %u: line %u of %s is already edited at line %u",
                     ed[i].script_line, ed[i].lineno, f->name, ed[i - 1].script_line);
            r = KH_EFORMAT;
            goto out;
        }
    }
    uint32_t lineno = 0;
    for (size_t pos = 0; pos < f->len;) {
        const uint8_t *nl = memchr(f->data + pos, '\n', f->len - pos);
        size_t end = nl ? (size_t)(nl - f->data) + 1 : f->len;
        const uint8_t *line = f->data + pos;
        size_t len = end - pos;
        pos = end;
        lineno++;
        if (next < ne && ed[next].lineno == lineno) {
            const struct edit *e = &ed[next++];
            if (len < e->prefix_len || memcmp(line, e->prefix, e->prefix_len) != 0) {
                char show[81];
                khx_errf(p->err, p->errlen, "line %u: %s: line %u of %s does not start with \"%s\"",
                         e->script_line, e->is_xchg ? "XCHG" : "DEL", lineno, f->name,
                         khx_printable(show, sizeof(show), e->prefix, e->prefix_len));
                r = KH_EFORMAT;
                goto out;
            }
            if (e->is_xchg && ((r = out_append(p, &out, e->repl, e->repl_len, f->name)) != 0 ||
                               (r = out_append(p, &out, "\n", 1, f->name)) != 0))
                goto out;
            continue;
        }
        if ((r = out_append(p, &out, line, len, f->name)) != 0)
            goto out;
    }
    if (next < ne) {
        khx_errf(p->err, p->errlen, "line %u: %s: %s has only %u lines, not %u",
                 ed[next].script_line, ed[next].is_xchg ? "XCHG" : "DEL", f->name, lineno,
                 ed[next].lineno);
        r = KH_EFORMAT;
        goto out;
    }
    /* Like ClamAV, ADDs are appended as they are, even to a last line that
     * lacks its newline: the result must hash as the signer's did. */
    for (size_t i = 0; i < p->adds.len; i++) {
        const struct add *a = KHX_VEC_AT(&p->adds, struct add, i);
        if ((r = out_append(p, &out, a->s, a->len, f->name)) != 0 ||
            (r = out_append(p, &out, "\n", 1, f->name)) != 0)
            goto out;
    }
    if (out.len > f->len && out.len - f->len > CDIFF_WORK_MAX - p->held) {
        khx_errf(p->err, p->errlen, "line %u: patched files exceed %llu bytes", p->line,
                 (unsigned long long)CDIFF_WORK_MAX);
        r = KH_ELIMIT;
        goto out;
    }
    size_t n;
    uint8_t *data = khx_buf_steal(&out, &n);
    vfile_set(p, f, data, n);
    f->exists = 1;
    f->changed = 1;
done:
    r = KH_OK;
    p->open = -1;
    p->edits.len = 0;
    p->adds.len = 0;
out:
    khx_buf_free(&out);
    return r;
}

/* MOVE src dst startno startprefix endno endprefix: cuts lines start..end of
 * src and appends them to dst. */
static int cmd_move(struct patch *p, const char *s, size_t n)
{
    const char *t[7];
    size_t tl[7];
    uint32_t start, end;
    long si, di;
    int r;
    struct khx_buf keep, moved;

    for (unsigned i = 1; i <= 6; i++) {
        if (!token(s, n, i, 0, &t[i], &tl[i])) {
            khx_errf(p->err, p->errlen, "line %u: MOVE needs 6 arguments", p->line);
            return KH_EFORMAT;
        }
    }
    if (t[6] + tl[6] != s + n) {
        khx_errf(p->err, p->errlen, "line %u: MOVE takes only 6 arguments", p->line);
        return KH_EFORMAT;
    }
    if (!khx_cvd_name_ok(t[1], tl[1]) || !khx_cvd_name_ok(t[2], tl[2])) {
        khx_errf(p->err, p->errlen, "line %u: MOVE: forbidden database name", p->line);
        return KH_EFORMAT;
    }
    if (tl[1] == tl[2] && memcmp(t[1], t[2], tl[1]) == 0) {
        khx_errf(p->err, p->errlen, "line %u: MOVE within one file", p->line);
        return KH_EFORMAT;
    }
    if (parse_lineno(t[3], tl[3], &start) != 0 || parse_lineno(t[5], tl[5], &end) != 0 ||
        end < start) {
        khx_errf(p->err, p->errlen, "line %u: MOVE: bad line range", p->line);
        return KH_EFORMAT;
    }
    if ((r = get_file(p, t[1], tl[1], &si)) != 0 || (r = get_file(p, t[2], tl[2], &di)) != 0)
        return r;
    struct vfile *src = KHX_VEC_AT(&p->files, struct vfile, (size_t)si);
    struct vfile *dst = KHX_VEC_AT(&p->files, struct vfile, (size_t)di);
    if (!src->exists) {
        khx_errf(p->err, p->errlen, "line %u: MOVE: %s does not exist", p->line, src->name);
        return KH_EFORMAT;
    }

    khx_buf_init(&keep, CDIFF_FILE_MAX);
    khx_buf_init(&moved, CDIFF_FILE_MAX);
    if ((r = out_append(p, &moved, dst->data, dst->len, dst->name)) != 0)
        goto out;
    /* A destination without a final newline would have its last line joined
     * to the first moved one. */
    if (moved.len > 0 && moved.data[moved.len - 1] != '\n' &&
        (r = out_append(p, &moved, (const uint8_t *)"\n", 1, dst->name)) != 0)
        goto out;
    uint32_t lineno = 0;
    for (size_t pos = 0; pos < src->len;) {
        const uint8_t *nl = memchr(src->data + pos, '\n', src->len - pos);
        size_t e = nl ? (size_t)(nl - src->data) + 1 : src->len;
        const uint8_t *line = src->data + pos;
        size_t len = e - pos;
        pos = e;
        lineno++;
        const char *want = lineno == start ? t[4] : lineno == end ? t[6] : NULL;
        size_t wlen = lineno == start ? tl[4] : tl[6];
        char show[81];
        if (want != NULL && (len < wlen || memcmp(line, want, wlen) != 0)) {
            khx_errf(p->err, p->errlen, "line %u: MOVE: line %u of %s does not start with \"%s\"",
                     p->line, lineno, src->name, khx_printable(show, sizeof(show), want, wlen));
            r = KH_EFORMAT;
            goto out;
        }
        /* With start == end the one line must match both prefixes. */
        if (lineno == start && start == end && (len < tl[6] || memcmp(line, t[6], tl[6]) != 0)) {
            khx_errf(p->err, p->errlen, "line %u: MOVE: line %u of %s does not start with \"%s\"",
                     p->line, lineno, src->name, khx_printable(show, sizeof(show), t[6], tl[6]));
            r = KH_EFORMAT;
            goto out;
        }
        struct khx_buf *to = lineno >= start && lineno <= end ? &moved : &keep;
        if ((r = out_append(p, to, line, len, to == &moved ? dst->name : src->name)) != 0)
            goto out;
    }
    if (lineno < end) {
        khx_errf(p->err, p->errlen, "line %u: MOVE: %s has only %u lines, not %u", p->line,
                 src->name, lineno, end);
        r = KH_EFORMAT;
        goto out;
    }
    /* Moving lines does not change the total, so the memory bound holds. */
    size_t kn, mn;
    uint8_t *kd = khx_buf_steal(&keep, &kn), *md = khx_buf_steal(&moved, &mn);
    vfile_set(p, src, kd, kn);
    vfile_set(p, dst, md, mn);
    src->changed = dst->changed = 1;
    dst->exists = 1;
    r = KH_OK;
out:
    khx_buf_free(&keep);
    khx_buf_free(&moved);
    return r;
}

/* Runs one non-empty, non-comment script line. */
static int run_line(struct patch *p, const char *s, size_t n)
{
    const char *cmd, *a1, *a2, *a3;
    size_t cl, l1, l2, l3;
    long fi;
    int r;

    if (!token(s, n, 0, 0, &cmd, &cl)) {
        khx_errf(p->err, p->errlen, "line %u: no command", p->line);
        return KH_EFORMAT;
    }
#define IS(name) (cl == sizeof(name) - 1 && memcmp(cmd, name, cl) == 0)
    int needs_open = IS("ADD") || IS("DEL") || IS("XCHG") || IS("CLOSE");
    int needs_closed = IS("OPEN") || IS("MOVE") || IS("UNLINK");
    if (!needs_open && !needs_closed) {
        char show[41];
        khx_errf(p->err, p->errlen, "line %u: unknown command \"%s\"", p->line,
                 khx_printable(show, sizeof(show), cmd, cl));
        return KH_EFORMAT;
    }
    if (needs_open && p->open < 0) {
        khx_errf(p->err, p->errlen, "line %u: %.*s without OPEN", p->line, (int)cl, cmd);
        return KH_EFORMAT;
    }
    if (needs_closed && p->open >= 0) {
        khx_errf(p->err, p->errlen, "line %u: %.*s while %s is open", p->line, (int)cl, cmd,
                 KHX_VEC_AT(&p->files, struct vfile, (size_t)p->open)->name);
        return KH_EFORMAT;
    }

    if (IS("OPEN") || IS("UNLINK")) {
        if (!token(s, n, 1, 1, &a1, &l1) || !khx_cvd_name_ok(a1, l1)) {
            khx_errf(p->err, p->errlen, "line %u: %.*s: missing or forbidden database name",
                     p->line, (int)cl, cmd);
            return KH_EFORMAT;
        }
        if ((r = get_file(p, a1, l1, &fi)) != 0)
            return r;
        struct vfile *f = KHX_VEC_AT(&p->files, struct vfile, (size_t)fi);
        if (IS("OPEN")) {
            p->open = fi;
            return KH_OK;
        }
        if (!f->exists) {
            khx_errf(p->err, p->errlen, "line %u: UNLINK: %s does not exist", p->line, f->name);
            return KH_EFORMAT;
        }
        vfile_set(p, f, NULL, 0);
        f->exists = 0;
        f->changed = 1;
        return KH_OK;
    }
    if (IS("CLOSE")) {
        if (n != cl) {
            khx_errf(p->err, p->errlen, "line %u: CLOSE takes no arguments", p->line);
            return KH_EFORMAT;
        }
        return cmd_close(p);
    }
    if (IS("MOVE"))
        return cmd_move(p, s, n);
    if (IS("ADD")) {
        struct add *a;
        if (!token(s, n, 1, 1, &a1, &l1)) {
            khx_errf(p->err, p->errlen, "line %u: ADD without a line", p->line);
            return KH_EFORMAT;
        }
        if ((a = khx_vec_push(&p->adds)) == NULL) {
            khx_errf(p->err, p->errlen, "line %u: too many ADDs", p->line);
            return KH_ELIMIT;
        }
        a->s = a1;
        a->len = l1;
        return KH_OK;
    }
    /* DEL lineno prefix-to-end-of-line, XCHG lineno prefix new-line */
    int xchg = IS("XCHG");
#undef IS
    struct edit *e;
    if (!token(s, n, 1, 0, &a1, &l1) || !token(s, n, 2, !xchg, &a2, &l2) ||
        (xchg && !token(s, n, 3, 1, &a3, &l3))) {
        khx_errf(p->err, p->errlen, "line %u: %s needs %s", p->line, xchg ? "XCHG" : "DEL",
                 xchg ? "a line number, a prefix and a new line" : "a line number and a prefix");
        return KH_EFORMAT;
    }
    if ((e = khx_vec_push(&p->edits)) == NULL) {
        khx_errf(p->err, p->errlen, "line %u: too many edits", p->line);
        return KH_ELIMIT;
    }
    if (parse_lineno(a1, l1, &e->lineno) != 0) {
        char show[21];
        khx_errf(p->err, p->errlen, "line %u: bad line number \"%s\"", p->line,
                 khx_printable(show, sizeof(show), a1, l1));
        return KH_EFORMAT;
    }
    e->is_xchg = xchg;
    e->prefix = a2;
    e->prefix_len = l2;
    e->repl = xchg ? a3 : NULL;
    e->repl_len = xchg ? l3 : 0;
    e->script_line = p->line;
    return KH_OK;
}

/* Writes the patched files: first every new content to a hidden temporary
 * file (so a full disk fails before anything changed), then renames and
 * unlinks. */
static int commit(struct patch *p)
{
    int r = KH_OK;
    char(*tmp)[PATH_MAX] = calloc(p->files.len ? p->files.len : 1, PATH_MAX);
    char path[PATH_MAX];

    if (tmp == NULL)
        return KH_ENOMEM;
    for (size_t i = 0; i < p->files.len && r == 0; i++) {
        struct vfile *f = KHX_VEC_AT(&p->files, struct vfile, i);
        if (!f->changed || !f->exists)
            continue;
        int k = snprintf(tmp[i], PATH_MAX, "%s/.%s.cdiff.%ld", p->dir, f->name, (long)getpid());
        if (k < 0 || k >= PATH_MAX) {
            tmp[i][0] = '\0';
            r = KH_EINVAL;
            break;
        }
        int fd = open(tmp[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            r = KH_EIO;
            break;
        }
        if (khx_write_all(fd, f->data, f->len) != KH_OK || fsync(fd) != 0)
            r = KH_EIO;
        if (close(fd) != 0)
            r = KH_EIO;
    }
    if (r != 0) {
        khx_errf(p->err, p->errlen, "cannot write the patched files in %s: %s", p->dir,
                 strerror(errno));
        for (size_t i = 0; i < p->files.len; i++)
            if (tmp[i][0])
                unlink(tmp[i]);
        goto out;
    }
    for (size_t i = 0; i < p->files.len; i++) {
        struct vfile *f = KHX_VEC_AT(&p->files, struct vfile, i);
        if (!f->changed)
            continue;
        snprintf(path, sizeof(path), "%s/%s", p->dir, f->name);
        if (f->exists ? rename(tmp[i], path) != 0 : f->on_disk && unlink(path) != 0) {
            khx_errf(p->err, p->errlen, "cannot replace %s: %s (the folder is partly patched)",
                     path, strerror(errno));
            r = KH_EIO;
        }
    }
    int dfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
out:
    free(tmp);
    return r;
}

/* Decompresses the gzip'd script; it must be exactly `want` bytes and the
 * gzip stream must end where the signature's colon begins. *out is
 * malloc'd and NUL-terminated. */
static int inflate_script(const uint8_t *z, size_t zlen, size_t want, char **out, char *err,
                          size_t errlen)
{
    int r = KH_EFORMAT;
    z_stream zs;
    char *buf = malloc(want + 2);

    memset(&zs, 0, sizeof(zs));
    if (buf == NULL)
        return KH_ENOMEM;
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return KH_ENOMEM;
    }
    zs.next_in = (Bytef *)z;
    size_t in_left = zlen;
    int zr = Z_OK;
    /* One spare byte of output reveals a script longer than declared. */
    zs.next_out = (Bytef *)buf;
    size_t out_left = want + 1;
    while (zr == Z_OK) {
        uInt in_now = (uInt)KHX_MIN(in_left, (size_t)UINT_MAX);
        uInt out_now = (uInt)KHX_MIN(out_left, (size_t)UINT_MAX);
        zs.avail_in = in_now;
        zs.avail_out = out_now;
        zr = inflate(&zs, Z_NO_FLUSH);
        in_left -= in_now - zs.avail_in;
        out_left -= out_now - zs.avail_out;
        if (zr == Z_BUF_ERROR || (zr == Z_OK && out_left == 0))
            break;
    }
    size_t got = want + 1 - out_left;
    if (got > want) {
        khx_errf(err, errlen, "script is longer than the %zu bytes its header declares", want);
        goto out;
    }
    if (zr != Z_STREAM_END) {
        khx_errf(err, errlen, "script is not a complete gzip stream%s%s", zs.msg ? ": " : "",
                 zs.msg ? zs.msg : "");
        goto out;
    }
    if (got != want) {
        khx_errf(err, errlen, "script has %zu bytes, header says %zu", got, want);
        goto out;
    }
    if (in_left != 0) {
        khx_errf(err, errlen, "%zu bytes follow the gzip stream", in_left);
        goto out;
    }
    buf[got] = '\0';
    *out = buf;
    buf = NULL;
    r = KH_OK;
out:
    inflateEnd(&zs);
    free(buf);
    return r;
}

int khx_cdiff_apply(const uint8_t *cdiff, size_t len, const char *dir, unsigned flags,
                    const struct khx_cvd_keys *keys, char *err, size_t errlen)
{
    static const char magic[] = "ClamAV-Diff:";
    int r;
    char *script = NULL;
    char dsig[CDIFF_DSIG_MAX + 1];
    struct patch p;
    struct stat st;

    memset(&p, 0, sizeof(p));
    p.dir = dir;
    p.open = -1;
    p.err = err;
    p.errlen = errlen;
    khx_vec_init(&p.files, sizeof(struct vfile), CDIFF_FILES_MAX);
    khx_vec_init(&p.edits, sizeof(struct edit), CDIFF_EDITS_MAX);
    khx_vec_init(&p.adds, sizeof(struct add), CDIFF_EDITS_MAX);
    if ((cdiff == NULL && len > 0) || dir == NULL) {
        khx_errf(err, errlen, "missing argument");
        r = KH_EINVAL;
        goto out;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        khx_errf(err, errlen, "%s is not a folder", dir);
        r = KH_EINVAL;
        goto out;
    }

    /* Header: "ClamAV-Diff:<version>:<script length>:". */
    size_t pos = sizeof(magic) - 1, f1, f2;
    uint64_t version, want;
    r = KH_EFORMAT;
    if (len < pos || memcmp(cdiff, magic, pos) != 0) {
        khx_errf(err, errlen, "not a cdiff: no \"ClamAV-Diff:\" header");
        goto out;
    }
    for (f1 = pos; f1 < len && f1 < CDIFF_HEADER_MAX && cdiff[f1] != ':'; f1++)
        ;
    for (f2 = f1 + 1; f2 < len && f2 < CDIFF_HEADER_MAX && cdiff[f2] != ':'; f2++)
        ;
    if (f2 >= len || f2 >= CDIFF_HEADER_MAX ||
        khx_parse_u64((const char *)cdiff + pos, f1 - pos, &version) != 0 ||
        khx_parse_u64((const char *)cdiff + f1 + 1, f2 - f1 - 1, &want) != 0) {
        khx_errf(err, errlen, "cdiff header is not ClamAV-Diff:<version>:<length>:");
        goto out;
    }
    if (want > CDIFF_SCRIPT_MAX) {
        khx_errf(err, errlen, "cdiff script of %llu bytes is over the %zu limit",
                 (unsigned long long)want, CDIFF_SCRIPT_MAX);
        r = KH_ELIMIT;
        goto out;
    }
    size_t body = f2 + 1;

    /* The signature follows the last colon; its alphabet has no colon. */
    const uint8_t *colon = NULL;
    for (size_t i = len; i > body; i--) {
        if (cdiff[i - 1] == ':') {
            colon = cdiff + i - 1;
            break;
        }
    }
    size_t dlen = colon ? len - (size_t)(colon - cdiff) - 1 : 0;
    if (colon == NULL || colon == cdiff + body || dlen > CDIFF_DSIG_MAX) {
        khx_errf(err, errlen, "cdiff has no \":<signature>\" after its data");
        goto out;
    }
    memcpy(dsig, colon + 1, dlen);
    dsig[dlen] = '\0';
    if (!(flags & KHX_CVD_NO_VERIFY)) {
        uint8_t sum[32];
        const struct khx_rsa_key *key = keys && keys->cdiff ? keys->cdiff : &khx_clamav_cdiff_key;
        if (EVP_Digest(cdiff, (size_t)(colon - cdiff), sum, NULL, EVP_sha256(), NULL) != 1) {
            r = KH_ENOMEM;
            goto out;
        }
        if ((r = khx_versig2(dsig, sum, key)) != 0) {
            khx_errf(err, errlen, "cdiff signature does not verify%s",
                     r == KH_EINVAL ? " (bad key)" : "");
            goto out;
        }
    }
    if ((r = inflate_script(cdiff + body, (size_t)(colon - cdiff) - body, (size_t)want, &script,
                            err, errlen)) != 0)
        goto out;
    if (memchr(script, '\0', (size_t)want) != NULL) {
        khx_errf(err, errlen, "cdiff script contains a NUL byte");
        r = KH_EFORMAT;
        goto out;
    }

    struct khx_lines it;
    const char *line;
    size_t ll;
    khx_lines_init(&it, script, (size_t)want);
    while (khx_lines_next(&it, &line, &ll)) {
        p.line = it.lineno;
        if (ll == 0 || line[0] == '#')
            continue; /* ClamAV's "#LSIZE" buffer hint is moot here */
        if ((r = run_line(&p, line, ll)) != 0)
            goto out;
    }
    if (p.open >= 0) {
        khx_errf(err, errlen, "%s was not closed at the end of the script",
                 KHX_VEC_AT(&p.files, struct vfile, (size_t)p.open)->name);
        r = KH_EFORMAT;
        goto out;
    }
    r = commit(&p);
out:
    for (size_t i = 0; i < p.files.len; i++)
        free(KHX_VEC_AT(&p.files, struct vfile, i)->data);
    khx_vec_free(&p.files);
    khx_vec_free(&p.edits);
    khx_vec_free(&p.adds);
    free(script);
    return r;
}
