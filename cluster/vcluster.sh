#!/usr/bin/env bash
# vcluster.sh: a cluster of N virtual nodes on this machine, for moe's multi-node tests and for
# users who want to try a multi-node run without a cluster. Each node is a network namespace with
# its own host name (a UTS namespace per process started there) and one link to a switch (a bridge
# in a namespace of its own); every link is shaped with tc netem (rate, delay, loss, jitter) and can
# be reshaped, cut and restored while jobs run. Open MPI runs across the nodes over TCP through a
# launch agent that enters the node's namespaces (plm_rsh_agent), shared memory inside a node.
#
# Addresses live only on the links this script creates inside its own namespaces (SUBNET.0/24, no
# default route): nothing is routed to or from the machine's own interfaces. `down` removes every
# namespace, link, process and file it made; `up` cleans a previous instance of the same name first.
#
# usage: cluster/vcluster.sh COMMAND ...   (as root; see `vcluster.sh help` and cluster/README.md)
set -euo pipefail

SELF=$(readlink -f "$0")
VC=${MOE_VC:-moevc}                       # instance name: namespaces $VC-sw, $VC-node1..N
SUBNET=${MOE_VC_SUBNET:-10.213.0}         # node k is $SUBNET.k/24
STATE=${MOE_VC_STATE:-/run/moe-vcluster/$VC}
SW=$VC-sw
DEF_RATE=${MOE_VC_RATE:-2gbit}            # a modest interconnect: 2 Gbit/s, 50 µs each way
DEF_DELAY=${MOE_VC_DELAY:-50us}

usage() {
    cat <<EOF
usage: vcluster.sh COMMAND [ARGS]     (run as root; instance "$VC", MOE_VC=NAME picks another)

  up N [rate=R] [delay=D] [loss=P%] [jitter=J]
                        start N nodes (2..4) named node1..nodeN ($SUBNET.1..N), every link shaped
                        (default rate=$DEF_RATE delay=$DEF_DELAY, per link and direction: a message
                        node1 -> node2 crosses two shaped hops); delay, loss and jitter need the
                        kernel's sch_netem, else links are shaped by rate only (tbf); each node
                        gets a slice of the CPUs (MOE_VC_CPUS=LIST overrides them); cleans an
                        old instance of the same name first
  down                  stop every process on the nodes, remove namespaces, links and files
  status                nodes, addresses, link shaping and state, CPUs, processes per node
  exec NODE CMD...      run CMD on NODE (its network and host name; the file system is shared)
  link NODE rate=R delay=D loss=P% jitter=J | down | up
                        reshape NODE's link at run time (both directions), or cut / restore it
  hostfile [SLOTS]      print an Open MPI hostfile (SLOTS per node, default 1)
  mpirun ARGS...        Open MPI's mpirun on node1 across the nodes: adds --hostfile (slots
                        from MOE_VC_SLOTS, default 1), the launch agent, TCP restricted to
                        $SUBNET.0/24, --allow-run-as-root, --bind-to none (ranks keep their
                        node's CPUs) and, with more slots than a node's CPUs,
                        --mca mpi_yield_when_idle 1; ARGS as for mpirun (-np, -x, program)
  agent HOST CMD...     the plm_rsh_agent mpirun uses to start its daemon on HOST
EOF
}

die() {
    echo "vcluster: $*" >&2
    exit 2
}

need() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces and tc need CAP_NET_ADMIN)"
    command -v ip >/dev/null || die "'ip' not found: apt-get install iproute2"
    command -v tc >/dev/null || die "'tc' not found: apt-get install iproute2"
    command -v unshare >/dev/null || die "'unshare' not found: apt-get install util-linux"
    command -v nsenter >/dev/null || die "'nsenter' not found: apt-get install util-linux"
    command -v ping >/dev/null || die "'ping' not found: apt-get install iputils-ping"
}

n_nodes() {
    [ -f "$STATE/nodes" ] || die "no virtual cluster '$VC' is up (run: vcluster.sh up 2)"
    cat "$STATE/nodes"
}

node_index() { # node1 / 1 / $VC-node1 -> 1 (call n_nodes first: this runs in a subshell)
    local n=${1#"$VC"-} max
    max=$(cat "$STATE/nodes")
    n=${n#node}
    case $n in '' | *[!0-9]*) die "unknown node '$1' (expected node1..node$max)" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le "$max" ] || die "unknown node '$1' (expected node1..node$max)"
    echo "$n"
}

# The start of `exec NODE ...` and `link NODE ...`: as root, with the cluster up and ARGS a node
# and at least one word more (else dies with USAGE), prints the node's index. Call it as
# k=$(node_arg USAGE "$@") || exit: its die ends only the subshell, the `|| exit` the caller.
node_arg() { # USAGE ARGS...
    local usage=$1
    shift
    need
    [ $# -ge 2 ] || die "$usage"
    n_nodes >/dev/null
    node_index "$1"
}

# Link settings from key=value words, as "rate delay loss jitter" ("-" for unset).
link_settings() {
    local rate=$DEF_RATE delay=$DEF_DELAY loss=- jitter=- kv
    for kv in "$@"; do
        case $kv in
        rate=?*) rate=${kv#rate=} ;;
        delay=?*) delay=${kv#delay=} ;;
        loss=?*) loss=${kv#loss=} ;;
        jitter=?*) jitter=${kv#jitter=} ;;
        *) die "bad link setting '$kv' (expected rate=R delay=D loss=P% jitter=J, e.g. rate=200mbit delay=1ms)" ;;
        esac
    done
    echo "$rate $delay $loss $jitter"
}

# Does this kernel have sch_netem (delay, loss, jitter)? Probed once per instance on the switch's
# loopback; without it links are shaped by rate only (tbf) and delay/loss/jitter are refused.
have_netem() {
    if [ ! -f "$STATE/netem" ]; then
        if ip netns exec "$SW" tc qdisc add dev lo root netem delay 1us 2>/dev/null; then
            ip netns exec "$SW" tc qdisc del dev lo root 2>/dev/null || true
            echo 1 >"$STATE/netem"
        else
            echo 0 >"$STATE/netem"
        fi
    fi
    [ "$(cat "$STATE/netem")" = 1 ]
}

# The qdisc for settings "rate delay loss jitter" on one side of a link.
qdisc_of() {
    local rate=$1 delay=$2 loss=$3 jitter=$4
    if have_netem; then
        local a="netem rate $rate"
        [ "$delay" != - ] && a="$a delay $delay" && [ "$jitter" != - ] && a="$a $jitter"
        [ "$loss" != - ] && a="$a loss $loss"
        echo "$a limit 100000"
    else
        # tbf: burst covers a 1 ms tick at 2 Gbit/s; latency bounds the queue.
        echo "tbf rate $rate burst 256kb latency 50ms"
    fi
}

shape() { # NODE_INDEX rate delay loss jitter
    local k=$1 rate=$2 delay=$3 loss=$4 jitter=$5
    if ! have_netem; then
        # Without netem the default delay is dropped quietly; an explicit one is an error.
        if [ "$delay" != - ] && [ "$delay" != "$DEF_DELAY" ] || [ "$loss" != - ] || [ "$jitter" != - ]; then
            die "this kernel has no sch_netem (CONFIG_NET_SCH_NETEM): links can be shaped by rate only; drop delay=/loss=/jitter="
        fi
        delay=-
    fi
    local q
    q=$(qdisc_of "$rate" "$delay" "$loss" "$jitter")
    ip netns exec "$VC-node$k" tc qdisc replace dev eth0 root $q ||
        die "tc on node$k refused '$q' (rates like 2gbit, 200mbit; delays like 50us, 2ms)"
    ip netns exec "$SW" tc qdisc replace dev "vn$k" root $q ||
        die "tc on the switch side of node$k refused '$q'"
    echo "rate=$rate delay=$delay loss=$loss jitter=$jitter" | sed 's/ [a-z]*=-//g' >"$STATE/link$k"
}

cmd_down() {
    need
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$VC-(sw|node[0-9]+)\$" || true); do
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        for _ in $(seq 50); do # bounded: 5 s for the processes to go
            [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
            sleep 0.1
        done
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$STATE"
    rmdir /run/moe-vcluster 2>/dev/null || true
    rmdir /etc/netns 2>/dev/null || true
}

cmd_up() {
    need
    local n=${1:-}
    case $n in '' | *[!0-9]*) die "up needs a number of nodes, 2 to 4 (vcluster.sh up 2)" ;; esac
    [ "$n" -ge 2 ] && [ "$n" -le 4 ] || die "up $n: the virtual cluster has 2 to 4 nodes"
    shift
    local shaping
    shaping=$(link_settings "$@")
    cmd_down # a crashed earlier instance of this name leaves nothing behind
    mkdir -p "$STATE"
    echo "$n" >"$STATE/nodes"
    node_cpus "$n"
    trap 'echo "vcluster: up failed; cleaning up" >&2; cmd_down' EXIT
    ip netns add "$SW"
    ip -n "$SW" link set lo up
    ip -n "$SW" link add br0 type bridge
    ip -n "$SW" link set br0 up
    local hosts="127.0.0.1 localhost"$'\n'
    for k in $(seq "$n"); do hosts+="$SUBNET.$k node$k"$'\n'; done
    for k in $(seq "$n"); do
        local ns=$VC-node$k
        ip netns add "$ns"
        mkdir -p "/etc/netns/$ns"
        printf '%s' "$hosts" >"/etc/netns/$ns/hosts"
        echo "node$k" >"/etc/netns/$ns/hostname"
        ip -n "$ns" link set lo up
        # A lost peer is given up after ~25 s of retransmissions (the default, 15, is ~15 min), so
        # mpirun notices a cut link to a node's daemon and ends the job (see cmd_mpirun).
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_retries2=6
        ip -n "$SW" link add "vn$k" type veth peer name eth0 netns "$ns"
        ip -n "$SW" link set "vn$k" master br0 up
        ip -n "$ns" addr add "$SUBNET.$k/24" dev eth0
        ip -n "$ns" link set eth0 up
        shape "$k" $shaping
    done
    trap - EXIT
    for k in $(seq 2 "$n"); do # bounded check that the links carry packets
        local ok=0
        for _ in $(seq 30); do
            if ip netns exec "$VC-node1" ping -c1 -W1 "$SUBNET.$k" >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.2
        done
        [ $ok = 1 ] || { cmd_down; die "node1 cannot reach node$k after 6 s; gave up"; }
    done
    echo "vcluster '$VC': $n nodes up (node1..node$n on $SUBNET.0/24, links: $(cat "$STATE/link1"))"
}

cmd_status() {
    need
    local n
    n=$(n_nodes)
    echo "vcluster '$VC': $n nodes, subnet $SUBNET.0/24, state $STATE"
    for k in $(seq "$n"); do
        local state up
        up=$(ip -n "$SW" -o link show "vn$k" 2>/dev/null | grep -q 'state UP' && echo up || echo DOWN)
        state=$(cat "$STATE/link$k" 2>/dev/null || echo "?")
        echo "  node$k $SUBNET.$k link $up ($state) cpus $(cat "$STATE/cpus$k" 2>/dev/null || echo all) processes $(ip netns pids "$VC-node$k" | wc -l)"
    done
}

# CPUs of each node: a real node has cores of its own, so node k gets a slice of the CPUs this
# script may use (MOE_VC_CPUS overrides the list, e.g. "0-3"): n CPUs over N nodes, consecutive
# n/N each when n >= N, else shared round robin. Without it Open MPI, which binds each node's
# first rank to "core 0" of what it sees, puts the ranks of all nodes on one core of the machine:
# they take turns in scheduler slices (~4 ms) and every message round waits for one.
node_cpus() { # N: writes $STATE/cpus1..N
    local n=$1 list cpus=() part
    list=${MOE_VC_CPUS:-$(taskset -pc $$ | sed 's/.*: *//')}
    for part in ${list//,/ }; do
        case $part in
        *-*) for c in $(seq "${part%-*}" "${part#*-}"); do cpus+=("$c"); done ;;
        *[!0-9]* | '') die "bad CPU list '$list' (expected e.g. 0-3 or 0,2)" ;;
        *) cpus+=("$part") ;;
        esac
    done
    local m=${#cpus[@]} k
    [ "$m" -ge 1 ] || die "no CPUs in '$list'"
    for k in $(seq "$n"); do
        local mine=()
        if [ "$m" -ge "$n" ]; then
            local a=$(((k - 1) * m / n)) b=$((k * m / n)) i
            for ((i = a; i < b; i++)); do mine+=("${cpus[$i]}"); done
        else
            mine=("${cpus[$(((k - 1) % m))]}")
        fi
        local IFS=,
        echo "${mine[*]}" >"$STATE/cpus$k"
    done
}

cmd_exec() {
    local k
    k=$(node_arg "exec needs a node and a command (vcluster.sh exec node1 hostname)" "$@") || exit
    shift
    # The node's network namespace; a UTS namespace of its own per process launched, with the
    # node's name (Open MPI tells nodes apart by host name); a private mount namespace where the
    # node's hosts file covers /etc/hosts. Unlike `ip netns exec`, /sys stays the machine's, so
    # the cgroup mounts slurmd needs are there.
    # Pinned to the node's CPUs (node_cpus; clusters brought up before this existed: all CPUs).
    local cpus
    cpus=$(cat "$STATE/cpus$k" 2>/dev/null || taskset -pc $$ | sed 's/.*: *//')
    exec taskset -c "$cpus" nsenter --net="/run/netns/$VC-node$k" unshare --uts --mount --propagation private \
        sh -c 'mount --bind "/etc/netns/$1/hosts" /etc/hosts && hostname "$2" && shift 2 && exec "$@"' \
        sh "$VC-node$k" "node$k" "$@"
}

cmd_link() {
    local k
    k=$(node_arg "link needs a node and a setting (vcluster.sh link node2 down)" "$@") || exit
    shift
    case $1 in
    down) ip -n "$SW" link set "vn$k" down && echo "node$k: link down" ;;
    up) ip -n "$SW" link set "vn$k" up && echo "node$k: link up" ;;
    *) shape "$k" $(link_settings "$@") && echo "node$k: link $(cat "$STATE/link$k")" ;;
    esac
}

cmd_hostfile() {
    local slots=${1:-1} n
    n=$(n_nodes)
    for k in $(seq "$n"); do echo "node$k slots=$slots"; done
}

cmd_agent() {
    # mpirun calls: AGENT [ssh-style options] HOST CMD... ; options are not used here.
    while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
    [ $# -ge 2 ] || die "agent needs a host and a command"
    local host=$1
    shift
    cmd_exec "$host" sh -c "$*"
}

cmd_mpirun() {
    need
    n_nodes >/dev/null
    cmd_hostfile "${MOE_VC_SLOTS:-1}" >"$STATE/hostfile"
    # Ranks keep their node's CPUs (node_cpus): Open MPI's own binding would put every node's
    # first rank on the machine's core 0. An explicit --bind-to in ARGS wins.
    # More ranks on a node than it has CPUs (MOE_VC_SLOTS over a 1-CPU node of a 2-core machine):
    # mpirun cannot see it (the hostfile grants the slots), so its ranks would spin in every wait
    # and take the CPU from the rank they wait for; yield_when_idle makes a waiting rank give way.
    local bind=(--bind-to none) yield=() a ncpu
    for a in "$@"; do case $a in --bind-to | --bind-to=*) bind=() ;; esac; done
    ncpu=1
    [ -s "$STATE/cpus1" ] && ncpu=$(tr ',' '\n' <"$STATE/cpus1" | grep -c .)
    [ "${MOE_VC_SLOTS:-1}" -gt "$ncpu" ] && yield=(--mca mpi_yield_when_idle 1)
    for a in "$@"; do case $a in *mpi_yield_when_idle*) yield=() ;; esac; done
    cmd_exec node1 mpirun --allow-run-as-root --hostfile "$STATE/hostfile" "${bind[@]}" "${yield[@]}" \
        --mca plm_rsh_agent "$SELF agent" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl self,vader,tcp --mca btl_tcp_if_include "$SUBNET.0/24" \
        --mca oob_tcp_if_include "$SUBNET.0/24" \
        --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3 \
        "$@"
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
exec) cmd_exec "$@" ;;
link) cmd_link "$@" ;;
hostfile) cmd_hostfile "$@" ;;
agent) cmd_agent "$@" ;;
mpirun) cmd_mpirun "$@" ;;
help | -h | --help) usage ;;
*) usage >&2; die "unknown command '$cmd'" ;;
esac
