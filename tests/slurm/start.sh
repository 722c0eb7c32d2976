#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the study tests (tests/test_study_*.py): Debian's packages,
# munge, and a slurm.conf for this node with root as SlurmUser. Idempotent: it returns at once when the node
# already answers with the slurm.conf this script writes; when that conf has changed (an older version of this
# script, or a test killed while it had changed it) it rewrites it and restarts the daemons it started.
# Needs root and apt (Debian/Ubuntu); refuses to touch a slurm.conf it did not write.
#
#   bash tests/slurm/start.sh        # then: sinfo  -> one partition "debug", this node idle
set -euo pipefail

MARKER='# written by ttm_torchdistill tests/slurm/start.sh'
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)

node_ready() {
  sinfo -h -n "$NODE" -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'
}

CPUS=$(nproc)
# The chaos and time-limit tests run a 2x2 study whose runs mostly sleep: 4 CPU slots (or more where the machine has
# them) let its four runs and a cache job run at once on 2 cores; config_overrides lets slurmd accept more CPUs than
# it finds.
SLOTS=$(( CPUS > 4 ? CPUS : 4 ))
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
WANTED=$(cat <<CONF
$MARKER
ClusterName=ttmtest
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmdParameters=config_overrides
MpiDefault=none
KillWait=10
MinJobAge=600
NodeName=$NODE CPUs=$SLOTS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
)

if command -v sinfo >/dev/null && [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$WANTED" ] && node_ready; then
  echo "slurm: node $NODE is up"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm: tests/slurm/start.sh must run as root (it installs packages and starts daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }
fi

if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
  echo "slurm: $CONF exists and was not written by this script; not touching a real cluster's configuration" >&2
  exit 1
fi

# munge authenticates every Slurm message; one key on a one-node cluster
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  munged --force
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$WANTED" ]; then
  printf '%s\n' "$WANTED" > "$CONF"
  # node and daemon settings take effect on a restart only: end the daemons this script started (their pid files)
  for daemon in slurmctld slurmd; do
    pid=$(cat "/run/$daemon.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  done
fi

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 60); do
  if node_ready; then
    echo "slurm: node $NODE is up ($SLOTS CPU slots on $CPUS cores, $MEM_MB MB)"
    exit 0
  fi
  # a node left down by an earlier daemon (e.g. after a reboot) is brought back
  scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm: node $NODE did not come up within 60 s; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
