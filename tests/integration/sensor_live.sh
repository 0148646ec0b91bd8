#!/usr/bin/env bash
# Live capture: a pcap replayed with tcpreplay into a veth pair inside a
# network namespace this test creates must reach the sensor's live sources —
# libpcap and AF_PACKET TPACKET_V3 with a fanout of 2 — as exactly the frames
# that reading the file gives (same count, same bytes: compared as a sorted
# list of per-frame hashes printed by khien-capture-probe), with and without
# a BPF filter. Needs root, ip(8), tcpreplay and python3 (to write the pcap);
# otherwise it is skipped (77) with a message.
set -euo pipefail

BIN=${KHIEN_BIN:-$(dirname "$0")/../../build/bin}
PROBE=$BIN/khien-capture-probe
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "live capture needs root (network namespaces, raw sockets)"
for t in ip tcpreplay python3; do
  command -v $t >/dev/null || skip "$t is not installed"
done
[ -x "$PROBE" ] || skip "$PROBE is not built (cmake --build ... --target khien-capture-probe)"

NS=khien-live-$$
WORK=$(mktemp -d)
PROBE_PID=
cleanup() {
  [ -n "$PROBE_PID" ] && kill "$PROBE_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS" || skip "cannot create a network namespace here"
in_ns() { ip netns exec "$NS" "$@"; }
# No IPv6 in the namespace: the kernel would otherwise send its own router
# solicitations and MLD reports on the link and they would be captured too.
in_ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
in_ns ip link add vA type veth peer name vB
in_ns ip link set vA mtu 9000 up
in_ns ip link set vB mtu 9000 up

# The traffic: DNS questions over UDP, a TCP exchange, 802.1Q-tagged frames
# (the kernel takes the tag off into the packet's metadata; both sources must
# put it back) and IPv6 UDP, every frame different.
python3 - "$WORK/in.pcap" <<'PY'
import struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def ipv4(src, dst, proto, payload):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, bytes(src), bytes(dst))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload
def udp(sp, dp, data): return struct.pack('!HHHH', sp, dp, 8 + len(data), 0) + data
def tcp(sp, dp, seq, flags, data): return struct.pack('!HHIIBBHHH', sp, dp, seq, 0, 5 << 4, flags, 65535, 0, 0) + data
def dnsq(i, name):
    q = b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0'
    return struct.pack('!HHHHHH', i, 0x0100, 1, 0, 0, 0) + q + struct.pack('!HH', 1, 1)
mac_a, mac_b = bytes.fromhex('020000000001'), bytes.fromhex('020000000002')
frames = []
for i in range(60):
    frames.append(mac_b + mac_a + b'\x08\x00' + ipv4([10, 1, 2, 3], [10, 9, 9, 53], 17,
                  udp(40000 + i, 53, dnsq(i, 'host%d.evil.example' % i))))
for i in range(20):
    frames.append(mac_b + mac_a + b'\x08\x00' + ipv4([10, 1, 2, 3], [203, 0, 113, 7], 6,
                  tcp(50000, 443, 1000 + i * 100, 0x18, b'x' * (10 + i))))
for i in range(4):
    frames.append(mac_b + mac_a + b'\x81\x00' + struct.pack('!H', 100 + i) + b'\x08\x00' +
                  ipv4([10, 1, 2, 4], [10, 9, 9, 53], 17, udp(41000 + i, 53, dnsq(i, 'vlan%d.example' % i))))
for i in range(3):
    src = bytes.fromhex('20010db8000000000000000000000001'); dst = bytes.fromhex('20010db8000000000000000000000035')
    u = udp(42000 + i, 53, dnsq(i, 'six%d.example' % i))
    frames.append(mac_b + mac_a + b'\x86\xdd' + struct.pack('!IHBB', 6 << 28, len(u), 17, 64) + src + dst + u)
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for n, fr in enumerate(frames):
        f.write(struct.pack('<IIII', 1700000000 + n // 10, (n % 10) * 1000, len(fr), len(fr)) + fr)
PY

hashes() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["frames"], " ".join(d["hashes"]))' "$1"; }

fail=0
run_case() { # kind fanout bpf
  local kind=$1 fanout=$2 bpf=$3 name="$1 fanout=$2 bpf='$3'"
  local extra=()
  [ -n "$bpf" ] && extra=(--bpf "$bpf")
  "$PROBE" --kind pcap --path "$WORK/in.pcap" "${extra[@]}" >"$WORK/file.json"
  local want
  want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frames"])' "$WORK/file.json")
  rm -f "$WORK/ready"
  in_ns "$PROBE" --kind "$kind" --path vB --fanout "$fanout" --count "$want" --linger 500 --timeout 20 \
    --ready "$WORK/ready" "${extra[@]}" >"$WORK/live.json" &
  PROBE_PID=$!
  for _ in $(seq 100); do [ -e "$WORK/ready" ] && break; sleep 0.1; done
  [ -e "$WORK/ready" ] || { echo "FAIL $name: the probe did not start"; fail=1; return; }
  in_ns tcpreplay -q --pps 2000 -i vA "$WORK/in.pcap" >/dev/null 2>&1 ||
    { echo "FAIL $name: tcpreplay failed"; fail=1; }
  wait "$PROBE_PID" || { echo "FAIL $name: the probe failed"; fail=1; }
  PROBE_PID=
  # With a fanout, every thread must have had its share of the 60+ flows.
  local idle
  idle=$(python3 -c 'import json,sys; print(sum(1 for n in json.load(open(sys.argv[1]))["workers"] if n == 0))' "$WORK/live.json")
  if [ "$idle" != 0 ]; then
    echo "FAIL $name: $idle fanout thread(s) got no frame: $(head -c 200 "$WORK/live.json")"
    fail=1
  elif [ "$(hashes "$WORK/file.json")" = "$(hashes "$WORK/live.json")" ]; then
    echo "ok   $name: $want frames, the same as the file (per thread: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["workers"])' "$WORK/live.json"))"
  else
    echo "FAIL $name: live capture differs from the file"
    python3 - "$WORK/file.json" "$WORK/live.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print('  file frames', a['frames'], 'live frames', b['frames'], 'kernel drops', b['kernel_drops'])
print('  only in file:', sorted(set(a['hashes']) - set(b['hashes']))[:5])
print('  only live:   ', sorted(set(b['hashes']) - set(a['hashes']))[:5])
PY
    fail=1
  fi
}

run_case live 1 ""
run_case afpacket 1 ""
run_case afpacket 2 ""
run_case live 1 "udp port 53"
run_case afpacket 2 "udp port 53"
exit $fail
