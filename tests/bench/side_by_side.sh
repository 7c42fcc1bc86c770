#!/usr/bin/env bash
# Side-by-side benchmark (issue #13): tandem-mio and tandem (smol) next to nginx (HTTP) and a
# real Serf agent plus a floor server (RPC), in interleaved rounds, on loopback. CPU per
# request is the server's utime+stime from /proc over the round. Not part of `cargo test`.
#
#   tests/bench/side_by_side.sh [ROUNDS] [SECS]     # defaults: 3 rounds of 3 s per cell
#
# Installs nginx, wrk and serf with apt when missing. Builds the release binaries.
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-3}
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v serf >/dev/null || need+=(serf)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p tandem-smol -p tandem-mio
cargo build --release -q -p tandem-tests --bin rpc_load
BIN=$ROOT/target/release
TCK=$(getconf CLK_TCK)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
# utime+stime in clock ticks of a process and its threads (all of nginx's processes).
cpu() { local t=0; for p in $1; do t=$((t + $(awk '{print $14+$15}' /proc/"$p"/stat))); done; echo $t; }

# tandem (smol) and tandem-mio
declare -A HTTP RPC CPUPIDS
for rt in mio smol; do
    h=$(port); r=$(port); g=$(port)
    b=$BIN/tandem; [ $rt = mio ] && b=$BIN/tandem-mio
    "$b" agent -node "bench-$rt" -http-addr 127.0.0.1:$h -rpc-addr 127.0.0.1:$r -bind 127.0.0.1 -lan-port $g \
        -log-level err >"$WORK/$rt.log" 2>&1 &
    PIDS+=($!); CPUPIDS[$rt]=$!; HTTP[$rt]=$h; RPC[$rt]=$r
    wait_port $h; wait_port $r
done

# nginx answering the same JSON as tandem's `exec version`
BODY=$(curl -s -XPOST http://127.0.0.1:${HTTP[mio]}/api -d '{"action":"exec","command":"version"}')
h=$(port)
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$h;
        location / { default_type application/json; return 200 '$BODY'; }
    }
}
NGX
"$NGINX" -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!); HTTP[nginx]=$h
wait_port $h
CPUPIDS[nginx]="$(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')"

# serf and the floor
r=$(port); g=$(port)
serf agent -node bench-serf -bind 127.0.0.1:$g -rpc-addr 127.0.0.1:$r -log-level err >"$WORK/serf.log" 2>&1 &
PIDS+=($!); CPUPIDS[serf]=$!; RPC[serf]=$r
r=$(port)
"$BIN/rpc_load" floor 127.0.0.1:$r &
PIDS+=($!); CPUPIDS[floor]=$!; RPC[floor]=$r
wait_port ${RPC[serf]}; wait_port $r

cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"action":"exec","command":"version"}'
wrk.headers["Content-Type"] = "application/json"
LUA

RES=$WORK/results
: >"$RES"
for round in $(seq "$ROUNDS"); do
    for c in 1 16 64; do
        for s in nginx mio smol; do
            c0=$(cpu "${CPUPIDS[$s]}")
            out=$(wrk -t1 -c$c -d${SECS}s -s "$WORK/post.lua" http://127.0.0.1:${HTTP[$s]}/api)
            c1=$(cpu "${CPUPIDS[$s]}")
            n=$(echo "$out" | awk '/requests in/{print $1}')
            rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
            echo "http_c$c $s $rps $(awk -v d=$((c1 - c0)) -v n="$n" -v t="$TCK" 'BEGIN{printf "%.2f", d*1e6/t/n}') - -" >>"$RES"
        done
    done
    for mode in "members 1 1" "stats 1 1" "members 1 32" "members 4 32"; do
        set -- $mode
        for s in serf floor mio smol; do
            [ $s = floor ] && [ "$1" = stats ] && continue
            c0=$(cpu "${CPUPIDS[$s]}")
            read -r n rps p50 p99 < <("$BIN/rpc_load" load 127.0.0.1:${RPC[$s]} "$1" "$SECS" "$2" "$3")
            c1=$(cpu "${CPUPIDS[$s]}")
            echo "rpc_${1}_c${2}_d${3} $s $rps $(awk -v d=$((c1 - c0)) -v n="$n" -v t="$TCK" 'BEGIN{printf "%.2f", d*1e6/t/n}') $p50 $p99" >>"$RES"
        done
    done
    echo "round $round done" >&2
done

echo
echo "Rounds: $ROUNDS x ${SECS}s per cell, interleaved; req/s and CPU-µs/request are means over rounds"
echo "(min-max req/s in brackets); p50/p99 µs for sequential RPC. Ratios: tandem vs nginx (HTTP),"
echo "vs serf and vs the floor (RPC); for CPU, lower is better."
echo
awk '
{ k=$1" "$2; n[k]++; r[k]+=$3; cu[k]+=$4; p50[k]=$5; p99[k]=$6
  if (!(k in lo) || $3<lo[k]) lo[k]=$3; if (!(k in hi) || $3>hi[k]) hi[k]=$3
  if (!($1 in seen)) { seen[$1]=1; order[++m]=$1 } }
END {
  printf "| scenario | server | req/s [min-max] | CPU-µs/req | p50/p99 µs | req/s ratio | CPU ratio |\n|---|---|---:|---:|---:|---:|---:|\n"
  for (i=1; i<=m; i++) {
    sc=order[i]; base=(sc ~ /^http/) ? "nginx" : "serf"
    for (s in srv) delete srv[s]
    split("nginx serf floor mio smol", all, " ")
    for (j=1; j<=5; j++) { k=sc" "all[j]; if (!(k in n)) continue
      rr=r[k]/n[k]; cc=cu[k]/n[k]; b=sc" "base; f=sc" floor"
      ratio=sprintf("%.2fx %s", rr/(r[b]/n[b]), base); cr=sprintf("%.2fx", cc/(cu[b]/n[b]))
      if (all[j] != base && (f in n) && all[j] != "floor") ratio=ratio sprintf(", %.2fx floor", rr/(r[f]/n[f]))
      if (all[j] == base) { ratio="-"; cr="-" }
      lat=(p50[k]=="-") ? "" : p50[k]"/"p99[k]
      printf "| %s | %s | %.0f [%.0f-%.0f] | %.2f | %s | %s | %s |\n", sc, all[j], rr, lo[k], hi[k], cc, lat, ratio, cr }
  }
}' "$RES"
