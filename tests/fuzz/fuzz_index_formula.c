/*
 * libFuzzer target for the infection index's formula (server/report/
 * formula.c), which is read from the server's configuration file. On each
 * input (cut at the first NUL, as a configuration value is):
 *
 *   - idx_formula_compile() never crashes and either accepts the text or
 *     refuses it with a message starting "index_formula: ";
 *   - an accepted formula evaluates, on components made of the input's
 *     bytes and on all zeros, to a finite number.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[1024];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';

    struct idx_formula *f = NULL;
    char err[256] = "";
    if (idx_formula_compile(text, &f, err, sizeof(err)) != 0) {
        if (strncmp(err, "index_formula: ", 15) != 0)
            abort();
        return 0;
    }
    struct idx_components c = {0};
    if (!isfinite(idx_formula_eval(f, &c)))
        abort();
    int64_t *v = &c.managed;
    for (size_t i = 0; i < sizeof(c) / sizeof(int64_t); i++)
        v[i] = (int64_t)(i < size ? data[i] : 0) * (i % 3 == 0 ? 1000000007 : 1);
    if (!isfinite(idx_formula_eval(f, &c)))
        abort();
    idx_formula_free(f);
    return 0;
}
