#!/usr/bin/env bash
# The web dashboard in a real browser. Starts a real `khien server` on
# loopback, fills it through the public API the way an administrator and
# three agents would (two agencies, an officer of the first, enrollment
# tokens, agents made of openssl and curl that enroll, check in and report
# detections), checks how server/static.c serves the dashboard's files, then
# runs tests/browser/dashboard.test.mjs: Debian's Chromium, headless, driven
# by playwright-core.
#
# Skips (77) when node, chromium, curl, jq or openssl is missing, or a part of
# the server is still a placeholder. Installs tests/browser/node_modules with
# npm from the committed package-lock.json when it is absent.
set -uo pipefail
: "${KHIEN_BIN:?KHIEN_BIN must name the folder holding the khien binary}"
: "${KHIEN_SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
khien="$KHIEN_BIN/khien"
browser_dir="$KHIEN_SRC/tests/browser"
export LC_ALL=C.UTF-8

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
	echo "SKIP: no Chromium at $chromium (apt-get install chromium, or set CHROMIUM)"
	exit 77
fi
for tool in node npm curl jq openssl pdftotext pdftoppm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIP: '$tool' is not installed"
		exit 77
	fi
done
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
	echo "SKIP: node $(node --version) is too old for playwright-core (20 or later)"
	exit 77
fi
if [ ! -x "$khien" ]; then
	echo "FAIL: $khien does not exist or is not executable (build the khien-cli target)"
	exit 1
fi
if ! "$khien" server --help >/dev/null 2>&1; then
	echo "SKIP: this khien has no working 'server' subcommand yet"
	exit 77
fi
stubs=$(grep -l "STUB: replaced by the real implementation" \
	"$KHIEN_SRC"/server/*.c "$KHIEN_SRC"/server/store/*.c "$KHIEN_SRC"/cli/cmd_server.c \
	2>/dev/null | sed "s|^$KHIEN_SRC/||" | tr '\n' ' ')
if [ -n "$stubs" ]; then
	echo "SKIP: parts of the server are still placeholders: $stubs"
	exit 77
fi

if [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
	echo "installing playwright-core into tests/browser/node_modules"
	if ! (cd "$browser_dir" && { npm ci --no-audit --no-fund || npm install --no-audit --no-fund; }) \
		>/tmp/khien-npm.$$ 2>&1; then
		cat /tmp/khien-npm.$$
		rm -f /tmp/khien-npm.$$
		echo "FAIL: npm could not install tests/browser's packages"
		exit 1
	fi
	rm -f /tmp/khien-npm.$$
fi

tmp=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
data="$tmp/data"

failures=0
passes=0
pass() {
	passes=$((passes + 1))
	echo "PASS: $1"
}
fail() {
	failures=$((failures + 1))
	echo "FAIL: $1"
	if [ -s "$tmp/body" ]; then head -c 400 "$tmp/body" | sed 's/^/  | /'; echo; fi
}
# must DESCRIPTION COMMAND...: seeding steps that the rest depends on.
must() {
	local what=$1
	shift
	if ! "$@"; then
		fail "$what (HTTP $status)"
		echo "server log:"
		tail -n 30 "$tmp/server.log" | sed 's/^/  | /'
		exit 1
	fi
}

# ---------------------------------------------------------------------------
# Server.
# ---------------------------------------------------------------------------

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 30000))
while port_busy "$port"; do port=$((port + 7)); done

if ! "$khien" server init --data "$data" --listen "127.0.0.1:$port" >"$tmp/init.out" 2>&1; then
	echo "FAIL: khien server init failed:"
	cat "$tmp/init.out"
	exit 1
fi
admin_password=$(sed -n 's/^admin password: *//p' "$tmp/init.out" | head -n 1)
if [ -z "$admin_password" ]; then
	echo "FAIL: khien server init printed no 'admin password:' line:"
	cat "$tmp/init.out"
	exit 1
fi

base=
for attempt in $(seq 0 9); do
	if [ "$attempt" -gt 0 ]; then
		port=$((port + 7))
		port_busy "$port" && continue
	fi
	"$khien" server run --data "$data" --listen "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 150); do
		kill -0 "$server_pid" 2>/dev/null || break
		if curl -s -o /dev/null --cacert "$data/ca.crt" "https://127.0.0.1:$port/api/v1/health"; then
			base="https://127.0.0.1:$port"
			break
		fi
		sleep 0.1
	done
	[ -n "$base" ] && break
	kill "$server_pid" 2>/dev/null
	wait "$server_pid" 2>/dev/null
	server_pid=
done
if [ -z "$base" ]; then
	echo "FAIL: the server did not come up; its log:"
	cat "$tmp/server.log"
	exit 1
fi
api="$base/api/v1"
echo "server at $base (pid $server_pid)"

status=0
# call [CURL ARGS...] METHOD URL: body in $tmp/body, headers in $tmp/headers.
call() {
	local n=$#
	local method=${@:n-1:1} url=${@:n:1}
	status=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --cacert "$data/ca.crt" \
		-X "$method" "${@:1:n-2}" "$url")
}
header() { tr -d '\r' <"$tmp/headers" | sed -n "s/^$1: *//Ip" | head -n 1; }
jbody() { jq -r "$1" "$tmp/body" 2>/dev/null; }
ok2xx() { [ "$status" -ge 200 ] && [ "$status" -lt 300 ]; }
admin_post() { # admin_post PATH JSON
	call -b "$tmp/cookies" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
		--data-binary "$2" POST "$api$1"
	ok2xx
}
agent_post() { # agent_post NAME PATH JSON
	call --cert "$tmp/$1.crt" --key "$tmp/$1.key" -H 'Content-Type: application/json' \
		--data-binary "$3" POST "$api$2"
	ok2xx
}

# ---------------------------------------------------------------------------
# The dashboard's files (server/static.c).
# ---------------------------------------------------------------------------

call GET "$base/"
csp=$(header Content-Security-Policy)
if [ "$status" = 200 ] && header Content-Type | grep -q '^text/html' &&
	grep -q '<script type="module" src="/app.js">' "$tmp/body"; then
	pass "/ is the dashboard's index.html"
else
	fail "/ is the dashboard's index.html (HTTP $status)"
fi
if [ "$csp" = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'" ] &&
	[ "$(header Referrer-Policy)" = no-referrer ] && header X-Content-Type-Options | grep -q nosniff &&
	[ "$(header Cache-Control)" = no-cache ]; then
	pass "index.html carries the CSP, no-referrer, nosniff and no-cache"
else
	fail "index.html headers: CSP='$csp' Referrer-Policy='$(header Referrer-Policy)' Cache-Control='$(header Cache-Control)'"
fi
etag=$(header ETag)
call -H "If-None-Match: $etag" GET "$base/index.html"
if [ -n "$etag" ] && [ "$status" = 304 ]; then pass "a known ETag is answered 304"; else fail "ETag '$etag' revalidation (HTTP $status)"; fi
call GET "$base/machines/0b1e8f0e-1111-4222-8333-944455556666"
if [ "$status" = 200 ] && grep -q '/app.js' "$tmp/body"; then
	pass "a client-side route (/machines/ID) is answered with index.html"
else
	fail "a client-side route is answered with index.html (HTTP $status)"
fi
call GET "$base/app.js"
if [ "$status" = 200 ] && header Content-Type | grep -q '^text/javascript'; then
	pass "app.js is served as JavaScript"
else
	fail "app.js is served as JavaScript (HTTP $status, $(header Content-Type))"
fi
call GET "$base/no-such-module.js"
if [ "$status" = 404 ] && [ "$(jbody .error)" = not_found ]; then
	pass "a missing file with an extension is a JSON 404"
else
	fail "a missing file with an extension is a JSON 404 (HTTP $status)"
fi
call GET "$api/no-such-endpoint"
if [ "$status" = 404 ] && [ "$(jbody .error)" = not_found ]; then
	pass "an unknown API path is a JSON 404, not the dashboard"
else
	fail "an unknown API path is a JSON 404 (HTTP $status)"
fi

# ---------------------------------------------------------------------------
# Seed data through the API.
# ---------------------------------------------------------------------------

call -c "$tmp/cookies" -H 'Content-Type: application/json' \
	--data-binary "$(jq -nc --arg p "$admin_password" '{username:"admin",password:$p}')" POST "$api/login"
must "the administrator logs in through the API" ok2xx
csrf=$(jbody .csrf)

must "agency A is created" admin_post /agencies \
	'{"code":"so-a","name":"Sở Thông tin và Truyền thông A","kind":"department","expected_machines":4}'
agency_a=$(jbody .id)
must "agency B is created" admin_post /agencies \
	'{"code":"huyen-b","name":"UBND huyện B","kind":"district","expected_machines":3}'
agency_b=$(jbody .id)

officer_password="officer-$(openssl rand -hex 8)"
must "an officer of agency A is created" admin_post /users "$(jq -nc --arg p "$officer_password" \
	--argjson a "$agency_a" '{username:"officer-a",display_name:"Cán bộ A",password:$p,role:"officer",agency_id:$a}')"

auditor_password="auditor-$(openssl rand -hex 8)"
must "a province-wide auditor is created" admin_post /users "$(jq -nc --arg p "$auditor_password" \
	'{username:"auditor",display_name:"Kiểm tra viên",password:$p,role:"auditor"}')"

must "an enrollment token for A" admin_post "/agencies/$agency_a/enroll-tokens" '{"max_uses":0,"note":"seed"}'
token_a=$(jbody .token)
must "an enrollment token for B" admin_post "/agencies/$agency_b/enroll-tokens" '{"max_uses":0,"note":"seed"}'
token_b=$(jbody .token)

# enroll NAME TOKEN: a P-256 key and request, POST /enroll, the certificate.
enroll() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$1.key" 2>/dev/null &&
		openssl req -new -key "$tmp/$1.key" -subj "/CN=$1" -out "$tmp/$1.csr" 2>/dev/null || return 1
	call -H 'Content-Type: application/json' --data-binary "$(jq -nc --arg t "$2" \
		--rawfile csr "$tmp/$1.csr" --arg h "$1" '{token:$t, csr:$csr, hostname:$h}')" POST "$api/enroll"
	ok2xx || return 1
	jbody .certificate >"$tmp/$1.crt"
	jbody .machine_id >"$tmp/$1.id"
}
# checkin NAME: the inventory an agent would send.
checkin() {
	agent_post "$1" /agent/checkin "$(jq -nc --arg h "$1" --argjson now "$(date +%s)" '{hostname:$h,
		os:"Debian GNU/Linux 12", kernel:"6.1.0-26-amd64", arch:"x86_64", ips:["10.9.8.7"],
		macs:["52:54:00:12:34:56"], cpu:"Test CPU", cpus:2, mem_bytes:4294967296,
		agent_version:"0.1.0", db_version:0, db_time:0, rtp:true, firewall:true,
		last_full_scan:$now}')"
}
# detect NAME EVENT_ID SIGNATURE PATH: one detection event.
detect() {
	agent_post "$1" /agent/events "$(jq -nc --arg id "$2" --arg s "$3" --arg p "$4" \
		--argjson now "$(date +%s)" '{events:[{id:$id, type:"detection", at:$now, path:$p,
		sha256:"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", size:68,
		signature:$s, action:"quarantined"}]}')" && [ "$(jbody .accepted)" = 1 ]
}

for name in pc-a1 pc-a2; do
	must "$name enrolls in agency A" enroll "$name" "$token_a"
	must "$name checks in" checkin "$name"
done
must "pc-b1 enrolls in agency B" enroll pc-b1 "$token_b"
must "pc-b1 checks in" checkin pc-b1

family="Win.Trojan.Khientest"
xss_path='/tmp/khien-xss/<img src=x onerror="window.__khienXss=1">.exe'
must "pc-a1 reports a detection" detect pc-a1 "ev-a1-$RANDOM$RANDOM" "$family-9001-0" /home/a/invoice.exe
must "pc-a2 reports a detection with markup in its path" \
	detect pc-a2 "ev-a2-$RANDOM$RANDOM" "Html.Exploit.Khientest-17-0" "$xss_path"
must "pc-b1 reports a detection" detect pc-b1 "ev-b1-$RANDOM$RANDOM" "$family-9002-0" 'C:\Users\b\x.exe'

# The network sensor's side (issue 6): agency A's address range, then a C&C
# hit that pc-a1 reports through the ordinary event batch (an agent may send
# c2_hit too), which the server files under A by that range.
admin_put() { # admin_put PATH JSON
	call -b "$tmp/cookies" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
		--data-binary "$2" PUT "$api$1"
	ok2xx
}
c2_indicator="c2.khientest.example"
c2_hit() {
	agent_post pc-a1 /agent/events "$(jq -nc --arg id "c2-$RANDOM$RANDOM" --arg v "$c2_indicator" \
		--argjson now "$(date +%s)" '{events:[{id:$id, type:"c2_hit", at:$now, first_seen:$now,
		last_seen:$now, count:2, host:"10.9.8.7", where:"dns.query", observed:("a." + $v),
		indicator:{kind:"domain", value:$v, sources:[{source:"maltrail", category:"c2"}]},
		category:"c2", proto:"udp", src_ip:"10.9.8.7", src_port:40000, dest_ip:"10.9.8.1",
		dest_port:53}]}')" && [ "$(jbody .accepted)" = 1 ]
}
must "agency A's address range is set" admin_put "/agencies/$agency_a/networks" '{"networks":["10.9.8.0/24"]}'
must "pc-a1 reports a C&C hit" c2_hit
echo "seeded: agencies $agency_a and $agency_b, three machines, three detections, one C&C hit"

# ---------------------------------------------------------------------------
# The browser.
# ---------------------------------------------------------------------------

export KHIEN_URL="$base" KHIEN_ADMIN_USER=admin KHIEN_ADMIN_PASSWORD="$admin_password"
export KHIEN_OFFICER_USER=officer-a KHIEN_OFFICER_PASSWORD="$officer_password"
export KHIEN_AUDITOR_USER=auditor KHIEN_AUDITOR_PASSWORD="$auditor_password"
export KHIEN_ENROLLED=3 KHIEN_FAMILY="$family" KHIEN_AGENCY_A="$agency_a"
export KHIEN_A_HOSTNAME=pc-a1 KHIEN_B_HOSTNAME=pc-b1 KHIEN_B_MACHINE="$(cat "$tmp/pc-b1.id")"
export KHIEN_XSS_PATH="$xss_path" CHROMIUM="$chromium" KHIEN_C2_INDICATOR="$c2_indicator"
# Chromium wants a writable home for its profile and crash folders.
export HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/home/.config" XDG_CACHE_HOME="$tmp/home/.cache"
mkdir -p "$HOME"
[ -n "${KHIEN_ARTIFACTS:-}" ] && mkdir -p "$KHIEN_ARTIFACTS"

(cd "$browser_dir" && timeout 300 node dashboard.test.mjs)
browser_rc=$?

echo "static checks: $passes passed, $failures failed; browser test exit status $browser_rc"
if [ "$failures" -ne 0 ] || [ "$browser_rc" -ne 0 ]; then
	echo "server log (last lines):"
	tail -n 20 "$tmp/server.log" | sed 's/^/  | /'
	exit 1
fi
exit 0
