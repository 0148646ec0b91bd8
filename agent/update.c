/*
 * Database updates (see update.h): a downloaded bundle is verified with
 * khx_bundle_verify, unpacked into a staging folder DIR/v<N>.tmp that is
 * fsync'd and renamed to DIR/v<N>, and only then made current by replacing
 * the symlink DIR/current with rename(2). A reader that resolves "current"
 * therefore sees either the old version or the new one, each complete; a
 * crash at any point leaves at worst a staging folder that the next install
 * removes. docs/internals/agent-update.md gives the whole argument.
 *
 * The folder is owned by one agent process and changed by one thread at a
 * time; nothing here locks.
 */
#include "update.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "khx.h"
#include "khx_bundle.h"

#define KDB_NAME      "db.kdb"
#define IOC_NAME      "iocs.txt"
#define MANIFEST_NAME "manifest.json"
#define LINK_CURRENT  "current"
#define LINK_PREVIOUS "previous"
/* "v" and up to 19 digits (INT64_MAX), and ".tmp". */
#define VNAME_MAX 32
/* Our own manifest.json is small; anything bigger is not ours. */
#define MANIFEST_MAX (64 * 1024)
/* The largest .kdb update_install_local copies. */
#define LOCAL_KDB_MAX ((uint64_t)4 << 30)

static int join(char *dst, size_t cap, const char *a, const char *b)
{
    int n = snprintf(dst, cap, "%s/%s", a, b);
    return n < 0 || (size_t)n >= cap ? KH_EINVAL : KH_OK;
}

static int join3(char *dst, size_t cap, const char *a, const char *b, const char *c)
{
    int n = snprintf(dst, cap, "%s/%s/%s", a, b, c);
    return n < 0 || (size_t)n >= cap ? KH_EINVAL : KH_OK;
}

static void version_name(int64_t version, char name[VNAME_MAX])
{
    snprintf(name, VNAME_MAX, "v%" PRId64, version);
}

/* Parses "v<N>" (and "v<N>.tmp" when tmp_ok); returns 1 and the version
 * when the name is one of ours. */
static int parse_version_name(const char *name, int tmp_ok, int64_t *version, int *is_tmp)
{
    const char *p = name + 1;
    uint64_t v = 0;
    size_t digits = 0;

    if (name[0] != 'v')
        return 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > 19)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (digits == 0 || v > (uint64_t)INT64_MAX)
        return 0;
    if (*p == '\0')
        *is_tmp = 0;
    else if (tmp_ok && strcmp(p, ".tmp") == 0)
        *is_tmp = 1;
    else
        return 0;
    *version = (int64_t)v;
    return 1;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return KH_EIO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? KH_OK : KH_EIO;
}

/* Creates `path` (which must not exist) with the bytes, fsync'd. */
static int write_new_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return KH_EIO;
    if (khx_write_all(fd, data, len) != KH_OK || fsync(fd) != 0) {
        close(fd);
        return KH_EIO;
    }
    return close(fd) == 0 ? KH_OK : KH_EIO;
}

/* Removes dir/name when it is one of our version folders (flat: files only).
 * A missing folder is not an error. */
static int remove_version_dir(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    if (join(path, sizeof(path), dir, name) != KH_OK)
        return KH_EINVAL;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? KH_OK : KH_EIO;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 ? KH_OK : KH_EIO;
    return khx_remove_flat_dir(path);
}

/* Reads the symlink dir/link into target[VNAME_MAX]. KH_ENOTFOUND when
 * there is none; KH_EFORMAT when it points anywhere but at a version folder
 * of this directory (the links are ours: anything else was put there). */
static int read_link(const char *dir, const char *link, char target[VNAME_MAX], int64_t *version)
{
    char path[PATH_MAX];
    int64_t v = 0;
    int is_tmp = 0;
    if (join(path, sizeof(path), dir, link) != KH_OK)
        return KH_EINVAL;
    ssize_t n = readlink(path, target, VNAME_MAX - 1);
    if (n < 0 && errno == EINVAL)
        return KH_EFORMAT; /* there, but not a symlink */
    if (n < 0)
        return errno == ENOENT ? KH_ENOTFOUND : KH_EIO;
    target[n] = '\0';
    if ((size_t)n >= VNAME_MAX - 1 || !parse_version_name(target, 0, &v, &is_tmp))
        return KH_EFORMAT;
    if (version != NULL)
        *version = v;
    return KH_OK;
}

/* Points dir/link at `target` atomically: a new symlink beside it, renamed
 * over it. rename(2) replaces the old link in one step, so a reader never
 * finds the name missing. */
static int set_link(const char *dir, const char *link, const char *target)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s/%s.new", dir, link);
    if (n < 0 || (size_t)n >= sizeof(tmp) || join(path, sizeof(path), dir, link) != KH_OK)
        return KH_EINVAL;
    if (unlink(tmp) != 0 && errno != ENOENT)
        return KH_EIO;
    if (symlink(target, tmp) != 0)
        return KH_EIO;
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return KH_EIO;
    }
    return KH_OK;
}

/* Renames the complete folder `tmp` to `final`. When `final` already exists
 * (an earlier install of the same version that was never switched to, or a
 * local database being replaced) the two are exchanged in one step with
 * renameat2(RENAME_EXCHANGE), so that "current", should it point there,
 * never resolves to a missing or half-removed folder; the old contents,
 * now under the staging name, are then removed. Filesystems without the
 * exchange fall back to remove-then-rename. */
static int place_dir(const char *dir, const char *tmp_name, const char *final_name)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    if (join(tmp, sizeof(tmp), dir, tmp_name) != KH_OK ||
        join(final, sizeof(final), dir, final_name) != KH_OK)
        return KH_EINVAL;
    if (rename(tmp, final) == 0)
        return KH_OK;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return KH_EIO;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0)
        return remove_version_dir(dir, tmp_name);
    if (errno != EINVAL && errno != ENOSYS)
        return KH_EIO;
    if (remove_version_dir(dir, final_name) != KH_OK)
        return KH_EIO;
    return rename(tmp, final) == 0 ? KH_OK : KH_EIO;
}

/* Removes every version folder and staging folder but `keep1` and `keep2`
 * (either may be ""). Best effort: a folder that cannot be removed now is
 * tried again at the next switch. */
static void prune(const char *dir, const char *keep1, const char *keep2)
{
    char names[64][VNAME_MAX];
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d == NULL)
        return;
    /* Collect first, remove after: the directory is not changed while it is
     * being read. More than 64 leftovers are cleaned over several calls. */
    while ((de = readdir(d)) != NULL && n < KHX_ARRAY_LEN(names)) {
        int64_t v;
        int is_tmp;
        size_t len = strlen(de->d_name);
        if (len >= VNAME_MAX || !parse_version_name(de->d_name, 1, &v, &is_tmp))
            continue;
        if (strcmp(de->d_name, keep1) == 0 || strcmp(de->d_name, keep2) == 0)
            continue;
        memcpy(names[n++], de->d_name, len + 1);
    }
    closedir(d);
    for (size_t i = 0; i < n; i++)
        remove_version_dir(dir, names[i]);
}

static int write_manifest(const char *path, const struct khx_bundle_manifest *m, int local)
{
    char kdb_hex[65], ioc_hex[65];
    char *text = NULL;
    int r = KH_ENOMEM;

    khx_hex_encode(m->kdb_sha256, 32, kdb_hex);
    khx_hex_encode(m->ioc_sha256, 32, ioc_hex);
    json_t *doc =
        json_pack("{s:I,s:I,s:I,s:I,s:s,s:I,s:s,s:I,s:s,s:b}", "version", (json_int_t)m->version,
                  "created_at", (json_int_t)m->created_at, "signatures", (json_int_t)m->signatures,
                  "indicators", (json_int_t)m->indicators, "kdb_sha256", kdb_hex, "kdb_size",
                  (json_int_t)m->kdb_size, "key_id", m->key_id, "ioc_size", (json_int_t)m->ioc_size,
                  "ioc_sha256", ioc_hex, "local", local);
    if (doc == NULL || (text = json_dumps(doc, JSON_COMPACT)) == NULL)
        goto out;
    r = write_new_file(path, text, strlen(text));
out:
    free(text);
    json_decref(doc);
    return r;
}

/* An integer field of our manifest, >= 0. */
static int manifest_get(json_t *root, const char *key, int64_t *out)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return KH_EFORMAT;
    *out = (int64_t)json_integer_value(v);
    return KH_OK;
}

/* Fills *db from dir/<name>/manifest.json. */
static int describe(const char *dir, const char *name, int64_t version, struct update_db *db)
{
    char path[PATH_MAX];
    uint8_t *text = NULL;
    size_t len = 0;
    json_t *root = NULL;
    struct update_db d;
    int64_t ioc_size = 0;
    int r;

    memset(&d, 0, sizeof(d));
    if ((r = join3(path, sizeof(path), dir, name, MANIFEST_NAME)) != KH_OK)
        return r;
    if ((r = khx_read_file(path, MANIFEST_MAX, &text, &len)) != KH_OK)
        return r;
    r = KH_EFORMAT;
    if ((root = json_loadb((const char *)text, len, 0, NULL)) == NULL ||
        manifest_get(root, "version", &d.version) != KH_OK ||
        manifest_get(root, "signatures", &d.signatures) != KH_OK ||
        manifest_get(root, "indicators", &d.indicators) != KH_OK ||
        manifest_get(root, "ioc_size", &ioc_size) != KH_OK || d.version != version)
        goto out;
    json_t *at = json_object_get(root, "created_at");
    if (!json_is_integer(at))
        goto out;
    d.created_at = (int64_t)json_integer_value(at);
    if ((r = join3(d.kdb_path, sizeof(d.kdb_path), dir, name, KDB_NAME)) != KH_OK)
        goto out;
    if (ioc_size > 0 && (r = join3(d.ioc_path, sizeof(d.ioc_path), dir, name, IOC_NAME)) != KH_OK)
        goto out;
    *db = d;
    r = KH_OK;
out:
    json_decref(root);
    free(text);
    return r;
}

/* Creates dir/<staging> afresh (an interrupted install's leftover is
 * removed first) and fills it with the .kdb, the indicator list when there
 * is one and our manifest, each fsync'd, and the folder fsync'd. */
static int stage(const char *dir, const char *staging, const struct khx_bundle_manifest *m,
                 const uint8_t *kdb, const uint8_t *ioc, int local, char *err, size_t errlen)
{
    char path[PATH_MAX], sub[PATH_MAX];
    int r;

    if ((r = join(sub, sizeof(sub), dir, staging)) != KH_OK)
        return r;
    if (remove_version_dir(dir, staging) != KH_OK) {
        khx_errf(err, errlen, "cannot remove the leftover %s", sub);
        return KH_EIO;
    }
    if (mkdir(sub, 0755) != 0) {
        khx_errf(err, errlen, "cannot create %s: %s", sub, strerror(errno));
        return KH_EIO;
    }
    if ((r = join(path, sizeof(path), sub, KDB_NAME)) != KH_OK ||
        (r = write_new_file(path, kdb, (size_t)m->kdb_size)) != KH_OK)
        goto fail;
    if (m->ioc_size > 0 && ((r = join(path, sizeof(path), sub, IOC_NAME)) != KH_OK ||
                            (r = write_new_file(path, ioc, (size_t)m->ioc_size)) != KH_OK))
        goto fail;
    if ((r = join(path, sizeof(path), sub, MANIFEST_NAME)) != KH_OK ||
        (r = write_manifest(path, m, local)) != KH_OK || (r = fsync_dir(sub)) != KH_OK)
        goto fail;
    return KH_OK;
fail:
    khx_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    remove_version_dir(dir, staging);
    return r;
}

/* Stages and places version m->version; the directory is fsync'd after. */
static int install_version(const char *dir, const struct khx_bundle_manifest *m, const uint8_t *kdb,
                           const uint8_t *ioc, int local, char *err, size_t errlen)
{
    char name[VNAME_MAX], staging[VNAME_MAX];
    int r;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        khx_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return KH_EIO;
    }
    version_name(m->version, name);
    snprintf(staging, sizeof(staging), "v%" PRId64 ".tmp", m->version);
    if ((r = stage(dir, staging, m, kdb, ioc, local, err, errlen)) != KH_OK)
        return r;
    if ((r = place_dir(dir, staging, name)) != KH_OK) {
        khx_errf(err, errlen, "cannot move %s/%s into place: %s", dir, staging, strerror(errno));
        remove_version_dir(dir, staging);
        return r;
    }
    if ((r = fsync_dir(dir)) != KH_OK)
        khx_errf(err, errlen, "cannot sync %s", dir);
    return r;
}

int update_unpack(const char *bundle_file, const uint8_t pk[32], const char *dir,
                  int64_t min_version, struct update_db *db, char *err, size_t errlen)
{
    struct khx_map map = {0};
    struct khx_bundle_manifest m;
    char why[256] = "", name[VNAME_MAX];
    size_t off = 0;
    int r;

    if (bundle_file == NULL || pk == NULL || dir == NULL || db == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    if ((r = khx_map_file(bundle_file, &map)) != KH_OK) {
        khx_errf(err, errlen, "cannot read the bundle %s: %s", bundle_file, kh_strerror(r));
        return r;
    }
    r = khx_bundle_verify(map.data, map.len, pk, &m, &off, why, sizeof(why));
    if (r != KH_OK) {
        khx_errf(err, errlen, "bundle %s refused: %s", bundle_file, why);
        goto out;
    }
    /* khx_bundle_verify has checked that the .kdb and the indicator list
     * fill the file exactly; this says so again before slicing it. */
    if (m.kdb_size > map.len - off || m.ioc_size > map.len - off - m.kdb_size ||
        off + m.kdb_size + m.ioc_size != map.len) {
        khx_errf(err, errlen, "bundle %s refused: its parts do not add up to its size",
                 bundle_file);
        r = KH_EFORMAT;
        goto out;
    }
    if (m.version <= min_version) {
        khx_errf(err, errlen, "bundle version %" PRId64 " is not newer than installed %" PRId64,
                 m.version, min_version);
        r = KH_EINVAL;
        goto out;
    }
    if ((r = install_version(dir, &m, map.data + off, map.data + off + m.kdb_size, 0, err,
                             errlen)) != KH_OK)
        goto out;
    version_name(m.version, name);
    if ((r = describe(dir, name, m.version, db)) != KH_OK)
        khx_errf(err, errlen, "cannot read back %s/%s/%s", dir, name, MANIFEST_NAME);
out:
    khx_map_close(&map);
    return r;
}

int update_switch(const char *dir, int64_t version, char *err, size_t errlen)
{
    char name[VNAME_MAX], cur[VNAME_MAX] = "", prev[VNAME_MAX] = "", path[PATH_MAX];
    struct stat st;
    int r;

    if (dir == NULL || version < 0) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    version_name(version, name);
    if ((r = join3(path, sizeof(path), dir, name, MANIFEST_NAME)) != KH_OK)
        return r;
    if (stat(path, &st) != 0) {
        khx_errf(err, errlen, "version %" PRId64 " is not unpacked in %s", version, dir);
        return KH_ENOTFOUND;
    }
    r = read_link(dir, LINK_CURRENT, cur, NULL);
    if (r == KH_ENOTFOUND || r == KH_EFORMAT)
        cur[0] = '\0'; /* nothing usable is current: nothing to keep */
    else if (r != KH_OK) {
        khx_errf(err, errlen, "cannot read %s/%s", dir, LINK_CURRENT);
        return r;
    }
    if (strcmp(cur, name) != 0) {
        /* previous first: should we stop between the two, previous and
         * current name the same version, which is harmless. */
        if (cur[0] != '\0' && (r = set_link(dir, LINK_PREVIOUS, cur)) != KH_OK) {
            khx_errf(err, errlen, "cannot update %s/%s: %s", dir, LINK_PREVIOUS, strerror(errno));
            return r;
        }
        if ((r = set_link(dir, LINK_CURRENT, name)) != KH_OK) {
            khx_errf(err, errlen, "cannot update %s/%s: %s", dir, LINK_CURRENT, strerror(errno));
            return r;
        }
        if ((r = fsync_dir(dir)) != KH_OK) {
            khx_errf(err, errlen, "cannot sync %s", dir);
            return r;
        }
    }
    if (read_link(dir, LINK_PREVIOUS, prev, NULL) != KH_OK)
        prev[0] = '\0';
    prune(dir, name, prev);
    return KH_OK;
}

int update_rollback(const char *dir, struct update_db *db, char *err, size_t errlen)
{
    char cur[VNAME_MAX] = "", prev[VNAME_MAX], path[PATH_MAX];
    int64_t prev_version = 0;
    struct stat st;
    int r;

    if (dir == NULL || db == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    r = read_link(dir, LINK_PREVIOUS, prev, &prev_version);
    if (r == KH_OK &&
        (join3(path, sizeof(path), dir, prev, MANIFEST_NAME) != KH_OK || stat(path, &st) != 0))
        r = KH_ENOTFOUND;
    if (r != KH_OK) {
        khx_errf(err, errlen, "no previous version to roll back to in %s", dir);
        return r == KH_EIO ? KH_EIO : KH_ENOTFOUND;
    }
    if (read_link(dir, LINK_CURRENT, cur, NULL) != KH_OK)
        cur[0] = '\0';
    if ((r = set_link(dir, LINK_CURRENT, prev)) != KH_OK) {
        khx_errf(err, errlen, "cannot update %s/%s: %s", dir, LINK_CURRENT, strerror(errno));
        return r;
    }
    /* The version rolled back from failed: it is not kept as a target for
     * a later rollback, and its folder goes. */
    if ((r = join(path, sizeof(path), dir, LINK_PREVIOUS)) != KH_OK)
        return r;
    if (unlink(path) != 0 && errno != ENOENT) {
        khx_errf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
        return KH_EIO;
    }
    if ((r = fsync_dir(dir)) != KH_OK) {
        khx_errf(err, errlen, "cannot sync %s", dir);
        return r;
    }
    if (cur[0] != '\0' && strcmp(cur, prev) != 0)
        remove_version_dir(dir, cur);
    if ((r = describe(dir, prev, prev_version, db)) != KH_OK)
        khx_errf(err, errlen, "cannot read %s/%s/%s", dir, prev, MANIFEST_NAME);
    return r;
}

int update_current(const char *dir, struct update_db *db)
{
    char cur[VNAME_MAX];
    int64_t version = 0;

    if (dir == NULL || db == NULL)
        return KH_EINVAL;
    memset(db, 0, sizeof(*db));
    int r = read_link(dir, LINK_CURRENT, cur, &version);
    if (r == KH_ENOTFOUND)
        return KH_OK;
    if (r != KH_OK)
        return r;
    return describe(dir, cur, version, db);
}

int update_install_local(const char *dir, const char *kdb_file, char *err, size_t errlen)
{
    struct khx_bundle_manifest m;
    struct khx_map map = {0};
    struct stat st;
    int r;

    if (dir == NULL || kdb_file == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    if (stat(kdb_file, &st) != 0 || !S_ISREG(st.st_mode)) {
        khx_errf(err, errlen, "%s is not a readable file", kdb_file);
        return KH_ENOTFOUND;
    }
    if ((uint64_t)st.st_size > LOCAL_KDB_MAX || st.st_size == 0) {
        khx_errf(err, errlen, "%s is empty or larger than %" PRIu64 " bytes", kdb_file,
                 LOCAL_KDB_MAX);
        return KH_ELIMIT;
    }
    if ((r = khx_map_file(kdb_file, &map)) != KH_OK) {
        khx_errf(err, errlen, "cannot read %s: %s", kdb_file, kh_strerror(r));
        return r;
    }
    /* The manifest a bundle would carry, for version 0: no signature, no
     * key, no indicator list. */
    memset(&m, 0, sizeof(m));
    m.format = KHX_BUNDLE_FORMAT;
    m.version = 0;
    m.created_at = (int64_t)st.st_mtime;
    m.kdb_size = map.len;
    if ((r = khx_sha256(map.data, map.len, m.kdb_sha256)) != KH_OK)
        goto out;
    if ((r = install_version(dir, &m, map.data, NULL, 1, err, errlen)) != KH_OK)
        goto out;
    r = update_switch(dir, 0, err, errlen);
out:
    khx_map_close(&map);
    return r;
}
