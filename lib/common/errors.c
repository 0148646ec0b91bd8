/* Error names for kh_err; see include/khien/khien.h. */
#include <khien/khien.h>

const char *kh_strerror(int err)
{
    switch (err) {
    case KH_OK:
        return "success";
    case KH_ENOMEM:
        return "out of memory";
    case KH_EIO:
        return "input/output error";
    case KH_EFORMAT:
        return "malformed input";
    case KH_EUNSUPPORTED:
        return "not supported";
    case KH_ESIGNATURE:
        return "checksum or digital signature does not verify";
    case KH_ELIMIT:
        return "limit exceeded";
    case KH_EINVAL:
        return "invalid argument";
    case KH_ETIMEOUT:
        return "time limit reached";
    case KH_EMATCHER:
        return "pattern matcher error";
    case KH_ESTRICT:
        return "signature source has errors (strict mode)";
    case KH_ENOTFOUND:
        return "not found";
    case KH_EABORTED:
        return "stopped by caller";
    }
    return "unknown error";
}

const char *kh_version(void)
{
#ifdef KHIEN_VERSION
    return KHIEN_VERSION;
#else
    return "0.0.0";
#endif
}
