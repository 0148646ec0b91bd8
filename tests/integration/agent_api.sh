#!/usr/bin/env bash
# The agent side of the server's HTTP API (docs/api/agent.md), driven by a
# real `khien server` on loopback and an "agent" made of curl and openssl
# that uses nothing but the documented calls: enrollment with a token, check-in,
# gzip'd event batches that are safe to retry, tasks and their results, bundle
# download with ETag, and the refusals (no client certificate, superseded
# certificate, revoked / expired / used-up token, oversized and malformed
# bodies). The administrator's side (agencies, tokens, tasks, publishing) uses
# the dashboard API with a session cookie, as a script would.
#
# The whole suite runs once on SQLite and once on PostgreSQL: a fresh
# database on the server KHIEN_PG_URL names, else a throwaway cluster from
# scripts/pg-throwaway; without PostgreSQL installed only the SQLite pass
# runs, and the output says so. Skips (77) only when a tool is missing or a
# part of the server it needs is still a placeholder in the source tree.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
khien="$KHIEN_BIN/khien"
export LC_ALL=C

for tool in curl jq openssl gzip; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed"
		exit 77
	fi
done
if [ ! -x "$khien" ]; then
	echo "FAIL: $khien does not exist or is not executable (build the khien-cli target)"
	exit 1
fi
if ! "$khien" server --help >/dev/null 2>&1; then
	echo "SKIP: this khien has no working 'server' subcommand yet"
	exit 77
fi
if [ -n "${KHIEN_SRC:-}" ]; then
	stubs=$(grep -l "STUB: replaced by the real implementation" \
		"$KHIEN_SRC"/server/*.c "$KHIEN_SRC"/server/store/*.c "$KHIEN_SRC"/cli/cmd_server.c \
		2>/dev/null | sed "s|^$KHIEN_SRC/||" | tr '\n' ' ')
	if [ -n "$stubs" ]; then
		echo "SKIP: parts of the server are still placeholders: $stubs"
		exit 77
	fi
fi

tmp=$(mktemp -d)
server_pid= pg_dir= pg_drop=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	server_pid=
}
cleanup() {
	stop_server
	if [ -n "$pg_drop" ]; then
		psql -X -q "$KHIEN_PG_URL" -c "DROP DATABASE IF EXISTS $pg_drop" >/dev/null 2>&1
	fi
	if [ -n "$pg_dir" ]; then
		"$KHIEN_SRC/scripts/pg-throwaway" stop "$pg_dir" >/dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

failures=0 checks=0
backend=
ok() { checks=$((checks + 1)); echo "ok [$backend]: $1"; }
fail() {
	failures=$((failures + 1))
	echo "FAIL [$backend]: $1"
	echo "  last reply: HTTP $status"
	head -c 600 "$tmp/body" 2>/dev/null | sed 's/^/  | /'
	echo
}
# check DESCRIPTION COMMAND...: runs the command (usually a test or jq -e).
check() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}
# expect_status DESCRIPTION CODE: the last reply's status.
expect_status() {
	if [ "$status" = "$2" ]; then ok "$1 (HTTP $2)"; else fail "$1: expected HTTP $2"; fi
}
# jbody FILTER: runs jq -r on the last reply.
jbody() { jq -r "$1" "$tmp/body" 2>/dev/null; }
# jcheck DESCRIPTION FILTER: the filter is true for the last reply.
jcheck() {
	if jq -e "$2" "$tmp/body" >/dev/null 2>&1; then ok "$1"; else fail "$1: '$2' is not true"; fi
}

# ---------------------------------------------------------------------------
# Server.
# ---------------------------------------------------------------------------

# start_server DATABASE_URL: initialises $data for that database and runs
# the server on a free port; sets $password, $url and $server_pid. Returns 1
# (after printing why) when it cannot.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_server() {
	local port attempt
	# A free port: start from a random base, skip ports something answers
	# on, and move on if the server still loses a race for one.
	port=$((20000 + RANDOM % 30000))
	while port_busy "$port"; do port=$((port + 7)); done
	if ! "$khien" server init --data "$data" --database "$1" --listen "127.0.0.1:$port" \
		>"$data.init.out" 2>&1; then
		echo "FAIL [$backend]: khien server init failed:"
		cat "$data.init.out"
		return 1
	fi
	password=$(sed -n 's/^admin password: *//p' "$data.init.out" | head -n 1)
	if [ -z "$password" ]; then
		echo "FAIL [$backend]: khien server init printed no 'admin password:' line:"
		cat "$data.init.out"
		return 1
	fi
	url=
	for attempt in $(seq 0 9); do
		if [ "$attempt" -gt 0 ]; then
			port=$((port + 7))
			port_busy "$port" && continue
		fi
		"$khien" server run --data "$data" --listen "127.0.0.1:$port" >"$data.log" 2>&1 &
		server_pid=$!
		for _ in $(seq 150); do
			kill -0 "$server_pid" 2>/dev/null || break
			if curl -s -o /dev/null --cacert "$data/ca.crt" "https://127.0.0.1:$port/api/v1/health"; then
				url="https://127.0.0.1:$port/api/v1"
				break
			fi
			sleep 0.1
		done
		[ -n "$url" ] && break
		stop_server
	done
	if [ -z "$url" ]; then
		echo "FAIL [$backend]: the server did not come up; its log:"
		cat "$data.log"
		return 1
	fi
	echo "[$backend] server at $url (pid $server_pid)"
}

# age_token ID: makes an enrollment token expired. Tokens live at least 60 s,
# so the test changes the row instead of waiting. Returns 1 when the
# database's command-line client is not installed.
age_token() {
	local sql="UPDATE enroll_tokens SET expires_at = 1 WHERE id = $1"
	case $backend in
	sqlite) command -v sqlite3 >/dev/null 2>&1 &&
		sqlite3 -cmd ".timeout 5000" "${dburl#sqlite://}" "$sql" ;;
	postgresql) command -v psql >/dev/null 2>&1 && psql -X -q "$dburl" -c "$sql" >/dev/null ;;
	esac
}

status=0
# call [CURL ARGS...] METHOD PATH: the reply lands in $tmp/body, its status
# in $status, its headers in $tmp/headers.
call() {
	local n=$#
	local method=${@:n-1:1} path=${@:n:1}
	status=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --cacert "$data/ca.crt" \
		-X "$method" "${@:1:n-2}" "$url$path")
}
json_post() { # json_post [CURL ARGS...] PATH JSON
	local n=$#
	call "${@:1:n-2}" -H 'Content-Type: application/json' --data-binary "${@:n:1}" POST "${@:n-1:1}"
}
admin() { call -b "$tmp/cookies" -H "X-CSRF-Token: $csrf" "$@"; }
admin_post() { json_post -b "$tmp/cookies" -H "X-CSRF-Token: $csrf" "$@"; }
# agent NAME ...: as the agent whose key and certificate are NAME.key/.crt.
agent() {
	local who=$1
	shift
	call --cert "$tmp/$who.crt" --key "$tmp/$who.key" "$@"
}
agent_post() {
	local who=$1
	shift
	json_post --cert "$tmp/$who.crt" --key "$tmp/$who.key" "$@"
}

# suite BACKEND DATABASE_URL: everything below, against a fresh server.
suite() {
	backend=$1 dburl=$2 data="$tmp/$1"
	rm -f "$tmp/cookies"
	start_server "$dburl" || { failures=$((failures + 1)); return; }
	# ---------------------------------------------------------------------------
	# Public calls.
	# ---------------------------------------------------------------------------

	call GET /health
	expect_status "health answers" 200
	jcheck "health says ok, names the version, schema and backend" \
		".status == \"ok\" and (.version | length > 0) and .schema >= 1 and .backend == \"$backend\""
	call GET /bundle-key
	expect_status "bundle-key answers without a certificate" 200
	jcheck "bundle-key has a 44-character key and a key id" \
		'(.public_key | length) == 44 and (.key_id | length) > 0'
	bundle_key=$(jbody .public_key)

	# ---------------------------------------------------------------------------
	# The administrator: a session, two agencies, enrollment tokens.
	# ---------------------------------------------------------------------------

	json_post -c "$tmp/cookies" /login "$(jq -nc --arg p "$password" '{username:"admin",password:$p}')"
	expect_status "admin logs in" 200
	csrf=$(jbody .csrf)
	admin_post /agencies '{"code":"so-tt","name":"Sở Thông tin","kind":"department"}'
	agency_a=$(jbody .id)
	check "agency A created" test "$status" -ge 200 -a "$status" -lt 300 -a -n "$agency_a"
	admin_post /agencies '{"code":"ubnd-x","name":"UBND huyện X","kind":"district"}'
	agency_b=$(jbody .id)
	check "agency B created" test -n "$agency_b" -a "$agency_b" != null

	new_token() { # new_token AGENCY JSON -> prints "ID TOKEN"
		admin_post "/agencies/$1/enroll-tokens" "$2"
		echo "$(jbody .id) $(jbody .token)"
	}
	read -r _ token_a < <(new_token "$agency_a" '{"max_uses":0,"note":"integration"}')
	check "an enrollment token is issued" test -n "$token_a" -a "$token_a" != null
	read -r _ token_b < <(new_token "$agency_b" '{"max_uses":0}')
	read -r _ token_once < <(new_token "$agency_a" '{"max_uses":1}')
	read -r revoked_id token_revoked < <(new_token "$agency_a" '{}')
	admin DELETE "/enroll-tokens/$revoked_id"
	check "a token is revoked" test "$status" -ge 200 -a "$status" -lt 300
	read -r expired_id token_expired < <(new_token "$agency_a" '{"expires_in":60}')

	# ---------------------------------------------------------------------------
	# Enrollment.
	# ---------------------------------------------------------------------------

	# make_csr NAME: a P-256 key NAME.key and a request NAME.csr.
	make_csr() {
		openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$1.key" 2>/dev/null &&
			openssl req -new -key "$tmp/$1.key" -subj "/CN=$1" -out "$tmp/$1.csr" 2>/dev/null
	}
	# enroll NAME TOKEN HOSTNAME MACHINE_KEY [MACHINE_ID]: posts NAME.csr; on
	# success writes NAME.crt.
	enroll() {
		local body
		body=$(jq -nc --arg t "$2" --rawfile csr "$tmp/$1.csr" --arg h "$3" --arg k "$4" \
			--arg id "${5:-}" '{token:$t, csr:$csr, hostname:$h}
			+ (if $k == "" then {} else {machine_key:$k} end)
			+ (if $id == "" then {} else {machine_id:$id} end)')
		json_post /enroll "$body"
		if [ "$status" = 200 ]; then jbody .certificate >"$tmp/$1.crt"; fi
	}

	machine_key="mk-$(openssl rand -hex 16)"
	make_csr pc1
	enroll pc1 "$token_a" pc-01 "$machine_key"
	expect_status "enrollment with a valid token" 200
	machine=$(jbody .machine_id)
	check "enrollment returns a UUID machine id" \
		grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' <<<"$machine"
	jcheck "enrollment returns the CA, the bundle key, the agency and the interval" \
		"(.ca | startswith(\"-----BEGIN CERTIFICATE-----\")) and .bundle_key == \"$bundle_key\"
		 and (.key_id | length) > 0 and .agency.id == $agency_a and .agency.code == \"so-tt\"
		 and .checkin_interval > 0"
	check "the issued certificate chains to the CA and names the machine" \
		bash -c "openssl verify -CAfile '$data/ca.crt' '$tmp/pc1.crt' &&
			openssl x509 -in '$tmp/pc1.crt' -noout -subject | grep -q '$machine'"

	# A second computer with the same hostname is a different machine, not an error.
	make_csr pc2
	enroll pc2 "$token_once" pc-01 ""
	expect_status "a duplicate hostname enrolls (single-use token)" 200
	machine2=$(jbody .machine_id)
	check "the duplicate hostname gets its own machine id" test "$machine2" != "$machine"

	make_csr pc3
	enroll pc3 "$token_once" pc-03 ""
	expect_status "a used-up token is refused" 403
	jcheck "the refusal says the token is used up" '.message | test("used")'
	enroll pc3 "$token_revoked" pc-03 ""
	expect_status "a revoked token is refused" 403
	jcheck "the refusal says the token was revoked" '.message | test("revoked")'
	enroll pc3 "kht_0000000000000000000000000000000000000000000000000000000000000000" pc-03 ""
	expect_status "an unknown token is refused" 401
	if age_token "$expired_id"; then
		enroll pc3 "$token_expired" pc-03 ""
		expect_status "an expired token is refused" 403
		jcheck "the refusal says the token expired" '.message | test("expired")'
	else
		echo "note [$backend]: no command-line client for the database; the expired-token check is left out"
	fi
	json_post /enroll "$(jq -nc --arg t "$token_a" '{token:$t, csr:"not a CSR", hostname:"x"}')"
	expect_status "a malformed CSR is refused" 400
	jcheck "the refusal names the csr field" '.field == "csr"'

	# ---------------------------------------------------------------------------
	# Check-in.
	# ---------------------------------------------------------------------------

	inventory=$(jq -nc --arg k "$machine_key" '{hostname:"pc-01", os:"Debian GNU/Linux 12",
		kernel:"6.1.0-26-amd64", arch:"x86_64", ips:["10.1.2.3","fe80::1%eth0"],
		macs:["52:54:00:12:34:56"], cpu:"Intel Xeon", cpus:4, mem_bytes:8589934592,
		agent_version:"0.1.0", db_version:0, db_time:0, rtp:true, firewall:false,
		last_full_scan:1795000000, machine_key:$k}')
	agent_post pc1 /agent/checkin "$inventory"
	expect_status "check-in with the client certificate" 200
	jcheck "check-in answers time, interval, pending tasks and no bundle yet" \
		'.server_time > 1700000000 and .checkin_interval > 0 and .tasks_pending == 0 and .bundle == null'
	jcheck "check-in carries the default agent policy and its version" \
		'.policy.rtp.action == "quarantine" and .policy.update_interval_s == 3600
		 and (.policy_version | test("^[0-9a-f]{16}$"))'
	policy_version=$(jbody .policy_version)
	admin -H 'Content-Type: application/json' --data-binary '{"rtp":{"action":"block"}}' \
		PUT "/agencies/$agency_a/policy"
	expect_status "the administrator sets agency A's agent policy" 200
	agent_post pc1 /agent/checkin "$inventory"
	jcheck "the next check-in carries that policy with a new version" \
		".policy.rtp.action == \"block\" and .policy_version != \"$policy_version\""
	admin DELETE "/agencies/$agency_a/policy"
	expect_status "the policy is removed again" 200
	admin GET "/machines/$machine"
	jcheck "the dashboard shows the inventory, without the hardware key" \
		'.hostname == "pc-01" and .os == "Debian GNU/Linux 12" and (.ips | tostring | test("10.1.2.3"))
		 and .inventory.cpus == 4 and .inventory.machine_key == null'

	call -H 'Content-Type: application/json' --data-binary "$inventory" POST /agent/checkin
	expect_status "check-in without a client certificate" 401
	call GET /agent/tasks
	expect_status "tasks without a client certificate" 401
	call -H 'Content-Type: application/json' --data-binary '{"events":[]}' POST /agent/events
	expect_status "events without a client certificate" 401

	agent_post pc1 /agent/checkin '{"hostname":5}'
	expect_status "a mistyped inventory field" 400
	jcheck "the refusal names the field" '.field == "hostname"'
	agent_post pc1 /agent/checkin "$(jq -nc '{ips: [range(65) | "10.0.0.\(.)"]}')"
	expect_status "more than 64 addresses" 400

	# ---------------------------------------------------------------------------
	# Events.
	# ---------------------------------------------------------------------------

	now=$(date +%s)
	jq -nc --argjson now "$now" '{events: [
		{id:"it-1", type:"scan_started", at:$now},
		{id:"it-2", type:"detection", at:($now + 1), path:"/home/a/eicar.com",
		 sha256:"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
		 md5:"44d88612fea8a8f36de82e1278abb02f", size:68,
		 signature:"Win.Test.EICAR_HDB-1", action:"quarantined"},
		{id:"it-3", type:"scan_finished", at:($now + 2), files:12}]}' | gzip -c >"$tmp/batch.gz"
	post_batch() {
		agent pc1 -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
			--data-binary "@$tmp/batch.gz" POST /agent/events
	}
	post_batch
	expect_status "a gzip'd event batch" 200
	jcheck "every event is accepted" '.accepted == 3 and .duplicates == 0 and (.rejected | length) == 0'
	post_batch
	expect_status "the same batch again" 200
	jcheck "the retry is all duplicates" '.accepted == 0 and .duplicates == 3'
	admin GET "/detections?machine=$machine"
	jcheck "one detection, with its family, in the machine's agency" \
		".total == 1 and .items[0].family == \"Win.Test.EICAR_HDB\""

	agent_post pc1 /agent/events "$(jq -nc --argjson now "$now" '{events: [
		{id:"it-4", type:"rtp_off", at:$now}, {id:"bad id", type:"rtp_off", at:$now},
		{id:"it-5", type:"detection", at:$now}]}')"
	expect_status "a batch with invalid events" 200
	jcheck "valid events are kept and invalid ones listed by index" \
		'.accepted == 1 and (.rejected | map(.index)) == [1, 2] and .rejected[1].id == "it-5"'
	agent_post pc1 /agent/events "$(jq -nc '{events: [range(1001) | {id:"x\(.)", type:"rtp_off", at:1800000000}]}')"
	expect_status "a batch of 1001 events" 413
	agent_post pc1 /agent/events '{"events": [1, 2,'
	expect_status "malformed JSON" 400
	jcheck "the refusal names line and column" '.message | test("line [0-9]+, column [0-9]+")'

	head -c $((9 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$tmp/big.json"
	agent pc1 -H 'Content-Type: application/json' --data-binary "@$tmp/big.json" POST /agent/events
	expect_status "a 9 MiB body" 413
	gzip -c "$tmp/big.json" >"$tmp/big.json.gz"
	agent pc1 -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' \
		--data-binary "@$tmp/big.json.gz" POST /agent/events
	expect_status "a gzip body that inflates to 9 MiB" 413

	# ---------------------------------------------------------------------------
	# Tasks.
	# ---------------------------------------------------------------------------

	admin_post "/machines/$machine/tasks" '{"kind":"scan","args":{"paths":["/home"]}}'
	check "the administrator queues a scan" test "$status" -ge 200 -a "$status" -lt 300
	task=$(jbody .id)
	agent_post pc1 /agent/checkin "$inventory"
	jcheck "check-in counts the pending task" '.tasks_pending == 1'
	agent pc1 GET /agent/tasks
	expect_status "the agent fetches its tasks" 200
	jcheck "the task arrives with its arguments" \
		".items | length == 1 and .[0].id == $task and .[0].kind == \"scan\" and .[0].args.paths == [\"/home\"]"
	agent pc1 GET /agent/tasks
	jcheck "a fetched task is not handed out again" '.items | length == 0'
	agent pc2 GET /agent/tasks
	jcheck "another machine does not see it" '.items | length == 0'
	agent_post pc2 "/agent/tasks/$task/result" '{"state":"done"}'
	expect_status "another machine cannot report on it" 404
	agent_post pc1 "/agent/tasks/$task/result" '{"state":"running","progress":50}'
	expect_status "progress is reported" 200
	agent_post pc1 "/agent/tasks/$task/result" '{"state":"running","progress":150}'
	expect_status "progress over 100" 400
	agent_post pc1 "/agent/tasks/$task/result" '{"state":"done","progress":100,"result":{"files":12,"found":1}}'
	expect_status "the result is reported" 200
	jcheck "the answer is ok" '.ok == true'
	agent_post pc1 "/agent/tasks/$task/result" '{"state":"done","progress":100,"result":{"files":12,"found":1}}'
	expect_status "the same result again (a retry) is fine" 200
	agent_post pc1 "/agent/tasks/$task/result" '{"state":"failed"}'
	expect_status "a contradicting result" 409
	admin GET "/machines/$machine/tasks"
	jcheck "the dashboard sees the task done" \
		"[.items[] | select(.id == $task)][0] | .state == \"done\" and .progress == 100"

	# ---------------------------------------------------------------------------
	# Bundles.
	# ---------------------------------------------------------------------------

	agent pc1 GET /agent/bundles/latest
	expect_status "no bundle published yet" 404
	printf 'Khien.Test.Integration:0:*:4b4849454e2d54455354\n' >"$tmp/test.ndb"
	admin -H 'Content-Type: application/octet-stream' --data-binary "@$tmp/test.ndb" \
		PUT "/signatures/sources/upload?kind=clamav&name=test.ndb"
	check "a signature source is uploaded" test "$status" -ge 200 -a "$status" -lt 300
	admin_post /signatures/publish '{}'
	expect_status "a bundle is published" 200
	version=$(jbody .version)
	agent pc1 GET /agent/bundles/latest
	expect_status "the latest bundle" 200
	jcheck "its metadata" ".version == $version and (.sha256 | length) == 64 and .size > 0"
	sha=$(jbody .sha256)
	status=$(curl -s -o "$tmp/bundle.bin" -D "$tmp/headers" -w '%{http_code}' --cacert "$data/ca.crt" \
		--cert "$tmp/pc1.crt" --key "$tmp/pc1.key" "$url/agent/bundles/$version")
	expect_status "the bundle downloads" 200
	check "the bytes match the advertised SHA-256" \
		test "$(openssl dgst -sha256 -r "$tmp/bundle.bin" | cut -d' ' -f1)" = "$sha"
	check "the ETag is the quoted SHA-256" grep -qi "^etag: \"$sha\"" "$tmp/headers"
	agent pc1 -H "If-None-Match: \"$sha\"" GET "/agent/bundles/$version"
	expect_status "If-None-Match with the current ETag" 304
	agent pc1 GET "/agent/bundles/$((version + 100))"
	expect_status "an unknown version" 404
	agent_post pc1 /agent/checkin "$inventory"
	jcheck "check-in advertises the bundle" ".bundle.version == $version and .bundle.sha256 == \"$sha\""

	# ---------------------------------------------------------------------------
	# Re-enrollment: same hardware key, new key pair, token of another agency.
	# ---------------------------------------------------------------------------

	cp "$tmp/pc1.crt" "$tmp/old.crt"
	cp "$tmp/pc1.key" "$tmp/old.key"
	make_csr pc1
	enroll pc1 "$token_b" pc-01 "$machine_key"
	expect_status "re-enrollment" 200
	jcheck "the machine keeps its id and moves to the token's agency" \
		".machine_id == \"$machine\" and .agency.id == $agency_b"
	agent_post old /agent/checkin "$inventory"
	expect_status "the superseded certificate" 401
	agent_post pc1 /agent/checkin "$inventory"
	expect_status "the new certificate" 200
	admin GET "/machines/$machine"
	jcheck "the dashboard shows the machine in its new agency" \
		"(.agency.id // .agency_id) == $agency_b"
	# Re-enrollment by machine id into the token's subtree: the machine stays
	# in the sub-agency an officer moved it to.
	admin_post /agencies "{\"parent_id\":$agency_a,\"code\":\"so-tt-p1\",\"name\":\"Phòng 1\"}"
	agency_c=$(jbody .id)
	admin_post "/machines/$machine2/move" "{\"agency_id\":$agency_c}"
	check "a machine is moved into a sub-agency" test "$status" -ge 200 -a "$status" -lt 300
	cp "$tmp/pc2.crt" "$tmp/old2.crt"
	cp "$tmp/pc2.key" "$tmp/old2.key"
	make_csr pc2
	enroll pc2 "$token_a" pc-01 "" "$machine2"
	expect_status "re-enrollment by machine id" 200
	jcheck "the machine keeps its id and stays in the sub-agency" \
		".machine_id == \"$machine2\" and .reenrolled == true and .agency.id == $agency_c"
	agent_post old2 /agent/checkin '{}'
	expect_status "its superseded certificate" 401
	agent_post pc2 /agent/checkin '{}'
	expect_status "its new certificate" 200

	admin GET "/audit?action=machine.enroll"
	jcheck "enrollments are in the audit log" \
		"[.items[] | select(.target == \"machine:$machine\")] | length >= 2"
	stop_server
}

suite sqlite "sqlite://$tmp/sqlite/khien.db"

# PostgreSQL: a fresh database on KHIEN_PG_URL's server, else a throwaway
# cluster; left out (with a note) when neither can be had.
pg_url=
if [ -n "${KHIEN_PG_URL:-}" ]; then
	pg_drop="khien_agent_api_$$_$RANDOM"
	if psql -X -q "$KHIEN_PG_URL" -c "CREATE DATABASE $pg_drop" >/dev/null 2>"$tmp/pg.err"; then
		pg_url="${KHIEN_PG_URL%/*}/$pg_drop"
	else
		echo "FAIL: cannot create a database on KHIEN_PG_URL:"
		cat "$tmp/pg.err"
		failures=$((failures + 1))
		pg_drop=
	fi
elif [ -n "${KHIEN_SRC:-}" ] && [ -x "$KHIEN_SRC/scripts/pg-throwaway" ]; then
	pg_dir=$(mktemp -d /tmp/khpg.XXXXXX)
	pg_url=$("$KHIEN_SRC/scripts/pg-throwaway" start "$pg_dir" 2>"$tmp/pg.err")
	pg_rc=$?
	if [ $pg_rc -eq 77 ]; then
		echo "note: PostgreSQL is not installed; the PostgreSQL pass is left out ($(tail -n 1 "$tmp/pg.err"))"
		pg_url=
	elif [ $pg_rc -ne 0 ]; then
		echo "FAIL: scripts/pg-throwaway could not start a cluster:"
		cat "$tmp/pg.err"
		failures=$((failures + 1))
		pg_url=
	fi
else
	echo "note: neither KHIEN_PG_URL nor KHIEN_SRC is set; the PostgreSQL pass is left out"
fi
if [ -n "$pg_url" ]; then
	suite postgresql "$pg_url"
fi

echo "$checks checks passed, $failures failed"
if [ "$failures" -ne 0 ]; then
	for log in "$tmp"/*.log; do
		echo "--- $log (last 40 lines) ---"
		tail -n 40 "$log"
	done
	exit 1
fi
exit 0
