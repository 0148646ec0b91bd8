#!/usr/bin/env bash
# `khien daemon`: answers PING/VERSION/SCAN over its UNIX socket, swaps the
# database on RELOAD and on SIGHUP while staying up, reports missing files as
# errors, and exits 0 on SHUTDOWN. The client is a few lines of Perl (core
# modules only).
set -uo pipefail
: "${KHIEN_BIN:?}"
khien="$KHIEN_BIN/khien"
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
expect() { # description, pattern, text
	if grep -qE -- "$2" <<<"$3"; then echo "ok: $1"; else
		echo "FAIL: $1: expected /$2/ in:"; echo "$3"; fail=1; fi
}

printf 'X5O!P%%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' >"$tmp/eicar.txt"
echo "nothing to see" >"$tmp/clean.txt"
echo 'Db.One:0:*:4549434152' >"$tmp/one.ndb"
echo 'Db.Two:0:*:5354414e44415244' >"$tmp/two.ndb"
"$khien" db compile -q "$tmp/one.ndb" -o "$tmp/db.kdb" || exit 1

"$khien" daemon --db "$tmp/db.kdb" --socket "$tmp/sock" 2>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/sock" ] && break; sleep 0.05; done

ask() { # sends each argument as one request line, prints the answers
	perl -MIO::Socket::UNIX -e '
		my $s = IO::Socket::UNIX->new(Peer => shift, Type => SOCK_STREAM) or die "connect: $!";
		for my $req (@ARGV) {
			print $s "$req\n";
			while (my $l = <$s>) { last if $l eq ".\n"; print $l; }
		}' "$tmp/sock" "$@"
}

expect "PING answers PONG" '^PONG$' "$(ask PING)"
expect "VERSION names the generation" '^khien [0-9.]+ db 0 1$' "$(ask VERSION)"
expect "SCAN finds the signature" "^$tmp/eicar.txt: Db.One FOUND$" "$(ask "SCAN $tmp/eicar.txt")"
expect "SCAN of a clean file is OK" "^$tmp/clean.txt: OK$" "$(ask "SCAN $tmp/clean.txt")"
expect "SCAN of a missing file is an ERROR" "^$tmp/nope: No such file ERROR$" "$(ask "SCAN $tmp/nope")"
expect "unknown commands are refused" '^ERROR unknown command' "$(ask FROB)"
expect "several requests on one connection" 'PONG' "$(ask PING "SCAN $tmp/clean.txt" PING)"

"$khien" db compile -q "$tmp/two.ndb" -o "$tmp/db.kdb" || exit 1
expect "RELOAD swaps the database" '^RELOADED 1$' "$(ask RELOAD)"
expect "after RELOAD the new database is used" "Db.Two FOUND" "$(ask "SCAN $tmp/eicar.txt")"

"$khien" db compile -q "$tmp/one.ndb" -o "$tmp/db.kdb" || exit 1
kill -HUP "$pid"
for _ in $(seq 100); do grep -q "generation 2" "$tmp/daemon.log" && break; sleep 0.05; done
expect "SIGHUP reloads" "Db.One FOUND" "$(ask "SCAN $tmp/eicar.txt")"

cp "$tmp/clean.txt" "$tmp/db.kdb"
expect "a bad database is refused and the old one kept" '^ERROR ' "$(ask RELOAD)"
expect "still scanning with the old database" "Db.One FOUND" "$(ask "SCAN $tmp/eicar.txt")"

expect "SHUTDOWN says BYE" '^BYE$' "$(ask SHUTDOWN)"
wait "$pid"
rc=$?
pid=
if [ $rc -eq 0 ]; then echo "ok: daemon exits 0"; else echo "FAIL: daemon exit status $rc"; fail=1; fi
[ ! -e "$tmp/sock" ] && echo "ok: socket removed" || { echo "FAIL: socket left behind"; fail=1; }
exit $fail
