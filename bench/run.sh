#!/usr/bin/env bash
# make bench: call throughput and CPU per call of sipsvc, and of a Kamailio stateful proxy on
# the same machine for comparison. See docs/performance.md.
#
# For each target (sipsvc, kamailio) and transport (udp, tcp; tls when asked for, see below):
#   1. SIPp places calls (INVITE/200/ACK/BYE/200, uac.xml) at rising rates ($RATES calls/s,
#      $DURATION s each) through the target to a SIPp answering side (uas.xml); each step
#      prints calls completed/failed, the achieved rate and the response-time distribution
#      (INVITE→200, from SIPp's -trace_rtt); the highest rate with zero failed calls is kept.
#   2. At a fixed $CPU_RATE calls/s for $CPU_SECONDS s, the CPU time (utime+stime from
#      /proc/PID/stat, before and after) the target's processes spent per completed call.
#
# Knobs (environment): RATES, DURATION, CPU_RATE, CPU_SECONDS, TRANSPORTS ("udp tcp"),
# TARGETS ("sipsvc kamailio"), OUT (results directory; default bench/out/<UTC time>),
# PORT_BASE (15000). Ports on 127.0.0.1: BASE+60/61 sipsvc, BASE+70 kamailio, BASE+90 (udp)
# and BASE+92 (tcp) the SIPp answering side, BASE+80 the SIPp caller. Loopback only.
# TLS: TRANSPORTS="tls" (or "udp tcp tls") with SIPP_TLS=/path/to/sipp, a SIPp built with TLS
# (Debian's sip-tester has none; docs/performance.md says how to build one). The caller reaches
# sipsvc over TLS (BASE+61) and sipsvc reaches a SIPp answering side over TLS (BASE+91); both
# SIPps and sipsvc use a self-signed pair that openssl makes in $OUT/certs, which sipsvc also
# trusts (tls.ca_file), so sipsvc verifies the answering side as it would in production;
# TLS_VERIFY=0 gives the DN insecure_skip_verify instead (the other dial path of sipsvc).
# Kamailio is measured over UDP and TCP only (bench/kamailio.cfg has no TLS listener).
# COLD=1 starts a fresh sipsvc before each transport's first step: no call comes before the
# first step, so sipsvc opens its TCP/TLS connections under load (e.g.
# COLD=1 RATES=1500 TRANSPORTS=tls TARGETS=sipsvc). SIPSVC_BIN=/path/to/sipsvc runs that binary
# instead of building cmd/sipsvc from the work tree (to measure an older build: before/after);
# settings an older build does not know (lines marked "# newer" in the generated sipsvc.yaml)
# are dropped for it, and the summary says so.
# TRANSACTION_WAIT (32s) is sipsvc's sip.transaction_wait (Kamailio's tm wt_timer, its equivalent,
# is 5s by default); GOMAXPROCS, Go's own variable, is passed through to sipsvc. SIPP_BUFFER
# (4194304) is every SIPp's -buff_size, its socket buffers in bytes (SIPp's own default is 64 KB,
# which overflows at a few thousand datagrams a second; capped by net.core.rmem_max). Each step
# reports the host's UDP receive-buffer drops (RcvbufErrors), every socket counted.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RATES=${RATES:-"250 500 1000 1500 2000 3000"}
DURATION=${DURATION:-10}
TRANSACTION_WAIT=${TRANSACTION_WAIT:-32s}
CPU_RATE=${CPU_RATE:-1500}
CPU_SECONDS=${CPU_SECONDS:-10}
TRANSPORTS=${TRANSPORTS:-"udp tcp"}
TARGETS=${TARGETS:-"sipsvc kamailio"}
OUT=${OUT:-$HERE/out/$(date -u +%Y%m%dT%H%M%SZ)}
BASE=${PORT_BASE:-15000}
SVC_PORT=$((BASE + 60)) SVC_TLS=$((BASE + 61)) KAM_PORT=$((BASE + 70)) UAS_UDP=$((BASE + 90)) UAS_TCP=$((BASE + 92)) UAC_PORT=$((BASE + 80))
UAS_TLS=$((BASE + 91))
SIPP_TLS=${SIPP_TLS:-}
COLD=${COLD:-0}
TLS_VERIFY=${TLS_VERIFY:-1}
SIPSVC_BIN=${SIPSVC_BIN:-}
SETTLE=${SETTLE:-5}
SIPP_BUFFER=${SIPP_BUFFER:-4194304}

mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
say() { echo "$*" | tee -a "$SUMMARY"; }

for tool in sipp bc timeout; do
  command -v $tool >/dev/null || { echo "bench: $tool missing (apt-get install sip-tester bc coreutils)" >&2; exit 1; }
done
if [[ " $TARGETS " == *" kamailio "* ]] && ! command -v kamailio >/dev/null; then
  echo "bench: kamailio missing (apt-get install -y kamailio), or run with TARGETS=sipsvc" >&2
  exit 1
fi
WANT_TLS=0
[[ " $TRANSPORTS " == *" tls "* ]] && WANT_TLS=1
if ((WANT_TLS)); then
  SIPP_TLS=${SIPP_TLS:-sipp}
  command -v openssl >/dev/null || { echo "bench: openssl missing (apt-get install -y openssl)" >&2; exit 1; }
  # SIPp names its build options in its version, e.g. "SIPp v3.7.7-TLS-SHA256".
  if [[ $("$SIPP_TLS" -v 2>&1 || true) != *-TLS* ]]; then
    echo "bench: $SIPP_TLS has no TLS support: set SIPP_TLS to a SIPp built with TLS (docs/performance.md, \"SIPp with TLS\")" >&2
    exit 1
  fi
fi
if [[ -n $SIPSVC_BIN && ! -x $SIPSVC_BIN ]]; then echo "bench: SIPSVC_BIN=$SIPSVC_BIN is not an executable" >&2; exit 1; fi
for p in $SVC_PORT $SVC_TLS $KAM_PORT $UAS_UDP $UAS_TCP $UAS_TLS; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "bench: 127.0.0.1:$p is in use" >&2; exit 1; fi
done

# stop_pid PID: SIGTERM, then SIGKILL if still alive after 5 s (sipsvc drains calls on
# SIGTERM, and an interrupted run can leave calls up).
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
BGPIDS=()
cleanup() { for p in "${BGPIDS[@]}"; do stop_pid "$p"; done; }
trap cleanup EXIT
trap "exit 130" INT TERM

# ticks PIDS...: utime+stime (clock ticks) of the processes, children not included.
ticks() {
  local t=0 p f
  for p in "$@"; do
    read -r -a f < "/proc/$p/stat" || continue
    # fields after the "(comm)" are shifted if comm has spaces; kamailio/sipsvc have none
    t=$((t + f[13] + f[14]))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)

# descendants PID: the pid and all its descendants.
descendants() {
  local all=("$1") kids k
  kids=$(pgrep -P "$1" || true)
  for k in $kids; do all+=($(descendants "$k")); done
  echo "${all[@]}"
}

wait_tcp() { # port
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done
  echo "bench: nothing listening on 127.0.0.1:$1" >&2; return 1
}

# wait_listen PORT: wait until something listens on TCP 127.0.0.1:PORT, without connecting
# (a TLS SIPp exits when a connection closes before its handshake).
wait_listen() {
  local hex
  hex=$(printf '%04X' "$1")
  for _ in $(seq 100); do grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp && return 0; sleep 0.1; done
  echo "bench: nothing listening on 127.0.0.1:$1" >&2; return 1
}

# statcol FILE COLUMN: the last value of a column of a SIPp statistics file.
statcol() {
  [[ -n $1 && -f $1 ]] || return 0
  awk -F';' -v c="$2" 'NR==1 {for (i=1;i<=NF;i++) if ($i==c) k=i; next} k {v=$k} END {print v}' "$1"
}

# rcvbuf_errors: UDP datagrams the host dropped because a socket's receive buffer was full.
rcvbuf_errors() { awk '/^Udp:/ {v=$6} END {print v+0}' /proc/net/snmp; }

# conns PORT: TCP connections established to 127.0.0.1:PORT (a listener of ours) right now.
conns() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" 'substr($2, length($2) - 4) == p && $4 == "01" {n++} END {print n+0}' /proc/net/tcp
}

# run_sipp LABEL TARGET_HOSTPORT TRANSPORT DIAL RATE CALLS: one fixed-rate SIPp run.
# Sets OK FAILED WALL ACHIEVED P50 P90 P99 PMAX DROPS CONNS DIR.
run_sipp() {
  local label=$1 target=$2 tr=$3 dial=$4 rate=$5 calls=$6 t s e stat rtt
  DIR=$OUT/runs/$label-$tr-$rate-$(date +%s%N)
  mkdir -p "$DIR"
  local bin=sipp tls=()
  t=u1; [[ $tr == tcp ]] && t=t1
  if [[ $tr == tls ]]; then
    t=l1 bin=$SIPP_TLS tls=(-tls_cert "$CERTS/cert.pem" -tls_key "$CERTS/key.pem")
  fi
  local d0
  d0=$(rcvbuf_errors)
  s=$(date +%s.%N)
  (cd "$DIR" && timeout -s INT $((calls / rate + 25)) "$bin" -sf "$HERE/uac.xml" "$target" -t $t "${tls[@]}" -i 127.0.0.1 -p $UAC_PORT \
     -buff_size "$SIPP_BUFFER" -s "$dial" -r "$rate" -m "$calls" -l 5000 -nostdin -trace_screen -trace_err -trace_stat -fd 1 -trace_rtt -rtt_freq 100 \
     -timeout $((calls / rate + 20)) > sipp.out 2>&1) || true
  e=$(date +%s.%N)
  DROPS=$(($(rcvbuf_errors) - d0))
  # Over TCP/TLS: the connections the target holds open to the answering side after the run
  # (one is expected; more means it dialled again, e.g. several at once on a cold start).
  CONNS=-
  [[ $tr == tcp ]] && CONNS=$(conns $UAS_TCP)
  [[ $tr == tls ]] && CONNS=$(conns $UAS_TLS)
  # Counters from the statistics file SIPp writes every second (-trace_stat -fd 1): it is
  # there even when SIPp had to be killed. A call that did not complete counts as failed.
  stat=$(ls "$DIR"/*_.csv 2>/dev/null | head -1 || true)
  OK=$(statcol "$stat" 'SuccessfulCall(C)')
  OK=${OK:-0}
  FAILED=$((calls - OK))
  WALL=$(echo "scale=2; ($e - $s)/1" | bc)
  ACHIEVED=$(echo "scale=0; $OK / $WALL" | bc)
  rtt=$(ls "$DIR"/*_rtt.csv 2>/dev/null | head -1 || true)
  read -r P50 P90 P99 PMAX < <(
    { [[ -n $rtt ]] && awk -F';' 'NR>1 && $2 ~ /^[0-9.]+$/ {print $2}' "$rtt"; } | sort -n |
      awk '{v[NR]=$1} END {if (NR==0) {print "- - - -"; exit}
           i50=int(NR*0.50); i90=int(NR*0.90); i99=int(NR*0.99); if(i50<1)i50=1; if(i90<1)i90=1; if(i99<1)i99=1;
           printf "%.2f %.2f %.2f %.2f\n", v[i50], v[i90], v[i99], v[NR]}')
}

# repartition DIR: SIPp's INVITE→200 response-time repartition of a run.
repartition() {
  local screen
  screen=$(ls "$1"/*_screen.log 2>/dev/null | head -1 || true)
  [[ -n $screen ]] || return 0
  awk '/Average Response Time Repartition/ {on=1; next} /Average Call Length Repartition/ {on=0} on && /ms/ {print "      " $0}' "$screen" |
    tail -n 11
}

# bench_target NAME HOSTPORT DIAL_UDP DIAL_TCP PIDS_FN [HOSTPORT_TLS DIAL_TLS [RESTART_FN]]
# Without HOSTPORT_TLS the target is not measured over TLS. With COLD=1, RESTART_FN starts a
# fresh target before each transport.
bench_target() {
  local name=$1 hp=$2 dial_udp=$3 dial_tcp=$4 pidsfn=$5 hp_tls=${6:-} dial_tls=${7:-} restart=${8:-} tr dial rate best bestdir calls t0 t1 pids cpu us thp cold=""
  for tr in $TRANSPORTS; do
    dial=$dial_udp thp=$hp
    [[ $tr == tcp ]] && dial=$dial_tcp
    if [[ $tr == tls ]]; then
      if [[ -z $hp_tls ]]; then
        say ""
        say "== $name over tls: skipped (no TLS listener in its bench configuration)"
        continue
      fi
      dial=$dial_tls thp=$hp_tls
    fi
    if [[ $COLD == 1 && -n $restart ]]; then
      $restart
      cold=", cold: a fresh $name, no call before the first step"
    fi
    say ""
    say "== $name over $tr$cold: rising rates, ${DURATION}s each (response time INVITE->200 in ms)"
    say "$(printf '   %-6s %8s %7s %7s %9s %7s %7s %7s %8s %6s %5s' rate calls ok failed achieved p50 p90 p99 max drops conns)"
    say "   (failed = placed but not completed; achieved = completed calls per wall-clock second of the run;"
    say "    conns = TCP/TLS connections open to the answering side after the step)"
    best=0 bestdir="" misses=0
    for rate in $RATES; do
      if ((misses >= 2)); then
        say "$(printf '   %-6s (skipped: two rates in a row had failures)' "$rate")"
        continue
      fi
      calls=$((rate * DURATION))
      run_sipp "$name" "$thp" "$tr" "$dial" "$rate" "$calls"
      say "$(printf '   %-6s %8s %7s %7s %9s %7s %7s %7s %8s %6s %5s' "$rate" "$calls" "$OK" "$FAILED" "$ACHIEVED" "$P50" "$P90" "$P99" "$PMAX" "$DROPS" "$CONNS")"
      if [[ $FAILED == 0 && $OK == "$calls" ]]; then best=$rate bestdir=$DIR misses=0; else misses=$((misses + 1)); fi
      sleep "$SETTLE"
    done
    say "   highest rate with zero failed calls: $best calls/s"
    if [[ -n $bestdir ]]; then
      say "   response-time repartition at $best calls/s (SIPp, INVITE->200):"
      repartition "$bestdir" | tee -a "$SUMMARY"
    fi
    calls=$((CPU_RATE * CPU_SECONDS))
    pids=$($pidsfn)
    t0=$(ticks $pids)
    run_sipp "$name-cpu" "$thp" "$tr" "$dial" "$CPU_RATE" "$calls"
    t1=$(ticks $pids)
    cpu=$(echo "scale=2; ($t1 - $t0) / $HZ" | bc)
    us=$(echo "scale=0; ($t1 - $t0) * 1000000 / $HZ / $(( OK > 0 ? OK : 1 ))" | bc)
    say "   CPU per call at $CPU_RATE calls/s: ${us} us ($name pids [$pids] used ${cpu}s for $OK completed calls, $FAILED failed, p50 ${P50} ms p99 ${P99} ms, $DROPS UDP drops)"
    RESULT["$name/$tr"]="best=$best cpu_us_per_call=$us ok=$OK failed=$FAILED"
    sleep "$SETTLE"
  done
}

declare -A RESULT

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if [[ -n $SIPSVC_BIN ]]; then
  dirty=" (sipsvc: the binary $SIPSVC_BIN, not built from this commit)"
elif [[ -n $(git -C "$ROOT" status --porcelain -- cmd config signaling sips dn registrar store service telemetry go.mod go.sum 2>/dev/null) ]]; then
  dirty=" (+ uncommitted changes in the work tree)"
fi
say "sipsvc bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit$dirty, sipsvc transaction_wait $TRANSACTION_WAIT, GOMAXPROCS ${GOMAXPROCS:-default}"
say "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*'), socket buffers $SIPP_BUFFER B"
if ((WANT_TLS)); then say "sipp for tls: $SIPP_TLS, $("$SIPP_TLS" -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*')"; fi
if [[ $COLD == 1 ]]; then say "cold: a fresh sipsvc before each transport's first step"; fi
if ((WANT_TLS)) && [[ $TLS_VERIFY == 0 ]]; then say "tls: sipsvc does not verify the answering side (insecure_skip_verify)"; fi
say "results: $OUT"

# The answering side, shared by both targets.
(cd "$OUT" && exec sipp -sf "$HERE/uas.xml" -i 127.0.0.1 -p $UAS_UDP -buff_size "$SIPP_BUFFER" -nostdin > uas-udp.out 2>&1) &
BGPIDS+=($!)
(cd "$OUT" && exec sipp -sf "$HERE/uas.xml" -t t1 -i 127.0.0.1 -p $UAS_TCP -buff_size "$SIPP_BUFFER" -nostdin -max_socket 5000 > uas-tcp.out 2>&1) &
BGPIDS+=($!)
wait_tcp $UAS_TCP
CERTS=$OUT/certs
if ((WANT_TLS)); then
  # One self-signed pair for 127.0.0.1, for both SIPps and sipsvc; sipsvc trusts it (tls.ca_file).
  mkdir -p "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" 2>"$CERTS/openssl.log"
  (cd "$OUT" && exec "$SIPP_TLS" -sf "$HERE/uas.xml" -t l1 -tls_cert "$CERTS/cert.pem" -tls_key "$CERTS/key.pem" \
     -i 127.0.0.1 -p $UAS_TLS -buff_size "$SIPP_BUFFER" -nostdin -max_socket 5000 > uas-tls.out 2>&1) &
  BGPIDS+=($!)
  wait_listen $UAS_TLS
fi

if [[ " $TARGETS " == *" sipsvc "* ]]; then
  SVC_BINARY=$SIPSVC_BIN
  if [[ -z $SVC_BINARY ]]; then
    echo "building sipsvc..."
    (cd "$ROOT" && go build -o "$OUT/sipsvc" ./cmd/sipsvc)
    SVC_BINARY=$OUT/sipsvc
  fi
  tls_yaml=""
  if ((WANT_TLS)); then
    tls_yaml="tls:
  cert_file: $CERTS/cert.pem
  key_file: $CERTS/key.pem
  ca_file: $CERTS/cert.pem"
  fi
  # Lines marked "# newer" are settings that older builds (SIPSVC_BIN) do not know: start_svc
  # drops them when sipsvc refuses the configuration for an unknown field. The caller (SIPp,
  # From "load", no password) is anonymous: the bench DNs allow that, and the call caps are
  # out of the way of the rate steps, since neither is what is measured.
  cat > "$OUT/sipsvc.yaml" <<EOF
data_dir: $OUT/data
sip:
  udp: ["127.0.0.1:$SVC_PORT"]
  tcp: ["127.0.0.1:$SVC_PORT"]
  tls: ["127.0.0.1:$SVC_TLS"]
  transaction_wait: $TRANSACTION_WAIT
$tls_yaml
api:
  grpc_addr: "127.0.0.1:0"
  http_addr: "127.0.0.1:0"
log:
  level: warn
calls: # newer
  max_calls: 1000000 # newer
  max_calls_per_source: 1000000 # newer
  max_calls_per_dn: 1000000 # newer
dns:
  - number: bench
    type: extension
    contact: "sip:bench@127.0.0.1:$UAS_UDP"
    allow_anonymous: true # newer
  - number: bench-tcp
    type: extension
    contact: "sip:bench-tcp@127.0.0.1:$UAS_TCP;transport=tcp"
    allow_anonymous: true # newer
  - number: bench-tls
    type: extension
    contact: "sip:bench-tls@127.0.0.1:$UAS_TLS;transport=tls"
$([[ $TLS_VERIFY == 0 ]] && echo "    insecure_skip_verify: true")
    allow_anonymous: true # newer
EOF
  SVC_PID=""
  # start_svc: (re)start sipsvc and wait for its listeners; if it refuses the configuration
  # for a field it does not know (an older build), once more without the "# newer" lines.
  start_svc() {
    local try
    if [[ -n $SVC_PID ]]; then stop_pid "$SVC_PID"; fi
    for try in 1 2; do
      "$SVC_BINARY" --config "$OUT/sipsvc.yaml" >> "$OUT/sipsvc.log" 2>&1 &
      SVC_PID=$!
      BGPIDS+=("$SVC_PID")
      for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$SVC_PORT) 2>/dev/null && return 0
        kill -0 "$SVC_PID" 2>/dev/null || break
        sleep 0.1
      done
      if ((try == 1)) && ! kill -0 "$SVC_PID" 2>/dev/null && grep -q 'not found in type' "$OUT/sipsvc.log" &&
        grep -q '# newer$' "$OUT/sipsvc.yaml"; then
        sed -i '/# newer$/d' "$OUT/sipsvc.yaml"
        say "sipsvc: this build does not know the settings marked \"# newer\" in sipsvc.yaml (call caps, allow_anonymous): running without them"
        continue
      fi
      break
    done
    echo "bench: sipsvc did not start (see $OUT/sipsvc.log):" >&2
    tail -5 "$OUT/sipsvc.log" >&2
    exit 1
  }
  [[ $COLD == 1 ]] || start_svc # cold: bench_target starts it
  svc_pids() { echo $SVC_PID; }
  bench_target sipsvc 127.0.0.1:$SVC_PORT bench bench-tcp svc_pids 127.0.0.1:$SVC_TLS bench-tls start_svc
  stop_pid $SVC_PID
fi

if [[ " $TARGETS " == *" kamailio "* ]]; then
  say ""
  say "kamailio: $(kamailio -v 2>&1 | head -1)"
  sed -e "s/15070/$KAM_PORT/g; s/15090/$UAS_UDP/g; s/15092/$UAS_TCP/g" "$HERE/kamailio.cfg" > "$OUT/kamailio.cfg"
  kamailio -DD -E -f "$OUT/kamailio.cfg" -m 1024 -M 64 > "$OUT/kamailio.log" 2>&1 &
  KAM_PID=$!
  BGPIDS+=($KAM_PID)
  wait_tcp $KAM_PORT
  sleep 1
  kam_pids() { descendants $KAM_PID; }
  bench_target kamailio 127.0.0.1:$KAM_PORT bench bench kam_pids
  stop_pid $KAM_PID
fi

say ""
say "== summary (commit $commit$dirty): highest zero-failure rate, CPU per call at $CPU_RATE calls/s"
for k in $(printf '%s\n' "${!RESULT[@]}" | sort); do say "   $k: ${RESULT[$k]}"; done
