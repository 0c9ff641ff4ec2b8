#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests: `cluster.sh up DIR` / `cluster.sh down DIR`.
# Debian packages slurm-wlm and munge; daemons started directly (no systemd); partitions
# `cpu` (default) and `gpu` (a node with Gres=gpu:1 backed by /dev/null: no real GPU needed to
# schedule one); accounting off; completed jobs recorded by jobcomp/filetxt in DIR/jobcomp.txt.
# The configuration goes to /etc/slurm (where every SLURM command and job step looks; `down`
# removes it again), so run this only on a machine of its own, such as CI's.
set -euo pipefail
action=${1:?usage: cluster.sh up|down DIR}
dir=$(mkdir -p "${2:?usage: cluster.sh up|down DIR}" && cd "$2" && pwd)
conf=$dir/etc
host=$(hostname -s)

install_packages() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

up() {
  install_packages
  mkdir -p "$conf" "$dir/state" "$dir/spool" "$dir/log" /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c "munged" 2>/dev/null || munged --force
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
  cpus=$(nproc)
  cat > "$conf/slurm.conf" <<CONF
ClusterName=lfadsci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
  echo "Name=gpu Count=1 File=/dev/null" > "$conf/gres.conf"
  mkdir -p /etc/slurm
  cp "$conf/slurm.conf" "$conf/gres.conf" /etc/slurm/
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o "%t" 2>/dev/null | grep -qE "idle|mix"; then
      return 0
    fi
    sleep 1
  done
  echo "the SLURM node did not come up; logs in $dir/log" >&2
  return 1
}

down() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  # Take our configuration away again: with it and no controller, every `scontrol show config`
  # waits 9 s for one, and the SLURM executor plugin runs it whenever Snakemake starts.
  if grep -qs "ClusterName=lfadsci" /etc/slurm/slurm.conf; then
    rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
  fi
}

"$action"
