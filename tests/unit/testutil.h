/*
 * Helpers for the cmocka unit tests: temporary folders, writing fixture
 * files, and finding ../shared/data (tests that need it skip when absent).
 */
#ifndef KHIEN_TESTUTIL_H
#define KHIEN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Creates a fresh temporary directory; the returned path is static storage
 * valid until the next call. Removed with tu_rmtree. */
const char *tu_mkdtemp(void);
void tu_rmtree(const char *path);
/* Writes dir/name with the given bytes; returns the full path (malloc'd). */
char *tu_write(const char *dir, const char *name, const void *data, size_t len);
/* The shared test data folder (../shared/data next to the source tree), or
 * NULL when it is absent. Tests print a visible "SKIP" line and return. */
const char *tu_shared_data(void);

/* For server tests that run on PostgreSQL too: when KHIEN_PG_URL names a
 * server, creates a database private to this process on it (dropped at
 * exit) and returns its URL (static storage); returns NULL when KHIEN_PG_URL
 * is unset or the database cannot be made (the reason is printed). Tests
 * running in parallel on one cluster therefore never share a schema. */
const char *tu_pg_private_url(void);

#endif
