#!/usr/bin/env bash
# The sensor against other projects' expectations on real captures (issue 6).
# Needs ../shared/data/net; skips visibly without it.
#
#   - maltrail's sensor test corpus (manifest.json): every expectation that
#     names an indicator is found in its pcap, with trails.csv as the list;
#     the heuristic ones (scans, DGA, NXDOMAIN floods, sinkhole responses by
#     content) are not indicator matches and are listed as such; captures
#     whose manifest expects nothing give no hit.
#   - suricata-verify, translated to our list format, with the same alert
#     counts and tuples: bug-2158 (both Sofacy C2 queries on one 5-tuple, from
#     maltrail's real apt_sofacy trail file), datasets-match-subdomain,
#     ja4-rules (TLS and QUIC), dns-detect-query-01/02.
. "$(dirname "$0")/common.bash"
shared=${KHIEN_SHARED:-$KHIEN_SRC/../shared}
net=$shared/data/net
if [ ! -d "$net/maltrail/sensor/tests/corpus" ] || [ ! -d "$net/suricata-verify/tests" ]; then
	echo "SKIP: $net is absent (real captures and lists are not part of the repository)"
	exit 77
fi
case_init jq
corpus=$net/maltrail/sensor/tests/corpus
sv=$net/suricata-verify/tests

# hits PCAP LIST...: every match (window 0) as "where observed indicator src:sport dst:dport" lines.
hits() {
	local pcap=$1
	shift
	"$khien" sensor run --read "$pcap" --window 0 "$@" 2>"$tmp/stderr" |
		jq -r '"\(.where) \(.observed) \(.indicator.value) \(.src_ip):\(.src_port) \(.dest_ip):\(.dest_port)"' | sort
}

check_has() { # LABEL FILE PATTERN
	label=$1
	if grep -qE -- "$3" "$2"; then ok; else fail "no hit matching '$3' in: $(tr '\n' ';' <"$2")"; fi
}

# ---- maltrail corpus ----
# pcap: indicator values the manifest's expectations name ("(www).evil-parent.com" is the
# parent trail evil-parent.com seen as www.evil-parent.com; the two dns_responses items are
# answers pointing at the sinkhole and parking trails).
declare -A expect=(
	[duplicate_syn]="66.66.66.66"
	[ip_trails]="66.66.66.66 6.6.6.6:8443 198.51.100.66"
	[dns_queries]="evil-test-domain.com evil-parent.com"
	[dns_resolver_trail]="198.51.100.53"
	[dns_responses]="198.51.100.90 198.51.100.91"
	[http_trails]="/malicious-login.php 203.0.113.44 evil-url.example/bad/path"
	[vlan]="66.66.66.66 evil-test-domain.com"
	[fragments]="66.66.66.66"
	[ipv6]="dead::beef evil-test-domain.com"
	[icmp]="66.66.66.66"
	[repeated_detections]="evil-test-domain.com"
	[cache_expiry]="evil-test-domain.com"
	[tls_sni]="tls-evil.example"
	[quic_sni]="quic-evil.example"
	[dlt_raw]="66.66.66.66"
	[dlt_sll]="66.66.66.66"
	[pppoe]="66.66.66.66"
	[ipv4_options]="66.66.66.66"
	[udp_malware_dst]="66.66.66.66"
	[dns_same_socket_burst]="evil-test-domain.com"
)
# Expectations that are not indicator matches (maltrail heuristics or maltrail-only trail forms).
not_applicable="potential|excessive|no such domain|sinkhole response|content type|seized domain|direct .exe|user agent|ICMP|whatever.com|badsite.onion|evilname|dga1234|hostcheck.example|malware \\(test\\)|sinkholed by|parked site"
# Captures whose manifest expects nothing but that do carry a listed address: mixed_soup
# ("interleaved traffic from many cases": the manifest asserts nothing) and truncated (its
# IP headers are whole; only payloads are cut).
quiet_exempt="mixed_soup truncated"
npcaps=0 na=0
while read -r name; do
	npcaps=$((npcaps + 1))
	hits "$corpus/$name.pcap" --list "maltrail:$corpus/trails.csv" >"$tmp/h-$name"
	for v in ${expect[$name]:-}; do
		label="maltrail $name: $v"
		if awk -v v="$v" '$3 == v {f = 1} END {exit !f}' "$tmp/h-$name"; then ok; else
			fail "no hit on indicator $v in: $(tr '\n' ';' <"$tmp/h-$name")"
		fi
	done
	while read -r item; do
		[ -z "$item" ] && continue
		if printf '%s' "$item" | grep -qE "$not_applicable"; then na=$((na + 1)); continue; fi
		# The item is covered when an expected indicator contains it (maltrail names
		# "malicious-login.php" for the trail "/malicious-login.php").
		label="maltrail $name: manifest item '$item' is translated"
		case " ${expect[$name]:-} " in *"$item"*) ok ;; *) fail "add it to the expectation table" ;; esac
	done < <(jq -r --arg n "$name" '.[] | select(.name == $n) | .expect[]' "$corpus/manifest.json" |
		sed 's/^(www)\.//')
	if [ -z "$(jq -r --arg n "$name" '.[] | select(.name == $n) | .expect[]' "$corpus/manifest.json")" ]; then
		case " $quiet_exempt " in *" $name "*) ;; *)
			label="maltrail $name: quiet"
			if [ -s "$tmp/h-$name" ]; then fail "expected no hit, got: $(tr '\n' ';' <"$tmp/h-$name")"; else ok; fi ;;
		esac
	fi
done < <(jq -r '.[].name' "$corpus/manifest.json")
echo "maltrail corpus: $npcaps captures, $na expectations are heuristics (not indicator matches)"

# ---- suricata-verify ----
# bug-2158: two DNS queries on one 5-tuple; both Sofacy C2 names must be found, with the tuple
# of Suricata's alert (192.168.35.10:1030 -> 10.55.99.1:53).
hits "$sv/bug-2158/public-ex1_section8_Sofacy.pcap" \
	--list "maltrail:$net/maltrail/trails/static/malware/apt_sofacy.txt" >"$tmp/sofacy"
check_has "bug-2158: drivres-update.info" "$tmp/sofacy" "^dns.query drivres-update.info drivres-update.info 192.168.35.10:1030 10.55.99.1:53$"
check_has "bug-2158: softupdates.info" "$tmp/sofacy" "^dns.query softupdates.info softupdates.info 192.168.35.10:1030 10.55.99.1:53$"
label="bug-2158: exactly the two queries"
[ "$(wc -l <"$tmp/sofacy")" = 2 ] && ok || fail "expected 2 hits: $(tr '\n' ';' <"$tmp/sofacy")"

# datasets-match-subdomain: the set holds ".evil.com" (base64, dotprefix): 2 alerts per rule.
base64 -d <"$sv/datasets-match-subdomain/domains.lst" | sed 's/^\.//' >"$tmp/sub.txt"
hits "$sv/datasets-match-subdomain/input.pcap" --list "plain:$tmp/sub.txt" >"$tmp/sub"
label="datasets-match-subdomain: 2 hits (mail.evil.com, sub.mail.evil.com; not example.com)"
[ "$(awk '$1 == "dns.query"' "$tmp/sub" | cut -d' ' -f2 | tr '\n' ' ')" = "mail.evil.com sub.mail.evil.com " ] && ok ||
	fail "got: $(tr '\n' ';' <"$tmp/sub")"

# ja4-rules: one TLS and one QUIC alert; the "...X" contents of sids 3 and 4 never match.
grep -o 'content: *"[^"]*"' "$sv/ja4-rules/test.rules" | sed 's/.*"\(.*\)"/\1/' >"$tmp/ja4.txt"
hits "$sv/ja4-rules/input.pcap" --list "plain:$tmp/ja4.txt" >"$tmp/ja4"
label="ja4-rules: the TLS JA4 (1 alert)"
[ "$(grep -c ' t13d1516h2_8daaf6152771_e5627efa2ab1 ' "$tmp/ja4")" = 1 ] && ok || fail "got: $(tr '\n' ';' <"$tmp/ja4")"
label="ja4-rules: the QUIC JA4 (1 alert)"
[ "$(grep -c ' q13d0310h3_55b375c5d22e_cd85d2d88918 ' "$tmp/ja4")" = 1 ] && ok || fail "got: $(tr '\n' ';' <"$tmp/ja4")"

# dns-detect-query-01/02: one alert on the google.com query (requests only, not responses).
for t in 01 02; do
	echo google.com >"$tmp/g.txt"
	hits "$sv/dns/dns-query/dns-detect-query-$t/input.pcap" --list "plain:$tmp/g.txt" >"$tmp/g$t"
	label="dns-detect-query-$t: 1 query hit"
	[ "$(grep -c '^dns.query google.com ' "$tmp/g$t")" = 1 ] && ok || fail "got: $(tr '\n' ';' <"$tmp/g$t")"
done

case_finish
