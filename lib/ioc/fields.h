/*
 * Splitting a list line into fields (fields.c), shared by the bundle's
 * indicator reader (ioc.c) and the feed readers (feed_text.c). Fields point
 * into the line; nothing is copied.
 */
#ifndef KHIEN_IOC_FIELDS_H
#define KHIEN_IOC_FIELDS_H

#include <stddef.h>

struct ioc_field {
    const char *p;
    size_t n;
};

/* Space, tab, CR, VT and FF (not newline: callers split lines first). */
int ioc__is_blank(char c);
/* Moves *s and shrinks *n past blanks at both ends. */
void ioc__trim(const char **s, size_t *n);
/* Splits on runs of blanks into at most max fields; returns their number,
 * or max + 1 when there are more. */
size_t ioc__split_blanks(const char *s, size_t n, struct ioc_field *f, size_t max);
/* Splits on `sep` (a separator inside double quotes does not split),
 * trimming blanks and one pair of surrounding double quotes per field (a
 * doubled quote inside stays doubled: no value we read contains one).
 * Returns the number of fields, or max + 1 when there are more. */
size_t ioc__split_sep(const char *s, size_t n, char sep, struct ioc_field *f, size_t max);

#endif
