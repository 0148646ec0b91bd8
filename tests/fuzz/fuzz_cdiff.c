/*
 * libFuzzer target for .cdiff patches (lib/engine/cdiff.c). The first input
 * byte picks a mode: 0 feeds the rest as a whole .cdiff file (header, gzip
 * stream and signature parsing, verified against the built-in key and also
 * unverified); anything else treats the rest as the script itself, which the
 * target gzips and wraps so that mutations reach the command interpreter.
 * Patches are applied to a scratch folder that is reset before each run.
 */
#include "cvd.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char scratch[PATH_MAX];

static void empty_scratch(void)
{
    DIR *d = opendir(scratch);
    struct dirent *de;
    if (d == NULL)
        abort();
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX + 300];
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", scratch, de->d_name);
        unlink(path);
    }
    closedir(d);
}

static void remove_scratch(void)
{
    empty_scratch();
    rmdir(scratch);
}

static void put(const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", scratch, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        abort();
    fputs(text, f);
    fclose(f);
}

/* Empties the scratch folder (a patch only ever creates regular files) and
 * writes the starting database. */
static void reset_scratch(void)
{
    if (scratch[0] == '\0') {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(scratch, sizeof(scratch), "%s/khien-fuzz-cdiff-XXXXXX", base);
        if (mkdtemp(scratch) == NULL)
            abort();
        atexit(remove_scratch);
    }
    empty_scratch();
    put("a.ndb", "A1 one\nA2 two\nA3 three\nA4 four\n");
    put("b.hdb", "B1 x\nB2 y");
    put("test.info", "ClamAV-VDB:x:1:1:1:X:X:b:1\na.ndb:0:00\nDSIG:abc\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];

    if (size < 1 || size > (1 << 20))
        return 0;
    reset_scratch();
    if (data[0] == 0) {
        (void)khx_cdiff_apply(data + 1, size - 1, scratch, 0, NULL, err, sizeof(err));
        (void)khx_cdiff_apply(data + 1, size - 1, scratch, KHX_CVD_NO_VERIFY, NULL, err,
                              sizeof(err));
        return 0;
    }

    size_t slen = size - 1;
    uLong cap = compressBound((uLong)slen) + 128;
    uint8_t *buf = malloc(cap + 64);
    if (buf == NULL)
        return 0;
    int h = snprintf((char *)buf, 64, "ClamAV-Diff:1:%zu:", slen);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(buf);
        return 0;
    }
    zs.next_in = (Bytef *)(data + 1);
    zs.avail_in = (uInt)slen;
    zs.next_out = buf + h;
    zs.avail_out = (uInt)cap;
    int zr = deflate(&zs, Z_FINISH);
    size_t total = (size_t)h + zs.total_out;
    deflateEnd(&zs);
    if (zr == Z_STREAM_END) {
        memcpy(buf + total, ":x", 2);
        (void)khx_cdiff_apply(buf, total + 2, scratch, KHX_CVD_NO_VERIFY, NULL, err, sizeof(err));
    }
    free(buf);
    return 0;
}
