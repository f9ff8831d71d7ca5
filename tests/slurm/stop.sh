#!/usr/bin/env bash
# Stop every daemon that tests/slurm/start.sh started, by the PID in its pid file, in reverse
# start order (slurmd, slurmctld, slurmdbd, mariadbd, munged). Daemons it did not start are left
# alone. Safe to run twice, or when nothing was started.
set -uo pipefail

STATE=${SLURM_CI_STATE:-/tmp/sasbert-slurm}
STARTED="$STATE/started"
[ -s "$STARTED" ] || exit 0

status=0
for pidfile in $(tac "$STARTED"); do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop.sh: $pidfile (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL" >&2
      kill -9 "$pid" 2>/dev/null || true
      status=1
    fi
    echo "[slurm stop] stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  # a stale pid file makes Debian's maintainer scripts (and a later start.sh) misjudge the daemon
  rm -f "$pidfile"
done
: > "$STARTED"
exit $status
