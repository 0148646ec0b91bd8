/*
 * libFuzzer target for the agent-policy validator and its completion with
 * defaults (server/policy.c): the body of PUT /agencies/{id}/policy is any
 * JSON a person or a script sends. Any input must give either a complete
 * policy or a refusal, never a crash, and these must hold:
 *
 *   - validation and completion agree: both accept, or both refuse naming
 *     the same field with the same problem;
 *   - a refusal's field and problem are non-empty printable ASCII (except a
 *     field "" for the document as a whole), short enough for the answer;
 *   - a complete policy is itself valid, completing it again changes
 *     nothing, and both have the same version, 16 lowercase hex
 *     characters.
 *
 * A violation aborts. Inputs are parsed as the server parses bodies
 * (duplicate keys refused); the first byte's low bit also allows NULs in
 * strings, which the server refuses but the validator must handle anyway.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <khien/khien.h>

#include "policy.h"

static void check_printable(const char *s, int may_be_empty)
{
    if (!may_be_empty && s[0] == '\0')
        abort();
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_error e1, e2;
    json_t *doc, *complete = NULL, *again = NULL;
    size_t flags = JSON_REJECT_DUPLICATES;
    char v1[POLICY_VERSION_LEN + 1], v2[POLICY_VERSION_LEN + 1];
    int r1, r2;

    if (size > 0 && (data[0] & 1))
        flags |= JSON_ALLOW_NUL;
    doc = json_loadb((const char *)data, size, flags, NULL);
    if (doc == NULL)
        return 0;
    memset(&e1, 0, sizeof(e1));
    memset(&e2, 0, sizeof(e2));
    r1 = policy_validate(doc, &e1);
    r2 = policy_complete(doc, &complete, &e2);
    if (r1 == KH_ENOMEM || r2 == KH_ENOMEM)
        goto out;
    if (r1 != r2)
        abort();
    if (r1 != KH_OK) {
        if (r1 != KH_EINVAL || complete != NULL || strcmp(e1.field, e2.field) != 0 ||
            strcmp(e1.problem, e2.problem) != 0)
            abort();
        check_printable(e1.field, 1);
        check_printable(e1.problem, 0);
        goto out;
    }
    if (policy_validate(complete, &e1) != KH_OK ||
        policy_complete(complete, &again, &e2) != KH_OK || !json_equal(complete, again))
        abort();
    if (policy_version(complete, v1) != KH_OK || policy_version(again, v2) != KH_OK ||
        strcmp(v1, v2) != 0 || strlen(v1) != POLICY_VERSION_LEN ||
        strspn(v1, "0123456789abcdef") != POLICY_VERSION_LEN)
        abort();
out:
    json_decref(again);
    json_decref(complete);
    json_decref(doc);
    return 0;
}
