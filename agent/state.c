/*
 * The agent's files in its state folder (default /var/lib/khien-agent):
 * agent.json (who this machine is to the server, written by enrollment) and
 * the operator allowlist allow.txt (SHA-256 of files restored from
 * quarantine, which are never detected again on this machine).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "khx.h"

static void copy_str(char *dst, size_t cap, json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    snprintf(dst, cap, "%s", s ? s : "");
}

int agent_identity_load(const char *state_dir, struct agent_identity *id, char *err, size_t errlen)
{
    char path[4200];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/agent.json", state_dir);
    memset(id, 0, sizeof(*id));
    json_t *j = json_load_file(path, 0, &je);
    if (j == NULL) {
        if (access(path, F_OK) != 0)
            khx_errf(err, errlen, "%s: not enrolled yet (run `khien-agent enroll` first)", path);
        else
            khx_errf(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        return KH_ENOTFOUND;
    }
    copy_str(id->server, sizeof(id->server), j, "server");
    copy_str(id->machine_id, sizeof(id->machine_id), j, "machine_id");
    copy_str(id->bundle_key, sizeof(id->bundle_key), j, "bundle_key");
    copy_str(id->key_id, sizeof(id->key_id), j, "key_id");
    copy_str(id->agency_code, sizeof(id->agency_code), j, "agency_code");
    copy_str(id->agency_name, sizeof(id->agency_name), j, "agency_name");
    id->checkin_interval = (int)json_integer_value(json_object_get(j, "checkin_interval"));
    json_decref(j);
    if (id->server[0] == '\0' || id->machine_id[0] == '\0' || id->bundle_key[0] == '\0') {
        khx_errf(err, errlen, "%s: server, machine_id or bundle_key missing", path);
        return KH_EFORMAT;
    }
    if (id->checkin_interval <= 0)
        id->checkin_interval = 60;
    return KH_OK;
}

int agent_identity_save(const char *state_dir, const struct agent_identity *id)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/agent.json", state_dir);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i}", "server", id->server, "machine_id",
                          id->machine_id, "bundle_key", id->bundle_key, "key_id", id->key_id,
                          "agency_code", id->agency_code, "agency_name", id->agency_name,
                          "checkin_interval", id->checkin_interval);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (text == NULL)
        return KH_ENOMEM;
    int r = khx_write_file_atomic(path, text, strlen(text));
    free(text);
    return r;
}

int agent_allow_add(const char *state_dir, const char *sha256_hex)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/allow.txt", state_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return KH_EIO;
    char line[80];
    int n = snprintf(line, sizeof(line), "%.64s\n", sha256_hex);
    int ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    return ok ? KH_OK : KH_EIO;
}

/* Re-reads allow.txt when it changed (the `quarantine restore` command adds
 * to it while the daemon runs). Called with a->lock held. */
static void allow_reload(struct agent *a)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/allow.txt", a->state_dir);
    if (stat(path, &st) != 0 ||
        st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec == a->allow_mtime)
        return;
    a->allow_mtime = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    uint8_t *data = NULL;
    size_t len = 0;
    if (khx_read_file(path, 64u << 20, &data, &len) != KH_OK)
        return;
    for (size_t i = 0; i < a->nallow; i++)
        free(a->allow[i]);
    free(a->allow);
    a->allow = NULL;
    a->nallow = 0;
    struct khx_lines it;
    const char *line;
    size_t ll;
    size_t cap = 0;
    khx_lines_init(&it, data, len);
    while (khx_lines_next(&it, &line, &ll)) {
        if (ll != 64)
            continue;
        if (a->nallow == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **v = realloc(a->allow, ncap * sizeof(*v));
            if (v == NULL)
                break;
            a->allow = v;
            cap = ncap;
        }
        if ((a->allow[a->nallow] = khx_strndup(line, 64)) != NULL)
            a->nallow++;
    }
    free(data);
}

int agent_allowlisted(struct agent *a, const uint8_t sha256[32])
{
    char hex[65];
    int found = 0;
    khx_hex_encode(sha256, 32, hex);
    hex[64] = '\0';
    pthread_mutex_lock(&a->lock);
    allow_reload(a);
    for (size_t i = 0; i < a->nallow && !found; i++)
        found = strcmp(a->allow[i], hex) == 0;
    pthread_mutex_unlock(&a->lock);
    return found;
}
