/*
 * The worker's command line: the agent's side writes it (sbx_args_build) and
 * the freshly exec'd worker reads it back (sbx_args_parse). Both live here so
 * that a key added to one cannot be forgotten in the other. The scan options
 * travel as key=value words rather than as a binary blob so that `ps` shows
 * what a worker was started with.
 */
#include "sandbox_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "khx.h"

/* Appends one formatted word to storage and argv. */
static int word(char **argv, size_t argv_max, size_t *argc, char *storage, size_t storage_len,
                size_t *used, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static int word(char **argv, size_t argv_max, size_t *argc, char *storage, size_t storage_len,
                size_t *used, const char *fmt, ...)
{
    if (*argc + 1 >= argv_max)
        return KH_ELIMIT;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(storage + *used, storage_len - *used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= storage_len - *used)
        return KH_ELIMIT;
    argv[(*argc)++] = storage + *used;
    argv[*argc] = NULL;
    *used += (size_t)n + 1;
    return KH_OK;
}

int sbx_args_build(const struct sbx_opts *o, const char *exe, int fd, unsigned threads, char **argv,
                   size_t argv_max, char *storage, size_t storage_len)
{
    size_t argc = 0, used = 0;
    const struct kh_limits *l = &o->scan.limits;
    int r = KH_OK;
#define W(...)                                                                                     \
    do {                                                                                           \
        if ((r = word(argv, argv_max, &argc, storage, storage_len, &used, __VA_ARGS__)) != 0)      \
            return r;                                                                              \
    } while (0)
    W("%s", exe);
    W("%s", SBX_WORKER_ARG);
    W("%d", fd);
    W("%s", o->kdb_path);
    W("%u", threads);
    if (o->user != NULL)
        W("user=%s", o->user);
    if (o->no_seccomp)
        W("seccomp=0");
    W("allmatch=%d", o->scan.allmatch ? 1 : 0);
    W("archives=%d", o->scan.scan_archives ? 1 : 0);
    W("maxfilesize=%llu", (unsigned long long)l->max_filesize);
    W("maxscansize=%llu", (unsigned long long)l->max_scansize);
    W("maxrecursion=%u", l->max_recursion);
    W("maxfiles=%u", l->max_files);
    W("maxratio=%u", l->max_ratio);
    W("scantime=%u", l->max_scantime_ms);
#undef W
    return (int)argc;
}

static int parse_num(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (khx_parse_u64(s, strlen(s), &v) != 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

int sbx_args_parse(int argc, char **argv, struct sbx_worker_args *out, char *err, size_t errlen)
{
    uint64_t v;
    memset(out, 0, sizeof(*out));
    kh_scan_opts_default(&out->scan);
    out->user = "nobody";
    if (argc < 5 || strcmp(argv[1], SBX_WORKER_ARG) != 0) {
        khx_errf(err, errlen, "usage: %s %s <fd> <kdb> <threads> [key=value...]",
                 argc > 0 ? argv[0] : "worker", SBX_WORKER_ARG);
        return KH_EINVAL;
    }
    if (parse_num(argv[2], 65535, &v) != 0 || v < 3) {
        khx_errf(err, errlen, "bad socket descriptor '%s'", argv[2]);
        return KH_EINVAL;
    }
    out->sock = (int)v;
    out->kdb_path = argv[3];
    if (parse_num(argv[4], SBX_MAX_THREADS, &v) != 0 || v == 0) {
        khx_errf(err, errlen, "bad thread count '%s' (1 to %d)", argv[4], SBX_MAX_THREADS);
        return KH_EINVAL;
    }
    out->threads = (unsigned)v;
    for (int i = 5; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            khx_errf(err, errlen, "bad option '%s' (key=value expected)", argv[i]);
            return KH_EINVAL;
        }
        size_t klen = (size_t)(eq - argv[i]);
        const char *val = eq + 1;
        struct kh_limits *l = &out->scan.limits;
        int bad = 0;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(argv[i], k, klen) == 0)
        if (KEY("user")) {
            out->user = val;
            bad = val[0] == '\0';
        } else if (KEY("seccomp")) {
            bad = parse_num(val, 1, &v);
            out->no_seccomp = v == 0;
        } else if (KEY("allmatch")) {
            bad = parse_num(val, 1, &v);
            out->scan.allmatch = (int)v;
        } else if (KEY("archives")) {
            bad = parse_num(val, 1, &v);
            out->scan.scan_archives = (int)v;
        } else if (KEY("maxfilesize")) {
            bad = parse_num(val, UINT64_MAX, &l->max_filesize);
        } else if (KEY("maxscansize")) {
            bad = parse_num(val, UINT64_MAX, &l->max_scansize);
        } else if (KEY("maxrecursion")) {
            bad = parse_num(val, UINT32_MAX, &v);
            l->max_recursion = (uint32_t)v;
        } else if (KEY("maxfiles")) {
            bad = parse_num(val, UINT32_MAX, &v);
            l->max_files = (uint32_t)v;
        } else if (KEY("maxratio")) {
            bad = parse_num(val, UINT32_MAX, &v);
            l->max_ratio = (uint32_t)v;
        } else if (KEY("scantime")) {
            bad = parse_num(val, UINT32_MAX, &v);
            l->max_scantime_ms = (uint32_t)v;
        } else {
            khx_errf(err, errlen, "unknown option '%.*s'", (int)klen, argv[i]);
            return KH_EINVAL;
        }
#undef KEY
        if (bad) {
            khx_errf(err, errlen, "bad value in '%s'", argv[i]);
            return KH_EINVAL;
        }
    }
    /* The agent always gets both digests of the file it asked about. */
    out->scan.want_sha256 = 1;
    return KH_OK;
}
