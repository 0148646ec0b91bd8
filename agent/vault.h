/*
 * The quarantine vault (vault_): where the agent moves a detected file. The
 * content is encrypted with XChaCha20-Poly1305 (libsodium secretstream) under
 * a key kept in the vault folder (0600, root only), so a quarantined file can
 * neither run nor be opened by mistake, and is authenticated on restore. Its
 * metadata — original path, owner, group, mode, times, size, hashes, the
 * detection and when — is kept beside it as JSON. Entries are restored to
 * their original path (never over an existing file) with owner, mode and
 * times, or deleted. Ids are "q-YYYYMMDD-NNNNNN" (letters, digits and '-',
 * as the server's task arguments allow).
 */
#ifndef KHIEN_AGENT_VAULT_H
#define KHIEN_AGENT_VAULT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vault_entry {
    char id[32];
    char path[4096];
    char signature[256];
    uid_t uid;
    gid_t gid;
    mode_t mode;
    int64_t mtime;
    uint64_t size;
    char sha256[65];
    char md5[33];
    int64_t quarantined_at;
};

struct vault;

/* Opens (creating, 0700, with a new key) the vault folder. Refuses a key
 * file that group or others may access, or that another user owns. One
 * process at a time (flock on the folder); leftovers of an interrupted
 * quarantine are removed. On success *out belongs to the caller
 * (vault_close); err gets a message on failure. */
int vault_open(const char *dir, struct vault **out, char *err, size_t errlen);
void vault_close(struct vault *v); /* NULL-safe; wipes the key from memory */

/* Quarantines the file at `path`, reading its content from `fd` (opened on
 * that file): encrypts it into the vault, records the metadata, then removes
 * the original — only if `path` is still the same file (device and inode) as
 * fd. On success *e (may be NULL) is filled. On failure nothing is left in
 * the vault and the original is untouched. Thread-safe. `path` must be
 * absolute (it is where vault_restore puts the file back); `signature` may
 * be NULL. KH_ENOTFOUND when `path` no longer exists, KH_EINVAL when it is
 * not the file fd reads (replaced since it was scanned) or not a regular
 * file. */
int vault_quarantine(struct vault *v, int fd, const char *path, const char *signature,
                     struct vault_entry *e, char *err, size_t errlen);

/* Lists entries, oldest first; *items is malloc'd (caller frees; NULL when
 * *n is 0). An entry whose metadata does not parse is skipped with a
 * message on stderr. */
int vault_list(struct vault *v, struct vault_entry **items, size_t *n);

/* Decrypts entry `id` back to its original path (or `to` when not NULL),
 * refusing to replace an existing file, restoring owner, mode and times, then
 * removes it from the vault. *e (may be NULL) gets the entry's metadata.
 * KH_ENOTFOUND for an unknown id or a destination folder that does not
 * exist, KH_ESIGNATURE when the content fails authentication (the entry
 * stays in the vault), KH_EINVAL for an invalid id, when the destination
 * already exists, or when a folder on the way to it is a symbolic link (a
 * restore runs as root). `to`, when given, must be absolute. */
int vault_restore(struct vault *v, const char *id, const char *to, struct vault_entry *e, char *err,
                  size_t errlen);
/* Removes entry `id` for good. KH_ENOTFOUND for an unknown id, KH_EINVAL
 * for an invalid one. */
int vault_delete(struct vault *v, const char *id, char *err, size_t errlen);

/* Added: 1 when `id` has the shape of an entry id (1 to 31 letters, digits
 * and '-'; nothing that could name a path), else 0. */
int vault_id_valid(const char *id);

/* Added: parses one entry's metadata file (the JSON vault_quarantine
 * writes). The bytes are untrusted: anything but a complete, well-formed
 * record gives KH_EFORMAT with a message in err. Exposed for the fuzzer. */
int vault_meta_parse(const char *json, size_t len, struct vault_entry *e, char *err, size_t errlen);

#endif
