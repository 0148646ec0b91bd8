/*
 * Agent identities and the state folder that keeps them between runs, so
 * that `khien-sim run` drives the machines `khien-sim seed` enrolled instead
 * of enrolling new ones each time:
 *
 *   DIR/.khien-sim          marks the folder as ours (we only clear our own)
 *   DIR/tokens.tsv          agency id, code, address octet, enrollment token
 *   DIR/agents.tsv          machine id, machine key, hostname, profile, agency
 *   DIR/agents/ID.pem       the agent's private key (SEC 1 "EC PRIVATE KEY",
 *                           the quickest form to parse), then its certificate
 *
 * Keys are EC P-256, made in-process with OpenSSL: cheap to generate
 * (10,000 in about a second) and cheap in the TLS handshake on both sides,
 * which matters when the server and the simulator share two cores. The files
 * are written without fsync: the folder is test data, and 20,000 fsyncs
 * would cost more than the enrollment itself.
 */
#include "sim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define MARKER    ".khien-sim"
#define MAX_INDEX (256u << 20) /* bytes of agents.tsv */
#define MAX_PEM   16384        /* bytes of one agent's key and certificate */

static int path_in(const struct sim_state *st, char *out, size_t outlen, const char *name)
{
    if ((size_t)snprintf(out, outlen, "%s/%s", st->dir, name) >= outlen) {
        fprintf(stderr, "khien-sim: path too long: %s/%s\n", st->dir, name);
        return -1;
    }
    return 0;
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    return empty;
}

/* Writes a whole file with the given mode, replacing it. */
static int write_file(const char *path, const void *data, size_t len, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
}

static void agent_wipe(struct sim_agent *a)
{
    EVP_PKEY_free(a->key);
    X509_free(a->cert);
    a->key = NULL;
    a->cert = NULL;
}

/* PEM to DER without OpenSSL 3's decoder framework (PEM_read_bio only
 * undoes the base64), then the type-specific DER parser: about five times
 * faster than PEM_read_bio_PrivateKey, which matters for 10,000 agents. */
static int pem_der(const char *pem, size_t len, const char *want, unsigned char **der, long *derlen)
{
    char *name = NULL, *header = NULL;
    int r = -1;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL || len > INT32_MAX)
        goto out;
    if (PEM_read_bio(b, &name, &header, der, derlen) != 1)
        goto out;
    if (strcmp(name, want) != 0) {
        OPENSSL_clear_free(*der, (size_t)*derlen);
        *der = NULL;
        goto out;
    }
    r = 0;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    BIO_free(b);
    return r;
}

int sim_pem_cert(const char *pem, size_t len, X509 **cert)
{
    unsigned char *der = NULL;
    long n = 0;
    if (pem_der(pem, len, "CERTIFICATE", &der, &n) != 0)
        return -1;
    const unsigned char *p = der;
    *cert = d2i_X509(NULL, &p, n);
    OPENSSL_free(der);
    return *cert != NULL ? 0 : -1;
}

int sim_pem_key(const char *pem, size_t len, EVP_PKEY **key)
{
    unsigned char *der = NULL;
    long n = 0;
    if (pem_der(pem, len, "EC PRIVATE KEY", &der, &n) != 0)
        return -1;
    const unsigned char *p = der;
    *key = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, n);
    OPENSSL_clear_free(der, (size_t)n);
    return *key != NULL ? 0 : -1;
}

/* Splits an agent's PEM file into its key and its certificate. */
static int load_agent_pem(const struct sim_state *st, struct sim_agent *a)
{
    char name[128], path[1024];
    uint8_t *data = NULL;
    size_t len = 0;
    int r = -1;
    snprintf(name, sizeof(name), "agents/%s.pem", a->id);
    if (path_in(st, path, sizeof(path), name) != 0)
        return -1;
    if (khx_read_file(path, MAX_PEM, &data, &len) != 0) {
        fprintf(stderr, "khien-sim: cannot read %s\n", path);
        return -1;
    }
    const char *cert = strstr((const char *)data, "-----BEGIN CERTIFICATE-----");
    if (cert == NULL || cert == (const char *)data) {
        fprintf(stderr, "khien-sim: %s does not hold a key and a certificate\n", path);
        goto out;
    }
    size_t klen = (size_t)(cert - (const char *)data);
    if (sim_pem_key((const char *)data, klen, &a->key) != 0 ||
        sim_pem_cert(cert, len - klen, &a->cert) != 0) {
        fprintf(stderr, "khien-sim: %s: cannot parse the key or the certificate\n", path);
        goto out;
    }
    r = 0;
out:
    if (r != 0)
        agent_wipe(a);
    explicit_bzero(data, len);
    free(data);
    return r;
}

static int load_tokens(struct sim_state *st)
{
    char path[1024];
    uint8_t *data = NULL;
    size_t len = 0;
    int r = -1;
    if (path_in(st, path, sizeof(path), "tokens.tsv") != 0)
        return -1;
    if (access(path, F_OK) != 0)
        return 0;
    if (khx_read_file(path, 1u << 24, &data, &len) != 0)
        goto out;
    struct khx_lines it;
    const char *line;
    size_t ll;
    khx_lines_init(&it, data, len);
    while (khx_lines_next(&it, &line, &ll)) {
        const char *f[4];
        size_t fl[4];
        if (ll == 0)
            continue;
        if (khx_split(line, ll, '\t', f, fl, 4) != 4 || fl[1] >= 32 || fl[3] >= 160) {
            fprintf(stderr, "khien-sim: %s:%u: malformed line\n", path, it.lineno);
            goto out;
        }
        struct sim_token *t = realloc(st->tokens, (st->ntokens + 1) * sizeof(*t));
        if (t == NULL)
            goto out;
        st->tokens = t;
        t = &st->tokens[st->ntokens++];
        memset(t, 0, sizeof(*t));
        t->agency_id = strtoll(f[0], NULL, 10);
        memcpy(t->code, f[1], fl[1]);
        t->ip_octet = (uint32_t)strtoul(f[2], NULL, 10);
        memcpy(t->token, f[3], fl[3]);
    }
    r = 0;
out:
    if (r != 0)
        fprintf(stderr, "khien-sim: cannot load %s\n", path);
    free(data);
    return r;
}

static int load_agents(struct sim_state *st)
{
    char path[1024];
    uint8_t *data = NULL;
    size_t len = 0;
    int r = -1;
    if (path_in(st, path, sizeof(path), "agents.tsv") != 0)
        return -1;
    if (access(path, F_OK) != 0)
        return 0;
    if (khx_read_file(path, MAX_INDEX, &data, &len) != 0)
        goto out;
    struct khx_lines it;
    const char *line;
    size_t ll;
    khx_lines_init(&it, data, len);
    while (khx_lines_next(&it, &line, &ll)) {
        const char *f[5];
        size_t fl[5];
        if (ll == 0)
            continue;
        if (khx_split(line, ll, '\t', f, fl, 5) != 5 || fl[0] != 36 || fl[1] > 64 || fl[2] >= 64) {
            fprintf(stderr, "khien-sim: %s:%u: malformed line\n", path, it.lineno);
            goto out;
        }
        struct sim_agent *a = sim_state_add_agent(st);
        if (a == NULL)
            goto out;
        memcpy(a->id, f[0], 36);
        memcpy(a->machine_key, f[1], fl[1]);
        memcpy(a->hostname, f[2], fl[2]);
        a->profile = (uint32_t)strtoul(f[3], NULL, 10);
        a->agency = (uint32_t)strtoul(f[4], NULL, 10);
        if (load_agent_pem(st, a) != 0)
            goto out;
    }
    r = 0;
out:
    if (r != 0)
        fprintf(stderr, "khien-sim: cannot load the agents of %s\n", path);
    free(data);
    return r;
}

/* Removes what an earlier seed wrote, and nothing else. */
static int clear_state(struct sim_state *st)
{
    char path[1024];
    static const char *const files[] = {"tokens.tsv", "agents.tsv"};
    for (size_t i = 0; i < 2; i++) {
        if (path_in(st, path, sizeof(path), files[i]) != 0)
            return -1;
        if (unlink(path) != 0 && errno != ENOENT)
            return -1;
    }
    if (path_in(st, path, sizeof(path), "agents") != 0)
        return -1;
    DIR *d = opendir(path);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    char file[1400];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".pem") != 0)
            continue;
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        unlink(file);
    }
    closedir(d);
    return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
}

int sim_state_open(struct sim_state *st, const char *dir, int fresh)
{
    char path[1024];
    memset(st, 0, sizeof(*st));
    if (strlen(dir) >= sizeof(st->dir) - 64) {
        fprintf(stderr, "khien-sim: state folder path too long\n");
        return -1;
    }
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "khien-sim: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (path_in(st, path, sizeof(path), MARKER) != 0)
        return -1;
    if (access(path, F_OK) != 0) {
        if (!dir_is_empty(dir)) {
            fprintf(stderr,
                    "khien-sim: %s is not empty and was not made by khien-sim; "
                    "choose another --state folder\n",
                    dir);
            return -1;
        }
        static const char note[] = "khien-sim state: agent keys and certificates (test data)\n";
        if (write_file(path, note, sizeof(note) - 1, 0600) != 0) {
            fprintf(stderr, "khien-sim: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    if (fresh && clear_state(st) != 0) {
        fprintf(stderr, "khien-sim: cannot clear %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (path_in(st, path, sizeof(path), "agents") != 0)
        return -1;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "khien-sim: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (load_tokens(st) != 0 || load_agents(st) != 0) {
        sim_state_close(st);
        return -1;
    }
    return 0;
}

void sim_state_close(struct sim_state *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->nagents; i++)
        agent_wipe(&st->agents[i]);
    free(st->agents);
    if (st->tokens != NULL)
        explicit_bzero(st->tokens, st->ntokens * sizeof(*st->tokens));
    free(st->tokens);
    st->agents = NULL;
    st->tokens = NULL;
    st->nagents = st->ntokens = st->cap = 0;
}

int sim_state_save_tokens(const struct sim_state *st)
{
    char path[1024], tmp[1100];
    struct khx_buf b;
    int r = -1;
    khx_buf_init(&b, 1u << 24);
    if (path_in(st, path, sizeof(path), "tokens.tsv") != 0)
        goto out;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    for (size_t i = 0; i < st->ntokens; i++) {
        const struct sim_token *t = &st->tokens[i];
        if (khx_buf_printf(&b, "%lld\t%s\t%u\t%s\n", (long long)t->agency_id, t->code, t->ip_octet,
                           t->token) != 0)
            goto out;
    }
    if (write_file(tmp, b.data != NULL ? (const char *)b.data : "", b.len, 0600) != 0 ||
        rename(tmp, path) != 0) {
        fprintf(stderr, "khien-sim: cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    r = 0;
out:
    if (b.data != NULL)
        explicit_bzero(b.data, b.len);
    khx_buf_free(&b);
    return r;
}

struct sim_agent *sim_state_add_agent(struct sim_state *st)
{
    if (st->nagents == st->cap) {
        if (st->cap >= SIM_MAX_AGENTS)
            return NULL;
        size_t cap = st->cap == 0 ? 1024 : st->cap * 2;
        struct sim_agent *v = realloc(st->agents, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        st->agents = v;
        st->cap = cap;
    }
    struct sim_agent *a = &st->agents[st->nagents++];
    memset(a, 0, sizeof(*a));
    return a;
}

int sim_state_save_agent(const struct sim_state *st, const struct sim_agent *a, const char *key_pem,
                         size_t key_len, const char *cert_pem)
{
    char name[128], path[1024];
    int r = -1;
    size_t cert_len = strlen(cert_pem);
    char *pem = malloc(key_len + cert_len + 1);
    if (pem == NULL)
        return -1;
    memcpy(pem, key_pem, key_len);
    memcpy(pem + key_len, cert_pem, cert_len);
    snprintf(name, sizeof(name), "agents/%s.pem", a->id);
    if (path_in(st, path, sizeof(path), name) != 0)
        goto out;
    if (write_file(path, pem, key_len + cert_len, 0600) != 0) {
        fprintf(stderr, "khien-sim: cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (path_in(st, path, sizeof(path), "agents.tsv") != 0)
        goto out;
    FILE *f = fopen(path, "a");
    if (f == NULL) {
        fprintf(stderr, "khien-sim: cannot open %s: %s\n", path, strerror(errno));
        goto out;
    }
    fprintf(f, "%s\t%s\t%s\t%u\t%u\n", a->id, a->machine_key, a->hostname, a->profile, a->agency);
    if (fclose(f) != 0)
        goto out;
    r = 0;
out:
    explicit_bzero(pem, key_len + cert_len);
    free(pem);
    return r;
}

/* Copies a memory BIO's contents into a malloc'd NUL-terminated string. */
static char *bio_text(BIO *b, size_t *len)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (n <= 0)
        return NULL;
    char *s = khx_strndup(p, (size_t)n);
    if (s != NULL && len != NULL)
        *len = (size_t)n;
    return s;
}

int sim_make_key_csr(const char *hostname, EVP_PKEY **keyp, char **key_pem, size_t *key_len,
                     char **csr_pem)
{
    int r = -1;
    EVP_PKEY *pkey = NULL;
    X509_REQ *req = NULL;
    BIO *kb = NULL, *cb = NULL;
    char *key = NULL;
    *keyp = NULL;
    *key_pem = *csr_pem = NULL;
    if ((pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL ||
        (req = X509_REQ_new()) == NULL || X509_REQ_set_version(req, 0) != 1)
        goto out;
    /* The server puts the machine id in the certificate's CN whatever we
     * ask for; the hostname only makes the request readable. */
    X509_NAME *name = X509_REQ_get_subject_name(req);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname, -1,
                                   -1, 0) != 1 ||
        X509_REQ_set_pubkey(req, pkey) != 1 || X509_REQ_sign(req, pkey, EVP_sha256()) <= 0)
        goto out;
    if ((kb = BIO_new(BIO_s_mem())) == NULL || (cb = BIO_new(BIO_s_mem())) == NULL ||
        PEM_write_bio_PrivateKey_traditional(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509_REQ(cb, req) != 1)
        goto out;
    if ((key = bio_text(kb, key_len)) == NULL || (*csr_pem = bio_text(cb, NULL)) == NULL)
        goto out;
    *key_pem = key;
    key = NULL;
    *keyp = pkey;
    pkey = NULL;
    r = 0;
out:
    if (key != NULL) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    EVP_PKEY_free(pkey);
    X509_REQ_free(req);
    BIO_free_all(kb);
    BIO_free_all(cb);
    return r;
}

void sim_state_compact(struct sim_state *st)
{
    size_t k = 0;
    for (size_t i = 0; i < st->nagents; i++) {
        if (st->agents[i].id[0] == '\0') {
            agent_wipe(&st->agents[i]);
            continue;
        }
        if (k != i)
            st->agents[k] = st->agents[i];
        k++;
    }
    st->nagents = k;
}
