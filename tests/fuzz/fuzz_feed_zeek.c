/*
 * libFuzzer target for the feed reader of Zeek intel TSV
 * (lib/ioc/feed*.c); the checks on each record are in fuzz_feed.h.
 */
#include "fuzz_feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_feed_run(IOC_FMT_ZEEK_INTEL, data, size, NULL);
    return 0;
}
