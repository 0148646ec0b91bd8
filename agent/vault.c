/*
 * The quarantine vault (see vault.h for the contract,
 * docs/internals/agent-spool.md for the on-disk format). An entry is two
 * files in the vault folder: <id>.bin, the content encrypted with libsodium's
 * secretstream (XChaCha20-Poly1305, 64 KiB chunks, the entry id as
 * associated data so contents cannot be swapped between entries), and
 * <id>.json, the metadata. Both are written under temporary names, fsync'd
 * and renamed, the .bin first: an entry exists exactly when its .json does,
 * and the original is removed only after both are durable.
 *
 * The folder also holds "key" (32 bytes, 0600) and "last-id" (the last id
 * given, so ids are not reused after a restart even when every entry was
 * deleted). One mutex serializes the short steps that must not interleave
 * (claiming an id, committing an entry and removing the original, restore,
 * delete); reading, hashing and encrypting the content run outside it.
 */
#include "vault.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "khx.h"

#define VAULT_FORMAT    1
#define VAULT_MAGIC     "KHVAULT1" /* 8 bytes, then the secretstream header */
#define VAULT_MAGIC_LEN 8
#define VAULT_CHUNK     (64u * 1024)
#define VAULT_ABYTES    crypto_secretstream_xchacha20poly1305_ABYTES
#define VAULT_HEADER    crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define VAULT_KEYBYTES  crypto_secretstream_xchacha20poly1305_KEYBYTES
#define VAULT_META_MAX  (32u * 1024) /* a record with a 4 KiB path in hex is ~9 KiB */
#define VAULT_LIST_MAX  1000000u
#define VAULT_ID_MAX    31
#define VAULT_NAME_MAX  64 /* "<id>.json.tmp" with a 31-byte id */
#define VAULT_DAY_MAX   999999u

struct vault {
    pthread_mutex_t mu;
    int dirfd; /* holds the flock that keeps other processes out */
    char *dir;
    unsigned char key[VAULT_KEYBYTES];
    char last_id[32]; /* "" or the greatest "q-YYYYMMDD-NNNNNN" given or seen */
};

/* The metadata with what struct vault_entry has no room for. */
struct vault_meta {
    struct vault_entry e;
    long mtime_nsec;
};

/* Reads until `len` bytes or end of file; returns the count or -1. */
static ssize_t read_full(int fd, void *buf, size_t len, off_t off, int positional)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = positional ? pread(fd, (char *)buf + got, len - got, off + (off_t)got)
                               : read(fd, (char *)buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

int vault_id_valid(const char *id)
{
    size_t n = 0;
    if (id == NULL)
        return 0;
    for (; id[n] != '\0'; n++) {
        char c = id[n];
        if (n >= VAULT_ID_MAX || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                   (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return n > 0;
}

/* 1 when `id` is one this vault makes: "q-YYYYMMDD-NNNNNN". */
static int id_is_ours(const char *id, size_t n)
{
    static const char shape[] = "q-00000000-000000";
    if (n != sizeof(shape) - 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == '0' ? !(id[i] >= '0' && id[i] <= '9') : id[i] != shape[i])
            return 0;
    return 1;
}

static void entry_name(char *buf, const char *id, const char *ext)
{
    snprintf(buf, VAULT_NAME_MAX, "%s.%s", id, ext);
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */
/* ------------------------------------------------------------------------ */

/* Stores bytes as a JSON string when they are UTF-8 (jansson refuses
 * anything else), otherwise as lowercase hex under `key`_hex: a path on
 * Linux is any bytes but NUL. */
static int meta_set_bytes(json_t *root, const char *key, const char *s)
{
    char hexkey[32];
    size_t n = strlen(s);
    json_t *v = json_stringn(s, n);
    if (v != NULL)
        return json_object_set_new(root, key, v) == 0 ? KH_OK : KH_ENOMEM;
    char *hex = malloc(2 * n + 1);
    if (hex == NULL)
        return KH_ENOMEM;
    khx_hex_encode((const uint8_t *)s, n, hex);
    snprintf(hexkey, sizeof(hexkey), "%s_hex", key);
    int r = json_object_set_new(root, hexkey, json_string(hex)) == 0 ? KH_OK : KH_ENOMEM;
    free(hex);
    return r;
}

/* Returns the metadata as malloc'd compact JSON, or NULL (out of memory). */
static char *meta_dump(const struct vault_meta *m)
{
    const struct vault_entry *e = &m->e;
    char *text = NULL;
    json_t *root =
        json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I}", "format", VAULT_FORMAT,
                  "id", e->id, "uid", (json_int_t)e->uid, "gid", (json_int_t)e->gid, "mode",
                  (json_int_t)e->mode, "mtime", (json_int_t)e->mtime, "mtime_nsec",
                  (json_int_t)m->mtime_nsec, "size", (json_int_t)e->size, "sha256", e->sha256,
                  "md5", e->md5, "quarantined_at", (json_int_t)e->quarantined_at);
    if (root != NULL && meta_set_bytes(root, "path", e->path) == KH_OK &&
        meta_set_bytes(root, "signature", e->signature) == KH_OK)
        text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static int meta_int(json_t *root, const char *key, int64_t min, int64_t max, int required,
                    int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL && !required) {
        *out = 0;
        return KH_OK;
    }
    if (!json_is_integer(v)) {
        khx_errf(err, errlen, "field \"%s\" is missing or not an integer", key);
        return KH_EFORMAT;
    }
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        khx_errf(err, errlen, "field \"%s\" is out of range", key);
        return KH_EFORMAT;
    }
    *out = (int64_t)x;
    return KH_OK;
}

/* Reads `key` (a string) or `key`_hex (its bytes in hex): exactly one must
 * be present, the bytes must fit in cap-1 and hold no NUL. */
static int meta_bytes(json_t *root, const char *key, char *dst, size_t cap, char *err,
                      size_t errlen)
{
    char hexkey[32];
    snprintf(hexkey, sizeof(hexkey), "%s_hex", key);
    json_t *plain = json_object_get(root, key), *hex = json_object_get(root, hexkey);
    size_t n;
    if ((plain == NULL) == (hex == NULL)) {
        khx_errf(err, errlen, "exactly one of \"%s\" and \"%s\" must be present", key, hexkey);
        return KH_EFORMAT;
    }
    if (plain != NULL) {
        if (!json_is_string(plain) || (n = json_string_length(plain)) >= cap) {
            khx_errf(err, errlen, "field \"%s\" is not a string of under %zu bytes", key, cap);
            return KH_EFORMAT;
        }
        memcpy(dst, json_string_value(plain), n);
    } else {
        if (!json_is_string(hex) || (json_string_length(hex) & 1) != 0 ||
            (n = json_string_length(hex) / 2) >= cap ||
            khx_hex_decode(json_string_value(hex), n, (uint8_t *)dst) != KH_OK) {
            khx_errf(err, errlen, "field \"%s\" is not hex of under %zu bytes", hexkey, cap);
            return KH_EFORMAT;
        }
    }
    if (memchr(dst, '\0', n) != NULL) {
        khx_errf(err, errlen, "field \"%s\" holds a NUL byte", key);
        return KH_EFORMAT;
    }
    dst[n] = '\0';
    return KH_OK;
}

static int meta_hex(json_t *root, const char *key, char *dst, size_t len, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    const char *s = json_string_value(v);
    if (s == NULL || json_string_length(v) != len) {
        khx_errf(err, errlen, "field \"%s\" is missing or not %zu hex digits", key, len);
        return KH_EFORMAT;
    }
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            khx_errf(err, errlen, "field \"%s\" is not lowercase hex", key);
            return KH_EFORMAT;
        }
    memcpy(dst, s, len + 1);
    return KH_OK;
}

static int meta_parse(const char *json, size_t len, struct vault_meta *m, char *err, size_t errlen)
{
    int r = KH_EFORMAT;
    json_error_t jerr;
    json_t *root = NULL;
    struct vault_entry *e = &m->e;
    int64_t format, uid, gid, mode, mtime, nsec, size, qat;

    memset(m, 0, sizeof(*m));
    if (json == NULL || len == 0 || len > VAULT_META_MAX) {
        khx_errf(err, errlen, "metadata of %zu bytes (1 to %u allowed)", len, VAULT_META_MAX);
        return KH_EFORMAT;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        khx_errf(err, errlen, "not JSON: %s at byte %d", jerr.text, jerr.position);
        goto out;
    }
    if (!json_is_object(root)) {
        khx_errf(err, errlen, "not a JSON object");
        goto out;
    }
    if ((r = meta_int(root, "format", 0, INT64_MAX, 1, &format, err, errlen)) != KH_OK)
        goto out;
    if (format != VAULT_FORMAT) {
        khx_errf(err, errlen, "format %" PRId64 " is not supported", format);
        r = KH_EFORMAT;
        goto out;
    }
    json_t *id = json_object_get(root, "id");
    if (!json_is_string(id) || json_string_length(id) >= sizeof(e->id) ||
        !vault_id_valid(json_string_value(id))) {
        khx_errf(err, errlen, "field \"id\" is missing or not a valid id");
        r = KH_EFORMAT;
        goto out;
    }
    memcpy(e->id, json_string_value(id), json_string_length(id) + 1);
    /* uid_t and gid_t are 32-bit; (uid_t)-1 means "no change" to chown. */
    if ((r = meta_int(root, "uid", 0, UINT32_MAX - 1, 1, &uid, err, errlen)) != KH_OK ||
        (r = meta_int(root, "gid", 0, UINT32_MAX - 1, 1, &gid, err, errlen)) != KH_OK ||
        (r = meta_int(root, "mode", 0, 07777, 1, &mode, err, errlen)) != KH_OK ||
        (r = meta_int(root, "mtime", INT64_MIN, INT64_MAX, 1, &mtime, err, errlen)) != KH_OK ||
        (r = meta_int(root, "mtime_nsec", 0, 999999999, 0, &nsec, err, errlen)) != KH_OK ||
        (r = meta_int(root, "size", 0, INT64_MAX, 1, &size, err, errlen)) != KH_OK ||
        (r = meta_int(root, "quarantined_at", INT64_MIN, INT64_MAX, 1, &qat, err, errlen)) !=
            KH_OK ||
        (r = meta_hex(root, "sha256", e->sha256, 64, err, errlen)) != KH_OK ||
        (r = meta_hex(root, "md5", e->md5, 32, err, errlen)) != KH_OK ||
        (r = meta_bytes(root, "path", e->path, sizeof(e->path), err, errlen)) != KH_OK ||
        (r = meta_bytes(root, "signature", e->signature, sizeof(e->signature), err, errlen)) !=
            KH_OK)
        goto out;
    if (e->path[0] != '/') {
        khx_errf(err, errlen, "field \"path\" is not an absolute path");
        r = KH_EFORMAT;
        goto out;
    }
    e->uid = (uid_t)uid;
    e->gid = (gid_t)gid;
    e->mode = (mode_t)mode;
    e->mtime = mtime;
    e->size = (uint64_t)size;
    e->quarantined_at = qat;
    m->mtime_nsec = (long)nsec;
    r = KH_OK;
out:
    json_decref(root);
    if (r != KH_OK)
        memset(m, 0, sizeof(*m));
    return r;
}

int vault_meta_parse(const char *json, size_t len, struct vault_entry *e, char *err, size_t errlen)
{
    struct vault_meta m;
    int r = meta_parse(json, len, &m, err, errlen);
    if (r == KH_OK && e != NULL)
        *e = m.e;
    return r;
}

/* Reads and parses <id>.json. KH_ENOTFOUND when it does not exist. */
static int meta_load(struct vault *v, const char *id, struct vault_meta *m, char *err,
                     size_t errlen)
{
    int r = KH_EFORMAT;
    char name[VAULT_NAME_MAX], why[256];
    char *buf = NULL;
    struct stat st;
    ssize_t got;

    entry_name(name, id, "json");
    int fd = openat(v->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) {
            khx_errf(err, errlen, "no quarantine entry %s", id);
            return KH_ENOTFOUND;
        }
        khx_errf(err, errlen, "cannot open %s/%s: %s", v->dir, name, strerror(errno));
        return KH_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)VAULT_META_MAX) {
        khx_errf(err, errlen, "%s/%s is not a regular file of at most %u bytes", v->dir, name,
                 VAULT_META_MAX);
        goto out;
    }
    if ((buf = malloc(VAULT_META_MAX + 1)) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if ((got = read_full(fd, buf, VAULT_META_MAX + 1, 0, 0)) < 0) {
        khx_errf(err, errlen, "cannot read %s/%s: %s", v->dir, name, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if ((r = meta_parse(buf, (size_t)got, m, why, sizeof(why))) != KH_OK) {
        khx_errf(err, errlen, "%s/%s: %s", v->dir, name, why);
        goto out;
    }
    if (strcmp(m->e.id, id) != 0) {
        khx_errf(err, errlen, "%s/%s: it records the id %s", v->dir, name, m->e.id);
        r = KH_EFORMAT;
        goto out;
    }
    r = KH_OK;
out:
    free(buf);
    close(fd);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Opening: the key, the id counter and leftovers                            */
/* ------------------------------------------------------------------------ */

static int key_create(struct vault *v, char *err, size_t errlen)
{
    int r = KH_EIO;
    /* Written under a temporary name and linked into place, so a crash never
     * leaves a short key file, and link() never replaces one. */
    unlinkat(v->dirfd, "key.tmp", 0);
    int fd =
        openat(v->dirfd, "key.tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        khx_errf(err, errlen, "cannot create the vault key in %s: %s", v->dir, strerror(errno));
        return KH_EIO;
    }
    crypto_secretstream_xchacha20poly1305_keygen(v->key);
    if (fchmod(fd, 0600) != 0 || khx_write_all(fd, v->key, sizeof(v->key)) != KH_OK ||
        fsync(fd) != 0) {
        khx_errf(err, errlen, "cannot write the vault key in %s: %s", v->dir, strerror(errno));
        goto out;
    }
    if (linkat(v->dirfd, "key.tmp", v->dirfd, "key", 0) != 0) {
        khx_errf(err, errlen, "cannot create %s/key: %s", v->dir, strerror(errno));
        goto out;
    }
    if (unlinkat(v->dirfd, "key.tmp", 0) != 0 || fsync(v->dirfd) != 0) {
        khx_errf(err, errlen, "cannot save the vault key in %s: %s", v->dir, strerror(errno));
        goto out;
    }
    r = KH_OK;
out:
    close(fd);
    if (r != KH_OK) {
        unlinkat(v->dirfd, "key.tmp", 0);
        sodium_memzero(v->key, sizeof(v->key));
    }
    return r;
}

static int key_load(struct vault *v, char *err, size_t errlen)
{
    int r = KH_EIO;
    struct stat st;
    int fd = openat(v->dirfd, "key", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return key_create(v, err, errlen);
    if (fd < 0) {
        khx_errf(err, errlen, "cannot open the vault key %s/key: %s", v->dir, strerror(errno));
        return KH_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        khx_errf(err, errlen, "the vault key %s/key is not a regular file", v->dir);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        khx_errf(err, errlen,
                 "the vault key %s/key has mode %04o: group and others must have no access "
                 "to it (chmod 600 it, and consider the quarantined files exposed)",
                 v->dir, (unsigned)(st.st_mode & 07777));
        r = KH_EINVAL;
        goto out;
    }
    if (st.st_uid != geteuid()) {
        khx_errf(err, errlen, "the vault key %s/key belongs to uid %u, not to this user (%u)",
                 v->dir, (unsigned)st.st_uid, (unsigned)geteuid());
        r = KH_EINVAL;
        goto out;
    }
    if (st.st_size != (off_t)sizeof(v->key) ||
        read_full(fd, v->key, sizeof(v->key), 0, 0) != (ssize_t)sizeof(v->key)) {
        khx_errf(err, errlen, "the vault key %s/key does not hold %zu bytes", v->dir,
                 sizeof(v->key));
        r = KH_EFORMAT;
        goto out;
    }
    r = KH_OK;
out:
    close(fd);
    return r;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void note_id(struct vault *v, const char *id, size_t n)
{
    /* Our ids have a fixed shape, so text order is date-then-counter order. */
    if (id_is_ours(id, n) && (v->last_id[0] == '\0' || strncmp(id, v->last_id, n) > 0)) {
        memcpy(v->last_id, id, n);
        v->last_id[n] = '\0';
    }
}

/* Removes what an interrupted quarantine, restore or delete left: temporary
 * files, and a .bin without its .json (the entry never existed, or was
 * being removed; in neither case is it the only copy of the file). Also
 * finds the greatest id in use, in case "last-id" is lost. */
static int tidy_folder(struct vault *v, char *err, size_t errlen)
{
    int r = KH_EIO;
    DIR *d = NULL;
    struct dirent *de;
    char name[VAULT_NAME_MAX];
    int fd = openat(v->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        khx_errf(err, errlen, "cannot list the vault folder %s: %s", v->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return KH_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        const char *s = de->d_name;
        size_t n = strlen(s);
        struct stat st;
        if (ends_with(s, ".tmp")) {
            fprintf(stderr, "vault: removing the leftover %s/%s\n", v->dir, s);
            unlinkat(v->dirfd, s, 0);
        } else if (ends_with(s, ".bin") && n - 4 < 32) {
            snprintf(name, sizeof(name), "%.*s.json", (int)(n - 4), s);
            if (fstatat(v->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
                fprintf(stderr, "vault: removing %s/%s, which has no metadata\n", v->dir, s);
                unlinkat(v->dirfd, s, 0);
            } else {
                note_id(v, s, n - 4);
            }
        } else if (ends_with(s, ".json")) {
            note_id(v, s, n - 5);
        }
    }
    if (fsync(v->dirfd) != 0) {
        khx_errf(err, errlen, "cannot fsync the vault folder %s: %s", v->dir, strerror(errno));
        goto out;
    }
    r = KH_OK;
out:
    closedir(d);
    return r;
}

static void last_id_load(struct vault *v)
{
    char buf[40];
    int fd = openat(v->dirfd, "last-id", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    ssize_t got = read_full(fd, buf, sizeof(buf), 0, 0);
    close(fd);
    while (got > 0 && buf[got - 1] == '\n')
        got--;
    if (got > 0 && id_is_ours(buf, (size_t)got))
        note_id(v, buf, (size_t)got);
    else
        fprintf(stderr, "vault: %s/last-id is damaged; ignoring it\n", v->dir);
}

int vault_open(const char *dir, struct vault **out, char *err, size_t errlen)
{
    int r = KH_EIO;
    struct vault *v = NULL;

    if (dir == NULL || *dir == '\0' || out == NULL) {
        khx_errf(err, errlen, "invalid argument");
        return KH_EINVAL;
    }
    if (sodium_init() < 0) {
        khx_errf(err, errlen, "libsodium cannot be initialized");
        return KH_ENOMEM;
    }
    if ((v = calloc(1, sizeof(*v))) == NULL || (v->dir = strdup(dir)) == NULL) {
        free(v);
        khx_errf(err, errlen, "out of memory");
        return KH_ENOMEM;
    }
    v->dirfd = -1;
    pthread_mutex_init(&v->mu, NULL);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        khx_errf(err, errlen, "cannot create the vault folder %s: %s", dir, strerror(errno));
        goto out;
    }
    if ((v->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        khx_errf(err, errlen, "cannot open the vault folder %s: %s", dir, strerror(errno));
        goto out;
    }
    /* Every process with the vault open holds a shared lock on the folder:
     * the daemon, and `khien-agent quarantine` beside it. The tidying below
     * would delete another process's entry in progress, so it runs only for a
     * process that can take the lock exclusively, that is, one that is alone;
     * it then keeps a shared lock like everyone else. Entry ids are claimed
     * with O_EXCL files, so two processes never pick the same one. */
    int alone = flock(v->dirfd, LOCK_EX | LOCK_NB) == 0;
    if (!alone && errno != EWOULDBLOCK) {
        khx_errf(err, errlen, "cannot lock the vault folder %s: %s", dir, strerror(errno));
        goto out;
    }
    if ((r = key_load(v, err, errlen)) != KH_OK ||
        (alone && (r = tidy_folder(v, err, errlen)) != KH_OK))
        goto out;
    r = KH_EIO;
    if (flock(v->dirfd, LOCK_SH) != 0) {
        khx_errf(err, errlen, "cannot lock the vault folder %s: %s", dir, strerror(errno));
        goto out;
    }
    last_id_load(v);
    *out = v;
    v = NULL;
    r = KH_OK;
out:
    vault_close(v);
    return r;
}

void vault_close(struct vault *v)
{
    if (v == NULL)
        return;
    sodium_memzero(v->key, sizeof(v->key));
    if (v->dirfd >= 0)
        close(v->dirfd);
    pthread_mutex_destroy(&v->mu);
    free(v->dir);
    free(v);
}

/* ------------------------------------------------------------------------ */
/* Quarantine                                                                */
/* ------------------------------------------------------------------------ */

/* Writes a small file in the vault folder durably (temporary name, fsync,
 * rename, fsync of the folder). */
static int write_small(struct vault *v, const char *name, const void *data, size_t len)
{
    int r = KH_EIO;
    char tmp[VAULT_NAME_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    unlinkat(v->dirfd, tmp, 0);
    int fd = openat(v->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return KH_EIO;
    if (khx_write_all(fd, data, len) == KH_OK && fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        if (renameat(v->dirfd, tmp, v->dirfd, name) == 0 && fsync(v->dirfd) == 0)
            r = KH_OK;
    }
    if (fd >= 0)
        close(fd);
    if (r != KH_OK)
        unlinkat(v->dirfd, tmp, 0);
    return r;
}

/* Picks the next free id and creates its <id>.bin.tmp, returning the open
 * descriptor. Called with v->mu held; every id in use has one of its files
 * present from here until it is deleted, so the existence checks and the
 * O_EXCL create cannot pick an id twice. */
static int claim_id(struct vault *v, char id[32], int *binfd, char *err, size_t errlen)
{
    char day[40], name[VAULT_NAME_MAX], buf[40];
    struct tm tm;
    struct stat st;
    time_t now = time(NULL);
    unsigned n = 1;

    if (gmtime_r(&now, &tm) == NULL)
        return KH_EIO;
    snprintf(day, sizeof(day), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    if (v->last_id[0] != '\0' && strncmp(v->last_id + 2, day, 8) == 0)
        n = (unsigned)strtoul(v->last_id + 11, NULL, 10) + 1;
    for (unsigned tries = 0; tries < 1000; tries++, n++) {
        if (n > VAULT_DAY_MAX) {
            khx_errf(err, errlen, "more than %u quarantines today: no id left", VAULT_DAY_MAX);
            return KH_ELIMIT;
        }
        snprintf(id, 32, "q-%.8s-%06u", day, n);
        entry_name(name, id, "json");
        if (fstatat(v->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
            continue;
        entry_name(name, id, "bin");
        if (fstatat(v->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
            continue;
        entry_name(name, id, "bin.tmp");
        int fd = openat(v->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0) {
            khx_errf(err, errlen, "cannot create %s/%s: %s", v->dir, name, strerror(errno));
            return KH_EIO;
        }
        int len = snprintf(buf, sizeof(buf), "%s\n", id);
        if (write_small(v, "last-id", buf, (size_t)len) != KH_OK) {
            khx_errf(err, errlen, "cannot save %s/last-id: %s", v->dir, strerror(errno));
            close(fd);
            unlinkat(v->dirfd, name, 0);
            return KH_EIO;
        }
        memcpy(v->last_id, id, strlen(id) + 1);
        *binfd = fd;
        return KH_OK;
    }
    khx_errf(err, errlen, "no free quarantine id found in %s", v->dir);
    return KH_EIO;
}

/* Encrypts everything `fd` reads from offset 0 into `out`, hashing the
 * plain bytes on the way. The last chunk (possibly empty) carries
 * TAG_FINAL, so a truncated file fails authentication. */
static int encrypt_stream(struct vault *v, const char *id, int fd, int out, uint64_t *size,
                          char sha256[65], char md5[33], char *err, size_t errlen)
{
    int r = KH_ENOMEM;
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char head[VAULT_MAGIC_LEN + VAULT_HEADER];
    unsigned char *buf[2] = {NULL, NULL}, *cipher = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    EVP_MD_CTX *hs = EVP_MD_CTX_new(), *hm = EVP_MD_CTX_new();
    off_t off = 0;
    ssize_t ncur, nnext = 0;
    int cur = 0;

    if (hs == NULL || hm == NULL || (buf[0] = malloc(VAULT_CHUNK)) == NULL ||
        (buf[1] = malloc(VAULT_CHUNK)) == NULL ||
        (cipher = malloc(VAULT_CHUNK + VAULT_ABYTES)) == NULL ||
        EVP_DigestInit_ex(hs, EVP_sha256(), NULL) != 1 ||
        EVP_DigestInit_ex(hm, EVP_md5(), NULL) != 1) {
        khx_errf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(head, VAULT_MAGIC, VAULT_MAGIC_LEN);
    crypto_secretstream_xchacha20poly1305_init_push(&st, head + VAULT_MAGIC_LEN, v->key);
    r = KH_EIO;
    if (khx_write_all(out, head, sizeof(head)) != KH_OK) {
        khx_errf(err, errlen, "cannot write to the vault %s: %s", v->dir, strerror(errno));
        goto out;
    }
    if ((ncur = read_full(fd, buf[cur], VAULT_CHUNK, off, 1)) < 0)
        goto read_error;
    off += ncur;
    for (;;) {
        /* Only a look at the next chunk tells whether this one is the last. */
        int final = ncur < (ssize_t)VAULT_CHUNK;
        if (!final) {
            if ((nnext = read_full(fd, buf[!cur], VAULT_CHUNK, off, 1)) < 0)
                goto read_error;
            off += nnext;
            final = nnext == 0;
        }
        unsigned long long clen;
        if (EVP_DigestUpdate(hs, buf[cur], (size_t)ncur) != 1 ||
            EVP_DigestUpdate(hm, buf[cur], (size_t)ncur) != 1) {
            khx_errf(err, errlen, "hashing failed");
            goto out;
        }
        crypto_secretstream_xchacha20poly1305_push(
            &st, cipher, &clen, buf[cur], (unsigned long long)ncur, (const unsigned char *)id,
            strlen(id),
            final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                  : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
        if (khx_write_all(out, cipher, (size_t)clen) != KH_OK) {
            khx_errf(err, errlen, "cannot write to the vault %s: %s", v->dir, strerror(errno));
            goto out;
        }
        if (final)
            break;
        cur = !cur;
        ncur = nnext;
    }
    unsigned mdlen;
    if (EVP_DigestFinal_ex(hs, md, &mdlen) != 1 || mdlen != 32)
        goto out;
    khx_hex_encode(md, 32, sha256);
    if (EVP_DigestFinal_ex(hm, md, &mdlen) != 1 || mdlen != 16)
        goto out;
    khx_hex_encode(md, 16, md5);
    *size = (uint64_t)off;
    r = KH_OK;
    goto out;
read_error:
    khx_errf(err, errlen, "cannot read the file at offset %lld: %s", (long long)off,
             strerror(errno));
    r = KH_EIO;
out:
    sodium_memzero(&st, sizeof(st));
    if (buf[0] != NULL)
        sodium_memzero(buf[0], VAULT_CHUNK);
    if (buf[1] != NULL)
        sodium_memzero(buf[1], VAULT_CHUNK);
    free(buf[0]);
    free(buf[1]);
    free(cipher);
    EVP_MD_CTX_free(hs);
    EVP_MD_CTX_free(hm);
    return r;
}

/* Opens `dir` (absolute) one component at a time, refusing symbolic links
 * and "..": a restore runs as root, and a user who replaced a folder of the
 * recorded path with a link to /etc must not get a file of theirs there. */
static int open_dir_no_symlinks(char *dir, const char *path, char *err, size_t errlen)
{
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char *save = NULL;
    if (fd < 0) {
        khx_errf(err, errlen, "cannot open /: %s", strerror(errno));
        return KH_EIO;
    }
    for (char *c = strtok_r(dir, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
        struct stat st;
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            khx_errf(err, errlen, "%s has a \"..\" component: refused", path);
            close(fd);
            return KH_EINVAL;
        }
        int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (next < 0 && fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
            khx_errf(err, errlen,
                     "the folder of %s goes through the symbolic link \"%s\": refused (give "
                     "a destination without links)",
                     path, c);
            close(fd);
            return KH_EINVAL;
        }
        close(fd);
        if (next < 0) {
            khx_errf(err, errlen, "the folder of %s cannot be opened (at \"%s\"): %s", path, c,
                     strerror(e));
            return e == ENOENT || e == ENOTDIR ? KH_ENOTFOUND : KH_EIO;
        }
        fd = next;
    }
    return fd;
}

/* Opens the folder holding `path` and returns its descriptor, or a
 * negative kh_err with a message; *base gets the last component (pointing
 * into `copy`, a caller buffer of `cap` bytes). With `no_symlinks`, no
 * component of the folder may be a symbolic link. */
static int open_parent(const char *path, char *copy, size_t cap, int no_symlinks, const char **base,
                       char *err, size_t errlen)
{
    size_t n = strlen(path);
    int fd;
    if (n == 0 || n >= cap || path[0] != '/') {
        khx_errf(err, errlen, "the path must be absolute and under %zu bytes", cap);
        return KH_EINVAL;
    }
    memcpy(copy, path, n + 1);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    char *slash = strrchr(copy, '/');
    *base = slash + 1;
    if (**base == '\0' || strcmp(*base, ".") == 0 || strcmp(*base, "..") == 0) {
        khx_errf(err, errlen, "%s does not name a file", path);
        return KH_EINVAL;
    }
    *slash = '\0';
    if (no_symlinks) {
        fd = open_dir_no_symlinks(copy, path, err, errlen);
    } else {
        fd = open(slash == copy ? "/" : copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            khx_errf(err, errlen, "the folder of %s cannot be opened: %s", path, strerror(e));
            fd = e == ENOENT || e == ENOTDIR ? KH_ENOTFOUND : KH_EIO;
        }
    }
    /* Only *base is used from here on, and it lies after the slash. */
    return fd;
}

/* 0 when `base` in pdirfd is still the file described by `want`. */
static int same_file(int pdirfd, const char *base, const struct stat *want, const char *path,
                     char *err, size_t errlen)
{
    struct stat st;
    if (fstatat(pdirfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
            khx_errf(err, errlen, "%s no longer exists: nothing quarantined", path);
            return KH_ENOTFOUND;
        }
        khx_errf(err, errlen, "cannot look at %s: %s", path, strerror(errno));
        return KH_EIO;
    }
    if (st.st_dev != want->st_dev || st.st_ino != want->st_ino) {
        khx_errf(err, errlen,
                 "%s was replaced since it was opened (inode %llu, now %llu): not quarantined",
                 path, (unsigned long long)want->st_ino, (unsigned long long)st.st_ino);
        return KH_EINVAL;
    }
    return KH_OK;
}

int vault_quarantine(struct vault *v, int fd, const char *path, const char *signature,
                     struct vault_entry *e, char *err, size_t errlen)
{
    int r = KH_EINVAL;
    struct vault_meta m;
    struct stat st;
    int binfd = -1, metafd = -1, pdirfd = -1;
    int claimed = 0, committed = 0, locked = 0;
    char *meta = NULL, *copy = NULL;
    const char *base = NULL;
    char id[32] = "", bin[VAULT_NAME_MAX], bintmp[VAULT_NAME_MAX], json[VAULT_NAME_MAX],
         jsontmp[VAULT_NAME_MAX];

    memset(&m, 0, sizeof(m));
    if (signature == NULL)
        signature = "";
    if (v == NULL || fd < 0 || path == NULL) {
        khx_errf(err, errlen, "invalid argument");
        goto out;
    }
    if (strlen(signature) >= sizeof(m.e.signature)) {
        khx_errf(err, errlen, "the signature name is longer than %zu bytes",
                 sizeof(m.e.signature) - 1);
        goto out;
    }
    if ((copy = malloc(sizeof(m.e.path))) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if ((pdirfd = open_parent(path, copy, sizeof(m.e.path), 0, &base, err, errlen)) < 0) {
        r = pdirfd;
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        khx_errf(err, errlen, "cannot stat the descriptor of %s: %s", path, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        khx_errf(err, errlen, "%s is not a regular file", path);
        goto out;
    }
    /* Checked now so that a replaced file costs no encryption, and again
     * just before the original is removed. */
    if ((r = same_file(pdirfd, base, &st, path, err, errlen)) != KH_OK)
        goto out;
    snprintf(m.e.path, sizeof(m.e.path), "%s", path);
    snprintf(m.e.signature, sizeof(m.e.signature), "%s", signature);
    m.e.uid = st.st_uid;
    m.e.gid = st.st_gid;
    m.e.mode = st.st_mode & 07777;
    m.e.mtime = (int64_t)st.st_mtim.tv_sec;
    m.mtime_nsec = st.st_mtim.tv_nsec;
    m.e.quarantined_at = (int64_t)time(NULL);

    pthread_mutex_lock(&v->mu);
    r = claim_id(v, id, &binfd, err, errlen);
    pthread_mutex_unlock(&v->mu);
    if (r != KH_OK) {
        id[0] = '\0';
        goto out;
    }
    claimed = 1;
    snprintf(m.e.id, sizeof(m.e.id), "%s", id);
    entry_name(bin, id, "bin");
    entry_name(bintmp, id, "bin.tmp");
    entry_name(json, id, "json");
    entry_name(jsontmp, id, "json.tmp");

    if ((r = encrypt_stream(v, id, fd, binfd, &m.e.size, m.e.sha256, m.e.md5, err, errlen)) !=
        KH_OK)
        goto out;
    r = KH_EIO;
    if (fsync(binfd) != 0) {
        khx_errf(err, errlen, "cannot fsync %s/%s: %s", v->dir, bintmp, strerror(errno));
        goto out;
    }
    if ((meta = meta_dump(&m)) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    metafd = openat(v->dirfd, jsontmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (metafd < 0 || khx_write_all(metafd, meta, strlen(meta)) != KH_OK || fsync(metafd) != 0) {
        khx_errf(err, errlen, "cannot write %s/%s: %s", v->dir, jsontmp, strerror(errno));
        goto out;
    }

    /* From the commit to the removal of the original, a restore or delete of
     * this id must not run: the entry may still be undone. */
    pthread_mutex_lock(&v->mu);
    locked = 1;
    if (renameat(v->dirfd, bintmp, v->dirfd, bin) != 0) {
        khx_errf(err, errlen, "cannot rename %s/%s: %s", v->dir, bintmp, strerror(errno));
        goto out;
    }
    committed = 1;
    if (renameat(v->dirfd, jsontmp, v->dirfd, json) != 0 || fsync(v->dirfd) != 0) {
        khx_errf(err, errlen, "cannot commit %s/%s: %s", v->dir, json, strerror(errno));
        goto out;
    }
    /* The name could still be swapped between this check and the unlink;
     * unlinkat on the opened parent at least pins the folder, and removes a
     * symbolic link itself rather than its target. */
    if ((r = same_file(pdirfd, base, &st, path, err, errlen)) != KH_OK)
        goto out;
    if (unlinkat(pdirfd, base, 0) != 0) {
        khx_errf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if (fsync(pdirfd) != 0)
        fprintf(stderr, "vault: cannot fsync the folder of %s: %s\n", path, strerror(errno));
    if (e != NULL)
        *e = m.e;
    r = KH_OK;
out:
    if (binfd >= 0)
        close(binfd);
    if (metafd >= 0)
        close(metafd);
    if (r != KH_OK && claimed) {
        /* Undo: the .json goes first, so the entry never looks complete. */
        unlinkat(v->dirfd, jsontmp, 0);
        unlinkat(v->dirfd, bintmp, 0);
        if (committed) {
            unlinkat(v->dirfd, json, 0);
            unlinkat(v->dirfd, bin, 0);
        }
        (void)fsync(v->dirfd);
    }
    if (locked)
        pthread_mutex_unlock(&v->mu);
    if (pdirfd >= 0)
        close(pdirfd);
    free(copy);
    free(meta);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Listing                                                                   */
/* ------------------------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
    const struct vault_entry *x = a, *y = b;
    if (x->quarantined_at != y->quarantined_at)
        return x->quarantined_at < y->quarantined_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

int vault_list(struct vault *v, struct vault_entry **items, size_t *n)
{
    int r = KH_EIO;
    DIR *d = NULL;
    struct dirent *de;
    struct khx_vec vec;
    struct vault_meta m;
    char id[32], name[VAULT_NAME_MAX], why[512];

    khx_vec_init(&vec, sizeof(struct vault_entry), VAULT_LIST_MAX);
    if (v == NULL || items == NULL || n == NULL)
        return KH_EINVAL;
    int fd = openat(v->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return KH_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        struct stat st;
        if (!ends_with(de->d_name, ".json"))
            continue;
        if (len - 5 >= sizeof(id)) {
            fprintf(stderr, "vault: skipping %s/%s: not an entry name\n", v->dir, de->d_name);
            continue;
        }
        memcpy(id, de->d_name, len - 5);
        id[len - 5] = '\0';
        if (!vault_id_valid(id)) {
            fprintf(stderr, "vault: skipping %s/%s: not an entry name\n", v->dir, de->d_name);
            continue;
        }
        int e = meta_load(v, id, &m, why, sizeof(why));
        if (e == KH_ENOTFOUND)
            continue; /* deleted while we listed */
        if (e != KH_OK) {
            fprintf(stderr, "vault: skipping a damaged entry: %s\n", why);
            continue;
        }
        entry_name(name, id, "bin");
        if (fstatat(v->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
            fprintf(stderr, "vault: skipping %s: %s/%s is missing\n", id, v->dir, name);
            continue;
        }
        struct vault_entry *slot = khx_vec_push(&vec);
        if (slot == NULL) {
            r = KH_ENOMEM;
            goto out;
        }
        *slot = m.e;
    }
    if (vec.len > 1)
        qsort(vec.items, vec.len, sizeof(struct vault_entry), entry_cmp);
    *items = vec.items;
    *n = vec.len;
    vec.items = NULL;
    r = KH_OK;
out:
    closedir(d);
    khx_vec_free(&vec);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Restore and delete                                                        */
/* ------------------------------------------------------------------------ */

/* Decrypts <id>.bin into `out`, checking every chunk's tag, that the last
 * one is TAG_FINAL at the end of the file, and the size and SHA-256 the
 * metadata recorded. */
static int decrypt_stream(struct vault *v, const struct vault_meta *m, int out, char *err,
                          size_t errlen)
{
    int r = KH_EIO;
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char head[VAULT_MAGIC_LEN + VAULT_HEADER];
    unsigned char *cipher = NULL, *plain = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[65], name[VAULT_NAME_MAX];
    EVP_MD_CTX *hs = EVP_MD_CTX_new();
    uint64_t total = 0;
    unsigned chunk = 0;
    const char *id = m->e.id;

    entry_name(name, id, "bin");
    int fd = openat(v->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        khx_errf(err, errlen, "cannot open %s/%s: %s", v->dir, name, strerror(e));
        r = e == ENOENT ? KH_ENOTFOUND : KH_EIO;
        goto out;
    }
    if (hs == NULL || (cipher = malloc(VAULT_CHUNK + VAULT_ABYTES)) == NULL ||
        (plain = malloc(VAULT_CHUNK)) == NULL || EVP_DigestInit_ex(hs, EVP_sha256(), NULL) != 1) {
        r = KH_ENOMEM;
        goto out;
    }
    ssize_t got = read_full(fd, head, sizeof(head), 0, 0);
    if (got < 0)
        goto read_error;
    r = KH_ESIGNATURE;
    if (got != (ssize_t)sizeof(head) || memcmp(head, VAULT_MAGIC, VAULT_MAGIC_LEN) != 0 ||
        crypto_secretstream_xchacha20poly1305_init_pull(&st, head + VAULT_MAGIC_LEN, v->key) != 0) {
        khx_errf(err, errlen, "%s/%s is not a vault file (bad header)", v->dir, name);
        goto out;
    }
    for (;;) {
        unsigned long long plen;
        unsigned char tag;
        if ((got = read_full(fd, cipher, VAULT_CHUNK + VAULT_ABYTES, 0, 0)) < 0)
            goto read_error;
        if (got < (ssize_t)VAULT_ABYTES ||
            crypto_secretstream_xchacha20poly1305_pull(
                &st, plain, &plen, &tag, cipher, (unsigned long long)got, (const unsigned char *)id,
                strlen(id)) != 0) {
            khx_errf(err, errlen,
                     "%s/%s fails authentication at chunk %u: it was modified or damaged", v->dir,
                     name, chunk);
            r = KH_ESIGNATURE;
            goto out;
        }
        if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
            tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
            khx_errf(err, errlen, "%s/%s has an unexpected tag at chunk %u", v->dir, name, chunk);
            r = KH_ESIGNATURE;
            goto out;
        }
        int final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        if (!final && got < (ssize_t)(VAULT_CHUNK + VAULT_ABYTES)) {
            khx_errf(err, errlen, "%s/%s is truncated after chunk %u", v->dir, name, chunk);
            r = KH_ESIGNATURE;
            goto out;
        }
        if (EVP_DigestUpdate(hs, plain, (size_t)plen) != 1) {
            r = KH_ENOMEM;
            goto out;
        }
        if (khx_write_all(out, plain, (size_t)plen) != KH_OK) {
            khx_errf(err, errlen, "cannot write the restored file: %s", strerror(errno));
            r = KH_EIO;
            goto out;
        }
        total += plen;
        chunk++;
        if (final)
            break;
    }
    unsigned char extra;
    if ((got = read_full(fd, &extra, 1, 0, 0)) != 0) {
        if (got < 0)
            goto read_error;
        khx_errf(err, errlen, "%s/%s has data after its final chunk", v->dir, name);
        r = KH_ESIGNATURE;
        goto out;
    }
    unsigned mdlen;
    if (EVP_DigestFinal_ex(hs, md, &mdlen) != 1 || mdlen != 32) {
        r = KH_ENOMEM;
        goto out;
    }
    khx_hex_encode(md, 32, hex);
    if (total != m->e.size || strcmp(hex, m->e.sha256) != 0) {
        khx_errf(err, errlen, "%s/%s decrypts to content other than its metadata records", v->dir,
                 name);
        r = KH_ESIGNATURE;
        goto out;
    }
    r = KH_OK;
    goto out;
read_error:
    khx_errf(err, errlen, "cannot read %s/%s: %s", v->dir, name, strerror(errno));
    r = KH_EIO;
out:
    sodium_memzero(&st, sizeof(st));
    if (plain != NULL)
        sodium_memzero(plain, VAULT_CHUNK);
    free(plain);
    free(cipher);
    EVP_MD_CTX_free(hs);
    if (fd >= 0)
        close(fd);
    return r;
}

/* Removes <id>.json then <id>.bin, with one fsync of the folder. Called
 * with v->mu held. */
static int remove_entry(struct vault *v, const char *id)
{
    char json[VAULT_NAME_MAX], bin[VAULT_NAME_MAX];
    int r = KH_OK;
    entry_name(json, id, "json");
    entry_name(bin, id, "bin");
    if (unlinkat(v->dirfd, json, 0) != 0 && errno != ENOENT)
        r = KH_EIO;
    if (unlinkat(v->dirfd, bin, 0) != 0 && errno != ENOENT)
        r = KH_EIO;
    if (fsync(v->dirfd) != 0)
        r = KH_EIO;
    return r;
}

/* Puts tmp in place as base without replacing anything. */
static int link_noreplace(int dirfd, const char *tmp, const char *base)
{
    if (renameat2(dirfd, tmp, dirfd, base, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -1;
    /* File systems without RENAME_NOREPLACE: link() never replaces either. */
    if (linkat(dirfd, tmp, dirfd, base, 0) != 0)
        return -1;
    unlinkat(dirfd, tmp, 0);
    return 0;
}

int vault_restore(struct vault *v, const char *id, const char *to, struct vault_entry *e, char *err,
                  size_t errlen)
{
    int r = KH_EINVAL;
    struct vault_meta m;
    int pdirfd = -1, outfd = -1, locked = 0;
    char *copy = NULL;
    const char *base = NULL, *dest;
    char tmp[96] = "";
    struct stat st;

    if (v == NULL || !vault_id_valid(id)) {
        khx_errf(err, errlen, "invalid quarantine id");
        return KH_EINVAL;
    }
    pthread_mutex_lock(&v->mu);
    locked = 1;
    if ((r = meta_load(v, id, &m, err, errlen)) != KH_OK)
        goto out;
    dest = to != NULL ? to : m.e.path;
    if ((copy = malloc(sizeof(m.e.path))) == NULL) {
        r = KH_ENOMEM;
        goto out;
    }
    if ((pdirfd = open_parent(dest, copy, sizeof(m.e.path), 1, &base, err, errlen)) < 0) {
        r = pdirfd;
        goto out;
    }
    if (fstatat(pdirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        khx_errf(err, errlen, "%s already exists: not replaced", dest);
        r = KH_EINVAL;
        goto out;
    }
    /* A name no one else uses, in the destination folder so the final step
     * is a rename on one file system. */
    for (int tries = 0; tries < 16 && outfd < 0; tries++) {
        snprintf(tmp, sizeof(tmp), ".khien-restore-%s-%08x", id, randombytes_random());
        outfd = openat(pdirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (outfd < 0 && errno != EEXIST)
            break;
    }
    if (outfd < 0) {
        khx_errf(err, errlen, "cannot create a file in the folder of %s: %s", dest,
                 strerror(errno));
        r = KH_EIO;
        goto out;
    }
    if ((r = decrypt_stream(v, &m, outfd, err, errlen)) != KH_OK)
        goto out;
    /* chown first: it clears set-user-ID bits that fchmod then sets. */
    struct timespec times[2] = {{0, UTIME_OMIT}, {(time_t)m.e.mtime, m.mtime_nsec}};
    r = KH_EIO;
    if (fchown(outfd, m.e.uid, m.e.gid) != 0) {
        khx_errf(err, errlen, "cannot give %s to uid %u gid %u: %s", dest, (unsigned)m.e.uid,
                 (unsigned)m.e.gid, strerror(errno));
        goto out;
    }
    if (fchmod(outfd, m.e.mode & 07777) != 0 || futimens(outfd, times) != 0 || fsync(outfd) != 0) {
        khx_errf(err, errlen, "cannot set the mode and times of %s: %s", dest, strerror(errno));
        goto out;
    }
    if (link_noreplace(pdirfd, tmp, base) != 0) {
        if (errno == EEXIST) {
            khx_errf(err, errlen, "%s already exists: not replaced", dest);
            r = KH_EINVAL;
        } else {
            khx_errf(err, errlen, "cannot create %s: %s", dest, strerror(errno));
        }
        goto out;
    }
    tmp[0] = '\0';
    if (fsync(pdirfd) != 0)
        fprintf(stderr, "vault: cannot fsync the folder of %s: %s\n", dest, strerror(errno));
    /* The file is back; an entry that cannot be removed is only reported
     * (the next restore of it would refuse to overwrite the file). */
    if (remove_entry(v, id) != KH_OK)
        fprintf(stderr, "vault: %s was restored but its entry could not be removed from %s\n", id,
                v->dir);
    if (e != NULL)
        *e = m.e;
    r = KH_OK;
out:
    if (outfd >= 0)
        close(outfd);
    if (r != KH_OK && outfd >= 0 && tmp[0] != '\0')
        unlinkat(pdirfd, tmp, 0);
    if (pdirfd >= 0)
        close(pdirfd);
    if (locked)
        pthread_mutex_unlock(&v->mu);
    free(copy);
    return r;
}

int vault_delete(struct vault *v, const char *id, char *err, size_t errlen)
{
    int r = KH_ENOTFOUND;
    char json[VAULT_NAME_MAX], bin[VAULT_NAME_MAX];
    struct stat st;

    if (v == NULL || !vault_id_valid(id)) {
        khx_errf(err, errlen, "invalid quarantine id");
        return KH_EINVAL;
    }
    entry_name(json, id, "json");
    entry_name(bin, id, "bin");
    pthread_mutex_lock(&v->mu);
    if (fstatat(v->dirfd, json, &st, AT_SYMLINK_NOFOLLOW) != 0 &&
        fstatat(v->dirfd, bin, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        khx_errf(err, errlen, "no quarantine entry %s", id);
        goto out;
    }
    if ((r = remove_entry(v, id)) != KH_OK)
        khx_errf(err, errlen, "cannot remove entry %s from %s: %s", id, v->dir, strerror(errno));
out:
    pthread_mutex_unlock(&v->mu);
    return r;
}
