/*
 * The server's schema, as numbered migrations. Each entry is applied once, in
 * order, in its own transaction, by store_migrate(); the database records the
 * last one applied in schema_version. Never edit a migration that has shipped:
 * add the next number instead.
 *
 * The text is shared by both backends. Three placeholders are replaced before
 * it runs (store.c): @PK@ becomes an auto-increment 64-bit primary key
 * (INTEGER PRIMARY KEY AUTOINCREMENT / BIGSERIAL PRIMARY KEY), @BLOB@ a byte
 * string (BLOB / BYTEA) and @BIGINT@ a 64-bit integer.
 *
 * Conventions: times are Unix seconds (BIGINT); booleans are INTEGER 0/1;
 * JSON documents are TEXT; machine ids are UUID text chosen by the server at
 * first enrollment and kept across re-enrollment.
 */
#include "migrations.h"

#include <stddef.h>

static const char migration_1[] =
    /* The agency tree. path is the materialized list of ids from the root,
     * "/1/4/9/", so that "this agency and everything below it" is one
     * prefix comparison: path LIKE '/1/4/%'. */
    "CREATE TABLE agencies ("
    " id @PK@,"
    " parent_id @BIGINT@ REFERENCES agencies(id),"
    " path TEXT NOT NULL DEFAULT '',"
    " code TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL,"
    " kind TEXT NOT NULL DEFAULT 'agency'," /* province|department|district|agency */
    " contact TEXT NOT NULL DEFAULT '',"
    " expected_machines @BIGINT@ NOT NULL DEFAULT 0,"
    " created_at @BIGINT@ NOT NULL);\n"
    "CREATE INDEX agencies_path ON agencies(path);\n"
    "CREATE INDEX agencies_parent ON agencies(parent_id);\n"

    "CREATE TABLE users ("
    " id @PK@,"
    " username TEXT NOT NULL UNIQUE,"
    " display_name TEXT NOT NULL DEFAULT '',"
    " password_hash TEXT NOT NULL,"                /* libsodium crypto_pwhash_str (Argon2id) */
    " role TEXT NOT NULL,"                         /* admin|officer|auditor */
    " agency_id @BIGINT@ REFERENCES agencies(id)," /* scope; NULL = whole province */
    " disabled INTEGER NOT NULL DEFAULT 0,"
    " created_at @BIGINT@ NOT NULL,"
    " last_login @BIGINT@);\n"

    /* Sessions and API tokens are stored as SHA-256 of the secret. */
    "CREATE TABLE sessions ("
    " id TEXT PRIMARY KEY,"
    " user_id @BIGINT@ NOT NULL REFERENCES users(id),"
    " csrf TEXT NOT NULL,"
    " remote TEXT NOT NULL DEFAULT '',"
    " created_at @BIGINT@ NOT NULL,"
    " expires_at @BIGINT@ NOT NULL);\n"
    "CREATE INDEX sessions_user ON sessions(user_id);\n"

    "CREATE TABLE api_tokens ("
    " id @PK@,"
    " user_id @BIGINT@ NOT NULL REFERENCES users(id),"
    " name TEXT NOT NULL,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " created_at @BIGINT@ NOT NULL,"
    " last_used @BIGINT@,"
    " revoked INTEGER NOT NULL DEFAULT 0);\n"

    /* Login rate limiting, shared by every server process. key is
     * "user:NAME" or "ip:ADDR". */
    "CREATE TABLE login_attempts ("
    " key TEXT PRIMARY KEY,"
    " failures @BIGINT@ NOT NULL,"
    " window_start @BIGINT@ NOT NULL,"
    " locked_until @BIGINT@ NOT NULL DEFAULT 0);\n"

    "CREATE TABLE enroll_tokens ("
    " id @PK@,"
    " agency_id @BIGINT@ NOT NULL REFERENCES agencies(id),"
    " token_hash TEXT NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL," /* first characters, shown in lists */
    " note TEXT NOT NULL DEFAULT '',"
    " expires_at @BIGINT@ NOT NULL,"
    " max_uses @BIGINT@ NOT NULL," /* 0 = unlimited */
    " uses @BIGINT@ NOT NULL DEFAULT 0,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " created_by @BIGINT@ REFERENCES users(id),"
    " created_at @BIGINT@ NOT NULL);\n"
    "CREATE INDEX enroll_tokens_agency ON enroll_tokens(agency_id);\n"

    "CREATE TABLE machines ("
    " id TEXT PRIMARY KEY," /* UUID, stable across re-enrollment */
    " agency_id @BIGINT@ NOT NULL REFERENCES agencies(id),"
    " hostname TEXT NOT NULL DEFAULT '',"
    " os TEXT NOT NULL DEFAULT '',"
    " kernel TEXT NOT NULL DEFAULT '',"
    " arch TEXT NOT NULL DEFAULT '',"
    " ips TEXT NOT NULL DEFAULT ''," /* space-separated, for search */
    " macs TEXT NOT NULL DEFAULT '',"
    " agent_version TEXT NOT NULL DEFAULT '',"
    " db_version @BIGINT@ NOT NULL DEFAULT 0,"
    " db_time @BIGINT@ NOT NULL DEFAULT 0," /* when that bundle was built */
    " rtp INTEGER NOT NULL DEFAULT 0,"      /* real-time protection on */
    " firewall INTEGER NOT NULL DEFAULT 0,"
    " last_full_scan @BIGINT@ NOT NULL DEFAULT 0,"
    " inventory TEXT NOT NULL DEFAULT '{}'," /* the last check-in's document */
    " machine_key TEXT NOT NULL DEFAULT ''," /* agent-reported hardware id, for re-enrollment */
    " cert_serial TEXT NOT NULL DEFAULT '',"
    " cert_sha256 TEXT NOT NULL DEFAULT '',"
    " enrolled_at @BIGINT@ NOT NULL,"
    " last_seen @BIGINT@ NOT NULL DEFAULT 0,"
    " retired INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX machines_agency ON machines(agency_id, hostname);\n"
    "CREATE INDEX machines_last_seen ON machines(last_seen);\n"
    "CREATE INDEX machines_hostname ON machines(hostname);\n"
    "CREATE INDEX machines_key ON machines(machine_key);\n"

    "CREATE TABLE tasks ("
    " id @PK@,"
    " machine_id TEXT NOT NULL REFERENCES machines(id),"
    " kind TEXT NOT NULL," /* scan|update|quarantine_restore|quarantine_delete */
    " args TEXT NOT NULL DEFAULT '{}',"
    " state TEXT NOT NULL DEFAULT 'pending'," /* pending|sent|done|failed|cancelled */
    " created_by @BIGINT@ REFERENCES users(id),"
    " created_at @BIGINT@ NOT NULL,"
    " sent_at @BIGINT@,"
    " done_at @BIGINT@,"
    " progress @BIGINT@ NOT NULL DEFAULT 0," /* percent, from results with state 'running' */
    " result TEXT NOT NULL DEFAULT '');\n"
    "CREATE INDEX tasks_machine ON tasks(machine_id, state);\n"

    /* Every event an agent posts, by its id: a retried batch inserts nothing
     * new (INSERT ... ON CONFLICT DO NOTHING). Ids are unique per machine, so
     * one machine cannot suppress another's events by reusing their ids. */
    "CREATE TABLE events ("
    " event_id TEXT NOT NULL,"
    " machine_id TEXT NOT NULL REFERENCES machines(id),"
    " type TEXT NOT NULL,"
    " at @BIGINT@ NOT NULL,"
    " received_at @BIGINT@ NOT NULL,"
    " data TEXT NOT NULL DEFAULT '{}',"
    " PRIMARY KEY (machine_id, event_id));\n"
    "CREATE INDEX events_machine ON events(machine_id, at);\n"

    "CREATE TABLE detections ("
    " id @PK@,"
    " event_id TEXT NOT NULL,"
    " machine_id TEXT NOT NULL REFERENCES machines(id),"
    " agency_id @BIGINT@ NOT NULL REFERENCES agencies(id),"
    " path TEXT NOT NULL DEFAULT '',"
    " sha256 TEXT NOT NULL DEFAULT '',"
    " md5 TEXT NOT NULL DEFAULT '',"
    " size @BIGINT@ NOT NULL DEFAULT 0,"
    " signature TEXT NOT NULL,"
    " family TEXT NOT NULL DEFAULT '',"         /* signature name without variant suffixes */
    " action TEXT NOT NULL DEFAULT 'reported'," /* reported|quarantined|blocked|deleted */
    " detected_at @BIGINT@ NOT NULL,"
    " received_at @BIGINT@ NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'new'," /* new|acknowledged|resolved|false_positive */
    " status_at @BIGINT@ NOT NULL,"
    " status_by @BIGINT@ REFERENCES users(id),"
    " UNIQUE (machine_id, event_id));\n"
    "CREATE INDEX detections_machine ON detections(machine_id, detected_at);\n"
    "CREATE INDEX detections_agency ON detections(agency_id, detected_at);\n"
    "CREATE INDEX detections_time ON detections(detected_at);\n"
    "CREATE INDEX detections_status ON detections(status, detected_at);\n"
    "CREATE INDEX detections_family ON detections(family);\n"

    "CREATE TABLE detection_notes ("
    " id @PK@,"
    " detection_id @BIGINT@ NOT NULL REFERENCES detections(id),"
    " user_id @BIGINT@ REFERENCES users(id),"
    " username TEXT NOT NULL DEFAULT '',"
    " at @BIGINT@ NOT NULL,"
    " status_from TEXT NOT NULL,"
    " status_to TEXT NOT NULL,"
    " note TEXT NOT NULL DEFAULT '');\n"
    "CREATE INDEX detection_notes_det ON detection_notes(detection_id);\n"

    /* Signature sources. An uploaded file is kept in content; a folder or
     * file on the server (a ClamAV mirror) is named by path. */
    "CREATE TABLE sig_sources ("
    " id @PK@,"
    " kind TEXT NOT NULL," /* clamav|cvd|yara|hashlist|mirror|indicators */
    " name TEXT NOT NULL,"
    " path TEXT NOT NULL DEFAULT '',"
    " content @BLOB@,"
    " enabled INTEGER NOT NULL DEFAULT 1,"
    " created_by @BIGINT@ REFERENCES users(id),"
    " created_at @BIGINT@ NOT NULL);\n"

    /* Published bundles: a signed .kdb, numbered, stored in chunks so that
     * every server process can serve every version. */
    "CREATE TABLE bundles ("
    " version @BIGINT@ PRIMARY KEY,"
    " sha256 TEXT NOT NULL,"
    " size @BIGINT@ NOT NULL,"
    " signature TEXT NOT NULL," /* base64 Ed25519 over the bundle header */
    " key_id TEXT NOT NULL,"
    " signatures @BIGINT@ NOT NULL DEFAULT 0,"
    " sources TEXT NOT NULL DEFAULT '[]',"
    " created_by @BIGINT@ REFERENCES users(id),"
    " created_at @BIGINT@ NOT NULL);\n"
    "CREATE TABLE bundle_chunks ("
    " version @BIGINT@ NOT NULL,"
    " seq @BIGINT@ NOT NULL,"
    " data @BLOB@ NOT NULL,"
    " PRIMARY KEY (version, seq));\n"

    "CREATE TABLE audit ("
    " id @PK@,"
    " at @BIGINT@ NOT NULL,"
    " user_id @BIGINT@,"
    " username TEXT NOT NULL DEFAULT ''," /* or "machine:ID" for agent actions */
    " remote TEXT NOT NULL DEFAULT '',"
    " action TEXT NOT NULL,"
    " target TEXT NOT NULL DEFAULT '',"
    " detail TEXT NOT NULL DEFAULT '{}');\n"
    "CREATE INDEX audit_at ON audit(at);\n"

    /* Small shared settings (server-wide options changed from the UI). */
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n";

/* "Open detections per machine" (machine sort by detections, the infected
 * filter, per-agency infected counts) answered from the index alone. */
static const char migration_2[] =
    "CREATE INDEX detections_status_machine ON detections(status, machine_id);\n";

/* What the dashboard shows at a glance, kept up to date by the writes that
 * change it (ingest.c for new detections, api_detection.c for status
 * changes) so that reading it never counts a million detections. Each is
 * filled here from the rows that already exist.
 *
 *   machines.open_detections  the machine's detections in status new or
 *                             acknowledged: the machine list's count, sort
 *                             and "infected" filter, and GET /agencies.
 *   open_by_agency            per (agency a detection was made in, machine):
 *                             how many of those detections are open, and
 *                             the newest open one's time: the overview's
 *                             open count and its infected machines per
 *                             agency over the last 30 days.
 *   detection_daily           detections per UTC day (detected_at / 86400,
 *                             integer division on both backends) and agency
 *                             they were made in: the overview's per-day
 *                             series and most affected agencies.
 *   detection_daily_family    the same per family (the signature name when
 *                             a detection has none): the commonest families
 *                             in part of the province. A separate table,
 *                             because a day of one agency spans a dozen
 *                             families and the two questions above would
 *                             read a dozen times the rows.
 *   detection_daily_family_all
 *                             per day and family, every agency together: the
 *                             commonest families in the whole province,
 *                             which would otherwise read every agency's
 *                             rows (90,000 for 30 days of 200 agencies).
 *   detection_hourly          detections per hour (detected_at / 3600) and
 *                             agency, for recent hours only: the overview's
 *                             last 24 hours. Ingest counts only detections of
 *                             the last 2 days here and deletes hours older
 *                             than 3 days, so the table stays small; 24 hours
 *                             counted from now only ever need hours newer
 *                             than a day. Filled here from the detections of
 *                             the 3 days before the last one received.
 *
 * The index of migration 2 answered "open detections per machine" from
 * detections, which nothing asks any more. In its place, (status,
 * agency_id) counts an officer's detections of one status (the detection
 * list's total) from the index alone: without it, SQLite read 1,000,000
 * rows to count the 100,000 of one department (2.3 s). */
static const char migration_3[] =
    "ALTER TABLE machines ADD COLUMN open_detections @BIGINT@ NOT NULL DEFAULT 0;\n"
    "UPDATE machines SET open_detections = (SELECT count(*) FROM detections d"
    " WHERE d.machine_id = machines.id AND d.status IN ('new','acknowledged'))"
    " WHERE id IN (SELECT machine_id FROM detections WHERE status IN ('new','acknowledged'));\n"

    "CREATE TABLE open_by_agency ("
    " agency_id @BIGINT@ NOT NULL,"
    " machine_id TEXT NOT NULL,"
    " open_count @BIGINT@ NOT NULL,"
    " newest_open @BIGINT@ NOT NULL," /* detected_at of the newest open one; 0 = none */
    " PRIMARY KEY (agency_id, machine_id));\n"
    "INSERT INTO open_by_agency (agency_id, machine_id, open_count, newest_open)"
    " SELECT agency_id, machine_id, count(*), max(detected_at) FROM detections"
    " WHERE status IN ('new','acknowledged') GROUP BY agency_id, machine_id;\n"

    "CREATE TABLE detection_daily ("
    " day @BIGINT@ NOT NULL,"
    " agency_id @BIGINT@ NOT NULL,"
    " detections @BIGINT@ NOT NULL,"
    " PRIMARY KEY (day, agency_id));\n"
    "INSERT INTO detection_daily (day, agency_id, detections)"
    " SELECT detected_at / 86400, agency_id, count(*) FROM detections"
    " GROUP BY detected_at / 86400, agency_id;\n"

    /* Read only for part of the province, so by agency first. */
    "CREATE TABLE detection_daily_family ("
    " agency_id @BIGINT@ NOT NULL,"
    " day @BIGINT@ NOT NULL,"
    " family TEXT NOT NULL,"
    " detections @BIGINT@ NOT NULL,"
    " PRIMARY KEY (agency_id, day, family));\n"
    "INSERT INTO detection_daily_family (agency_id, day, family, detections)"
    " SELECT agency_id, detected_at / 86400,"
    " CASE WHEN family = '' THEN signature ELSE family END, count(*) FROM detections"
    " GROUP BY agency_id, detected_at / 86400,"
    " CASE WHEN family = '' THEN signature ELSE family END;\n"

    "CREATE TABLE detection_daily_family_all ("
    " day @BIGINT@ NOT NULL,"
    " family TEXT NOT NULL,"
    " detections @BIGINT@ NOT NULL,"
    " PRIMARY KEY (day, family));\n"
    "INSERT INTO detection_daily_family_all (day, family, detections)"
    " SELECT day, family, sum(detections) FROM detection_daily_family GROUP BY day, family;\n"

    "CREATE TABLE detection_hourly ("
    " hour @BIGINT@ NOT NULL,"
    " agency_id @BIGINT@ NOT NULL,"
    " detections @BIGINT@ NOT NULL,"
    " PRIMARY KEY (hour, agency_id));\n"
    "INSERT INTO detection_hourly (hour, agency_id, detections)"
    " SELECT detected_at / 3600, agency_id, count(*) FROM detections"
    " WHERE detected_at >= (SELECT max(received_at) FROM detections) - 259200"
    " GROUP BY detected_at / 3600, agency_id;\n"

    "DROP INDEX detections_status_machine;\n"
    "CREATE INDEX detections_status_agency ON detections(status, agency_id);\n";

/* Agent protection policies (server/policy.c), one per agency at most. The
 * document is kept as the compact JSON the officer sent, after validation;
 * the settings it leaves out are filled with the defaults when it is read,
 * so a later version's new defaults reach policies written before it. An
 * agency without a row inherits the nearest ancestor's. */
static const char migration_4[] = "CREATE TABLE agency_policies ("
                                  " agency_id @BIGINT@ PRIMARY KEY REFERENCES agencies(id),"
                                  " policy TEXT NOT NULL,"
                                  " updated_at @BIGINT@ NOT NULL,"
                                  " updated_by @BIGINT@ REFERENCES users(id));\n";

/* The network sensor (issue 6; server/c2.c, api_c2.c).
 *
 *   agency_networks  the address ranges of each agency: the CIDR in its
 *                    normalised text (unique), the family (4 or 6), the
 *                    prefix length and the first and last address as
 *                    big-endian bytes (4 or 16), which both backends
 *                    compare byte by byte, so that the ranges holding an
 *                    address are found on the (family, first_addr) index
 *                    and the longest one names the agency of a hit.
 *   c2_hits          what sensors (and agents) report as "c2_hit" events:
 *                    one row per (machine, event id), filed under the
 *                    agency derived on the server from agency_networks.
 *                    seen_in is the event's "where" (a reserved word in
 *                    SQL); sources the indicator's sources as JSON;
 *                    hit_count the matches within the sensor's window.
 *                    Indexed for the dashboard's list (newest last_seen
 *                    first, per agency or the whole province) and its
 *                    per-agency summary.
 *   machines.role    "agent" or "sensor", from the machine's check-in. */
static const char migration_5[] =
    "CREATE TABLE agency_networks ("
    " id @PK@,"
    " agency_id @BIGINT@ NOT NULL REFERENCES agencies(id),"
    " cidr TEXT NOT NULL UNIQUE,"
    " family INTEGER NOT NULL,"
    " prefix_len INTEGER NOT NULL,"
    " first_addr @BLOB@ NOT NULL,"
    " last_addr @BLOB@ NOT NULL,"
    " note TEXT NOT NULL DEFAULT '',"
    " created_at @BIGINT@ NOT NULL);\n"
    "CREATE INDEX agency_networks_range ON agency_networks(family, first_addr);\n"
    "CREATE INDEX agency_networks_agency ON agency_networks(agency_id);\n"

    "CREATE TABLE c2_hits ("
    " id @PK@,"
    " event_id TEXT NOT NULL,"
    " machine_id TEXT NOT NULL REFERENCES machines(id),"
    " agency_id @BIGINT@ NOT NULL REFERENCES agencies(id),"
    " host TEXT NOT NULL,"
    " indicator TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " category TEXT NOT NULL DEFAULT '',"
    " sources TEXT NOT NULL DEFAULT '[]',"
    " seen_in TEXT NOT NULL,"
    " observed TEXT NOT NULL DEFAULT '',"
    " proto TEXT NOT NULL DEFAULT '',"
    " src_ip TEXT NOT NULL DEFAULT '',"
    " src_port @BIGINT@ NOT NULL DEFAULT 0,"
    " dest_ip TEXT NOT NULL DEFAULT '',"
    " dest_port @BIGINT@ NOT NULL DEFAULT 0,"
    " hit_count @BIGINT@ NOT NULL,"
    " first_seen @BIGINT@ NOT NULL,"
    " last_seen @BIGINT@ NOT NULL,"
    " evidence TEXT NOT NULL DEFAULT '',"
    " input TEXT NOT NULL DEFAULT '',"
    " sensor TEXT NOT NULL DEFAULT '',"
    " received_at @BIGINT@ NOT NULL,"
    " UNIQUE (machine_id, event_id));\n"
    "CREATE INDEX c2_hits_time ON c2_hits(last_seen, id);\n"
    "CREATE INDEX c2_hits_agency ON c2_hits(agency_id, last_seen);\n"

    "ALTER TABLE machines ADD COLUMN role TEXT NOT NULL DEFAULT 'agent';\n";

/* Reports, sharing with the national system and background jobs (issue 7;
 * server/sched.c, server/report/).
 *
 *   jobs               one row per background job (sched.c): when it runs
 *                      next, and a lease (owner, until) so that of several
 *                      servers on one PostgreSQL exactly one runs it; the
 *                      last run's outcome for the dashboard.
 *   share_submissions  the AVReport documents sent to the national malware
 *                      monitoring system (report/sharing.c): one row per
 *                      scheduled slot (slot = the slot's start time, unique,
 *                      so two servers cannot both create it), the period it
 *                      covers, the signed document and its SHA-256, every
 *                      attempt's outcome (status pending|accepted|failed,
 *                      attempts, next_attempt for the retry, the receiver's
 *                      HTTP status and response). The index's sharing uptime
 *                      is accepted slots / slots in a period.
 *   reports            every report produced (report/reports.c): kind
 *                      ("quarterly"), period ("2026Q4"), agency (NULL = the
 *                      province), format (pdf|csv|xlsx), the bytes with
 *                      their size and SHA-256, who asked for it (user id and
 *                      name, or "cli"), and when.
 *   c2_hits.status     what was done about a C&C contact, as for
 *                      detections: new|acknowledged|resolved|false_positive,
 *                      when, by whom, and the officer's note. */
static const char migration_6[] =
    "CREATE TABLE jobs ("
    " name TEXT PRIMARY KEY,"
    " next_run @BIGINT@ NOT NULL,"
    " lease_owner TEXT NOT NULL DEFAULT '',"
    " lease_until @BIGINT@ NOT NULL DEFAULT 0,"
    " last_start @BIGINT@ NOT NULL DEFAULT 0,"
    " last_end @BIGINT@ NOT NULL DEFAULT 0,"
    " last_ok INTEGER NOT NULL DEFAULT 0,"
    " failures @BIGINT@ NOT NULL DEFAULT 0,"
    " last_message TEXT NOT NULL DEFAULT '');\n"

    "CREATE TABLE share_submissions ("
    " id @PK@,"
    " slot @BIGINT@ NOT NULL UNIQUE,"
    " period_start @BIGINT@ NOT NULL,"
    " period_end @BIGINT@ NOT NULL,"
    " created_at @BIGINT@ NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'pending',"
    " attempts @BIGINT@ NOT NULL DEFAULT 0,"
    " next_attempt @BIGINT@ NOT NULL,"
    " last_attempt @BIGINT@ NOT NULL DEFAULT 0,"
    " accepted_at @BIGINT@ NOT NULL DEFAULT 0,"
    " http_status @BIGINT@ NOT NULL DEFAULT 0,"
    " response TEXT NOT NULL DEFAULT '',"
    " error TEXT NOT NULL DEFAULT '',"
    " sha256 TEXT NOT NULL DEFAULT '',"
    " document @BLOB@);\n"
    "CREATE INDEX share_submissions_due ON share_submissions(status, next_attempt);\n"

    "CREATE TABLE reports ("
    " id @PK@,"
    " kind TEXT NOT NULL,"
    " period TEXT NOT NULL,"
    " agency_id @BIGINT@ REFERENCES agencies(id),"
    " format TEXT NOT NULL,"
    " size @BIGINT@ NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " content @BLOB@ NOT NULL,"
    " created_by @BIGINT@ REFERENCES users(id),"
    " created_by_name TEXT NOT NULL DEFAULT '',"
    " created_at @BIGINT@ NOT NULL);\n"
    "CREATE INDEX reports_period ON reports(kind, period, agency_id);\n"
    "CREATE INDEX reports_time ON reports(created_at);\n"

    "ALTER TABLE c2_hits ADD COLUMN status TEXT NOT NULL DEFAULT 'new';\n"
    "ALTER TABLE c2_hits ADD COLUMN status_at @BIGINT@ NOT NULL DEFAULT 0;\n"
    "ALTER TABLE c2_hits ADD COLUMN status_by @BIGINT@;\n"
    "ALTER TABLE c2_hits ADD COLUMN status_note TEXT NOT NULL DEFAULT '';\n";

/* The infection index (report/index.c).
 *
 *   index_snapshots  per agency and month (month_start = the month's first
 *                    second in local time, month = "2026-11"), what cannot
 *                    be recounted later: the managed machines, the expected
 *                    ones and those whose database was older than
 *                    stale_days when the month ended. Written once per
 *                    month by the index-month job; a past month (a past
 *                    quarter: its last month) reads them.
 *
 * c2_hits is read by period (last_seen >= start AND first_seen < end) on
 * c2_hits_time; nothing else the index asks needs a new index. */
static const char migration_7[] =
    "CREATE TABLE index_snapshots ("
    " agency_id @BIGINT@ NOT NULL REFERENCES agencies(id),"
    " month_start @BIGINT@ NOT NULL,"
    " month TEXT NOT NULL,"
    " managed @BIGINT@ NOT NULL,"
    " expected @BIGINT@ NOT NULL,"
    " stale @BIGINT@ NOT NULL,"
    " taken_at @BIGINT@ NOT NULL,"
    " PRIMARY KEY (agency_id, month_start));\n"
    "CREATE INDEX index_snapshots_month ON index_snapshots(month_start);\n";

/* Federation (issue 7, report/federation.c, api_federation.c). On a parent
 * server: the provinces allowed to push (their secret kept as SHA-256 only,
 * as api_tokens and enroll_tokens do) and the last document each pushed
 * for a period. On a child server the jobs row of "federation-push" records
 * its pushes (last_message), so nothing is added for that side. */
static const char migration_8[] =
    "CREATE TABLE federation_children ("
    " id @PK@,"
    " code TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " created_by @BIGINT@ REFERENCES users(id),"
    " created_at @BIGINT@ NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0,"
    " push_interval @BIGINT@ NOT NULL DEFAULT 0,"
    " last_push_at @BIGINT@ NOT NULL DEFAULT 0,"
    " last_push_from TEXT NOT NULL DEFAULT '');\n"

    "CREATE TABLE federation_stats ("
    " child_id @BIGINT@ NOT NULL REFERENCES federation_children(id),"
    " period TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " period_start @BIGINT@ NOT NULL,"
    " received_at @BIGINT@ NOT NULL,"
    " summary TEXT NOT NULL," /* {"totals":{...},"index":x,"agencies":n} for lists and trends */
    " document TEXT NOT NULL,"
    " PRIMARY KEY (child_id, period));\n"
    "CREATE INDEX federation_stats_kind ON federation_stats(child_id, kind, period_start);\n";

static const char *const migrations[] = {
    migration_1, migration_2, migration_3, migration_4,
    migration_5, migration_6, migration_7, migration_8,
};

int store_migration_count(void)
{
    return (int)(sizeof(migrations) / sizeof(migrations[0]));
}

const char *store_migration_sql(int version)
{
    if (version < 1 || version > store_migration_count())
        return NULL;
    return migrations[version - 1];
}
