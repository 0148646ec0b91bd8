/*
 * ClamAV database maintenance behind the public API: unpacking a .cvd/.cld
 * and turning a .cvd/.cld plus .cdiff patches into a new .cld, the way a
 * private mirror keeps itself current without downloading whole databases.
 * The work is done by cvd.c and cdiff.c; this file adds files, a temporary
 * directory and the order of steps.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvd.h"
#include "khx.h"

#define CVD_MAX   ((size_t)2 << 30)
#define CDIFF_MAX ((size_t)256 << 20)

static int is_cld(const char *path)
{
    return strcmp(khx_path_ext(path), "cld") == 0;
}

int kh_clamav_unpack(const char *cvd, const char *dir, char *err, size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (cvd == NULL || dir == NULL)
        return KH_EINVAL;
    int r = khx_read_file(cvd, CVD_MAX, &data, &len);
    if (r != 0) {
        khx_errf(err, errlen, "%s: %s", cvd, r == KH_EIO ? strerror(errno) : kh_strerror(r));
        return r;
    }
    struct khx_cvd_header hdr;
    memset(&hdr, 0, sizeof(hdr));
    char why[256] = "";
    r = khx_cvd_unpack(data, len, is_cld(cvd) ? KHX_CVD_IS_CLD : 0, NULL, dir, &hdr, why,
                       sizeof(why));
    if (r != 0)
        khx_errf(err, errlen, "%s: %s", cvd, why[0] ? why : kh_strerror(r));
    free(data);
    return r;
}

/* "daily.cvd" -> "daily" */
static void db_name(const char *path, char *out, size_t n)
{
    const char *base = khx_path_base(path);
    size_t stem = strcspn(base, ".");
    snprintf(out, n, "%.*s", (int)KHX_MIN(stem, 60), base);
}

int kh_clamav_patch(const char *cvd, const char *const *cdiffs, size_t ncdiffs, const char *out,
                    char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    uint8_t *img = NULL;
    size_t img_len = 0;
    char why[512] = "";
    int r;
    if (cvd == NULL || out == NULL || (cdiffs == NULL && ncdiffs > 0))
        return KH_EINVAL;
    snprintf(dir, sizeof(dir), "%s/khien-cdiff-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        khx_errf(err, errlen, "cannot create a temporary directory: %s", strerror(errno));
        return KH_EIO;
    }
    if ((r = kh_clamav_unpack(cvd, dir, err, errlen)) != 0)
        goto out;
    for (size_t i = 0; i < ncdiffs; i++) {
        uint8_t *patch = NULL;
        size_t plen = 0;
        if ((r = khx_read_file(cdiffs[i], CDIFF_MAX, &patch, &plen)) != 0) {
            khx_errf(err, errlen, "%s: %s", cdiffs[i],
                     r == KH_EIO ? strerror(errno) : kh_strerror(r));
            goto out;
        }
        r = khx_cdiff_apply(patch, plen, dir, 0, NULL, why, sizeof(why));
        free(patch);
        if (r != 0) {
            khx_errf(err, errlen, "%s: %s", cdiffs[i], why[0] ? why : kh_strerror(r));
            goto out;
        }
    }
    char name[64];
    db_name(cvd, name, sizeof(name));
    if ((r = khx_cld_pack(dir, name, &img, &img_len, why, sizeof(why))) != 0) {
        khx_errf(err, errlen, "cannot pack %s.cld: %s", name, why[0] ? why : kh_strerror(r));
        goto out;
    }
    if ((r = khx_write_file_atomic(out, img, img_len)) != 0)
        khx_errf(err, errlen, "%s: cannot write: %s", out, kh_strerror(r));
out:
    free(img);
    khx_remove_flat_dir(dir); /* holds only what unpack and the patches wrote */
    return r;
}
