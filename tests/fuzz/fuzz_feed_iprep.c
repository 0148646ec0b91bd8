/*
 * libFuzzer target for the Suricata iprep reader (lib/ioc/feed_text.c).
 * An input holding a line "--" is split there: the part before is the
 * categories file ("id,shortname,description"), the part after the list.
 */
#include "fuzz_feed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ioc_read_opts o;
    memset(&o, 0, sizeof(o));
    const uint8_t *cut = NULL;
    for (size_t i = 0; i + 4 <= size; i++)
        if (memcmp(data + i, "\n--\n", 4) == 0) {
            cut = data + i;
            break;
        }
    if (cut == NULL) {
        fuzz_feed_run(IOC_FMT_IPREP, data, size, NULL);
        return 0;
    }
    size_t cl = (size_t)(cut - data);
    char *cats = malloc(cl ? cl : 1);
    if (cats == NULL)
        return 0;
    memcpy(cats, data, cl);
    o.iprep_categories = cats;
    o.iprep_categories_len = cl;
    fuzz_feed_run(IOC_FMT_IPREP, cut + 4, size - cl - 4, &o);
    free(cats);
    return 0;
}
