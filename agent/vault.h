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

/* Opens (creating, 0700, with a new key) the vault folder. */
int vault_open(const char *dir, struct vault **out, char *err, size_t errlen);
void vault_close(struct vault *v);

/* Quarantines the file at `path`, reading its content from `fd` (opened on
 * that file): encrypts it into the vault, records the metadata, then removes
 * the original — only if `path` is still the same file (device and inode) as
 * fd. On success *e (may be NULL) is filled. On failure nothing is left in
 * the vault and the original is untouched. Thread-safe. */
int vault_quarantine(struct vault *v, int fd, const char *path, const char *signature,
                     struct vault_entry *e, char *err, size_t errlen);

/* Lists entries, oldest first; *items is malloc'd (caller frees). */
int vault_list(struct vault *v, struct vault_entry **items, size_t *n);

/* Decrypts entry `id` back to its original path (or `to` when not NULL),
 * refusing to replace an existing file, restoring owner, mode and times, then
 * removes it from the vault. *e (may be NULL) gets the entry's metadata.
 * KH_ENOTFOUND for an unknown id, KH_ESIGNATURE when the content fails
 * authentication. */
int vault_restore(struct vault *v, const char *id, const char *to, struct vault_entry *e,
                  char *err, size_t errlen);
int vault_delete(struct vault *v, const char *id, char *err, size_t errlen);

#endif
