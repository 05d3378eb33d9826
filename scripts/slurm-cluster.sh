#!/usr/bin/env bash
# A real single-node Slurm on this machine, for gstc's cluster tests (pytest -m cluster).
#
#   scripts/slurm-cluster.sh up                   # with accounting: MariaDB, slurmdbd, slurmctld, slurmd
#   scripts/slurm-cluster.sh up --no-accounting   # slurmctld and slurmd only: no sacct, as many clusters
#   scripts/slurm-cluster.sh down                 # stops every daemon it started, by PID
#   scripts/slurm-cluster.sh status
#
# For a fresh Debian 12 machine (or container), as root: it installs Debian's packages
# (slurmctld slurmd slurm-client munge, and slurmdbd mariadb-server with accounting),
# writes /etc/slurm/slurm.conf (and slurmdbd.conf), and starts the daemons in the
# background, their PIDs under $STATE. It is not for a machine that runs a Slurm of its own.
# One node, named by `hostname -s`, in a partition `debug`; its CPUs and memory from `slurmd -C`.
set -euo pipefail

STATE=${GSTC_SLURM_STATE:-/var/tmp/gstc-slurm}
CLUSTER=gstc
DB_PASSWORD=gstc-slurm-test  # MariaDB on 127.0.0.1 only, for this test cluster
WAIT=30  # seconds for a daemon to answer

log() { echo "slurm-cluster: $*" >&2; }

wait_for() {  # wait_for WHAT COMMAND...: until the command succeeds, at most $WAIT s
  local what=$1; shift
  for _ in $(seq $((WAIT * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up within ${WAIT} s; its log: $STATE/$what.log"
  tail -n 20 "$STATE/$what.log" >&2 || true
  exit 1
}

start() {  # start NAME COMMAND...: in the background, output to $STATE/NAME.log, PID to $STATE/NAME.pid
  local name=$1; shift
  "$@" >>"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

install_packages() {
  local packages=(slurmctld slurmd slurm-client munge)
  [[ $1 == yes ]] && packages+=(slurmdbd mariadb-server)
  local missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$STATE/apt.log" 2>&1; then
      log "apt-get install failed; updating the package lists and trying again"
      apt-get update -qq >>"$STATE/apt.log" 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$STATE/apt.log" 2>&1 ||
        { log "apt-get install failed: $STATE/apt.log"; tail -n 20 "$STATE/apt.log" >&2; exit 1; }
    fi
  fi
}

write_config() {
  local accounting=$1 node
  node=$(slurmd -C | head -n 1 | sed 's/ UpTime=.*//')
  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  chown -R slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
  cat >/etc/slurm/slurm.conf <<EOF
# Written by gstc's scripts/slurm-cluster.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)
SlurmUser=slurm
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it starts again (default 120): short, for the requeue tests.
AuthInfo=cred_expire=10
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$STATE/slurmctld.pidfile
SlurmdPidFile=$STATE/slurmd.pidfile
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# scancel's SIGTERM, which submitit ignores in a job, is followed by SIGKILL after this many seconds (default 30).
KillWait=5
# Finished jobs stay visible to scontrol for this long (s): gstc reads their end state there without sacct.
MinJobAge=120
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
$(if [[ $accounting == yes ]]; then
  echo "AccountingStorageType=accounting_storage/slurmdbd"
  echo "AccountingStorageHost=localhost"
else
  echo "AccountingStorageType=accounting_storage/none"
fi)
$node State=UNKNOWN
PartitionName=debug Nodes=$(hostname -s) Default=YES MaxTime=INFINITE State=UP
EOF
  if [[ $accounting == yes ]]; then
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pidfile
LogFile=$STATE/slurmdbd.log
EOF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf
  else
    rm -f /etc/slurm/slurmdbd.conf
  fi
  chown slurm:slurm "$STATE"
}

start_munge() {
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  start munged runuser -u munge -- /usr/sbin/munged --foreground
  wait_for munged bash -c 'munge -n | unmunge'
}

start_database() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE/mariadb-install.log" 2>&1
  start mariadb /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=127.0.0.1 --port=3306 \
    --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid
  wait_for mariadb mariadb --socket=/run/mysqld/mysqld.sock -e 'SELECT 1'
  mariadb --socket=/run/mysqld/mysqld.sock <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
  start slurmdbd /usr/sbin/slurmdbd -D
  wait_for slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true  # already there on a second `up`
}

up() {
  local accounting=yes
  [[ ${1:-} == --no-accounting ]] && accounting=no
  if [[ -e $STATE/up ]]; then
    if sinfo -h >/dev/null 2>&1; then log "already up ($(cat "$STATE/up"))"; return 0; fi
    log "a previous cluster left its state but does not answer: stopping what is left of it"
    down
  fi
  mkdir -p "$STATE"
  local t0=$SECONDS
  install_packages $accounting
  log "packages ready in $((SECONDS - t0)) s"
  t0=$SECONDS
  write_config $accounting
  start_munge
  [[ $accounting == yes ]] && start_database
  start slurmctld /usr/sbin/slurmctld -D
  wait_for slurmctld scontrol ping
  start slurmd /usr/sbin/slurmd -D
  wait_for slurmd bash -c "sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'"
  echo "accounting=$accounting" >"$STATE/up"
  log "up in $((SECONDS - t0)) s (accounting: $accounting): $(sinfo -h -o '%P %D %T %c CPUs %m MB')"
}

down() {
  local name pid
  # The reverse order of `up`: no daemon loses the one it talks to while still working.
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    [[ -f $STATE/$name.pid ]] || continue
    pid=$(cat "$STATE/$name.pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.pid"
  done
  # munged runs under runuser: its own PID is in its pid file
  [[ -f /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  rm -f "$STATE/up"
  log "down"
}

status() {
  if [[ -e $STATE/up ]]; then
    echo "up ($(cat "$STATE/up"))"
    sinfo
  else
    echo "down"
  fi
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [--no-accounting] | down | status" >&2; exit 2 ;;
esac
