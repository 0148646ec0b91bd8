#!/usr/bin/env bash
# The endpoint agent end to end (issue 5's proof): a real `khien server` on
# loopback and two `khien-agent` daemons with separate state folders, each
# protecting its own folder with fanotify.
#
#   1. both enroll with a token and install the first signed bundle;
#   2. the EICAR test file and a file matching a generated signature are
#      written into the watched folders: each is quarantined (or its open
#      blocked) and the detection is visible through the server's API within 5 s;
#   3. a quarantined file is restored through a server task, and is not
#      caught again;
#   4. the server is stopped for 60 s while detections happen (and one agent
#      is killed with SIGKILL and restarted meanwhile): after the restart every
#      detection arrives, none twice;
#   5. a tampered bundle is refused and reported; a new bundle is applied
#      while files keep being written, and every one of them is still caught.
#
# Needs root (fanotify needs CAP_SYS_ADMIN): skips (77) with a message otherwise.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binaries}"
khien="$KHIEN_BIN/khien"
agent_bin="$KHIEN_BIN/khien-agent"
export LC_ALL=C

for tool in curl jq openssl; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed"
		exit 77
	fi
done
for b in "$khien" "$agent_bin"; do
	if [ ! -x "$b" ]; then
		echo "FAIL: $b does not exist (build the khien-cli and khien-agent targets)"
		exit 1
	fi
done
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: real-time protection (fanotify) needs root; run this test as root"
	exit 77
fi

tmp=$(mktemp -d /tmp/khien-agent-it.XXXXXX)
chmod 755 "$tmp"
server_pid= a1_pid= a2_pid= writer_pid=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	server_pid=
}
cleanup() {
	[ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null
	for p in $a1_pid $a2_pid; do kill "$p" 2>/dev/null; done
	for p in $a1_pid $a2_pid; do wait "$p" 2>/dev/null; done
	stop_server
	if [ -n "${KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
cd "$tmp" || exit 1

failures=0 checks=0
ok() { checks=$((checks + 1)); echo "ok: $1"; }
fail() {
	failures=$((failures + 1))
	echo "FAIL: $1"
}
check() {
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.2 s.
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for i in $(seq $((secs * 5))); do
		if "$@" >/dev/null 2>&1; then
			ok "$what (after $(awk "BEGIN{print $i/5}") s)"
			return 0
		fi
		sleep 0.2
	done
	fail "$what (not within $secs s)"
	return 1
}

# ---------------------------------------------------------------------------
# Server.
# ---------------------------------------------------------------------------
data="$tmp/server"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 30000))
while port_busy "$port"; do port=$((port + 7)); done
if ! "$khien" server init --data "$data" --database "sqlite://$data/khien.db" \
	--listen "127.0.0.1:$port" >"$tmp/init.out" 2>&1; then
	echo "FAIL: khien server init failed:"
	cat "$tmp/init.out"
	exit 1
fi
password=$(sed -n 's/^admin password: *//p' "$tmp/init.out" | head -n 1)
server="https://127.0.0.1:$port"
url="$server/api/v1"
start_server() {
	"$khien" server run --data "$data" >>"$tmp/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 150); do
		curl -s -o /dev/null --cacert "$data/ca.crt" "$url/health" && return 0
		sleep 0.1
	done
	echo "FAIL: the server did not come up:"
	cat "$tmp/server.log"
	exit 1
}
start_server
echo "server at $url"

status=0
call() {
	local n=$#
	local method=${@:n-1:1} path=${@:n:1}
	status=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$data/ca.crt" \
		-b "$tmp/cookies" -H "X-CSRF-Token: ${csrf:-}" -X "$method" "${@:1:n-2}" "$url$path")
}
post() { call -H 'Content-Type: application/json' --data-binary "$2" POST "$1"; }
jbody() { jq -r "$1" "$tmp/body" 2>/dev/null; }

curl -s -c "$tmp/cookies" -o "$tmp/body" --cacert "$data/ca.crt" -H 'Content-Type: application/json' \
	--data-binary "$(jq -nc --arg p "$password" '{username:"admin",password:$p}')" "$url/login"
csrf=$(jbody .csrf)
post /agencies '{"code":"so-tt","name":"Sở Thông tin","kind":"department"}'
agency=$(jbody .id)
post "/agencies/$agency/enroll-tokens" '{"max_uses":0,"note":"agent integration"}'
token=$(jbody .token)
check "an enrollment token is issued" test -n "$token" -a "$token" != null

# A generated signature (random bytes nobody else ships) and EICAR by hash.
marker=$(openssl rand -hex 24)
printf 'Khien.Test.Generated-%s:0:*:%s\n' "${marker:0:8}" "$marker" >"$tmp/generated.ndb"
printf '44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n' >"$tmp/eicar.hdb"
upload() { # upload KIND NAME FILE
	call -H 'Content-Type: application/octet-stream' --data-binary "@$3" PUT \
		"/signatures/sources/upload?kind=$1&name=$2"
}
upload clamav generated.ndb "$tmp/generated.ndb"
check "the generated signature is uploaded" test "$status" -lt 300
upload clamav eicar.hdb "$tmp/eicar.hdb"
check "the EICAR signature is uploaded" test "$status" -lt 300
post /signatures/publish '{}'
check "bundle 1 is published" test "$status" = 200
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
# The generated signature's bytes, for printf.
marker_bytes=$(sed 's/../\\x&/g' <<<"$marker")

# ---------------------------------------------------------------------------
# Two agents.
# ---------------------------------------------------------------------------
for n in 1 2; do
	mkdir -p "$tmp/w$n" "$tmp/a$n"
	chmod 777 "$tmp/w$n"
	if "$agent_bin" enroll --state "$tmp/a$n" --server "$server" --token "$token" \
		--ca "$data/ca.crt" --machine-key "integration-$n-$RANDOM" >"$tmp/enroll$n.out" 2>&1; then
		ok "agent $n enrolls"
	else
		fail "agent $n enrolls: $(cat "$tmp/enroll$n.out")"
		exit 1
	fi
done
check "the agent's key is private (0600)" test "$(stat -c %a "$tmp/a1/agent.key")" = 600
m1=$(jq -r .machine_id "$tmp/a1/agent.json")
m2=$(jq -r .machine_id "$tmp/a2/agent.json")
check "the two agents are two machines" test -n "$m1" -a "$m1" != "$m2"

start_agent() { # start_agent N
	"$agent_bin" run --state "$tmp/a$1" --watch "$tmp/w$1" --checkin 1 >>"$tmp/agent$1.log" 2>&1 &
	eval "a$1_pid=$!"
}
start_agent 1
start_agent 2
agent_status() { "$agent_bin" status --json --state "$tmp/a$1"; }
for n in 1 2; do
	wait_for 30 "agent $n runs with real-time protection and bundle 1" \
		bash -c "'$agent_bin' status --json --state '$tmp/a$n' | jq -e '.running and .rtp and .db_version == 1'"
done
if ! agent_status 1 | jq -e .rtp >/dev/null 2>&1; then
	echo "agent 1 log:"
	cat "$tmp/agent1.log"
	if grep -q "fanotify" "$tmp/agent1.log"; then
		echo "SKIP: fanotify is not available here"
		exit 77
	fi
fi

# detections MACHINE: how many detections the server has for it.
detections() {
	call GET "/detections?machine=$1&per_page=200"
	jbody .total
}
# write_as_user FILE CONTENT: a child process (not the agent) writes the file.
write_file() { printf '%s' "$2" >"$1"; }

# ---------------------------------------------------------------------------
# Detection, blocking, quarantine, visible within 5 s.
# ---------------------------------------------------------------------------
t0=$(date +%s.%N)
write_file "$tmp/w1/eicar.com" "$eicar"
printf "header $marker_bytes trailer\n" >"$tmp/w2/report.doc"
wait_for 5 "the EICAR detection is visible through the API within 5 s" \
	bash -c "[ \"\$(curl -s --cacert '$data/ca.crt' -b '$tmp/cookies' '$url/detections?machine=$m1' | jq -r '.items[0].signature')\" = Eicar-Test-Signature ]"
wait_for 5 "the generated-signature detection is visible through the API within 5 s" \
	bash -c "curl -s --cacert '$data/ca.crt' -b '$tmp/cookies' '$url/detections?machine=$m2' | jq -e '.items[0].signature | startswith(\"Khien.Test.Generated\")'"
echo "  (both seen $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s after writing)"
check "the EICAR file is no longer readable where it was written" bash -c "! cat '$tmp/w1/eicar.com'"
check "the generated-signature file is gone from the watched folder" test ! -e "$tmp/w2/report.doc"
call GET "/detections?machine=$m1"
check "the detection says quarantined" test "$(jbody '.items[0].action')" = quarantined
"$agent_bin" quarantine list --json --state "$tmp/a1" >"$tmp/q1.json"
qid=$(jq -r '.[0].id' "$tmp/q1.json")
check "the quarantine lists the file with its original path and hash" \
	jq -e --arg p "$tmp/w1/eicar.com" '.[0].path == $p and .[0].sha256 == "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"' "$tmp/q1.json"
check "the vault holds no readable copy" bash -c "! grep -rq EICAR-STANDARD '$tmp/a1/quarantine'"
# An existing file is blocked at open time, before a program reads it.
cp "$tmp/generated.ndb" "$tmp/w1/harmless.txt"
check "a clean file opens normally" cat "$tmp/w1/harmless.txt"

# ---------------------------------------------------------------------------
# Restore through a server task.
# ---------------------------------------------------------------------------
post "/machines/$m1/tasks" "$(jq -nc --arg q "$qid" '{kind:"quarantine_restore",args:{quarantine_id:$q}}')"
task=$(jbody .id)
check "a restore task is queued" test "$status" = 201
wait_for 10 "the restore task is done" bash -c \
	"curl -s --cacert '$data/ca.crt' -b '$tmp/cookies' '$url/machines/$m1/tasks' | jq -e '.items[] | select(.id == $task) | .state == \"done\"'"
check "the file is back with its content" bash -c "[ \"\$(cat '$tmp/w1/eicar.com')\" = '$eicar' ]"
sleep 2
check "a restored file is not caught again" test -e "$tmp/w1/eicar.com"
rm -f "$tmp/w1/eicar.com"

# ---------------------------------------------------------------------------
# The server down for 60 s; one agent killed with SIGKILL meanwhile.
# ---------------------------------------------------------------------------
before1=$(detections "$m1")
before2=$(detections "$m2")
stop_server
echo "server stopped for 60 s"
# Agent 1 now allows EICAR's content (restored above, so an operator said it
# is harmless there): its files carry the generated signature instead.
for i in $(seq 1 5); do
	printf "down $i $marker_bytes" >"$tmp/w1/down-$i.bin"
	printf "x$i $marker_bytes" >"$tmp/w2/pad-$i"
	sleep 1
done
sleep 2
kill -9 "$a1_pid"
wait "$a1_pid" 2>/dev/null
check "agent 1 was killed with events still spooled" \
	test "$(ls "$tmp/a1/spool" | grep -c '\.ev$')" -ge 5
start_agent 1
for i in $(seq 6 8); do
	sleep 2
	printf "down $i $marker_bytes" >"$tmp/w1/down-$i.bin"
done
sleep 45
start_server
echo "server restarted"
wait_for 30 "all 8 detections of agent 1 arrive after the restart" \
	bash -c "[ \$(curl -s --cacert '$data/ca.crt' -b '$tmp/cookies' '$url/detections?machine=$m1&per_page=200' | jq .total) -eq $((before1 + 8)) ]"
wait_for 30 "all 5 detections of agent 2 arrive after the restart" \
	bash -c "[ \$(curl -s --cacert '$data/ca.crt' -b '$tmp/cookies' '$url/detections?machine=$m2&per_page=200' | jq .total) -eq $((before2 + 5)) ]"
sleep 3
check "no detection arrived twice (agent 1)" test "$(detections "$m1")" -eq $((before1 + 8))
check "no detection arrived twice (agent 2)" test "$(detections "$m2")" -eq $((before2 + 5))
call GET "/detections?machine=$m1&per_page=200"
check "each file is reported exactly once" test "$(jq '[.items[].path] | length == (unique | length)' "$tmp/body")" = true
check "the spools are empty again" test "$(agent_status 1 | jq .spooled)" = 0

# ---------------------------------------------------------------------------
# A tampered bundle is refused; a good one is applied with no gap.
# ---------------------------------------------------------------------------
post /signatures/publish '{}'
v2=$(jbody .version)
bundle="$data/cache/bundle-$v2.khb"
if [ -f "$bundle" ]; then
	# Flip one byte near the end (inside the signed .kdb) of the file the server sends.
	size=$(stat -c %s "$bundle")
	printf '\xff' | dd of="$bundle" bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
fi
wait_for 15 "the tampered bundle $v2 is refused and reported (bundle_refused)" bash -c \
	"curl -s --cacert '$data/ca.crt' -b '$tmp/cookies' '$url/machines/$m1' | jq -e '[.recent_events[] | select(.type == \"bundle_refused\")] | length > 0'"
check "the agent still uses bundle 1" test "$(agent_status 1 | jq .db_version)" = 1
check "the refusal is explained" bash -c "agent_status() { '$agent_bin' status --json --state '$tmp/a1'; }; agent_status | jq -e '.last_error | test(\"refused\")'"

# Keep writing EICAR files into folder 2 while bundle 3 is applied. The writer stops
# between files when asked (a kill could land between creating a file and writing it,
# leaving an empty, clean file behind).
(
	i=0
	while [ ! -e "$tmp/stop-writer" ]; do
		i=$((i + 1))
		printf '%s' "$eicar" >"$tmp/w2/during-$i.com" 2>/dev/null
		sleep 0.1
	done
) &
writer_pid=$!
sleep 1
post /signatures/publish '{}'
v3=$(jbody .version)
wait_for 20 "agent 2 applies bundle $v3" bash -c \
	"'$agent_bin' status --json --state '$tmp/a2' | jq -e '.db_version == $v3'"
sleep 2
touch "$tmp/stop-writer"
wait "$writer_pid" 2>/dev/null
writer_pid=
sleep 2
written=$(cat "$tmp"/a2/quarantine/*.json | grep -o '/w2/during-[0-9]*\.com' | sort -u | wc -l)
left=$(ls "$tmp/w2" | grep -c '^during-')
check "no file written during the update stayed in the folder ($left left)" test "$left" -eq 0
check "files were written throughout the switch (quarantined: $written)" test "$written" -gt 10

echo
"$agent_bin" status --state "$tmp/a2"
echo
echo "$checks checks passed, $failures failed"
if [ "$failures" -gt 0 ]; then
	echo "--- agent 1 log"; tail -n 40 "$tmp/agent1.log"
	echo "--- agent 2 log"; tail -n 40 "$tmp/agent2.log"
	exit 1
fi
