/*
 * libFuzzer target for the federation document validator
 * (server/report/federation.c): the body of POST /api/v1/federation/push
 * comes from another server over the network and is untrusted. Any input
 * must be accepted or refused, never crash, and these must hold:
 *
 *   - a refusal has a non-empty message that names where it is and is
 *     printable (no control characters from the input leak into the log);
 *   - an accepted document, dumped and validated again, is accepted again
 *     (the validator's verdict does not depend on formatting);
 *   - every accepted document's components read back as integers and no
 *     name in it holds '/', '\\' or '@'.
 *
 * A violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "federation.h"

static void check_message(const char *s)
{
    if (s[0] == '\0')
        abort();
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            abort();
}

static void check_name(json_t *o)
{
    const char *n = json_string_value(json_object_get(o, "name"));

    if (n == NULL || strpbrk(n, "/\\@") != NULL)
        abort();
}

static void check_accepted(json_t *doc)
{
    json_t *p, *a;
    size_t i, j;
    struct idx_components c;

    check_name(json_object_get(doc, "province"));
    json_array_foreach(json_object_get(doc, "periods"), i, p)
    {
        if (fed_components_from_json(json_object_get(p, "totals"), &c) != 0)
            abort();
        json_array_foreach(json_object_get(p, "agencies"), j, a)
        {
            check_name(a);
            if (fed_components_from_json(json_object_get(a, "own"), &c) != 0 ||
                fed_components_from_json(json_object_get(a, "total"), &c) != 0)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = NULL, *again = NULL;
    char err[300] = "", *text;

    if (fed_doc_validate((const char *)data, size, &doc, err, sizeof(err)) != 0) {
        if (doc != NULL)
            abort();
        check_message(err);
        return 0;
    }
    check_accepted(doc);
    text = json_dumps(doc, JSON_COMPACT);
    if (text == NULL)
        abort();
    if (fed_doc_validate(text, strlen(text), &again, err, sizeof(err)) != 0)
        abort();
    free(text);
    json_decref(again);
    json_decref(doc);
    return 0;
}
