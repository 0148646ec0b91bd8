/* YARA glue shared by load_yara.c (building) and scan.c (scanning). */
#ifndef KHX_YARA_INT_H
#define KHX_YARA_INT_H

#include <stdint.h>

#include "khx.h"

struct kh_builder;

#define KHX_YARA_NEXTERNALS 5
/* filename, filepath, extension, filetype, owner */
extern const char *const khx_yara_externals[KHX_YARA_NEXTERNALS];

/* Compiles every YARA source added to the builder into one rule set and
 * appends it (yr_rules_save_stream format) to `out`. */
int khx_yara_build(struct kh_builder *b, struct khx_buf *out, uint64_t *nrules);

#endif
