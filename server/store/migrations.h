/* The numbered schema migrations (migrations.c), read by store_migrate(). */
#ifndef KHIEN_SERVER_MIGRATIONS_H
#define KHIEN_SERVER_MIGRATIONS_H

/* Number of migrations this build knows; the newest schema version. */
int store_migration_count(void);
/* The SQL of migration `version` (1-based), with @PK@/@BLOB@/@BIGINT@
 * placeholders still in it, or NULL when out of range. */
const char *store_migration_sql(int version);

#endif
