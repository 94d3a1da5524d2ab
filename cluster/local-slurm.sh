#!/bin/bash
# local-slurm.sh: a real single-node Slurm (Debian slurm-wlm + munge) for trying the batch scripts
# and for the `cluster` tests. Everything (munge key and socket, slurm.conf, state, spool, logs)
# lives in one directory; daemons run as root on free non-default ports; no cgroups needed.
#
#   cluster/local-slurm.sh start  [DIR]   start munged, slurmctld, slurmd; wait until the node is idle;
#                                         print the environment to use (also written to DIR/env.sh)
#   cluster/local-slurm.sh status [DIR]   show daemons, sinfo and squeue
#   cluster/local-slurm.sh stop   [DIR]   kill every process started by this instance (daemons,
#                                         slurmstepd, job tasks) and remove DIR
#
# DIR defaults to a new mktemp directory on start, and to $MOE_SLURM_DIR on status/stop.
# Multi-node: with MOE_SLURM_VCLUSTER=1 it runs on the virtual cluster of cluster/vcluster.sh (up
# first; MOE_VC names the instance): slurmctld in the switch's namespace (SUBNET.254), one slurmd
# per node namespace (NodeName=node[1-N]), one munged shared through its socket file. Client
# commands must then run on a node: cluster/vcluster.sh exec node1 sbatch ... (env.sh says so).
# Environment: MOE_SLURM_TIMEOUT (seconds to wait for the node, default 60),
#              MOE_SLURM_KEEP=1 (stop leaves DIR in place, e.g. to read the logs).
# Trade-off: proctrack/linuxproc (parent-pid tracking) instead of cgroups, so it runs in an
# unprivileged container; it cannot contain processes that daemonize away from a job step.
set -u

SBIN=/usr/sbin
HERE=$(cd "$(dirname "$0")" && pwd)
VCLUSTER=${MOE_SLURM_VCLUSTER:-0}
VC=${MOE_VC:-moevc}
VC_SUBNET=${MOE_VC_SUBNET:-10.213.0}
# Client commands (sinfo, scontrol): on node1 of the virtual cluster, or right here.
client() {
    if [ "$VCLUSTER" = 1 ]; then "$HERE/vcluster.sh" exec node1 "$@"; else "$@"; fi
}
DAEMON_PIDS= # slurmctld and slurmd of the current start attempt
die() { echo "local-slurm: $*" >&2; exit 1; }

need_slurm() {
    local p
    for p in $SBIN/slurmctld $SBIN/slurmd $SBIN/munged /usr/bin/sinfo /usr/bin/sbatch; do
        [ -x "$p" ] || die "$p not found: apt-get install slurm-wlm munge (or run install-deps.sh)"
    done
}

# port_free PORT: true when nothing listens on PORT (TCP, any address).
port_free() {
    if command -v ss >/dev/null; then
        ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
    else
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# pick_ports: two consecutive free ports in 20000-59999, chosen at random so parallel
# instances rarely collide; slurmctld fails loudly (and we retry) if one is taken meanwhile.
pick_ports() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if port_free "$p" && port_free $((p + 1)); then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# pids_of DIR: the processes of this instance and only those: every process whose environment holds
# MOE_LOCAL_SLURM=DIR (set only on the daemons this script starts) or that has a file under DIR
# open, plus all their descendants (job shells and tasks). A user shell that merely exported
# SLURM_CONF is not matched.
pids_of() {
    local roots
    roots=$({
        grep -lzxF "MOE_LOCAL_SLURM=$1" /proc/[0-9]*/environ 2>/dev/null
        # slurmstepd gets an empty environment (and is re-parented to init), but it keeps
        # DIR/log/slurmd.log open.
        find /proc/[0-9]*/fd -lname "$1/*" 2>/dev/null
    } | sed -n 's|^/proc/\([0-9]*\)/.*$|\1|p' | sort -u | tr '\n' ' ')
    [ -n "$roots" ] || return 0
    ps -eo pid=,ppid= | awk -v roots="$roots" -v self="$$" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { pid[NR] = $1; ppid[NR] = $2 }
        END {
            do { changed = 0
                 for (i = 1; i <= NR; i++)
                     if (!(pid[i] in keep) && (ppid[i] in keep)) { keep[pid[i]] = 1; changed = 1 }
            } while (changed)
            for (p in keep) if (p != self) print p
        }'
}

show_logs() {
    local d=$1 f
    for f in "$d"/log/*.log "$d"/log/*.out; do
        [ -s "$f" ] || continue
        echo "----- $f (last 40 lines)" >&2
        tail -n 40 "$f" >&2
    done
}

write_conf() {
    local d=$1 port=$2 host node mpi
    host=$(hostname -s)
    # The node line with the real CPUs / sockets / cores / memory, as slurmd itself sees them.
    node=$($SBIN/slurmd -C 2>/dev/null | head -n 1)
    case $node in
        NodeName=*) ;;
        *) die "slurmd -C failed; cannot detect this node's CPUs and memory" ;;
    esac
    # pmix when Slurm's plugin and the PMIx library it loads at run time are both present.
    mpi=none
    if ls /usr/lib/*/slurm-wlm/mpi_pmix.so >/dev/null 2>&1 &&
        ldconfig -p 2>/dev/null | grep -q 'libpmix\.so\.2'; then
        mpi=pmix
    fi
    local ctl="$host(127.0.0.1)" nodes="$node NodeAddr=127.0.0.1 State=UNKNOWN" spool=$d/spool
    local dpid=$d/run/slurmd.pid dlog=$d/log/slurmd.log
    if [ "$VCLUSTER" = 1 ]; then
        local n k addrs=""
        n=$(cat "/run/moe-vcluster/$VC/nodes") || die "virtual cluster '$VC' is not up (cluster/vcluster.sh up 2)"
        for k in $(seq "$n"); do addrs="$addrs${addrs:+,}$VC_SUBNET.$k"; done
        ctl="vcctl($VC_SUBNET.254)"
        # Every virtual node offers the machine's CPUs and memory (they share them).
        nodes="NodeName=node[1-$n] NodeAddr=$addrs ${node#NodeName=* } State=UNKNOWN"
        spool=$d/spool/%n dpid=$d/run/slurmd-%n.pid dlog=$d/log/slurmd-%n.log
    fi
    cat >"$d/slurm.conf" <<EOF
# Generated by cluster/local-slurm.sh: test cluster, state in $d
ClusterName=moelocal
SlurmctldHost=$ctl
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$d/munge/munge.sock,cred_expire=10
StateSaveLocation=$d/state
SlurmdSpoolDir=$spool
# Per-instance scratch (the pmix plugin's spmix_appdir_* too): job ids restart at 1 in every new
# instance, so a directory left in /tmp by a killed earlier instance would collide.
TmpFS=$d/tmp
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$dpid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$dlog
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$d/plugstack.conf
# No cgroups: works inside containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=$mpi
SchedulerType=sched/backfill
# Fast scheduling passes: a requeued job starts as soon as it is eligible.
SchedulerParameters=sched_interval=2,bf_interval=1
JobRequeue=1
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
MailProg=/bin/true
$nodes
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$d/plugstack.conf"
}

start_daemons() {
    local d=$1
    export SLURM_CONF=$d/slurm.conf
    export MOE_LOCAL_SLURM=$d # marks this instance's daemons for pids_of
    # munged: own key, socket, pid, seed and log; --force because it runs as root.
    $SBIN/mungekey --create --keyfile="$d/munge/munge.key" --bits=1024 >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$d/munge/munge.key" bs=128 count=1 status=none
    chmod 600 "$d/munge/munge.key"
    setsid $SBIN/munged --force --foreground --socket="$d/munge/munge.sock" \
        --key-file="$d/munge/munge.key" --pid-file="$d/run/munged.pid" \
        --seed-file="$d/munge/munge.seed" --log-file="$d/log/munged.log" \
        </dev/null >>"$d/log/munged.log" 2>&1 &
    for _ in $(seq 1 50); do
        [ -S "$d/munge/munge.sock" ] && break
        sleep 0.1
    done
    [ -S "$d/munge/munge.sock" ] || { show_logs "$d"; return 1; }
    if [ "$VCLUSTER" = 1 ]; then
        local n k
        n=$(cat "/run/moe-vcluster/$VC/nodes")
        ip -n "$VC-sw" addr replace "$VC_SUBNET.254/24" dev br0 || return 1
        setsid ip netns exec "$VC-sw" unshare --uts sh -c 'hostname vcctl && exec "$@"' sh \
            $SBIN/slurmctld -D -i -f "$SLURM_CONF" </dev/null >>"$d/log/slurmctld.out" 2>&1 &
        DAEMON_PIDS="$!"
        for k in $(seq "$n"); do
            # Each node's TmpFS is its own (as /tmp on a real node): a directory bound over
            # DIR/tmp in the node's private mount namespace, for slurmd and all it starts.
            mkdir -p "$d/spool/node$k" "$d/tmp-node$k"
            setsid "$HERE/vcluster.sh" exec "node$k" sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' \
                sh "$d/tmp-node$k" "$d/tmp" $SBIN/slurmd -D -N "node$k" -f "$SLURM_CONF" \
                </dev/null >>"$d/log/slurmd-node$k.out" 2>&1 &
            DAEMON_PIDS="$DAEMON_PIDS $!"
        done
        return 0
    fi
    setsid $SBIN/slurmctld -D -i -f "$SLURM_CONF" </dev/null >>"$d/log/slurmctld.out" 2>&1 &
    DAEMON_PIDS="$!"
    setsid $SBIN/slurmd -D -f "$SLURM_CONF" </dev/null >>"$d/log/slurmd.out" 2>&1 &
    DAEMON_PIDS="$DAEMON_PIDS $!"
    return 0
}

# wait_idle DIR TIMEOUT: poll sinfo until the node is idle; true on success.
wait_idle() {
    local d=$1 timeout=$2 t0 state
    t0=$(date +%s)
    while :; do
        state=$(SLURM_CONF=$d/slurm.conf client timeout 5 sinfo -h -N -o %t 2>/dev/null | sort -u | tr '\n' ' ')
        [ "$state" = "idle " ] && return 0
        local p
        for p in $DAEMON_PIDS; do
            kill -0 "$p" 2>/dev/null || {
                echo "local-slurm: a daemon exited during start-up (pid $p)" >&2
                return 1
            }
        done
        [ $(($(date +%s) - t0)) -ge "$timeout" ] && {
            echo "local-slurm: node not idle after ${timeout}s (sinfo state: '${state:-no answer}')" >&2
            return 1
        }
        # A node that registered as down/drained (e.g. after a slow start) is brought back.
        case $state in
            *down* | *drain* | *inval*)
                local names
                names=$(SLURM_CONF=$d/slurm.conf client sinfo -h -N -o %N 2>/dev/null | sort -u | paste -sd, -)
                SLURM_CONF=$d/slurm.conf client scontrol update NodeName="${names:-$(hostname -s)}" \
                    State=RESUME >/dev/null 2>&1 ;;
        esac
        sleep 0.5
    done
}

# kill_instance DIR: SIGTERM, one second of grace, then SIGKILL (slurmstepd ignores SIGTERM).
kill_instance() {
    local d=$1 pids
    pids=$(pids_of "$d")
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for _ in $(seq 1 10); do
        sleep 0.1
        pids=$(pids_of "$d")
        [ -n "$pids" ] || return 0
    done
    for _ in $(seq 1 30); do
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        sleep 0.1
        pids=$(pids_of "$d")
        [ -n "$pids" ] || return 0
    done
    return 0
}

cmd_start() {
    need_slurm
    local d=${1:-} attempt port timeout=${MOE_SLURM_TIMEOUT:-60}
    [ "$(id -u)" = 0 ] || die "must run as root (slurmd launches jobs as any user)"
    if [ -z "$d" ]; then
        d=$(mktemp -d /tmp/moe-slurm.XXXXXX) || die "mktemp failed"
    fi
    mkdir -p "$d" || die "cannot create $d"
    d=$(cd "$d" && pwd)
    [ -e "$d/slurm.conf" ] && [ -n "$(pids_of "$d")" ] && die "an instance already runs in $d"
    chmod 700 "$d"
    for attempt in 1 2 3; do
        rm -rf "${d:?}/munge" "$d/state" "$d/spool" "$d/run"
        mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/run" "$d/log" "$d/tmp"
        chmod 711 "$d/munge"
        port=$(pick_ports) || die "no free TCP ports found"
        write_conf "$d" "$port"
        if start_daemons "$d" && wait_idle "$d" "$timeout"; then
            {
                echo "export SLURM_CONF=$d/slurm.conf"
                echo "export MOE_SLURM_DIR=$d"
                [ "$VCLUSTER" = 1 ] && echo "export MOE_SLURM_VCLUSTER=1 MOE_VC=$VC MOE_VC_SUBNET=$VC_SUBNET" &&
                    echo "# client commands run on a node: $HERE/vcluster.sh exec node1 sinfo"
            } >"$d/env.sh"
            echo "# local Slurm up in $d (ports $port,$((port + 1))); use:"
            cat "$d/env.sh"
            return 0
        fi
        echo "local-slurm: attempt $attempt failed; logs:" >&2
        show_logs "$d"
        kill_instance "$d"
    done
    [ "${MOE_SLURM_KEEP:-0}" = 1 ] || rm -rf "$d"
    die "Slurm did not come up (3 attempts); see the logs above"
}

resolve_dir() {
    local d=${1:-${MOE_SLURM_DIR:-}}
    [ -n "$d" ] || die "no DIR given and MOE_SLURM_DIR unset"
    [ -f "$d/slurm.conf" ] || die "$d has no slurm.conf: not a local-slurm directory"
    (cd "$d" && pwd)
}

cmd_status() {
    local d
    d=$(resolve_dir "${1:-}") || exit 1
    export SLURM_CONF=$d/slurm.conf
    echo "# local Slurm in $d; processes:"
    local p
    for p in $(pids_of "$d"); do
        printf '%8s %s\n' "$p" "$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
    done
    client sinfo -N -l 2>&1
    client squeue 2>&1
}

cmd_stop() {
    local d
    d=$(resolve_dir "${1:-}") || exit 1
    kill_instance "$d"
    if [ -n "$(pids_of "$d")" ]; then
        echo "local-slurm: some processes survived: $(pids_of "$d" | tr '\n' ' ')" >&2
        exit 1
    fi
    if [ "${MOE_SLURM_KEEP:-0}" = 1 ]; then
        echo "# local Slurm stopped; kept $d"
    else
        rm -rf "$d"
        echo "# local Slurm stopped; removed $d"
    fi
}

case ${1:-} in
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    *)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 2 ;;
esac
