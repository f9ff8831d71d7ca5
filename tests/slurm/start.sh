#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost for tests/test_slurm.py (and CI).
#
#   sudo tests/slurm/start.sh      # idempotent: a second call starts only what is not running
#   sudo tests/slurm/stop.sh       # stops, by PID, every daemon this script started
#
# Debian 12's slurm-wlm 22.05 + munge, with slurmdbd + MariaDB for accounting: the Snakemake Slurm
# plugin asks `sacct` for job states, and without accounting it waits forever (silently) although
# the jobs have finished. No systemd and no cgroups are needed (proctrack/linuxproc, task/none).
# The node advertises FAKE_GPUS fake GPUs (gres/gpu backed by existing character devices), so rules
# that request `gpu` are scheduled as on a real GPU cluster (CUDA_VISIBLE_DEVICES is set; torch
# still runs on the CPU). Needs root (apt-get, daemons, /etc/slurm). Tested on Debian 12.
#
# Environment: FAKE_GPUS (default 2), SLURM_CI_STATE (default /tmp/sasbert-slurm: daemon logs and
# the list of pid files of the daemons started here, which stop.sh reads).
set -euo pipefail

FAKE_GPUS=${FAKE_GPUS:-2}
STATE=${SLURM_CI_STATE:-/tmp/sasbert-slurm}
STARTED="$STATE/started"            # one pid file per line: the daemons this script started
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" != 0 ]; then
  echo "start.sh: needs root (installs packages and starts daemons)" >&2
  exit 1
fi
if [ "$FAKE_GPUS" -gt 5 ]; then
  echo "start.sh: FAKE_GPUS must be 0..5 (one distinct character device per fake GPU)" >&2
  exit 1
fi
mkdir -p "$STATE"
touch "$STARTED"

log() { printf '[slurm start %s] %s\n' "$(date +%T)" "$*"; }

running() {  # running <pidfile>: the pid file names a live process
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

started() {  # started <pidfile>: remember that this script started the daemon
  grep -qxF "$1" "$STARTED" || echo "$1" >> "$STARTED"
}

stop_daemon() {  # stop_daemon <pidfile>: SIGTERM by PID, wait up to 30 s
  local pid
  running "$1" || return 0
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  rm -f "$1"
}

wait_for() {  # wait_for <seconds> <what> <command...>
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "start.sh: $what did not come up within ${seconds}s" >&2
  return 1
}

# --- packages (7 s for slurm + munge, 22 s for slurmdbd + MariaDB with a warm apt cache) ---------
PKGS="slurm-wlm slurmdbd munge mariadb-server"
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  log "installing $PKGS"
  # Keep package scripts from starting daemons through init scripts: we start them below, by hand.
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $PKGS >"$STATE/apt.log" 2>&1 \
    || { tail -20 "$STATE/apt.log" >&2; exit 1; }
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# --- munge: authentication between the Slurm commands and daemons --------------------------------
[ -s /etc/munge/munge.key ] || mungekey --create
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  started /run/munge/munged.pid
  wait_for 10 munged sh -c 'munge -n | unmunge'
fi

# --- slurm.conf: one node "localhost" with this machine's CPUs, 90% of its memory, fake GPUs -----
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
CPUS=$(nproc)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$((MEM * 9 / 10))
GRES_TYPES=""
GRES_NODE=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  # gres/gpu drops file-less GPUs, and File= must be a character device: reuse distinct ones.
  GRES_TYPES="GresTypes=gpu"
  GRES_NODE="Gres=gpu:$FAKE_GPUS"
  devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
  gres_conf=""
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    gres_conf+="NodeName=localhost Name=gpu File=${devs[$i]}"$'\n'
  done
  printf '%s' "$gres_conf" > "$STATE/gres.conf"
  cmp -s "$STATE/gres.conf" /etc/slurm/gres.conf 2>/dev/null || cp "$STATE/gres.conf" /etc/slurm/gres.conf
fi
cat > "$STATE/slurm.conf" <<CONF
# Written by sasbert tests/slurm/start.sh: a single-node test cluster, no cgroups.
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
$GRES_TYPES
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# keep the plugin's --comment (rule and wildcards) and the GPUs of each job in sacct
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# finished jobs stay visible to squeue/scontrol for 5 min (>= 3 x the status-check interval)
MinJobAge=300
# SIGTERM at the time limit, SIGKILL 30 s later (the usual default, stated for the preemption test)
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
conf_changed=0
if ! cmp -s "$STATE/slurm.conf" /etc/slurm/slurm.conf 2>/dev/null; then
  if running /run/slurmctld.pid || running /run/slurmd.pid; then
    conf_changed=1        # installed below, once the daemons running on the old one are stopped
  else
    cp "$STATE/slurm.conf" /etc/slurm/slurm.conf
  fi
fi

# --- MariaDB + slurmdbd: job accounting, so that `sacct` works ------------------------------------
install -d -o mysql -g mysql /run/mysqld
if ! mariadb-admin ping >/dev/null 2>&1; then
  log "starting mariadbd"
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$STATE/mariadb-install.log" 2>&1
  nohup /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
    --innodb-buffer-pool-size=64M > "$STATE/mariadb.log" 2>&1 &
  started /run/mysqld/mysqld.pid
  wait_for 60 mariadbd mariadb-admin ping
fi
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-ci';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
cat > "$STATE/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm-ci
StorageLoc=slurm_acct_db
CONF
cmp -s "$STATE/slurmdbd.conf" /etc/slurm/slurmdbd.conf 2>/dev/null || cp "$STATE/slurmdbd.conf" /etc/slurm/slurmdbd.conf
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf  # slurmdbd insists
if ! running /run/slurmdbd.pid; then
  log "starting slurmdbd"
  slurmdbd
  started /run/slurmdbd.pid
fi
wait_for 60 slurmdbd sacctmgr -n list cluster
# the cluster must exist in the database before slurmctld registers; root gets an account "ci"
sacctmgr -i add cluster ci >/dev/null 2>&1 || true
sacctmgr -i add account ci Description=ci Organization=ci >/dev/null 2>&1 || true
sacctmgr -i add user root Account=ci >/dev/null 2>&1 || true
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then   # run via sudo: the caller submits too
  sacctmgr -i add user "$SUDO_USER" Account=ci >/dev/null 2>&1 || true
fi

# --- slurmctld + slurmd ---------------------------------------------------------------------------
if [ "$conf_changed" = 1 ]; then
  # accounting and GRES settings need a restart of both daemons, not just `scontrol reconfigure`
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$pidfile" && ! grep -qxF "$pidfile" "$STARTED"; then
      echo "start.sh: slurm.conf must change, but $(basename "$pidfile" .pid) was not started by" \
           "this script: stop it, then run this script again" >&2
      exit 1
    fi
  done
  log "slurm.conf changed: restarting slurmd and slurmctld"
  stop_daemon /run/slurmd.pid
  stop_daemon /run/slurmctld.pid
  cp "$STATE/slurm.conf" /etc/slurm/slurm.conf
fi
if ! running /run/slurmctld.pid; then
  log "starting slurmctld"
  slurmctld
  started /run/slurmctld.pid
fi
wait_for 30 slurmctld scontrol ping
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  slurmd -N localhost        # the host is called something else; the node is "localhost"
  started /run/slurmd.pid
fi
node_ready() {
  local state
  state=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
  case "$state" in
    idle*|mix*|alloc*) return 0 ;;
    inval*|down*|drain*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
  esac
  return 1
}
wait_for 60 "node localhost" node_ready
sinfo -o "%P %a %D %t %N %c %m %G"
log "up (daemons started by this script: $(tr '\n' ' ' < "$STARTED"))"
