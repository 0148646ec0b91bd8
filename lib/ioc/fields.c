/*
 * Field splitting for indicator list lines (fields.h).
 */
#include "fields.h"

int ioc__is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

void ioc__trim(const char **s, size_t *n)
{
    while (*n > 0 && ioc__is_blank((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ioc__is_blank((*s)[*n - 1]))
        (*n)--;
}

size_t ioc__split_blanks(const char *s, size_t n, struct ioc_field *f, size_t max)
{
    size_t count = 0, i = 0;
    while (i < n) {
        while (i < n && ioc__is_blank(s[i]))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && !ioc__is_blank(s[i]))
            i++;
        if (count == max)
            return max + 1;
        f[count].p = s + start;
        f[count].n = i - start;
        count++;
    }
    return count;
}

size_t ioc__split_sep(const char *s, size_t n, char sep, struct ioc_field *f, size_t max)
{
    size_t count = 0, start = 0;
    int quoted = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] == '"')
            quoted = !quoted;
        if (i < n && (s[i] != sep || quoted))
            continue;
        if (count == max)
            return max + 1;
        const char *p = s + start;
        size_t k = i - start;
        ioc__trim(&p, &k);
        if (k >= 2 && p[0] == '"' && p[k - 1] == '"') {
            p++;
            k -= 2;
        }
        f[count].p = p;
        f[count].n = k;
        count++;
        start = i + 1;
    }
    return count;
}
