#!/usr/bin/env bash
# make bench-register: authenticated REGISTER/s of sipsvc's registrar. See docs/performance.md.
#
# Seeds $USERS self-registered DNs (contact "*", each with its own password) into a bench
# config, then SIPp (register.xml: REGISTER / 401 / REGISTER with digest / 200) registers
# at rising rates ($RATES REGISTER/s, $DURATION s each) over UDP. Each step takes the next
# slice of the user list (an injection file per step), so every REGISTER within a step is a
# different DN. Prints, per step, registrations completed/failed, and the highest rate with
# zero failures with its response-time distribution. The issue's bar: 5,000/s.
#
# Knobs: USERS (36000), RATES ("500 1000 2000 3000 5000 7000"), DURATION (5), TRANSPORT
# (udp|tcp), OUT, PORT_BASE (15100), TRANSACTION_WAIT (32s: sipsvc's sip.transaction_wait; Kamailio's
# tm wt_timer equivalent is 5s), GOMAXPROCS (Go's own variable, passed through), SIPP_BUFFER
# (4194304: SIPp's -buff_size, its socket buffers in bytes; capped by net.core.rmem_max/wmem_max).
# Ports on 127.0.0.1: BASE+60/61 (sipsvc), BASE+80 (SIPp).
#
# SIPp's own default buffer is 64 KB. At 5,000 REGISTER/s (20,000 datagrams/s) it overflows
# whenever SIPp falls behind for a few milliseconds: the kernel drops the 401s and 200s
# sipsvc sent, SIPp retransmits until the server transaction is gone, and the late
# retransmission is then rightly refused as a replayed nonce-count. Each step reports the
# host's UDP RcvbufErrors delta ("drops") so a run that lost datagrams in a socket buffer says so.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
USERS=${USERS:-36000}
RATES=${RATES:-"500 1000 2000 3000 5000 7000"}
DURATION=${DURATION:-5}
TRANSACTION_WAIT=${TRANSACTION_WAIT:-32s}
TRANSPORT=${TRANSPORT:-udp}
SIPP_BUFFER=${SIPP_BUFFER:-4194304}
OUT=${OUT:-$HERE/out/register-$(date -u +%Y%m%dT%H%M%SZ)}
BASE=${PORT_BASE:-15100}
SVC_PORT=$((BASE + 60)) SVC_TLS=$((BASE + 61)) UAC_PORT=$((BASE + 80)) FIRST=100000
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
say() { echo "$*" | tee -a "$SUMMARY"; }
command -v sipp >/dev/null || { echo "bench-register: sipp missing (apt-get install sip-tester)" >&2; exit 1; }
t=u1
[[ $TRANSPORT == tcp ]] && t=t1

BGPIDS=()
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() { for p in "${BGPIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap "exit 130" INT TERM

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
say "sipsvc bench-register $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit, $USERS users, $TRANSPORT, transaction_wait $TRANSACTION_WAIT, GOMAXPROCS ${GOMAXPROCS:-default}, SIPp buffers $SIPP_BUFFER B"
rmem_max=$(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo 0)
if ((rmem_max < SIPP_BUFFER)); then
  say "note: net.core.rmem_max is $rmem_max, below SIPP_BUFFER: SIPp's buffer is capped there (sysctl -w net.core.rmem_max=$SIPP_BUFFER)"
fi
say "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); results: $OUT"

echo "building sipsvc..."
(cd "$ROOT" && go build -o "$OUT/sipsvc" ./cmd/sipsvc)
{
  cat <<CFG
data_dir: $OUT/data
sip:
  udp: ["127.0.0.1:$SVC_PORT"]
  tcp: ["127.0.0.1:$SVC_PORT"]
  tls: ["127.0.0.1:$SVC_TLS"]
  transaction_wait: $TRANSACTION_WAIT
api:
  grpc_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
log:
  level: warn
registrar:
  auth_fail_limit: 1000000
  digest_algorithms: [MD5, SHA-256]   # SIPp 3.6 answers only an MD5 challenge, and only the first one
dns:
CFG
  awk -v n="$USERS" -v f="$FIRST" 'BEGIN { for (i = 0; i < n; i++) printf "  - {number: \"%d\", type: extension, contact: \"*\", password: \"pw-%d\"}\n", f+i, f+i }'
} > "$OUT/sipsvc.yaml"

t0=$(date +%s.%N)
"$OUT/sipsvc" --config "$OUT/sipsvc.yaml" > "$OUT/sipsvc.log" 2>&1 &
SVC_PID=$!
BGPIDS+=($SVC_PID)
# sipsvc seeds every DN into its store before it opens the SIP ports: allow minutes.
for _ in $(seq 3000); do
  (exec 3<>/dev/tcp/127.0.0.1/$SVC_PORT) 2>/dev/null && break
  kill -0 $SVC_PID 2>/dev/null || break
  sleep 0.1
done
if ! (exec 3<>/dev/tcp/127.0.0.1/$SVC_PORT) 2>/dev/null; then
  echo "sipsvc did not start:" >&2
  tail -20 "$OUT/sipsvc.log" >&2
  exit 1
fi

say "sipsvc ready after $(echo "scale=1; ($(date +%s.%N) - $t0)/1" | bc) s (seeding $USERS DNs)"

# users FROM COUNT FILE: an injection file of COUNT users starting at offset FROM (wrapping).
users() {
  awk -v from="$1" -v n="$2" -v total="$USERS" -v f="$FIRST" \
    'BEGIN { print "SEQUENTIAL"; for (i = 0; i < n; i++) { u = f + (from + i) % total; printf "%d;[authentication username=%d password=pw-%d]\n", u, u, u } }' > "$3"
}

# statcol FILE COLUMN: the last value of a column of a SIPp statistics file.
statcol() {
  [[ -n $1 && -f $1 ]] || return 0
  awk -F';' -v c="$2" 'NR==1 {for (i=1;i<=NF;i++) if ($i==c) k=i; next} k {v=$k} END {print v}' "$1"
}

# persec FILE: from SIPp's per-second statistics, the median and the lowest number of
# registrations completed per second, over the seconds in which SIPp was still placing
# registrations (its first row, at time 0, and the draining rows at the end are left out).
persec() {
  [[ -n $1 && -f $1 ]] || { echo "0 0"; return; }
  awk -F';' 'NR==1 {for (i=1;i<=NF;i++) {if ($i=="SuccessfulCall(P)") s=i; if ($i=="CallRate(P)") r=i}; next}
    NR>2 && $r+0 > 0 {print $s+0}' "$1" | sort -n |
    awk '{v[n++]=$1} END {if (!n) print "0 0"; else print v[int((n-1)/2)], v[0]}'
}

# rcvbuf_errors: the host's count of UDP datagrams dropped because a socket's receive buffer
# was full (RcvbufErrors in /proc/net/snmp), every socket included.
rcvbuf_errors() { awk '/^Udp:/ {v=$6} END {print v+0}' /proc/net/snmp; }

# run RATE COUNT OFFSET: one fixed-rate SIPp run; sets OK FAILED ACHIEVED PERSEC PERSEC_MIN
# DROPS DIR.
# A registration that did not complete counts as failed; ACHIEVED is completed registrations
# per second of wall-clock time, SIPp's start and end included (a lower bound: SIPp's start-up
# is ~10% of a 5 s step); PERSEC is the median per-second rate while SIPp was placing them.
run() {
  local rate=$1 n=$2 off=$3 stat s e
  DIR=$OUT/runs/register-$rate-$(date +%s%N)
  mkdir -p "$DIR"
  users "$off" "$n" "$DIR/users.csv"
  local d0
  d0=$(rcvbuf_errors)
  s=$(date +%s.%N)
  (cd "$DIR" && timeout -s INT $((n / rate + 25)) sipp -sf "$HERE/register.xml" -inf users.csv 127.0.0.1:$SVC_PORT -t $t \
     -i 127.0.0.1 -p $UAC_PORT -buff_size "$SIPP_BUFFER" -r "$rate" -m "$n" -l 5000 -nostdin -trace_screen -trace_err -trace_stat -fd 1 \
     -timeout $((n / rate + 20)) > sipp.out 2>&1) || true
  e=$(date +%s.%N)
  DROPS=$(($(rcvbuf_errors) - d0))
  stat=$(ls "$DIR"/*_.csv 2>/dev/null | head -1 || true)
  OK=$(statcol "$stat" 'SuccessfulCall(C)')
  OK=${OK:-0}
  FAILED=$((n - OK))
  ACHIEVED=$(echo "scale=0; $OK / ($e - $s)" | bc)
  read -r PERSEC PERSEC_MIN < <(persec "$stat")
}

# Probe: one registration, to say clearly when the registrar is not wired into the binary.
run 1 1 0
if [[ $OK != 1 ]]; then
  if grep -q "authentication must use MD5" "$DIR"/*_errors.log 2>/dev/null; then
    say "bench-register: SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1) answers only an MD5 challenge in the first WWW-Authenticate header, and sipsvc's 401 lists another algorithm first (registrar.digest_algorithms); see $DIR"
  elif grep -qE "SIP/2.0 (405|501)" "$DIR"/*_errors.log 2>/dev/null; then
    say "bench-register: sipsvc answered REGISTER with $(grep -ohE 'SIP/2.0 (405|501) [A-Za-z ]*' "$DIR"/*_errors.log | head -1): the registrar is not wired into the binary (issue 3)"
  else
    say "bench-register: the probe registration failed; see $DIR"
    tail -20 "$DIR"/*_errors.log 2>/dev/null || true
  fi
  exit 1
fi

say ""
say "== REGISTER with digest over $TRANSPORT, rising rates, ${DURATION}s each"
say "$(printf '   %-6s %9s %7s %7s %9s %12s %12s %7s' rate registers ok failed achieved per-s-median per-s-lowest drops)"
best=0 bestdir="" off=1
for rate in $RATES; do
  n=$((rate * DURATION))
  if ((n > USERS)); then say "   (rate $rate: $n registrations > $USERS users: some users register twice)"; fi
  run "$rate" "$n" "$off"
  off=$(((off + n) % USERS))
  say "$(printf '   %-6s %9s %7s %7s %9s %12s %12s %7s' "$rate" "$n" "$OK" "$FAILED" "$ACHIEVED" "$PERSEC" "$PERSEC_MIN" "$DROPS")"
  # a step passes when nothing failed and sipsvc kept up: the median second completed at
  # least 98% of the offered rate (SIPp's own pacing wobbles by a percent or two)
  if [[ $FAILED == 0 ]] && ((PERSEC * 100 >= rate * 98)); then best=$rate bestdir=$DIR; fi
  sleep 3
done
say "   highest rate with zero failed registrations, sustained (median second >= 98% of it): $best REGISTER/s (bar: 5000)"
if [[ -n $bestdir ]]; then
  say "   response-time repartition at $best/s (SIPp, first REGISTER to final 200):"
  awk '/Average Response Time Repartition/ {on=1; next} /Average Call Length Repartition/ {on=0} on && /ms/ {print "      " $0}' \
    "$(ls "$bestdir"/*_screen.log | head -1)" | tail -n 11 | tee -a "$SUMMARY"
fi
