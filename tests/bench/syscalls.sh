#!/usr/bin/env bash
# System calls per request (issue #13): tandem-mio, tandem (smol), nginx (HTTP) and a real
# serf agent plus the floor server (RPC), each counted alone while wrk or rpc_load drives
# it for SECS seconds: HTTP `exec version` at 1 and 16 connections, RPC `members` and
# `stats` sequential. Counting is `perf stat` on the syscall tracepoints of the server's
# pid (`TRACER=strace` uses `strace -c -f -p` instead, whose ptrace stops slow the server
# enough to change what it finds on the socket). Not part of `cargo test`.
#
#   tests/bench/syscalls.sh [BIN_DIR]     # default target/release; SECS=2 CONNS="1 16"
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-$PWD/target/release}
SECS=${SECS:-2}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
declare -A HTTP RPC SPID
for rt in mio smol; do
  h=$(port); r=$(port); g=$(port)
  b=$BIN/tandem; [ $rt = mio ] && b=$BIN/tandem-mio
  "$b" agent -node "sc-$rt" -http-addr 127.0.0.1:$h -rpc-addr 127.0.0.1:$r -bind 127.0.0.1 -lan-port $g -log-level err >"$WORK/$rt.log" 2>&1 &
  PIDS+=($!); SPID[$rt]=$!; HTTP[$rt]=$h; RPC[$rt]=$r
  wait_port $h; wait_port $r
done
BODY=$(curl -s -XPOST http://127.0.0.1:${HTTP[mio]}/api -d '{"action":"exec","command":"version"}')
h=$(port)
cat >"$WORK/nginx.conf" <<NGX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$h; location / { default_type application/json; return 200 '$BODY'; } } }
NGX
/usr/sbin/nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!); HTTP[nginx]=$h; wait_port $h
SPID[nginx]=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
r=$(port); g=$(port)
serf agent -node sc-serf -bind 127.0.0.1:$g -rpc-addr 127.0.0.1:$r -log-level err >"$WORK/serf.log" 2>&1 & PIDS+=($!); SPID[serf]=$!; RPC[serf]=$r
r=$(port); "$BIN/rpc_load" floor 127.0.0.1:$r & PIDS+=($!); SPID[floor]=$!; RPC[floor]=$r
wait_port ${RPC[serf]}; wait_port $r
sleep 1
lua=$WORK/post.lua
printf 'wrk.method="POST"\nwrk.body=%s\nwrk.headers["Content-Type"]="application/json"\n' "'{\"action\":\"exec\",\"command\":\"version\"}'" >$lua
AGG=$(cat <<'PY'
import sys,re,collections
kind,n,path=sys.argv[1],int(sys.argv[2]),sys.argv[3]
calls=collections.Counter(); errs=collections.Counter(); tot=0
for line in open(path):
    f=line.strip().split(',')
    if kind=='perf':
        if len(f)>3 and f[0].isdigit():
            ev=f[2]
            if ev=='raw_syscalls:sys_enter': tot=int(f[0])
            elif 'sys_enter_' in ev: calls[ev.split('sys_enter_')[1]]+=int(f[0])
            elif 'sys_exit_' in ev: errs[ev.split('sys_exit_')[1]]+=int(f[0])
    else:
        f=line.split()
        if len(f)>=5 and f[0][0].isdigit() and f[3].isdigit() and f[-1]!='total':
            calls[f[-1]]+=int(f[3]); errs[f[-1]]+=int(f[4]) if len(f)==6 else 0
            tot+=int(f[3])
print("  total %.2f/req  " % (tot/n) + "  ".join("%s %.2f%s" % (k, v/n, (" (%.2f EAGAIN)" % (errs[k]/n)) if errs[k] else "") for k,v in calls.most_common() if v/n>=0.005))
PY
)
SYS="read recvfrom recvmsg write sendto sendmsg writev epoll_wait epoll_pwait epoll_ctl futex nanosleep timerfd_settime clock_gettime sched_yield accept4 getsockopt"
EV="-e raw_syscalls:sys_enter"
for s in $SYS; do EV="$EV -e syscalls:sys_enter_$s"; done
for s in read recvfrom recvmsg; do EV="$EV -e syscalls:sys_exit_$s --filter ret==-11"; done
trace() { # name pid cmd...
  local name=$1 pid=$2; shift 2
  if [[ ${TRACER:-perf} == strace ]]; then strace -c -f -p $pid -o $WORK/st.$name 2>/dev/null & else perf stat -x, $EV -p $pid -o $WORK/st.$name 2>/dev/null & fi
  local sp=$!
  sleep 0.7
  local out; out=$("$@" 2>&1)
  kill -INT $sp; wait $sp 2>/dev/null
  local n
  if [[ $1 == wrk ]]; then n=$(echo "$out" | awk '/requests in/{print $1}'); else n=$(echo "$out" | awk '{print $1}'); fi
  echo "== $name requests=$n"
  python3 - ${TRACER:-perf} $n $WORK/st.$name <<<"$AGG"
}
for c in ${CONNS:-1 16}; do
 for s in nginx mio smol; do
  trace "http_c${c}_$s" ${SPID[$s]} wrk -t1 -c$c -d${SECS}s -s $lua http://127.0.0.1:${HTTP[$s]}/api
 done
done
for cmd in members stats; do
 for s in serf floor mio smol; do
  [[ $s == floor && $cmd == stats ]] && continue
  trace "rpc_${cmd}_$s" ${SPID[$s]} $BIN/rpc_load load 127.0.0.1:${RPC[$s]} $cmd $SECS 1 1
 done
done
