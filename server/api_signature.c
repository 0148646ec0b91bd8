/*
 * The signature-management API (api.h, docs/api/README.md): the sources a
 * bundle is compiled from, and the published versions.
 *
 * A source is either an uploaded file, kept in sig_sources.content under a
 * plain file name whose extension tells libkhien how to read it, or a file
 * or folder on the server (a ClamAV mirror that freshclam or `khien db
 * mirror` keeps current), named by its absolute path. Publishing compiles
 * every enabled source into the next signed bundle (bundle.c). Sources of
 * kind "indicators" are lists of IP addresses, prefixes and domains
 * (lib/ioc/ioc.h) that travel in the bundle's indicator section; they are
 * checked line by line on upload instead of being compiled. Every change is
 * written to the audit log.
 */
#include "api.h"
#include "feed.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <khien/khien.h>

#include "bundle.h"
#include "khx.h"
#include "query.h"

#define NAME_MAX_LEN 128
#define PATH_MAX_LEN 1000
#define UPLOAD_DIAGS 10
#define DIAG_TEXT    240

/* Source kinds, and the file extensions each accepts (NULL: any known one).
 * The kind is a label for people; the extension is what selects the loader. */
static const char *const clamav_exts[] = {"hdb", "hsb", "hdu",  "hsu", "mdb", "msb", "mdu",
                                          "msu", "imp", "fp",   "sfp", "ndb", "ndu", "ldb",
                                          "ldu", "ign", "ign2", "cvd", "cld", NULL};
static const char *const cvd_exts[] = {"cvd", "cld", NULL};
static const char *const yara_exts[] = {"yar", "yara", NULL};
static const char *const hashlist_exts[] = {"hashes", "hashlist", "md5", "sha1", "sha256",
                                            "txt",    "hdb",      "hsb", NULL};
/* ioc, txt, csv and list are read as the plain text form (lib/ioc/ioc.h);
 * the others name a feed format and are converted on upload. */
static const char *const indicator_exts[] = {"ioc",   "txt",   "csv",  "list", "netset",
                                             "ipset", "intel", "json", NULL};

static const struct {
    const char *kind;
    const char *const *exts;
    int uploadable; /* a mirror is a folder on the server, never an upload */
} kinds[] = {
    {"clamav", clamav_exts, 1},     {"cvd", cvd_exts, 1}, {"yara", yara_exts, 1},
    {"hashlist", hashlist_exts, 1}, {"mirror", NULL, 0},  {SRV_KIND_INDICATORS, indicator_exts, 1},
};

static int is_indicators(int k)
{
    return strcmp(kinds[k].kind, SRV_KIND_INDICATORS) == 0;
}

static int find_kind(const char *kind)
{
    for (size_t i = 0; kind != NULL && i < KHX_ARRAY_LEN(kinds); i++)
        if (strcmp(kinds[i].kind, kind) == 0)
            return (int)i;
    return -1;
}

/* True when `name`'s extension is one that kind `k` accepts. */
static int kind_accepts(int k, const char *name)
{
    const char *ext = khx_path_ext(name);
    const char *const *exts = kinds[k].exts;
    if (exts == NULL) {
        for (size_t i = 0; i < KHX_ARRAY_LEN(kinds); i++)
            if (kinds[i].exts != NULL && kind_accepts((int)i, name))
                return 1;
        return 0;
    }
    for (size_t i = 0; exts[i] != NULL; i++)
        if (strcmp(ext, exts[i]) == 0)
            return 1;
    return 0;
}

/* A plain file name: no folder part, not hidden, printable ASCII without
 * characters that would need quoting in a shell or a URL. */
static int plain_file_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > NAME_MAX_LEN || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '+'))
            return 0;
    }
    return 1;
}

/* A server-side source's name is only a label, but it is shown in the
 * dashboard and in error messages: no control characters. */
static int printable_label(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    return 1;
}

/* The bytes a server-side source holds: a file's size, or the total of the
 * regular files directly in a folder (what the builder reads). -1 when the
 * path is gone. */
static int64_t path_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode))
        return (int64_t)st.st_size;
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int64_t total = 0;
    struct dirent *de;
    char file[4096];
    while ((de = readdir(d)) != NULL) {
        int n = snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
        if (de->d_name[0] != '.' && n > 0 && (size_t)n < sizeof(file) && stat(file, &st) == 0 &&
            S_ISREG(st.st_mode))
            total += (int64_t)st.st_size;
    }
    closedir(d);
    return total;
}

#define SOURCE_COLUMNS                                                                             \
    "s.id, s.kind, s.name, s.path, s.enabled, s.created_at, u.username,"                           \
    " length(s.content)"
#define SOURCE_FROM " FROM sig_sources s LEFT JOIN users u ON u.id = s.created_by"

/* One source as the API shows it: its content is never sent, only its
 * size. */
static json_t *source_json(struct store_stmt *st)
{
    const char *path = store_col_text(st, 3);
    int on_server = path != NULL && path[0] != '\0';
    int64_t size = on_server ? path_size(path) : store_col_int(st, 7);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:o}", "id",
                     (json_int_t)store_col_int(st, 0), "kind", store_col_text(st, 1), "name",
                     store_col_text(st, 2), "path", on_server ? path : "", "origin",
                     on_server ? "path" : "upload", "enabled", store_col_int(st, 4) != 0,
                     "available", size >= 0, "size", (json_int_t)(size >= 0 ? size : 0),
                     "created_at", (json_int_t)store_col_int(st, 5), "created_by",
                     srv_col_string(st, 6));
}

/* Reads source `id` as JSON: STORE_ROW with *out set, STORE_DONE, or < 0. */
static int load_source(struct store_db *db, int64_t id, json_t **out)
{
    struct store_stmt *st = NULL;
    int rc =
        store_queryf(db, &st, "SELECT " SOURCE_COLUMNS SOURCE_FROM " WHERE s.id = $1", "i", id);
    if (rc == STORE_ROW && (*out = source_json(st)) == NULL)
        rc = STORE_ENOMEM;
    store_finalize(st);
    return rc;
}

int api_sources_list(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    int64_t limit, offset, total = 0;
    json_t *items = json_array();
    int rc;

    srv_paging(r, &limit, &offset);
    if (items == NULL)
        return srv_reply_store_error(r, STORE_ENOMEM);
    rc = store_query_int(r->db, &total, "SELECT COUNT(*) FROM sig_sources", "");
    if (rc >= 0)
        rc = store_queryf(r->db, &st,
                          "SELECT " SOURCE_COLUMNS SOURCE_FROM " ORDER BY s.id LIMIT $1 OFFSET $2",
                          "ii", limit, offset);
    for (; rc == STORE_ROW; rc = store_step(st)) {
        json_t *item = source_json(st);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            rc = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    if (rc < 0) {
        json_decref(items);
        return srv_reply_store_error(r, rc);
    }
    return srv_reply_json(r, 200, srv_page_json(items, total, limit, offset));
}

/* 409 when a source of that name exists already: names are what people
 * tell sources apart by, and an upload's name is its file name in the
 * compiled database. Returns 1 (replied), 0 (free) or replies 500. */
static int name_taken(struct srv_req *r, const char *name)
{
    int64_t id = 0;
    int rc = store_query_int(r->db, &id, "SELECT id FROM sig_sources WHERE name = $1", "t", name);
    if (rc < 0) {
        srv_reply_store_error(r, rc);
        return 1;
    }
    if (rc == STORE_ROW) {
        srv_reply_error(r, 409, "conflict", "a signature source named '%s' exists already", name);
        return 1;
    }
    return 0;
}

/* Inserts a source and returns its id. `content` NULL leaves it NULL (a
 * source on the server); created_by is NULL when no user is known. */
static int insert_source(struct store_db *db, const char *kind, const char *name, const char *path,
                         const void *content, size_t len, int enabled, int64_t user_id, int64_t *id)
{
    struct store_stmt *st = NULL;
    int rc = store_prepare(db,
                           "INSERT INTO sig_sources (kind, name, path, content, enabled,"
                           " created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                           " RETURNING id",
                           &st);
    if (rc == 0 &&
        ((rc = store_bind_text(st, 1, kind)) != 0 || (rc = store_bind_text(st, 2, name)) != 0 ||
         (rc = store_bind_text(st, 3, path)) != 0 ||
         (rc = content ? store_bind_blob(st, 4, content, len) : store_bind_null(st, 4)) != 0 ||
         (rc = store_bind_int(st, 5, enabled ? 1 : 0)) != 0 ||
         (rc = user_id > 0 ? store_bind_int(st, 6, user_id) : store_bind_null(st, 6)) != 0 ||
         (rc = store_bind_int(st, 7, srv_now())) != 0))
        goto out;
    if (rc == 0) {
        rc = store_step(st);
        if (rc == STORE_ROW) {
            *id = store_col_int(st, 0);
            rc = 0;
        } else if (rc == STORE_DONE) {
            rc = STORE_ESQL;
        }
    }
out:
    store_finalize(st);
    return rc;
}

int api_sources_create(struct srv_req *r)
{
    json_t *body = srv_body_json(r), *item = NULL;
    struct stat st;
    int64_t id = 0;
    int rc;

    if (body == NULL)
        return 0;
    const char *kind = json_string_value(json_object_get(body, "kind"));
    const char *path = json_string_value(json_object_get(body, "path"));
    json_t *jname = json_object_get(body, "name");
    json_t *jenabled = json_object_get(body, "enabled");
    int k = find_kind(kind);
    if (k < 0) {
        rc = srv_reply_field(r, "kind",
                             "must be one of clamav, cvd, yara, hashlist, mirror, indicators");
        goto out;
    }
    if (path == NULL || path[0] != '/' || strlen(path) > PATH_MAX_LEN ||
        strstr(path, "/../") != NULL) {
        rc = srv_reply_field(r, "path", "must be an absolute path on the server");
        goto out;
    }
    for (const char *p = path; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            rc = srv_reply_field(r, "path", "must not contain control characters");
            goto out;
        }
    }
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        rc = srv_reply_field(r, "path", "does not exist or is not readable by the server");
        goto out;
    }
    if (S_ISDIR(st.st_mode) ? access(path, X_OK) != 0 : !S_ISREG(st.st_mode)) {
        rc = srv_reply_field(r, "path", "must be a readable file or folder");
        goto out;
    }
    if (kinds[k].exts == NULL && !S_ISDIR(st.st_mode)) {
        rc = srv_reply_field(r, "path", "a mirror must be a folder");
        goto out;
    }
    /* A list is read whole at publish time, not a folder's worth of them. */
    if (is_indicators(k) && S_ISDIR(st.st_mode)) {
        rc = srv_reply_field(r, "path", "an indicator list must be a file");
        goto out;
    }
    if (!S_ISDIR(st.st_mode) && !kind_accepts(k, path)) {
        rc = srv_reply_field(r, "path", "the file's extension does not match the kind");
        goto out;
    }
    const char *name = jname != NULL ? json_string_value(jname) : khx_path_base(path);
    if (!printable_label(name)) {
        rc = srv_reply_field(r, "name", "must be 1 to 128 printable characters");
        goto out;
    }
    if (jenabled != NULL && !json_is_boolean(jenabled)) {
        rc = srv_reply_field(r, "enabled", "must be true or false");
        goto out;
    }
    if (name_taken(r, name)) {
        rc = 0;
        goto out;
    }
    rc = insert_source(r->db, kind, name, path, NULL, 0, jenabled ? json_is_true(jenabled) : 1,
                       r->who.user_id, &id);
    if (rc < 0) {
        rc = srv_reply_store_error(r, rc);
        goto out;
    }
    char target[32];
    snprintf(target, sizeof(target), "source:%" PRId64, id);
    srv_audit(r, "signature_source.create", target,
              json_pack("{s:s, s:s, s:s}", "kind", kind, "name", name, "path", path));
    if ((rc = load_source(r->db, id, &item)) != STORE_ROW) {
        rc = srv_reply_store_error(r, rc < 0 ? rc : STORE_ESQL);
        goto out;
    }
    rc = srv_reply_json(r, 201, item);
out:
    json_decref(body);
    return rc;
}

/* Problems the builder reports while checking an upload: counted, and the
 * first few shown to whoever uploaded it. */
/* ---- indicator lists in feed formats ---- */

/* The size a converted indicator list may reach. */
#define CONVERTED_MAX ((size_t)256 << 20)

/* The feed format of an indicator upload: the `format` parameter when it
 * is given, else what the extension says (netset/ipset: firehol, intel:
 * Zeek intel, json: STIX or MISP by content), else the plain text form the
 * server always took. Returns -1 for an unknown format name. */
static int upload_format(const char *format, enum ioc_format *out)
{
    if (format == NULL || format[0] == '\0') {
        *out = IOC_FMT_COUNT; /* decided by the name later */
        return 0;
    }
    enum ioc_format f = ioc_format_from_name(format);
    if (f == IOC_FMT_COUNT || f == IOC_FMT_AUTO || f == IOC_FMT_WARNINGLIST)
        return -1;
    *out = f;
    return 0;
}

static enum ioc_format format_of_name(const char *name)
{
    const char *ext = khx_path_ext(name);
    if (strcmp(ext, "netset") == 0 || strcmp(ext, "ipset") == 0)
        return IOC_FMT_FIREHOL;
    if (strcmp(ext, "intel") == 0)
        return IOC_FMT_ZEEK_INTEL;
    if (strcmp(ext, "json") == 0)
        return IOC_FMT_AUTO;
    return IOC_FMT_PLAIN;
}

struct convert {
    struct khx_buf *out;
    size_t kept, not_bundled;
};

/* Writes one record as a text-form line "value category source". Agent
 * bundles carry addresses, prefixes, address:port pairs and domains; URLs
 * and TLS fingerprints are for the sensor's own lists and are counted. */
static int convert_record(void *ctx, const struct ioc_record *rec)
{
    struct convert *c = ctx;
    char line[IOC_VALUE_MAX + 2 * IOC_WORD_MAX + 8];
    if (rec->kind != IOC_IP && rec->kind != IOC_CIDR && rec->kind != IOC_IP_PORT &&
        rec->kind != IOC_DOMAIN) {
        c->not_bundled++;
        return 0;
    }
    int n = snprintf(line, sizeof(line), "%s %s %s\n", rec->value, rec->category, rec->source);
    if (n < 0 || (size_t)n >= sizeof(line))
        return 0;
    if (khx_buf_append(c->out, line, (size_t)n) != KH_OK)
        return KH_ELIMIT;
    c->kept++;
    return 0;
}

/* Converts an upload in feed format fmt into the text form in out; fills
 * `info` with what was read. Returns 0, or -1 with the reason in err. */
static int convert_upload(const char *name, enum ioc_format fmt, const uint8_t *body, size_t len,
                          struct khx_buf *out, json_t *info, char *err, size_t errlen)
{
    struct convert c = {out, 0, 0};
    struct ioc_read_stats st;
    char src[IOC_WORD_MAX + 1];
    size_t k = 0;
    /* The list's name without its extension is the records' default source. */
    for (; name[k] != '\0' && name[k] != '.' && k < IOC_WORD_MAX; k++)
        src[k] = name[k];
    src[k] = '\0';
    if (fmt == IOC_FMT_AUTO)
        fmt = ioc_format_guess(name, (const char *)body, len);
    if (fmt == IOC_FMT_WARNINGLIST) {
        snprintf(err, errlen, "the file is a MISP warninglist (an allowlist), not indicators");
        return -1;
    }
    struct ioc_read_opts ro = {.source = src};
    int rc = ioc_read_feed(fmt, (const char *)body, len, &ro, convert_record, &c, &st);
    if (rc == KH_EFORMAT) {
        snprintf(err, errlen, "the file is not a %s list", ioc_format_name(fmt));
        return -1;
    }
    if (rc == KH_ELIMIT) {
        snprintf(err, errlen, "the converted list is larger than %zu MiB", CONVERTED_MAX >> 20);
        return -1;
    }
    if (rc != KH_OK) {
        snprintf(err, errlen, "reading the %s list failed: %s", ioc_format_name(fmt),
                 kh_strerror(rc));
        return -1;
    }
    json_object_set_new(info, "format", json_string(ioc_format_name(fmt)));
    json_object_set_new(info, "indicators", json_integer((json_int_t)c.kept));
    json_object_set_new(info, "not_bundled", json_integer((json_int_t)c.not_bundled));
    json_object_set_new(info, "rejected", json_integer((json_int_t)st.rejected));
    json_object_set_new(info, "skipped", json_integer((json_int_t)st.skipped));
    if (st.first_error[0] != '\0')
        json_object_set_new(info, "first_rejected", json_string(st.first_error));
    if (c.kept == 0) {
        snprintf(err, errlen,
                 "the %s list holds no address, prefix or domain an agent bundle carries "
                 "(%zu entries rejected%s%s)",
                 ioc_format_name(fmt), st.rejected, st.first_error[0] ? "; the first: " : "",
                 st.first_error);
        return -1;
    }
    return 0;
}

struct upload_diags {
    unsigned n;
    json_t *messages;
};

static void upload_diag(void *ud, const char *source, unsigned line, const char *msg)
{
    struct upload_diags *d = ud;
    char text[DIAG_TEXT], shown[DIAG_TEXT];
    d->n++;
    if (d->messages == NULL || json_array_size(d->messages) >= UPLOAD_DIAGS)
        return;
    int n = line > 0 ? snprintf(text, sizeof(text), "%s:%u: %s", source, line, msg)
                     : snprintf(text, sizeof(text), "%s: %s", source, msg);
    if (n < 0)
        return;
    khx_printable(shown, sizeof(shown), text, KHX_MIN((size_t)n, sizeof(text) - 1));
    json_array_append_new(d->messages, json_string(shown));
}

/* Reads the upload with the same loader a publish will use, so a file that
 * cannot be read at all is refused now rather than at the next publish.
 * Malformed lines are only counted: ClamAV's own databases have a few. */
static int check_upload(const char *name, const void *data, size_t len, struct upload_diags *d,
                        char *err, size_t errlen)
{
    kh_builder *b = NULL;
    struct kh_build_opts opts = {.portable = 1, .diag = upload_diag, .diag_ud = d};
    if (kh_builder_new(&opts, &b) != KH_OK) {
        khx_errf(err, errlen, "out of memory");
        return -1;
    }
    json_t *first = NULL;
    int r = kh_builder_add_mem(b, name, data, len);
    kh_builder_free(b);
    if (r == KH_OK)
        return 0;
    first = json_array_get(d->messages, 0);
    khx_errf(err, errlen, "the file cannot be loaded: %s",
             first ? json_string_value(first) : kh_strerror(r));
    return -1;
}

static int update_content(struct store_db *db, int64_t id, const char *kind, const void *data,
                          size_t len, int64_t user_id)
{
    struct store_stmt *st = NULL;
    int rc = store_prepare(db,
                           "UPDATE sig_sources SET kind = $1, content = $2, created_by = $3,"
                           " created_at = $4 WHERE id = $5",
                           &st);
    if (rc == 0 &&
        ((rc = store_bind_text(st, 1, kind)) != 0 ||
         (rc = store_bind_blob(st, 2, data, len)) != 0 ||
         (rc = user_id > 0 ? store_bind_int(st, 3, user_id) : store_bind_null(st, 3)) != 0 ||
         (rc = store_bind_int(st, 4, srv_now())) != 0 || (rc = store_bind_int(st, 5, id)) != 0))
        goto out;
    if (rc == 0 && (rc = store_step(st)) == STORE_DONE)
        rc = 0;
out:
    store_finalize(st);
    return rc < 0 ? rc : 0;
}

int api_sources_upload(struct srv_req *r)
{
    /* The kind is resolved before the name is read: in unit tests both
     * parameters come from one reused buffer. */
    int k = find_kind(srv_query(r, "kind"));
    enum ioc_format fmt = IOC_FMT_COUNT;
    int bad_format = upload_format(srv_query(r, "format"), &fmt);
    const char *name = srv_query(r, "name");
    struct upload_diags d = {0, json_array()};
    struct store_stmt *st = NULL;
    json_t *item = NULL, *converted = NULL;
    struct khx_buf conv;
    const uint8_t *body = r->body;
    size_t body_len = r->body_len;
    char err[512] = "", target[32];
    int64_t id = 0;
    int replaced = 0, rc;

    khx_buf_init(&conv, CONVERTED_MAX);

    if (k < 0 || !kinds[k].uploadable) {
        rc = srv_reply_field(r, "kind", "must be one of clamav, cvd, yara, hashlist, indicators");
        goto out;
    }
    if (!plain_file_name(name)) {
        rc = srv_reply_field(r, "name", "must be a plain file name (letters, digits, . - _ +)");
        goto out;
    }
    if (!kind_accepts(k, name)) {
        rc = srv_reply_field(r, "name", "its extension is not one this kind of source can have");
        goto out;
    }
    if (r->body == NULL || r->body_len == 0) {
        rc = srv_reply_error(r, 400, "bad_request", "the request body must be the file");
        goto out;
    }
    if (bad_format != 0 || (fmt != IOC_FMT_COUNT && !is_indicators(k))) {
        rc = srv_reply_field(r, "format",
                             "must be one of plain, csv, maltrail, ipsum, firehol, iprep, zeek, "
                             "stix, misp (indicator lists only)");
        goto out;
    }
    if (is_indicators(k) && fmt == IOC_FMT_COUNT)
        fmt = format_of_name(name);
    if (is_indicators(k) && fmt != IOC_FMT_PLAIN) {
        /* A feed format is turned into the text form here, once: what is
         * stored, published and shown is the normalised list. */
        converted = json_object();
        if (converted == NULL || convert_upload(name, fmt, r->body, r->body_len, &conv, converted,
                                                err, sizeof(err)) != 0) {
            rc = srv_reply_error(r, 400, "bad_request", "%s", err[0] ? err : "out of memory");
            goto out;
        }
        body = conv.data;
        body_len = conv.len;
    }
    if (is_indicators(k)) {
        /* An indicator list is checked line by line, as a publish will, and
         * one with any bad line is refused: it would fail every publish
         * until replaced. The first few problems are shown as for other
         * uploads. */
        int bad = srv_indicators_check(name, body, body_len, NULL, NULL, upload_diag, &d);
        if (bad != 0) {
            json_t *first = json_array_get(d.messages, 0);
            char msg[DIAG_TEXT + 80];
            snprintf(msg, sizeof(msg), "%d %s not an indicator; the first: %s", bad,
                     bad == 1 ? "line is" : "lines are", first ? json_string_value(first) : "");
            rc = srv_reply_json(r, 400,
                                json_pack("{s:s, s:s, s:i, s:o}", "error", "bad_request", "message",
                                          msg, "problems", bad, "messages",
                                          d.messages ? json_incref(d.messages) : json_array()));
            goto out;
        }
    } else if (check_upload(name, r->body, r->body_len, &d, err, sizeof(err)) != 0) {
        rc = srv_reply_error(r, 400, "bad_request", "%s", err);
        goto out;
    }
    /* Uploading a name again replaces that upload's content: that is how
     * an administrator refreshes a database by hand. */
    if ((rc = store_begin_write(r->db)) != 0)
        goto store_failed;
    rc = store_queryf(r->db, &st, "SELECT id, path FROM sig_sources WHERE name = $1 ORDER BY id",
                      "t", name);
    if (rc == STORE_ROW) {
        const char *path = store_col_text(st, 1);
        if (path != NULL && path[0] != '\0') {
            store_finalize(st);
            store_rollback(r->db);
            rc = srv_reply_error(r, 409, "conflict", "a server-side signature source is named '%s'",
                                 name);
            goto out;
        }
        id = store_col_int(st, 0);
        replaced = 1;
    }
    store_finalize(st);
    if (rc < 0)
        goto store_failed;
    rc = replaced ? update_content(r->db, id, kinds[k].kind, body, body_len, r->who.user_id)
                  : insert_source(r->db, kinds[k].kind, name, "", body, body_len, 1, r->who.user_id,
                                  &id);
    if (rc < 0)
        goto store_failed;
    snprintf(target, sizeof(target), "source:%" PRId64, id);
    srv_audit(
        r, "signature_source.upload", target,
        json_pack("{s:s, s:s, s:I, s:b, s:i, s:s}", "kind", kinds[k].kind, "name", name, "size",
                  (json_int_t)r->body_len, "replaced", replaced, "problems", (int)d.n, "format",
                  is_indicators(k) ? ioc_format_name(fmt == IOC_FMT_COUNT ? IOC_FMT_PLAIN : fmt)
                                   : ""));
    if ((rc = store_commit(r->db)) != 0)
        goto store_failed;
    if ((rc = load_source(r->db, id, &item)) != STORE_ROW) {
        rc = srv_reply_store_error(r, rc < 0 ? rc : STORE_ESQL);
        goto out;
    }
    json_object_set_new(item, "replaced", json_boolean(replaced));
    json_object_set_new(item, "problems", json_integer(d.n));
    json_object_set_new(item, "messages", d.messages ? json_incref(d.messages) : json_array());
    if (converted != NULL)
        json_object_set_new(item, "converted", json_incref(converted));
    rc = srv_reply_json(r, replaced ? 200 : 201, item);
    goto out;
store_failed:
    store_rollback(r->db);
    rc = srv_reply_store_error(r, rc);
out:
    json_decref(d.messages);
    json_decref(converted);
    khx_buf_free(&conv);
    return rc;
}

int api_sources_delete(struct srv_req *r)
{
    int64_t id = 0, changes = 0;
    char *name = NULL, target[32];
    int rc;

    if (srv_param_id(r, 0, &id) != 0)
        return srv_reply_error(r, 404, "not_found", "no such signature source");
    rc = store_query_text(r->db, &name, "SELECT name FROM sig_sources WHERE id = $1", "i", id);
    if (rc < 0)
        return srv_reply_store_error(r, rc);
    if (rc == STORE_DONE)
        return srv_reply_error(r, 404, "not_found", "no such signature source");
    rc = store_execf(r->db, &changes, "DELETE FROM sig_sources WHERE id = $1", "i", id);
    if (rc < 0) {
        free(name);
        return srv_reply_store_error(r, rc);
    }
    if (changes == 0) {
        free(name);
        return srv_reply_error(r, 404, "not_found", "no such signature source");
    }
    snprintf(target, sizeof(target), "source:%" PRId64, id);
    srv_audit(r, "signature_source.delete", target, json_pack("{s:s}", "name", name ? name : ""));
    free(name);
    return srv_reply_status(r, 204);
}

#define BUNDLE_COLUMNS                                                                             \
    "b.version, b.sha256, b.size, b.signatures, b.created_at, b.key_id, b.sources, u.username"
#define BUNDLE_FROM " FROM bundles b LEFT JOIN users u ON u.id = b.created_by"

static json_t *bundle_json(struct store_stmt *st)
{
    return json_pack("{s:I, s:o, s:I, s:I, s:I, s:o, s:o, s:o}", "version",
                     (json_int_t)store_col_int(st, 0), "sha256", srv_col_string(st, 1), "size",
                     (json_int_t)store_col_int(st, 2), "signatures",
                     (json_int_t)store_col_int(st, 3), "created_at",
                     (json_int_t)store_col_int(st, 4), "key_id", srv_col_string(st, 5), "sources",
                     srv_col_json(st, 6, "[]"), "created_by", srv_col_string(st, 7));
}

int api_bundles_publish(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    char err[512] = "", target[32];
    int64_t version = 0;
    json_t *item = NULL;

    if (r->srv == NULL || r->srv->signer == NULL)
        return srv_reply_error(r, 500, "internal", "the bundle signing key is not loaded");
    /* Compiling can take minutes for a full ClamAV database; the request
     * waits for it so that the answer says whether it worked. */
    if (srv_bundle_publish(r->srv, r->db, r->who.user_id, &version, err, sizeof(err)) != 0) {
        srv_audit(r, "bundle.publish.failed", "", json_pack("{s:s}", "message", err));
        return srv_reply_error(r, 400, "publish_failed", "%s", err);
    }
    int rc = store_queryf(r->db, &st, "SELECT " BUNDLE_COLUMNS BUNDLE_FROM " WHERE b.version = $1",
                          "i", version);
    if (rc == STORE_ROW)
        item = bundle_json(st);
    store_finalize(st);
    if (rc != STORE_ROW || item == NULL)
        return srv_reply_store_error(r, rc < 0 ? rc : STORE_ESQL);
    snprintf(target, sizeof(target), "bundle:%" PRId64, version);
    srv_audit(r, "bundle.publish", target,
              json_pack("{s:I, s:O, s:O, s:O}", "version", (json_int_t)version, "sha256",
                        json_object_get(item, "sha256"), "size", json_object_get(item, "size"),
                        "signatures", json_object_get(item, "signatures")));
    return srv_reply_json(r, 200, item);
}

int api_bundles_list(struct srv_req *r)
{
    struct store_stmt *st = NULL;
    json_t *items = json_array(), *by_version = json_array();
    int rc;

    if (items == NULL || by_version == NULL) {
        rc = STORE_ENOMEM;
        goto fail;
    }
    /* Machines per installed version, within the caller's scope; retired
     * machines no longer update and are left out. */
    rc = store_queryf(r->db, &st,
                      "SELECT m.db_version, COUNT(*) FROM machines m"
                      " JOIN agencies a ON a.id = m.agency_id"
                      " WHERE m.retired = 0 AND a.path LIKE $1"
                      " GROUP BY m.db_version ORDER BY m.db_version DESC",
                      "t", r->who.scope_path);
    for (; rc == STORE_ROW; rc = store_step(st)) {
        json_t *row = json_pack("{s:I, s:I}", "version", (json_int_t)store_col_int(st, 0),
                                "machines", (json_int_t)store_col_int(st, 1));
        if (row == NULL || json_array_append_new(by_version, row) != 0) {
            rc = STORE_ENOMEM;
            break;
        }
    }
    store_finalize(st);
    st = NULL;
    if (rc < 0)
        goto fail;
    rc = store_queryf(r->db, &st, "SELECT " BUNDLE_COLUMNS BUNDLE_FROM " ORDER BY b.version DESC",
                      "");
    for (; rc == STORE_ROW; rc = store_step(st)) {
        json_t *item = bundle_json(st);
        if (item == NULL || json_array_append_new(items, item) != 0) {
            rc = STORE_ENOMEM;
            break;
        }
        json_int_t v = json_integer_value(json_object_get(item, "version")), n = 0;
        size_t i;
        json_t *row;
        json_array_foreach(by_version, i, row)
        {
            if (json_integer_value(json_object_get(row, "version")) == v)
                n = json_integer_value(json_object_get(row, "machines"));
        }
        json_object_set_new(item, "machines", json_integer(n));
    }
    store_finalize(st);
    if (rc < 0)
        goto fail;
    return srv_reply_json(r, 200,
                          json_pack("{s:o, s:o, s:I}", "items", items, "machines_by_version",
                                    by_version, "total", (json_int_t)json_array_size(items)));
fail:
    json_decref(items);
    json_decref(by_version);
    return srv_reply_store_error(r, rc);
}
