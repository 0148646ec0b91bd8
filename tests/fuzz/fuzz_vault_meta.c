/*
 * libFuzzer target for the quarantine vault's metadata parser
 * (vault_meta_parse in agent/vault.c): the <id>.json files are read back from
 * disk by vault_list and vault_restore, so any bytes must give either a
 * complete entry or an error, never a crash or an overflow of the entry's
 * fixed-size fields. An accepted entry must hold NUL-terminated fields that
 * fit and an id that passes vault_id_valid.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vault_entry e;
    char err[256];
    if (vault_meta_parse((const char *)data, size, &e, err, sizeof(err)) == 0) {
        if (!vault_id_valid(e.id) || e.path[0] != '/' ||
            memchr(e.path, '\0', sizeof(e.path)) == NULL ||
            memchr(e.signature, '\0', sizeof(e.signature)) == NULL || strlen(e.sha256) != 64 ||
            strlen(e.md5) != 32 || (e.mode & ~07777u) != 0)
            abort();
    }
    return 0;
}
