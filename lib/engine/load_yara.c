/*
 * YARA rules through libyara. Each source is compiled on its own when it is
 * added, so that a broken file is reported (file:line: message) and left out
 * without spoiling the others; then all good sources are compiled together,
 * once per database, and the compiled rules are saved into the .kdb.
 *
 * Rules from public sets (signature-base, for one) use the external
 * variables filename, filepath, extension, filetype and owner; they are
 * declared here and set per scanned object by scan.c.
 */
#include "engine_int.h"

#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "yara_int.h"

static pthread_once_t yara_once = PTHREAD_ONCE_INIT;
static int yara_init_result;

static void yara_init_once(void)
{
    yara_init_result = yr_initialize() == ERROR_SUCCESS ? KH_OK : KH_EMATCHER;
}

int khx_yara_init(void)
{
    pthread_once(&yara_once, yara_init_once);
    return yara_init_result;
}

const char *const khx_yara_externals[KHX_YARA_NEXTERNALS] = {"filename", "filepath", "extension",
                                                             "filetype", "owner"};

struct compile_ctx {
    kh_builder *b;
    uint32_t src;
    const char *file;
    const char *dir; /* for relative includes */
    unsigned errors;
    int report;
};

static void on_compile_message(int level, const char *file_name, int line, const YR_RULE *rule,
                               const char *message, void *ud)
{
    struct compile_ctx *c = ud;
    (void)rule;
    if (level != YARA_ERROR_LEVEL_ERROR)
        return; /* warnings ("slowing down scanning") are not errors */
    c->errors++;
    if (!c->report)
        return;
    char where[600];
    if (file_name && strcmp(file_name, c->file) != 0)
        snprintf(where, sizeof(where), "%s (included from %s)", file_name, c->file);
    else
        snprintf(where, sizeof(where), "%s", c->file);
    khx_builder_error(c->b, c->src, where, line > 0 ? (unsigned)line : 0, "YARA: %s", message);
}

#define MAX_INCLUDE_SIZE (64u << 20)

static const char *on_include(const char *include_name, const char *calling_file,
                              const char *calling_ns, void *ud)
{
    struct compile_ctx *c = ud;
    char path[PATH_MAX];
    (void)calling_ns;
    if (include_name[0] == '/') {
        snprintf(path, sizeof(path), "%s", include_name);
    } else if (calling_file && strchr(calling_file, '/')) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s", calling_file);
        snprintf(path, sizeof(path), "%s/%s", dirname(tmp), include_name);
    } else if (c->dir) {
        snprintf(path, sizeof(path), "%s/%s", c->dir, include_name);
    } else {
        return NULL;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    if (khx_read_file(path, MAX_INCLUDE_SIZE, &data, &len) != 0)
        return NULL;
    return (const char *)data;
}

static void on_include_free(const char *p, void *ud)
{
    (void)ud;
    free((void *)p);
}

static int new_compiler(struct compile_ctx *ctx, YR_COMPILER **out)
{
    YR_COMPILER *c = NULL;
    if (khx_yara_init() != 0 || yr_compiler_create(&c) != ERROR_SUCCESS)
        return KH_EMATCHER;
    yr_compiler_set_callback(c, on_compile_message, ctx);
    yr_compiler_set_include_callback(c, on_include, on_include_free, ctx);
    for (size_t i = 0; i < KHX_YARA_NEXTERNALS; i++) {
        if (yr_compiler_define_string_variable(c, khx_yara_externals[i], "") != ERROR_SUCCESS) {
            yr_compiler_destroy(c);
            return KH_EMATCHER;
        }
    }
    *out = c;
    return KH_OK;
}

static size_t count_rules(YR_RULES *rules)
{
    size_t n = 0;
    YR_RULE *rule;
    yr_rules_foreach(rules, rule)
    {
        n++;
    }
    return n;
}

int khx_load_yara(kh_builder *b, uint32_t src, const char *file, const char *text, size_t len)
{
    int r = KH_ENOMEM;
    YR_COMPILER *c = NULL;
    YR_RULES *rules = NULL;
    char *copy = khx_strndup(text, len);
    char dirbuf[PATH_MAX];
    snprintf(dirbuf, sizeof(dirbuf), "%s", file);
    struct compile_ctx ctx = {b, src, file, strchr(file, '/') ? dirname(dirbuf) : ".", 0, 1};
    if (copy == NULL)
        goto out;
    if (memchr(text, '\0', len) != NULL) {
        khx_builder_error(b, src, file, 0, "YARA source contains a NUL byte");
        r = KH_OK;
        goto out;
    }
    if ((r = new_compiler(&ctx, &c)) != 0)
        goto out;
    const char *ns = khx_path_base(file);
    yr_compiler_add_string(c, copy, ns);
    if (ctx.errors > 0) {
        r = KH_OK; /* reported line by line; the source is left out */
        goto out;
    }
    if (yr_compiler_get_rules(c, &rules) != ERROR_SUCCESS) {
        khx_builder_error(b, src, file, 0, "YARA: could not compile rules");
        r = KH_OK;
        goto out;
    }
    struct byara *y = khx_vec_push(&b->yara);
    if (y == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    y->name = strdup(file);
    y->text = copy;
    y->source = src;
    copy = NULL;
    if (y->name == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    KHX_VEC_AT(&b->sources, struct bsource, src)->signatures += (uint32_t)count_rules(rules);
    r = KH_OK;
out:
    if (rules)
        yr_rules_destroy(rules);
    if (c)
        yr_compiler_destroy(c);
    free(copy);
    return r;
}

static size_t stream_write(const void *ptr, size_t size, size_t count, void *ud)
{
    struct khx_buf *buf = ud;
    if (size != 0 && count > SIZE_MAX / size)
        return 0;
    return khx_buf_append(buf, ptr, size * count) == 0 ? count : 0;
}

int khx_yara_build(kh_builder *b, struct khx_buf *out, uint64_t *nrules)
{
    int r = KH_OK;
    YR_COMPILER *c = NULL;
    YR_RULES *rules = NULL;
    *nrules = 0;
    if (b->yara.len == 0)
        return KH_OK;
    struct compile_ctx ctx = {b, 0, "", ".", 0, 1};
    if ((r = new_compiler(&ctx, &c)) != 0)
        goto out;
    for (size_t i = 0; i < b->yara.len; i++) {
        struct byara *y = KHX_VEC_AT(&b->yara, struct byara, i);
        char dirbuf[PATH_MAX];
        snprintf(dirbuf, sizeof(dirbuf), "%s", y->name);
        ctx.src = y->source;
        ctx.file = y->name;
        ctx.dir = strchr(y->name, '/') ? dirname(dirbuf) : ".";
        yr_compiler_add_string(c, y->text, khx_path_base(y->name));
        if (ctx.errors > 0) {
            r = KH_EMATCHER; /* each source compiled alone; together they clash */
            goto out;
        }
    }
    if (yr_compiler_get_rules(c, &rules) != ERROR_SUCCESS) {
        r = KH_EMATCHER;
        goto out;
    }
    *nrules = count_rules(rules);
    YR_STREAM stream = {.user_data = out, .write = stream_write};
    if (yr_rules_save_stream(rules, &stream) != ERROR_SUCCESS)
        r = KH_ENOMEM;
out:
    if (rules)
        yr_rules_destroy(rules);
    if (c)
        yr_compiler_destroy(c);
    return r;
}
