#!/usr/bin/env bash
# Upward federation (docs/internals/federation.md) with two real servers on
# loopback: a parent and a provincial child, each `khien server init/run`
# with its own SQLite database and its own CA. On the parent an
# administrator registers the province and gets its token; the child is
# configured with parent_url, parent_token_file, parent_ca (the parent's CA
# certificate) and a 10 s parent_interval. The child is seeded with three
# agencies (over its API), machines and detections (straight into its
# database) whose file paths, host names, addresses and user names are
# recognisable. Then:
#
#   - the child's federation-push job reaches the parent, and the parent's
#     GET /federation/provinces shows the child's figures for the current
#     quarter and month equal to what was seeded and to the child's own
#     GET /index (the province's and every agency's components and index);
#   - none of the child's file paths, user names, host names or addresses
#     appears anywhere in the parent's database (sqlite3 .dump);
#   - a malformed document is refused with 400 naming the field, a document
#     under another province's code with 403;
#   - after the province is revoked its token is refused with 401.
#
# Exits 77 (skip) when a needed tool is missing.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
khien="$KHIEN_BIN/khien"
export LC_ALL=C

for tool in curl jq sqlite3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed" >&2
		exit 77
	fi
done
if [ ! -x "$khien" ]; then
	echo "FAIL: $khien does not exist or is not executable (build the khien-cli target)"
	exit 1
fi

tmp=$(mktemp -d)
declare -A pid=() url=() pw=()
cleanup() {
	for n in parent child; do
		if [ -n "${pid[$n]:-}" ]; then
			kill "${pid[$n]}" 2>/dev/null
			wait "${pid[$n]}" 2>/dev/null
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

failures=0 checks=0 status=0
ok() { checks=$((checks + 1)); echo "ok: $1"; }
fail() {
	failures=$((failures + 1))
	echo "FAIL: $1"
	echo "  last reply: HTTP $status"
	head -c 600 "$tmp/body" 2>/dev/null | sed 's/^/  | /'
	echo
}
expect_status() {
	if [ "$status" = "$2" ]; then ok "$1 (HTTP $2)"; else fail "$1: expected HTTP $2"; fi
}
jbody() { jq -r "$1" "$tmp/body" 2>/dev/null; }
jcheck() {
	if jq -e "$2" "$tmp/body" >/dev/null 2>&1; then ok "$1"; else fail "$1: '$2' is not true"; fi
}

# init NAME: `khien server init` in $tmp/NAME on a free port; the admin
# password goes to pw[NAME], the port to port_NAME.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
declare -A port=()
init() {
	local p=$((20000 + RANDOM % 30000))
	while port_busy "$p"; do p=$((p + 7)); done
	port[$1]=$p
	if ! "$khien" server init --data "$tmp/$1" --listen "127.0.0.1:$p" >"$tmp/$1.init.out" 2>&1; then
		echo "FAIL: khien server init ($1) failed:"
		cat "$tmp/$1.init.out"
		exit 1
	fi
	pw[$1]=$(sed -n 's/^admin password: *//p' "$tmp/$1.init.out" | head -n 1)
}
# run NAME: starts the server and waits for /health.
run() {
	"$khien" server run --data "$tmp/$1" --listen "127.0.0.1:${port[$1]}" >"$tmp/$1.log" 2>&1 &
	pid[$1]=$!
	for _ in $(seq 150); do
		kill -0 "${pid[$1]}" 2>/dev/null || break
		if curl -s -o /dev/null --cacert "$tmp/$1/ca.crt" "https://127.0.0.1:${port[$1]}/api/v1/health"; then
			url[$1]="https://127.0.0.1:${port[$1]}/api/v1"
			echo "$1 server at ${url[$1]} (pid ${pid[$1]})"
			return 0
		fi
		sleep 0.1
	done
	echo "FAIL: the $1 server did not come up; its log:"
	cat "$tmp/$1.log"
	exit 1
}
# call NAME [CURL ARGS...] METHOD PATH, as NAME's administrator (cookie +
# CSRF); the reply lands in $tmp/body and its status in $status.
declare -A csrf=()
call() {
	local who=$1
	shift
	local n=$#
	local method=${@:n-1:1} path=${@:n:1}
	status=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$tmp/$who/ca.crt" \
		-b "$tmp/$who.cookies" -H "X-CSRF-Token: ${csrf[$who]:-}" -X "$method" "${@:1:n-2}" \
		"${url[$who]}$path")
}
post() { # post NAME PATH JSON
	call "$1" -H 'Content-Type: application/json' --data-binary "$3" POST "$2"
}
login() {
	status=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$tmp/$1/ca.crt" -c "$tmp/$1.cookies" \
		-H 'Content-Type: application/json' \
		--data-binary "$(jq -nc --arg p "${pw[$1]}" '{username:"admin",password:$p}')" \
		"${url[$1]}/login")
	expect_status "$1 administrator logs in" 200
	csrf[$1]=$(jbody .csrf)
}
# push TOKEN FILE: POSTs a document to the parent as a child would.
push() {
	status=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$tmp/parent/ca.crt" \
		-H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
		--data-binary "@$2" "${url[parent]}/federation/push")
}

# ---------------------------------------------------------------------------
# The parent, and the province registered on it.
# ---------------------------------------------------------------------------

init parent
run parent
login parent
post parent /federation/children '{"code":"000.00.00.H34","name":"Tỉnh Thái Bình"}'
expect_status "the parent registers the province" 201
token=$(jbody .token)
child_id=$(jbody .id)
jcheck "the token is shown once, with its prefix" '(.token | test("^khf_[0-9a-f]{64}$")) and (.prefix | length) == 12'
printf '%s\n' "$token" >"$tmp/parent-token"
chmod 600 "$tmp/parent-token"
call parent GET /federation/children
jcheck "the list has the province without its token" \
	'(.items | length) == 1 and .items[0].code == "000.00.00.H34" and (.items[0] | has("token") | not) and .items[0].stale'
post parent /federation/children '{"code":"000.00.00.H34","name":"again"}'
expect_status "a second province with the same code is refused" 409
post parent /federation/children '{"code":"a/b","name":"x"}'
expect_status "a code with a slash is refused" 400

# ---------------------------------------------------------------------------
# The child: configured to push, seeded with agencies, machines, detections.
# ---------------------------------------------------------------------------

init child
cat >>"$tmp/child/khien-server.conf" <<EOF
org_id = 000.00.00.H34
org_name = Sở Thông tin và Truyền thông Thái Bình
parent_url = https://127.0.0.1:${port[parent]}/
parent_token_file = $tmp/parent-token
parent_ca = $tmp/parent/ca.crt
parent_interval = 10s
EOF
db="$tmp/child/khien.db"
if [ ! -f "$db" ]; then
	echo "FAIL: the child's database is not at $db"
	exit 1
fi
run child
login child
post child /agencies '{"code":"TB","name":"Tỉnh Thái Bình","kind":"province","expected_machines":4}'
a1=$(jbody .id)
post child /agencies "{\"code\":\"TB.STTTT\",\"name\":\"Sở TT&TT\",\"kind\":\"department\",\"parent_id\":$a1,\"expected_machines\":3}"
a2=$(jbody .id)
post child /agencies "{\"code\":\"TB.XA\",\"name\":\"UBND xã An Bình\",\"kind\":\"agency\",\"parent_id\":$a2,\"expected_machines\":3}"
a3=$(jbody .id)
if [ -z "$a1" ] || [ -z "$a2" ] || [ -z "$a3" ] || [ "$a3" = null ]; then
	fail "the child's agencies were not created"
	exit 1
fi
ok "the child has three agencies"

now=$(date +%s)
enrolled=$((now - 86400))
# Six machines: two in each agency; secret-looking host names and addresses.
sql="BEGIN;"
i=0
for a in "$a1" "$a1" "$a2" "$a2" "$a3" "$a3"; do
	i=$((i + 1))
	sql+="INSERT INTO machines (id, agency_id, hostname, ips, os, db_time, enrolled_at, last_seen)
	      VALUES ('00000000-0000-4000-8000-00000000000$i', $a, 'PC-KETOAN-SECRET-$i',
	      '10.99.88.$i', 'Windows 10', $now, $enrolled, $now);"
done
# Three detections with paths and user names: two open (machines 1 and 5),
# one resolved (machine 3); two families.
sql+="INSERT INTO detections (event_id, machine_id, agency_id, path, sha256, signature, family,
      detected_at, received_at, status, status_at) VALUES
      ('e1', '00000000-0000-4000-8000-000000000001', $a1,
       'C:\\Users\\nguyenvanan\\AppData\\Local\\Temp\\hoadon_thang11.exe', 'aa', 'Win.Trojan.Evil-1',
       'Win.Trojan.Evil', $((now - 60)), $now, 'new', $now),
      ('e2', '00000000-0000-4000-8000-000000000005', $a3,
       '/home/tranthibich/Downloads/baocao-mat.sh', 'bb', 'Unix.Malware.Bad-2', 'Unix.Malware.Bad',
       $((now - 60)), $now, 'acknowledged', $now),
      ('e3', '00000000-0000-4000-8000-000000000003', $a2,
       'D:\\KeToan\\phamvancuong\\luong.xlsm', 'cc', 'Doc.Macro.Evil-3', 'Win.Trojan.Evil',
       $((now - 60)), $now, 'resolved', $now);
COMMIT;"
if ! sqlite3 -cmd ".timeout 5000" "$db" "$sql"; then
	fail "seeding the child's database"
	exit 1
fi
ok "the child is seeded with 6 machines and 3 detections"

# ---------------------------------------------------------------------------
# The push reaches the parent.
# ---------------------------------------------------------------------------

pushed=
for _ in $(seq 90); do
	call parent GET /federation/children
	if jq -e '.items[0].last_push_at > 0' "$tmp/body" >/dev/null 2>&1; then
		pushed=1
		break
	fi
	sleep 1
done
if [ -z "$pushed" ]; then
	fail "no push reached the parent within 90 s"
	echo "child log:"
	tail -20 "$tmp/child.log"
	echo "child jobs:"
	sqlite3 "$db" "SELECT name, last_ok, failures, last_message FROM jobs" 2>&1
	exit 1
fi
ok "the child's push reached the parent"
# The first push may have been counted before the seed: make the job due
# now, as the dashboard's "send now" does (jobs_trigger), and wait for a push
# made after the seed. Repeated, since a run in progress when the row is
# changed sets its own next run when it ends.
for i in $(seq 60); do
	if [ $((i % 5)) = 1 ]; then
		sqlite3 -cmd ".timeout 5000" "$db" \
			"UPDATE jobs SET next_run = 0 WHERE name = 'federation-push'"
	fi
	call parent GET /federation/provinces
	if jq -e '.provinces[0].figures.totals.managed == 6' "$tmp/body" >/dev/null 2>&1; then
		break
	fi
	sleep 1
done
if ! jq -e '.provinces[0].figures.totals.managed == 6' "$tmp/body" >/dev/null 2>&1; then
	echo "note: no push with the seeded figures within 60 s; the child's jobs and log:"
	sqlite3 "$db" "SELECT name, last_ok, failures, next_run, last_message FROM jobs" 2>&1
	tail -20 "$tmp/child.log"
fi
call parent GET /federation/provinces
expect_status "the parent lists the provinces" 200
quarter=$(jbody .period)
jcheck "the default period is a quarter" '.kind == "quarter" and (.period | test("^[0-9]{4}Q[1-4]$"))'
jcheck "the province's figures for $quarter are the seeded ones" \
	'.provinces[0].code == "000.00.00.H34" and (.provinces[0].figures.totals | .managed == 6 and .expected == 10 and .infected == 2 and .detections == 3 and .families == 2 and .open == 2 and .resolved == 1)'
jcheck "rates come with the figures" \
	'(.provinces[0].figures.rates.infected_rate - (2 / 6) | fabs) < 1e-9 and .provinces[0].figures.rates.coverage == 0.6'
jcheck "the province is not stale and has a trend" \
	'(.provinces[0].stale | not) and (.provinces[0].trend | length) >= 1 and .provinces[0].trend[-1].period == "'"$quarter"'"'
jcheck "the all-provinces row adds up" '.all.totals.managed == 6 and .all.totals.detections == 3'
month=$(sqlite3 "$tmp/parent/khien.db" "SELECT period FROM federation_stats WHERE kind = 'month' ORDER BY period_start DESC LIMIT 1")
call parent GET "/federation/provinces?period=$month"
jcheck "the month $month has the same figures" \
	'.kind == "month" and (.provinces[0].figures.totals | .managed == 6 and .infected == 2 and .detections == 3)'
# The child's own index (GET /index) for the same periods: the parent must
# show exactly its components and index, for the province and per agency.
for per in "$quarter" "$month"; do
	call parent GET "/federation/provinces?period=$per"
	cp "$tmp/body" "$tmp/parent-view.json"
	sqlite3 "$tmp/parent/khien.db" "SELECT document FROM federation_stats WHERE period = '$per'" >"$tmp/parent-doc.json"
	call child GET "/index?period=$per"
	if jq -e --slurpfile pv "$tmp/parent-view.json" --slurpfile pd "$tmp/parent-doc.json" '
		.scope.components == $pv[0].provinces[0].figures.totals and
		.scope.index == $pv[0].provinces[0].figures.index and
		([.items[] | {code, c: .components, own, index}] ==
		 [$pd[0].agencies[] | {code, c: .total, own, index}])' "$tmp/body" >/dev/null; then
		ok "the parent's figures for $per equal the child's own GET /index (province and every agency)"
	else
		fail "the parent's figures for $per differ from the child's GET /index"
		echo "  parent: $(jq -c '.provinces[0].figures' "$tmp/parent-view.json")"
	fi
done
call parent GET "/federation/provinces?period=2026-13"
expect_status "a bad period is refused" 400
n=$(sqlite3 "$tmp/parent/khien.db" "SELECT count(*) FROM federation_stats")
if [ "$n" = 4 ]; then ok "the parent keeps 4 periods (2 months, 2 quarters)"; else fail "the parent keeps $n periods, not 4"; fi
n=$(sqlite3 "$tmp/parent/khien.db" "SELECT json_array_length(document, '\$.agencies') FROM federation_stats LIMIT 1")
if [ "$n" = 3 ]; then ok "each period lists the child's 3 agencies"; else fail "a period lists $n agencies, not 3"; fi

# ---------------------------------------------------------------------------
# Nothing private crossed over.
# ---------------------------------------------------------------------------

sqlite3 "$tmp/parent/khien.db" .dump >"$tmp/parent.dump"
leaked=
for s in nguyenvanan tranthibich phamvancuong hoadon_thang11 baocao-mat luong.xlsm AppData Downloads \
	KeToan PC-KETOAN SECRET 10.99.88 00000000-0000-4000-8000 Win.Trojan Unix.Malware; do
	if grep -q -- "$s" "$tmp/parent.dump"; then
		leaked+=" $s"
	fi
done
if [ -z "$leaked" ]; then
	ok "no path, user name, host, address or machine id of the child is in the parent's database"
else
	fail "the parent's database holds:$leaked"
fi
if grep -q "TB.STTTT" "$tmp/parent.dump"; then ok "the agencies' codes did arrive"; else fail "no agency code in the parent's database"; fi

# ---------------------------------------------------------------------------
# Refusals.
# ---------------------------------------------------------------------------

doc=$(sqlite3 "$tmp/parent/khien.db" "SELECT document FROM federation_stats LIMIT 1")
jq -nc --argjson p "$doc" '{schema:1, province:{code:"000.00.00.H34",name:"x"}, generated_at:1795000000, interval:10, periods:[$p]}' >"$tmp/good.json"
push "$token" "$tmp/good.json"
expect_status "a hand-made valid document is accepted" 200
jq -c '.periods[0].agencies[0].path = "C:\\x.exe"' "$tmp/good.json" >"$tmp/bad.json"
push "$token" "$tmp/bad.json"
expect_status "a document with an extra field is refused" 400
jcheck "the refusal names the field" '.message | test("periods\\[0\\]\\.agencies\\[0\\]\\.path")'
jq -c '.province.code = "000.00.00.H99"' "$tmp/good.json" >"$tmp/other.json"
push "$token" "$tmp/other.json"
expect_status "a document under another province's code is refused" 403
push "khf_$(printf '0%.0s' $(seq 64))" "$tmp/good.json"
expect_status "an unknown token is refused" 401

call parent DELETE "/federation/children/$child_id"
expect_status "the administrator revokes the province" 204
push "$token" "$tmp/good.json"
expect_status "the revoked token is refused" 401
call parent GET /federation/provinces
jcheck "a revoked province leaves the side-by-side view" '(.provinces | length) == 0'

echo "$checks checks passed, $failures failed"
[ "$failures" -eq 0 ]
