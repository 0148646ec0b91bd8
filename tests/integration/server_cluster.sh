#!/usr/bin/env bash
# Several `khien server run` processes against one PostgreSQL database behave
# as one server (docs/SERVER.md, "Several server processes"). Two processes,
# A and B, share the data folder's keys (ca.*, server.*, bundle.*) and one
# fresh database, and are started at the same moment: both apply migrations
# and exactly one of them does the work. Then every piece of shared state is
# used through one process and checked through the other: sessions and their
# CSRF tokens, enrollment tokens (a single-use token raced through both),
# agents checking in and posting the same event batch through both, tasks,
# the login rate limit, published bundles with their ETag. Finally A is
# stopped (SIGTERM), B alone serves everything, and A comes back.
#
# The database is a fresh one on the server KHIEN_PG_URL names, else a
# throwaway cluster from scripts/pg-throwaway. The agent is curl and openssl,
# the administrator a cookie jar, as in agent_api.sh. Exits 77 (skip) only
# when PostgreSQL's binaries or a needed tool are not installed.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
khien="$KHIEN_BIN/khien"
export LC_ALL=C

for tool in curl jq openssl gzip psql cmp; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed"
		exit 77
	fi
done
if [ ! -x "$khien" ]; then
	echo "FAIL: $khien does not exist or is not executable (build the khien-cli target)"
	exit 1
fi

tmp=$(mktemp -d)
declare -A pid=() port=() url=()
pg_dir='' holder_pid=''
pg_drop=()
# stop NAME: SIGTERM to that server process and wait for it (SIGKILL after
# 10 s, so that a server that hangs cannot hang the test); its exit status is
# left in $stop_rc.
stop_rc=
stop() {
	local p=${pid[$1]:-}
	stop_rc=
	pid[$1]=
	[ -n "$p" ] || return 0
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$p" 2>/dev/null; then
		echo "note: server $1 (pid $p) was still running 10 s after SIGTERM; killing it"
		kill -KILL "$p" 2>/dev/null
	fi
	wait "$p" 2>/dev/null
	stop_rc=$?
}
cleanup() {
	stop A
	stop B
	exec 7>&-
	if [ -n "$holder_pid" ]; then
		kill "$holder_pid" 2>/dev/null
		wait "$holder_pid" 2>/dev/null
	fi
	for db in "${pg_drop[@]}"; do
		psql -X -q "$KHIEN_PG_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
	done
	if [ -n "$pg_dir" ]; then
		"$KHIEN_SRC/scripts/pg-throwaway" stop "$pg_dir" >/dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

passed=0 failures=0 status=0
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() {
	failures=$((failures + 1))
	echo "FAIL: $1"
	echo "  last reply: HTTP $status"
	head -c 600 "$tmp/body" 2>/dev/null | sed 's/^/  | /'
	echo
}
# check DESCRIPTION COMMAND...: runs the command (usually a test or jq -e).
check() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}
expect_status() {
	if [ "$status" = "$2" ]; then pass "$1 (HTTP $2)"; else fail "$1: expected HTTP $2"; fi
}
jbody() { jq -r "$1" "$tmp/body" 2>/dev/null; }
jcheck() {
	if jq -e "$2" "$tmp/body" >/dev/null 2>&1; then pass "$1"; else fail "$1: '$2' is not true"; fi
}
# finish: the summary, the servers' logs on failure, and the exit status.
finish() {
	echo "$((passed + failures)) checks: $passed passed, $failures failed (${SECONDS}s)"
	if [ "$failures" -ne 0 ]; then
		for log in "$tmp"/*.log; do
			[ -f "$log" ] || continue
			echo "--- $log (last 40 lines) ---"
			tail -n 40 "$log"
		done
		exit 1
	fi
	exit 0
}
# section TITLE: a heading in the output, with the time so far.
section() { echo "== $1 (${SECONDS}s)"; }
# abort WHY: a step everything after it needs went wrong.
abort() {
	failures=$((failures + 1))
	echo "FAIL: $1 (the test cannot go on)"
	finish
}

# ---------------------------------------------------------------------------
# PostgreSQL: two fresh databases, one for `init` and one the servers race
# to migrate.
# ---------------------------------------------------------------------------

# `init` applies the migrations itself, so it gets a database of its own and
# the two `run` processes find theirs empty.
if [ -n "${KHIEN_PG_URL:-}" ]; then
	base="khien_cluster_$$_$RANDOM"
	for db in "$base" "${base}_init"; do
		if ! psql -X -q "$KHIEN_PG_URL" -c "CREATE DATABASE $db" >/dev/null 2>"$tmp/pg.err"; then
			cat "$tmp/pg.err"
			abort "cannot create a database on KHIEN_PG_URL"
		fi
		pg_drop+=("$db")
	done
	dburl="${KHIEN_PG_URL%/*}/$base"
	initurl="${KHIEN_PG_URL%/*}/${base}_init"
else
	if [ -z "${KHIEN_SRC:-}" ] || [ ! -x "$KHIEN_SRC/scripts/pg-throwaway" ]; then
		abort "neither KHIEN_PG_URL nor KHIEN_SRC (for scripts/pg-throwaway) is set"
	fi
	pg_dir=$(mktemp -d /tmp/khpg.XXXXXX)
	dburl=$("$KHIEN_SRC/scripts/pg-throwaway" start "$pg_dir" 2>"$tmp/pg.err")
	pg_rc=$?
	if [ $pg_rc -eq 77 ]; then
		echo "SKIP: PostgreSQL is not installed ($(tail -n 1 "$tmp/pg.err"))"
		exit 77
	elif [ $pg_rc -ne 0 ]; then
		cat "$tmp/pg.err"
		abort "scripts/pg-throwaway could not start a cluster"
	fi
	initurl="${dburl%/*}/khien_init"
	psql -X -q "$dburl" -c "CREATE DATABASE khien_init" >/dev/null 2>&1 ||
		abort "cannot create a second database on the throwaway cluster"
fi
sql() { psql -X -q -At "$dburl" -c "$1" 2>>"$tmp/psql.log"; }

# ---------------------------------------------------------------------------
# Two data folders with the same keys.
# ---------------------------------------------------------------------------

section "data folders"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p=$((20000 + RANDOM % 30000))
	while port_busy "$p" || [ "$p" = "${port[A]:-}" ] || [ "$p" = "${port[B]:-}" ]; do
		p=$((p + 7))
	done
	echo "$p"
}
port[A]=$(free_port)
port[B]=$(free_port)
A="$tmp/A" B="$tmp/B"
if ! "$khien" server init --data "$A" --database "$initurl" --listen "127.0.0.1:${port[A]}" \
	>"$tmp/init-A.out" 2>&1; then
	cat "$tmp/init-A.out"
	abort "khien server init --data A"
fi
sed -i "s|^database = .*|database = $dburl|" "$A/khien-server.conf"
mkdir -m 700 "$B"
cp -p "$A"/ca.* "$A"/server.* "$A"/bundle.* "$A/khien-server.conf" "$B/"
sed -i "s|^listen = .*|listen = 127.0.0.1:${port[B]}|" "$B/khien-server.conf"
check "B holds the same CA, server and bundle keys as A" \
	bash -c "for f in ca.crt ca.key server.crt server.key bundle.key bundle.pub; do
		cmp '$A/'\$f '$B/'\$f || exit 1; done"
cacert="$A/ca.crt"

# launch NAME: `khien server run` for data folder NAME in the background.
launch() {
	"$khien" server run --data "$tmp/$1" --listen "127.0.0.1:${port[$1]}" >>"$tmp/$1.log" 2>&1 &
	pid[$1]=$!
	url[$1]="https://127.0.0.1:${port[$1]}/api/v1"
}
# wait_up NAME: waits (up to 20 s) for the process to answer /health.
wait_up() {
	for _ in $(seq 200); do
		kill -0 "${pid[$1]}" 2>/dev/null || return 1
		curl -s -o /dev/null --cacert "$cacert" "${url[$1]}/health" && return 0
		sleep 0.1
	done
	return 1
}
# bring_up NAME: wait_up, and if the process died (another program took its
# port meanwhile, say) a few more tries on other ports.
bring_up() {
	local attempt
	for attempt in 1 2 3; do
		wait_up "$1" && return 0
		if kill -0 "${pid[$1]}" 2>/dev/null; then
			stop "$1"
			return 1
		fi
		wait "${pid[$1]}" 2>/dev/null
		echo "note: server $1 exited before answering (attempt $attempt); trying another port"
		port[$1]=$(free_port)
		launch "$1"
	done
	wait_up "$1"
}

# ---------------------------------------------------------------------------
# Both processes start together on the empty database.
# ---------------------------------------------------------------------------

section "start and migrate"
# To be sure the two really meet at the migration step, a psql session takes
# the migration lock first (its key is PG_MIGRATE_LOCK in store_pg.c), both
# servers start and queue behind it, and then the session goes away.
# Which connection created what is recorded by an event trigger (which only a
# superuser may create; without one the check is left out): all of the
# schema must come from one connection, so from one process.
ddl_log=
if [ "$(sql "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")" = t ] &&
	psql -X -q "$dburl" -v ON_ERROR_STOP=1 >/dev/null 2>>"$tmp/psql.log" <<'SQL'; then
CREATE SCHEMA khien_test;
CREATE TABLE khien_test.ddl (pid INTEGER, tag TEXT, object TEXT);
CREATE FUNCTION khien_test.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO khien_test.ddl SELECT pg_backend_pid(), command_tag, object_identity
        FROM pg_event_trigger_ddl_commands();
END $$;
CREATE EVENT TRIGGER khien_test_ddl ON ddl_command_end EXECUTE FUNCTION khien_test.log_ddl();
SQL
	ddl_log=1
else
	echo "note: not a PostgreSQL superuser; which process created the schema is not checked"
fi
lock_key=
if [ -n "${KHIEN_SRC:-}" ]; then
	lock_key=$(sed -n 's/^#define PG_MIGRATE_LOCK "\([0-9]*\)".*/\1/p' \
		"$KHIEN_SRC/server/store/store_pg.c" 2>/dev/null)
fi
waiting_sql="SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
if [ -n "$lock_key" ]; then
	PGAPPNAME=khien_cluster_holder psql -X -q "$dburl" -c "SELECT pg_advisory_lock($lock_key)" \
		-c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
	holder_pid=$!
	for _ in $(seq 100); do
		[ "$(sql "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND l.granted
			AND a.application_name = 'khien_cluster_holder'")" = 1 ] && break
		sleep 0.1
	done
else
	echo "note: the migration lock's key is unknown (no KHIEN_SRC); the servers just start together"
fi
launch A
launch B
if [ -n "$lock_key" ]; then
	waiting=0
	for _ in $(seq 150); do
		waiting=$(sql "$waiting_sql")
		[ "$waiting" = 2 ] && break
		sleep 0.1
	done
	check "A and B both wait for the migration lock at once ($waiting waiting)" test "$waiting" = 2
	sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'khien_cluster_holder'" >/dev/null
	wait "$holder_pid" 2>/dev/null
	holder_pid=
fi
bring_up A || abort "server A did not come up"
bring_up B || abort "server B did not come up"
echo "A at ${url[A]} (pid ${pid[A]}), B at ${url[B]} (pid ${pid[B]})"

call() { # call SERVER [CURL ARGS...] METHOD PATH
	local srv=$1
	shift
	local n=$#
	local method=${*:n-1:1} path=${*:n:1}
	status=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --cacert "$cacert" \
		-X "$method" "${@:1:n-2}" "${url[$srv]}$path")
}
json_post() { # json_post SERVER [CURL ARGS...] PATH JSON
	local srv=$1
	shift
	local n=$#
	call "$srv" "${@:1:n-2}" -H 'Content-Type: application/json' --data-binary "${@:n:1}" \
		POST "${@:n-1:1}"
}
admin() { # admin SERVER [CURL ARGS...] METHOD PATH: with the administrator's session
	local srv=$1
	shift
	call "$srv" -b "$tmp/cookies" -H "X-CSRF-Token: $csrf" "$@"
}
admin_post() {
	local srv=$1
	shift
	json_post "$srv" -b "$tmp/cookies" -H "X-CSRF-Token: $csrf" "$@"
}
agent() { # agent SERVER NAME [CURL ARGS...] METHOD PATH: as the agent NAME.key/.crt
	local srv=$1 who=$2
	shift 2
	call "$srv" --cert "$tmp/$who.crt" --key "$tmp/$who.key" "$@"
}
agent_post() {
	local srv=$1 who=$2
	shift 2
	json_post "$srv" --cert "$tmp/$who.crt" --key "$tmp/$who.key" "$@"
}

call A GET /health
schema=$(jbody .schema)
jcheck "A answers on PostgreSQL with a schema" '.backend == "postgresql" and .schema >= 1'
call B GET /health
jcheck "B answers at the same schema version" ".backend == \"postgresql\" and .schema == $schema"
check "schema_version holds versions 1..$schema, each once" \
	test "$(sql "SELECT count(*) || ' ' || count(DISTINCT version) || ' ' || min(version) || ' '
		|| max(version) FROM schema_version")" = "$schema $schema 1 $schema"
check "neither server's migration failed" \
	bash -c "! grep -qi 'migration failed' '$tmp/A.log' '$tmp/B.log'"
if [ -n "$ddl_log" ]; then
	ddl=$(sql "SELECT count(DISTINCT pid) || ' ' || count(*) || ' ' || count(DISTINCT object)
		FROM khien_test.ddl WHERE tag = 'CREATE TABLE'")
	read -r ddl_conns ddl_tables ddl_distinct <<<"$ddl"
	check "one connection created all $ddl_tables tables, each once ($ddl)" \
		test "$ddl_conns" = 1 -a "$ddl_tables" -gt 1 -a "$ddl_tables" = "$ddl_distinct"
	sql "DROP EVENT TRIGGER khien_test_ddl; DROP SCHEMA khien_test CASCADE" >/dev/null
fi

# The first administrator: `init` made one in its own database; run again,
# it finds the migrated shared database without users and makes one there.
if ! "$khien" server init --data "$A" >"$tmp/init-A2.out" 2>&1; then
	cat "$tmp/init-A2.out"
	abort "khien server init on the migrated shared database"
fi
password=$(sed -n 's/^admin password: *//p' "$tmp/init-A2.out" | head -n 1)
[ -n "$password" ] || abort "init printed no 'admin password:' line"
check "init on the running cluster's database applied nothing more" \
	test "$(sql "SELECT count(*) FROM schema_version")" = "$schema"

# ---------------------------------------------------------------------------
# Sessions.
# ---------------------------------------------------------------------------

section "sessions"
login_json() { jq -nc --arg u "$1" --arg p "$2" '{username:$u,password:$p}'; }
json_post A -c "$tmp/cookies" /login "$(login_json admin "$password")"
expect_status "admin logs in on A" 200
csrf=$(jbody .csrf)
call B -b "$tmp/cookies" GET /me
expect_status "A's session cookie works on B" 200
jcheck "B knows who it is" '.username == "admin" and .role == "admin"'
json_post B -b "$tmp/cookies" /agencies '{"code":"so-x","name":"Sở X","kind":"department"}'
expect_status "a write on B without the CSRF token" 403
json_post B -b "$tmp/cookies" -H "X-CSRF-Token: ${csrf}x" /agencies \
	'{"code":"so-x","name":"Sở X","kind":"department"}'
expect_status "a write on B with a wrong CSRF token" 403
admin_post B /agencies '{"code":"so-tt","name":"Sở Thông tin","kind":"department"}'
agency=$(jbody .id)
check "a write on B with A's CSRF token creates an agency" \
	test "$status" -ge 200 -a "$status" -lt 300 -a -n "$agency" -a "$agency" != null
admin A GET /agencies
jcheck "A lists the agency B created" "[.items[] | select(.id == $agency and .code == \"so-tt\")] | length == 1"

json_post B -c "$tmp/cookies2" /login "$(login_json admin "$password")"
csrf2=$(jbody .csrf)
call A -b "$tmp/cookies2" -H "X-CSRF-Token: $csrf2" -H 'Content-Type: application/json' \
	--data-binary '{}' POST /logout
check "a session made on B is ended through A" test "$status" -ge 200 -a "$status" -lt 300
call B -b "$tmp/cookies2" GET /me
expect_status "B no longer accepts that session" 401
call B -b "$tmp/cookies" GET /me
expect_status "the other session lives on" 200

# ---------------------------------------------------------------------------
# Enrollment through both, and a single-use token raced through both.
# ---------------------------------------------------------------------------

section "enrollment"
new_token() { # new_token SERVER JSON -> prints "ID TOKEN"
	admin_post "$1" "/agencies/$agency/enroll-tokens" "$2"
	echo "$(jbody .id) $(jbody .token)"
}
make_csr() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$1.key" 2>/dev/null &&
		openssl req -new -key "$tmp/$1.key" -subj "/CN=$1" -out "$tmp/$1.csr" 2>/dev/null
}
# enroll_bg SERVER NAME TOKEN: an enrollment in the background; its reply
# lands in NAME.reply, its status in NAME.status, its pid in $!.
enroll_bg() {
	local body
	body=$(jq -nc --arg t "$3" --rawfile csr "$tmp/$2.csr" --arg h "$2" \
		'{token:$t, csr:$csr, hostname:$h}')
	curl -s -o "$tmp/$2.reply" -w '%{http_code}' --cacert "$cacert" -H 'Content-Type: application/json' \
		--data-binary "$body" "${url[$1]}/enroll" >"$tmp/$2.status" &
}
# enroll SERVER NAME TOKEN: the same in the foreground, as the last reply;
# writes NAME.crt on success.
enroll() {
	enroll_bg "$@"
	wait $!
	status=$(cat "$tmp/$2.status")
	cp "$tmp/$2.reply" "$tmp/body"
	if [ "$status" = 200 ]; then jbody .certificate >"$tmp/$2.crt"; fi
}

read -r token_id token < <(new_token A '{"max_uses":0,"note":"cluster"}')
check "A issues an enrollment token" test -n "$token" -a "$token" != null
make_csr pc1
enroll B pc1 "$token"
expect_status "agent 1 enrolls through B with A's token" 200
m1=$(jbody .machine_id)
make_csr pc2
enroll A pc2 "$token"
expect_status "agent 2 enrolls through A with the same token" 200
m2=$(jbody .machine_id)
check "the two agents are different machines" test -n "$m1" -a -n "$m2" -a "$m1" != "$m2"
check "both certificates chain to the one CA" \
	openssl verify -CAfile "$cacert" "$tmp/pc1.crt" "$tmp/pc2.crt"
admin B GET "/agencies/$agency/enroll-tokens"
jcheck "B counts two uses of the token" "[.items[] | select(.id == $token_id)][0].uses == 2"

# Single-use tokens, each tried by six enrollments at once, three through
# each server: exactly one wins each time, and the losers leave no machine
# behind. Launched together, the requests may still be served one after the
# other, the losers refused by the first look at the token; so in the last
# round a psql session holds the token's row while the six arrive. Each then
# finds the token unused, does all its work and queues to count its use; the
# session lets go, and only the guarded count (api_agent.c, enroll_once) can
# keep the other five out.
hold_row() { # hold_row TOKEN_ID: a psql session holds the row, in a transaction
	mkfifo "$tmp/hold.fifo"
	PGAPPNAME=khien_cluster_row psql -X -q "$dburl" <"$tmp/hold.fifo" >/dev/null 2>&1 &
	holder_pid=$!
	exec 7>"$tmp/hold.fifo"
	echo "BEGIN; SELECT id FROM enroll_tokens WHERE id = $1 FOR NO KEY UPDATE;" >&7
	for _ in $(seq 100); do
		[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'khien_cluster_row'
			AND state = 'idle in transaction'")" = 1 ] && return 0
		sleep 0.1
	done
	return 1
}
release_row() {
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$holder_pid" 2>/dev/null
	holder_pid=
	rm -f "$tmp/hold.fifo"
}
for round in 1 2 3; do
	read -r once_id once < <(new_token B '{"max_uses":1}')
	held=
	if [ "$round" = 3 ]; then
		hold_row "$once_id" && held=1
		check "a psql session holds the single-use token's row" test -n "$held"
	fi
	racers=()
	for n in 1 2 3 4 5 6; do make_csr "race$round-$n"; done
	for n in 1 2 3 4 5 6; do
		if [ $((n % 2)) -eq 1 ]; then srv=A; else srv=B; fi
		enroll_bg "$srv" "race$round-$n" "$once"
		racers+=($!)
	done
	if [ -n "$held" ]; then
		queued=0
		for _ in $(seq 100); do
			queued=$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
				AND wait_event_type = 'Lock' AND application_name <> 'khien_cluster_row'")
			[ "$queued" = 6 ] && break
			sleep 0.1
		done
		check "all six enrollments got past the token check and queue on its row ($queued)" \
			test "$queued" = 6
	fi
	[ -n "$holder_pid" ] && release_row
	wait "${racers[@]}"
	codes=$(for f in "$tmp"/race"$round"-*.status; do
		cat "$f"
		echo
	done | sort | tr '\n' ' ')
	check "single-use token, 6 enrollments at once through A and B: one succeeds ($codes)" \
		test "$codes" = "200 403 403 403 403 403 "
	admin A GET "/agencies/$agency/enroll-tokens"
	jcheck "the single-use token shows one use (round $round)" \
		"[.items[] | select(.id == $once_id)][0] | .uses == 1 and .active == false"
done
check "the database holds one machine per single-use token" \
	test "$(sql "SELECT count(*) FROM machines WHERE hostname LIKE 'race%'")" = 3

# ---------------------------------------------------------------------------
# Check-in through the other server.
# ---------------------------------------------------------------------------

section "check-in"
inventory() { # inventory HOSTNAME
	jq -nc --arg h "$1" '{hostname:$h, os:"Debian GNU/Linux 12", kernel:"6.1.0-26-amd64",
		arch:"x86_64", ips:["10.9.8.7"], macs:["52:54:00:12:34:56"], cpus:2,
		mem_bytes:4294967296, agent_version:"0.1.0", db_version:0, db_time:0, rtp:true}'
}
agent_post A pc1 /agent/checkin "$(inventory cluster-pc1)"
expect_status "agent 1 (enrolled through B) checks in through A" 200
agent_post B pc2 /agent/checkin "$(inventory cluster-pc2)"
expect_status "agent 2 (enrolled through A) checks in through B" 200
for srv in A B; do
	admin "$srv" GET '/machines?per_page=500'
	jcheck "$srv lists both machines with their check-in" \
		"([.items[] | select(.id == \"$m1\" and .hostname == \"cluster-pc1\" and .last_seen > 0)]
		 | length == 1) and ([.items[] | select(.id == \"$m2\" and .hostname == \"cluster-pc2\"
		 and .last_seen > 0)] | length == 1)"
done

# ---------------------------------------------------------------------------
# Event batches: a retry through the other server, and a batch sent through
# both at once, are each stored once.
# ---------------------------------------------------------------------------

now=$(date +%s)
batch() { # batch PREFIX FILE: three events, one a detection, gzip'd
	jq -nc --arg p "$1" --argjson now "$now" '{events: [
		{id:"\($p)-1", type:"scan_started", at:$now},
		{id:"\($p)-2", type:"detection", at:($now + 1), path:"/home/a/eicar.com",
		 sha256:"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
		 md5:"44d88612fea8a8f36de82e1278abb02f", size:68,
		 signature:"Win.Test.EICAR_HDB-1", action:"quarantined"},
		{id:"\($p)-3", type:"scan_finished", at:($now + 2), files:12}]}' | gzip -c >"$2"
}
post_batch() { # post_batch SERVER AGENT FILE
	agent "$1" "$2" -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
		--data-binary "@$3" POST /agent/events
}
batch c1 "$tmp/batch1.gz"
post_batch A pc1 "$tmp/batch1.gz"
expect_status "agent 1 posts a batch through A" 200
jcheck "all three events are accepted" '.accepted == 3 and .duplicates == 0'
post_batch B pc1 "$tmp/batch1.gz"
expect_status "the same batch retried through B" 200
jcheck "the retry is all duplicates" '.accepted == 0 and .duplicates == 3'
for srv in A B; do
	admin "$srv" GET "/detections?machine=$m1"
	jcheck "$srv shows one detection for agent 1" '.total == 1 and (.items | length) == 1'
done

batch c2 "$tmp/batch2.gz"
pids=()
for srv in A B; do
	curl -s -o "$tmp/ev-$srv.reply" -w '%{http_code}' --cacert "$cacert" \
		--cert "$tmp/pc2.crt" --key "$tmp/pc2.key" -H 'Content-Type: application/json' \
		-H 'Content-Encoding: gzip' --data-binary "@$tmp/batch2.gz" \
		"${url[$srv]}/agent/events" >"$tmp/ev-$srv.status" &
	pids+=($!)
done
wait "${pids[@]}"
check "one batch posted through A and B at once: both answered 200" \
	test "$(cat "$tmp/ev-A.status") $(cat "$tmp/ev-B.status")" = "200 200"
check "between them, 3 accepted and 3 duplicates" \
	test "$(jq -rs '"\(map(.accepted) | add) \(map(.duplicates) | add)"' \
		"$tmp/ev-A.reply" "$tmp/ev-B.reply")" = "3 3"
for srv in B A; do
	admin "$srv" GET "/detections?machine=$m2"
	jcheck "$srv shows one detection for agent 2" '.total == 1'
done
check "the database holds each event once" \
	test "$(sql "SELECT count(*) FROM events WHERE machine_id IN ('$m1', '$m2')")" = 6

# ---------------------------------------------------------------------------
# Tasks.
# ---------------------------------------------------------------------------

section "tasks"
admin_post B "/machines/$m1/tasks" '{"kind":"scan","args":{"paths":["/srv"]}}'
check "a scan task is created on B" test "$status" -ge 200 -a "$status" -lt 300
task=$(jbody .id)
agent_post A pc1 /agent/checkin "$(inventory cluster-pc1)"
jcheck "check-in through A counts the pending task" '.tasks_pending == 1'
agent A pc1 GET /agent/tasks
expect_status "the agent fetches its tasks through A" 200
jcheck "the scan arrives with its arguments" \
	".items | length == 1 and .[0].id == $task and .[0].kind == \"scan\" and .[0].args.paths == [\"/srv\"]"
agent B pc1 GET /agent/tasks
jcheck "B does not hand the fetched task out again" '.items | length == 0'
agent_post B pc1 "/agent/tasks/$task/result" '{"state":"done","progress":100,"result":{"files":7,"found":0}}'
expect_status "the result is posted through B" 200
admin A GET "/machines/$m1/tasks"
jcheck "A shows the task done with its result" \
	"[.items[] | select(.id == $task)][0] | .state == \"done\" and .progress == 100 and .result.files == 7"

# ---------------------------------------------------------------------------
# Login rate limiting.
# ---------------------------------------------------------------------------

section "login rate limit"
clerk_pw="clerk-pass-$RANDOM$RANDOM"
admin_post B /users "$(jq -nc --arg p "$clerk_pw" '{username:"clerk",password:$p,role:"auditor"}')"
check "a second user is created on B" test "$status" -ge 200 -a "$status" -lt 300
json_post A /login "$(login_json clerk "$clerk_pw")"
expect_status "the new user logs in on A" 200
n=0
for srv in A B A B A; do
	n=$((n + 1))
	json_post "$srv" /login "$(login_json clerk "wrong-password-$n")"
	expect_status "failed login $n of 5, through $srv" 401
done
json_post B /login "$(login_json clerk "$clerk_pw")"
expect_status "after 5 failures split over A and B, B locks the user" 429
json_post A /login "$(login_json clerk "$clerk_pw")"
expect_status "A locks the user too" 429
json_post A -c "$tmp/cookies3" /login "$(login_json admin "$password")"
expect_status "another user still logs in" 200

# ---------------------------------------------------------------------------
# Bundles.
# ---------------------------------------------------------------------------

section "bundles"
printf '44d88612fea8a8f36de82e1278abb02f:68:Khien.Test.Cluster\n' >"$tmp/x.hdb"
admin A -H 'Content-Type: application/octet-stream' --data-binary "@$tmp/x.hdb" \
	PUT "/signatures/sources/upload?kind=clamav&name=x.hdb"
check "a hash-list source is uploaded on A" test "$status" -ge 200 -a "$status" -lt 300
admin_post A /signatures/publish '{}'
expect_status "a bundle is published on A" 200
version=$(jbody .version)
sha=$(jbody .sha256)
check "the publication names a version and a SHA-256" \
	test "$version" -ge 1 -a "${#sha}" = 64
agent B pc1 GET /agent/bundles/latest
expect_status "B knows the latest bundle" 200
jcheck "with A's version and SHA-256" ".version == $version and .sha256 == \"$sha\""
# fetch SERVER FILE [CURL ARGS...]: the bundle's bytes as agent 1.
fetch() {
	local srv=$1 out=$2
	shift 2
	status=$(curl -s -o "$out" -D "$tmp/headers" -w '%{http_code}' --cacert "$cacert" \
		--cert "$tmp/pc1.crt" --key "$tmp/pc1.key" "$@" "${url[$srv]}/agent/bundles/$version")
}
fetch B "$tmp/bundle-B.bin"
expect_status "the bundle downloads through B" 200
check "B's bytes have the published SHA-256" \
	test "$(openssl dgst -sha256 -r "$tmp/bundle-B.bin" | cut -d' ' -f1)" = "$sha"
check "B's ETag is the quoted SHA-256" grep -qi "^etag: \"$sha\"" "$tmp/headers"
fetch A "$tmp/bundle-A.bin"
check "A serves the same bytes" cmp "$tmp/bundle-A.bin" "$tmp/bundle-B.bin"
fetch B "$tmp/body" -H "If-None-Match: \"$sha\""
expect_status "If-None-Match on B" 304
agent_post B pc2 /agent/checkin "$(inventory cluster-pc2)"
jcheck "check-in through B advertises the bundle" ".bundle.version == $version and .bundle.sha256 == \"$sha\""

# ---------------------------------------------------------------------------
# A stops; B carries on; A comes back.
# ---------------------------------------------------------------------------

section "failover"
stop A
check "A stops on SIGTERM with status 0 ($stop_rc)" test "$stop_rc" = 0
check "A's log says it stopped on the signal" grep -q "signal 15" "$tmp/A.log"
call A GET /health
check "A no longer answers" test "$status" = 000
call B -b "$tmp/cookies" GET /me
expect_status "B keeps the session made on A" 200
call B GET /health
jcheck "B is healthy" '.status == "ok"'
agent_post B pc1 /agent/checkin "$(inventory cluster-pc1)"
expect_status "agent 1 checks in through B" 200
fetch B "$tmp/bundle-B2.bin"
check "B still serves the bundle" test "$status" = 200 -a -s "$tmp/bundle-B2.bin"
batch c3 "$tmp/batch3.gz"
post_batch B pc1 "$tmp/batch3.gz"
jcheck "B takes a new batch" '.accepted == 3'
admin B GET "/detections?machine=$m1"
jcheck "B shows it" '.total == 2'
admin_post B "/machines/$m2/tasks" '{"kind":"scan","args":{"paths":["/tmp"]}}'
check "B queues a task while A is down" test "$status" -ge 200 -a "$status" -lt 300
task2=$(jbody .id)
make_csr pc5
enroll B pc5 "$token"
expect_status "B enrolls a machine while A is down" 200
json_post B -c "$tmp/cookies4" /login "$(login_json admin "$password")"
expect_status "B logs a user in while A is down" 200

launch A
if bring_up A; then
	pass "A starts again"
else
	fail "A starts again"
fi
call A GET /health
jcheck "A is back at the same schema" ".status == \"ok\" and .schema == $schema"
check "the restart applied no migration" \
	test "$(sql "SELECT count(*) FROM schema_version")" = "$schema"
call A -b "$tmp/cookies" GET /me
expect_status "the first session still works on A" 200
call A -b "$tmp/cookies4" GET /me
expect_status "the session made on B while A was down works on A" 200
agent A pc2 GET /agent/tasks
jcheck "agent 2 fetches the task B queued while A was down" \
	".items | length == 1 and .[0].id == $task2"
agent_post A pc5 /agent/checkin "$(inventory cluster-pc5)"
expect_status "the machine B enrolled while A was down checks in through A" 200
admin A GET "/detections?machine=$m1"
jcheck "A shows the batch B took while A was down" '.total == 2'
call B GET /health
expect_status "B still answers" 200

stop A
stop B
finish
