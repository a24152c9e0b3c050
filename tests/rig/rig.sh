#!/usr/bin/env bash
# corral's test rig: a small SLURM cluster and sshd(s) on loopback, for the test suite.
#
#   bash tests/rig/rig.sh up [--mode squeue|sacct|cgroup|sacct+cgroup]
#   bash tests/rig/rig.sh down
#   bash tests/rig/rig.sh status
#   bash tests/rig/rig.sh check-cgroup    (exit 0 when mode cgroup can work on this machine)
#   bash tests/rig/rig.sh restart sshd|slurmctld   (for fault tests; sshd's open sessions drop)
#   bash tests/rig/rig.sh node-down NODE  (the node dies: SIGKILL to its slurmd and all in it)
#   bash tests/rig/rig.sh node-up NODE    (its slurmd starts again; SLURM takes it back)
#
# The cluster: this machine's own node (partitions debug, short) and compute nodes n1..n4,
# each a slurmd in its own network namespace on one bridge: n1 and n2 with GPU generic
# resources (gpu:a100:2, gpu:t4:2; partition gpu), n3 and n4 (partition cpu), n3 also in the
# preemptable partitions low (a preempted job is cancelled) and lowrq (it is requeued) and in
# the partition high that preempts them. JobRequeue=0: SLURM requeues nothing by itself.
#
# Run as root. Everything the rig keeps lives under one directory, CORRAL_RIG_DIR (default
# <repo>/.rig/). What a test needs is written to <rig dir>/rig.env; `down` removes that file.
#
# Modes:
#   squeue        no accounting storage: sacct does not work, only squeue/scontrol (+ jobcomp).
#   sacct         adds slurmdbd + MariaDB (--skip-networking): plain sacct works for every user;
#                 association limits (MaxSubmitJobs, ...) are enforced.
#   cgroup        proctrack/cgroup + task/cgroup + CR_Core_Memory: --mem is enforced
#                 (a job over its memory ends OUT_OF_MEMORY). Needs cgroup v1's memory controller.
#   sacct+cgroup  both.
# `up` without --mode keeps the mode of the last `up` (squeue after a `down`); `up` in another
# mode than the running one, or with a daemon missing, restarts the rig.
#
# Logins as clusters ask them: an sshd demanding a key AND a TOTP code (PAM
# pam_google_authenticator, its own PAM service), one demanding a password (pam_unix), and a
# passphrase-protected client key; codes, password and passphrase in root-only files.
#
# Environment knobs: CORRAL_RIG_DIR, CORRAL_RIG_USER (default corraltest), CORRAL_RIG_SSH_PORT
# (default: 2222, or the next free port), CORRAL_RIG_NET (the /24 between this machine and the
# rig's network namespace, e.g. 10.200.0; default: the first free one from 10.200.0 on),
# CORRAL_RIG_NO_NETNS=1 (skip the second host).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RIG=${CORRAL_RIG_DIR:-$REPO/.rig}
TUSER=${CORRAL_RIG_USER:-corraltest}
# Names of the second host's namespace and veth pair are per rig dir: a namespace outlives the
# processes of a session, and must never be mistaken for another checkout's rig.
RIG_ID=$(printf %s "$RIG" | sha256sum | cut -c1-8)
NS=corral-rig-$RIG_ID
VETH_HOST=crig${RIG_ID}h   # interface names: at most 15 characters
VETH_NS=crig${RIG_ID}n
CLUSTER=testcluster
NODE_CPUS=8
NODE_MEM=8192
SHORT_MAXTIME=00:05:00
COMPUTE_NODES=(n1 n2 n3 n4)
COMPUTE_CPUS=4
COMPUTE_MEM=4096
declare -A NODE_GRES=([n1]=gpu:a100:2 [n2]=gpu:t4:2)
declare -A NODE_ADDR=()
BRIDGE=crig${RIG_ID}br
SLURMD_TIMEOUT=10   # a node whose slurmd stops answering is down after ~2x this
SLURM_ETC=/etc/slurm
SLURM_CONF=$SLURM_ETC/slurm.conf
MARK="# Written by corral's test rig (tests/rig/rig.sh)."

BASE_PKGS=(slurmctld slurmd slurm-client munge openssh-server openssh-client iproute2
           python3 python3-venv libpam-google-authenticator)
OTHER_USER=${CORRAL_RIG_OTHER_USER:-corralother}   # a second local user, refused by others' sockets
SACCT_PKGS=(slurmdbd mariadb-server slurm-wlm-mysql-plugin)

RUN=$RIG/run      # pid files, the recorded mode and component list
LOG=$RIG/log
ENV_FILE=$RIG/rig.env

log() { printf 'rig: %s\n' "$*" >&2; }
die() { printf 'rig: error: %s\n' "$*" >&2; exit 2; }

case "$RIG" in *[[:space:]]*) die "CORRAL_RIG_DIR must not contain whitespace: '$RIG'" ;; esac

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every daemon is started by `launch` and recorded as <name>.pid plus the
# binary it must be running (<name>.exe), so `down` ends exactly what `up` started.

launch() {  # launch NAME EXE CMD... : start CMD detached (own session, fds > 2 closed)
    local name=$1 exe=$2
    shift 2
    # shellcheck disable=SC2016
    setsid bash -c 'for fd in $(ls /proc/$$/fd); do
                        if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
                    done
                    exec "$@"' corral-rig "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
    echo $! >"$RUN/$name.pid"
    readlink -f "$exe" >"$RUN/$name.exe"
    grep -qx "$name" "$RUN/components" 2>/dev/null || echo "$name" >>"$RUN/components"
}

alive() {  # alive NAME: the recorded pid runs the recorded binary
    local name=$1 pid exe
    [[ -f $RUN/$name.pid && -f $RUN/$name.exe ]] || return 1
    pid=$(<"$RUN/$name.pid")
    exe=$(<"$RUN/$name.exe")
    [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$exe" ]]
}

stop() {  # stop NAME: TERM, then KILL after 10 s; only if the pid still runs our binary
    local name=$1 pid i
    if alive "$name"; then
        pid=$(<"$RUN/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$name" || break
            sleep 0.1
        done
        if alive "$name"; then
            log "$name (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$RUN/$name.pid" "$RUN/$name.exe"
}

components() { [[ -f $RUN/components ]] && cat "$RUN/components" || true; }

wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "$what did not come up within ${secs}s (logs: $LOG)"
}

# ---------------------------------------------------------------------------------------------
# Helpers

need_root() { [[ $(id -u) == 0 ]] || die "run as root (sudo bash tests/rig/rig.sh $*)"; }

world_traversable() {  # every directory from / down to $1 is executable by others
    local p=$1
    while [[ -n $p && $p != / ]]; do
        [[ -d $p ]] || return 1
        (( 8#$(stat -c %a "$p") & 1 )) || return 1
        p=$(dirname "$p")
    done
}

as_user() { setpriv --reuid="$TUSER" --regid="$(id -g "$TUSER")" --init-groups "$@"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_packages() {
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z ${APT_UPDATED:-} ]]; then  # once per `up`: package lists go stale
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG/apt.out" 2>&1 ||
        { tail -20 "$LOG/apt.out" >&2; die "apt-get install failed"; }
}

free_port() {  # free_port START: first TCP port >= START nobody listens on
    local port=$1
    while ss -Hltn "sport = :$port" | grep -q .; do port=$((port + 1)); done
    echo "$port"
}

has() { [[ ,$MODE, == *,$1,* ]]; }

# ---------------------------------------------------------------------------------------------
# Mode

parse_mode() {  # normalise "sacct+cgroup", "cgroup,sacct", ... to a canonical string
    local raw=${1//+/,} sacct=0 cgroup=0 part
    IFS=, read -ra parts <<<"$raw"
    for part in "${parts[@]}"; do
        case $part in
            squeue) ;;
            sacct) sacct=1 ;;
            cgroup) cgroup=1 ;;
            *) die "unknown mode '$part' (valid: squeue, sacct, cgroup, sacct+cgroup)" ;;
        esac
    done
    if ((sacct && cgroup)); then echo sacct,cgroup
    elif ((sacct)); then echo sacct
    elif ((cgroup)); then echo cgroup
    else echo squeue
    fi
}

check_cgroup_support() {
    # Slurm 22.05's cgroup/v2 plugin needs systemd to delegate a cgroup to slurmd; without
    # systemd as PID 1 only cgroup v1 (a mounted `memory` + `freezer` hierarchy) can work.
    local why=""
    if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
        why="this machine has only cgroup v2 (unified hierarchy) and Slurm 22.05's cgroup/v2 \
needs systemd to delegate slurmd's cgroup; PID 1 here is $(tr '\0' ' ' </proc/1/cmdline | cut -c1-40)"
    elif ! grep -qE '^cgroup /sys/fs/cgroup/memory cgroup .*memory' /proc/mounts; then
        why="no cgroup v1 memory controller is mounted at /sys/fs/cgroup/memory"
    elif ! grep -qE '^cgroup /sys/fs/cgroup/freezer cgroup ' /proc/mounts; then
        why="no cgroup v1 freezer controller is mounted at /sys/fs/cgroup/freezer"
    elif ! mkdir /sys/fs/cgroup/memory/corral-rig-probe 2>/dev/null; then
        why="cannot create a memory cgroup under /sys/fs/cgroup/memory (read-only?)"
    else
        rmdir /sys/fs/cgroup/memory/corral-rig-probe
    fi
    [[ -z $why ]] || die "mode cgroup cannot work on this machine: $why"
}

# ---------------------------------------------------------------------------------------------
# Directories: a rig dir (root only where it holds secrets) and a "public" dir the test user and
# the munge user can reach (sockets, the remote Python). The public dir is the rig dir itself
# when every directory above it is world-executable, else /var/tmp/corral-rig-<hash>.

setup_dirs() {
    mkdir -p "$RIG" "$RUN" "$LOG"
    chmod 755 "$RIG"
    chmod 700 "$RUN" "$LOG"
    local pub=$RIG
    if ! world_traversable "$RIG" || ((${#RIG} > 60)); then
        pub=/var/tmp/corral-rig-$(printf %s "$RIG" | sha256sum | cut -c1-8)
    fi
    PUB=$pub
    mkdir -p "$PUB"
    chmod 755 "$PUB"
    echo "$PUB" >"$RUN/public-dir"
    SOCK_DIR=$PUB/munge-socket
    MUNGE_SOCK=$SOCK_DIR/munge.socket
    MYSQL_SOCK=$PUB/mariadb/mysqld.sock
}

# ---------------------------------------------------------------------------------------------
# Pieces of `up`

ensure_hostname() {
    NODE=$(hostname -s)
    if ! getent hosts "$NODE" >/dev/null; then
        log "adding '127.0.0.1 $NODE' to /etc/hosts"
        echo "127.0.0.1 $NODE  # corral test rig" >>/etc/hosts
    fi
}

ensure_user() {
    if ! id "$TUSER" >/dev/null 2>&1; then
        log "creating user $TUSER"
        useradd -m -s /bin/bash "$TUSER"
    fi
    TUSER_HOME=$(getent passwd "$TUSER" | cut -d: -f6)
}

start_munge() {
    mkdir -p "$SOCK_DIR" "$PUB/munge"
    chown munge:munge "$SOCK_DIR" "$PUB/munge"
    chmod 755 "$SOCK_DIR"
    chmod 700 "$PUB/munge"
    local key=$PUB/munge/munge.key
    if [[ ! -s $key ]]; then
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$key"
    chmod 400 "$key"
    launch munged /usr/sbin/munged setpriv --reuid=munge --regid=munge --init-groups \
        /usr/sbin/munged --foreground --force --socket="$MUNGE_SOCK" --key-file="$key" \
        --pid-file="$PUB/munge/munged.pid" --log-file="$PUB/munge/munged.log" \
        --seed-file="$PUB/munge/munged.seed"
    wait_for 10 munged bash -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"
}

write_slurm_conf() {  # write_slurm_conf CTLD_ADDR
    local proctrack=proctrack/linuxproc task=task/none select=CR_Core mem="" acct gather
    if has cgroup; then
        proctrack=proctrack/cgroup task=task/cgroup select=CR_Core_Memory mem="DefMemPerCPU=512"
    fi
    if has sacct; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePass=$MUNGE_SOCK
AccountingStorageEnforce=associations,limits"
        gather=jobacct_gather/linux
    else
        acct="AccountingStorageType=accounting_storage/none"
        gather=jobacct_gather/none
    fi
    cat <<EOF
$MARK
# Mode: ${MODE/,/+}. Restored to what was here before (if anything) by \`rig.sh down\`.
ClusterName=$CLUSTER
SlurmctldHost=$NODE($1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK
ProctrackType=$proctrack
TaskPlugin=$task
SelectType=select/cons_tres
SelectTypeParameters=$select
$mem
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=300
KillWait=5
SlurmdTimeout=$SLURMD_TIMEOUT
JobRequeue=0
GresTypes=gpu
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
MailProg=/bin/true
StateSaveLocation=$RIG/slurm/state
SlurmdSpoolDir=$PUB/slurmd-spool/%n
SlurmctldPidFile=$RIG/slurm/slurmctld.pid
SlurmdPidFile=$RIG/slurm/slurmd.%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.%n.log
$acct
JobAcctGatherType=$gather
JobCompType=jobcomp/filetxt
JobCompLoc=$RIG/slurm/jobcomp.txt
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$NODE_CPUS RealMemory=$NODE_MEM State=UNKNOWN
$(compute_node_lines)
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$NODE Default=NO MaxTime=$SHORT_MAXTIME State=UP
$(compute_partition_lines)
EOF
}

compute_node_lines() {
    ((${#NODE_ADDR[@]})) || return 0
    local n gres
    for n in "${COMPUTE_NODES[@]}"; do
        gres=${NODE_GRES[$n]:-}
        echo "NodeName=$n NodeAddr=${NODE_ADDR[$n]} NodeHostname=$n CPUs=$COMPUTE_CPUS" \
            "RealMemory=$COMPUTE_MEM${gres:+ Gres=$gres} State=UNKNOWN"
    done
}

compute_partition_lines() {
    ((${#NODE_ADDR[@]})) || return 0
    echo "PartitionName=gpu Nodes=n1,n2 Default=NO MaxTime=INFINITE State=UP"
    echo "PartitionName=cpu Nodes=n3,n4 Default=NO MaxTime=INFINITE State=UP"
    # low: preempted jobs are cancelled (JobRequeue=0 leaves nothing to requeue); lowrq: requeued
    echo "PartitionName=low Nodes=n3 Default=NO MaxTime=INFINITE PriorityTier=1" \
        "PreemptMode=CANCEL State=UP"
    echo "PartitionName=lowrq Nodes=n3 Default=NO MaxTime=INFINITE PriorityTier=1" \
        "PreemptMode=REQUEUE State=UP"
    echo "PartitionName=high Nodes=n3 Default=NO MaxTime=INFINITE PriorityTier=10" \
        "PreemptMode=OFF State=UP"
}

gpu_device() { echo "/dev/corral-rig-gpu-$RIG_ID-$1-$2"; }  # gpu_device NODE INDEX

write_gres_conf() {
    local n type count
    echo "$MARK"
    for n in "${!NODE_GRES[@]}"; do
        type=$(cut -d: -f2 <<<"${NODE_GRES[$n]}")
        count=$(cut -d: -f3 <<<"${NODE_GRES[$n]}")
        echo "NodeName=$n Name=gpu Type=$type File=$(gpu_device "$n" "[0-$((count - 1))]")"
    done
}

install_etc_file() {  # install_etc_file PATH MODE < content: back up a file that is not ours
    local path=$1 mode=$2
    if [[ -f $path ]] && ! grep -qF "$MARK" "$path" && [[ ! -e $path.corral-rig-backup ]]; then
        log "backing up $path to $path.corral-rig-backup (restored by down)"
        mv "$path" "$path.corral-rig-backup"
    fi
    install -m "$mode" /dev/stdin "$path"
}

restore_etc_file() {
    local path=$1
    if [[ -f $path ]] && grep -qF "$MARK" "$path"; then rm -f "$path"; fi
    if [[ -e $path.corral-rig-backup && ! -e $path ]]; then mv "$path.corral-rig-backup" "$path"; fi
}

cgroup_conf() {
    cat <<EOF
$MARK
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
ConstrainCores=no
EOF
}

write_slurm_files() {
    # The spool holds each job's script, which runs as the job's user: it lives in $PUB.
    mkdir -p "$SLURM_ETC" "$RIG/slurm/state" "$PUB/slurmd-spool/$NODE"
    write_slurm_conf 127.0.0.1 | install_etc_file "$SLURM_CONF" 644
    write_gres_conf | install_etc_file "$SLURM_ETC/gres.conf" 644
    if has cgroup; then
        cgroup_conf | install_etc_file "$SLURM_ETC/cgroup.conf" 644
    else
        restore_etc_file "$SLURM_ETC/cgroup.conf"
    fi
}

start_mariadb() {
    local data=$PUB/mariadb-data
    mkdir -p "$data" "$(dirname "$MYSQL_SOCK")"
    chown mysql:mysql "$(dirname "$MYSQL_SOCK")"
    chmod 755 "$(dirname "$MYSQL_SOCK")"
    if [[ ! -d $data/mysql ]]; then
        log "initialising MariaDB in $data"
        chown mysql:mysql "$data"
        mariadb-install-db --no-defaults --user=mysql --datadir="$data" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.out" 2>&1 ||
            { tail -20 "$LOG/mariadb-install.out" >&2; die "mariadb-install-db failed"; }
    fi
    chmod 700 "$data"
    launch mariadb /usr/sbin/mariadbd /usr/sbin/mariadbd --no-defaults --user=mysql \
        --datadir="$data" --socket="$MYSQL_SOCK" --skip-networking \
        --pid-file="$data/mariadbd.pid" --log-error="$LOG/mariadb.log" \
        --innodb-buffer-pool-size=64M
    wait_for 30 MariaDB mariadb-admin --socket="$MYSQL_SOCK" ping
}

start_slurmdbd() {
    install_etc_file "$SLURM_ETC/slurmdbd.conf" 600 <<EOF
$MARK
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdAddr=127.0.0.1
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$RIG/slurm/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
EOF
    launch slurmdbd /usr/sbin/slurmdbd env MYSQL_UNIX_PORT="$MYSQL_SOCK" /usr/sbin/slurmdbd -D
    wait_for 30 slurmdbd sacctmgr -n list cluster
    # An account holding root and the test user, so a just-finished job shows its real owner
    # and plain `sacct` works for both.
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if ! sacctmgr -n -P list account format=account | grep -qx corral; then
        sacctmgr -i add account corral cluster="$CLUSTER" description=corral-tests \
            organization=corral >/dev/null
    fi
    local u
    for u in root "$TUSER"; do
        if ! sacctmgr -n -P list user "$u" format=user | grep -qx "$u"; then
            sacctmgr -i add user "$u" account=corral cluster="$CLUSTER" >/dev/null
        fi
    done
}

node_ready() { sinfo -h -n "${1:-$NODE}" -o %t | grep -qE '^(idle|mix|alloc)$'; }

# ---------------------------------------------------------------------------------------------
# Compute nodes: one network namespace each, on a bridge of this machine, each with its slurmd.

node_ns() { echo "corral-rig-$RIG_ID-$1"; }

pick_node_net() {  # a free /24 for the compute nodes' bridge: CORRAL_RIG_NODE_NET, else 10.201.x
    if [[ -n ${CORRAL_RIG_NODE_NET:-} ]]; then
        net_in_use "$CORRAL_RIG_NODE_NET" && return 1
        echo "$CORRAL_RIG_NODE_NET"
        return 0
    fi
    local i
    for ((i = 0; i < 255; i++)); do
        net_in_use "10.201.$i" || { echo "10.201.$i"; return 0; }
    done
    return 1
}

remove_compute_nodes() {  # namespaces, bridge, device files, /etc/netns copies (stale ones too)
    local n ns p
    for n in "${COMPUTE_NODES[@]}"; do
        ns=$(node_ns "$n")
        if ip netns list 2>/dev/null | grep -qw "$ns"; then
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
        rm -rf "/etc/netns/$ns"
        rm -f /dev/corral-rig-gpu-"$RIG_ID"-"$n"-*
    done
    # A veth whose namespace went away while something still held it (a rig torn down
    # mid-start) keeps its host end: remove those too, or the next `up` cannot add them.
    for ((n = 0; n < ${#COMPUTE_NODES[@]}; n++)); do
        ip link del "crig${RIG_ID}v$n" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -f "$RUN/node-net"
}

setup_compute_nodes() {  # the bridge, one namespace per node, its veth: before slurm.conf
    NODE_NET=""
    if [[ ${CORRAL_RIG_NO_NETNS:-0} == 1 ]]; then
        log "compute nodes disabled (CORRAL_RIG_NO_NETNS=1): the cluster is this machine only"
        return 0
    fi
    remove_compute_nodes
    NODE_NET=$(pick_node_net) ||
        die "no free /24 for the compute nodes (set CORRAL_RIG_NODE_NET to a free prefix)"
    echo "$NODE_NET" >"$RUN/node-net"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i n ns host_end node_end count k
    for i in "${!COMPUTE_NODES[@]}"; do
        n=${COMPUTE_NODES[$i]}
        ns=$(node_ns "$n")
        host_end=crig${RIG_ID}v$i
        node_end=crig${RIG_ID}w$i
        ip netns add "$ns"
        ip link add "$host_end" type veth peer name "$node_end"
        ip link set "$node_end" netns "$ns"
        ip link set "$host_end" master "$BRIDGE"
        ip link set "$host_end" up
        NODE_ADDR[$n]=$NODE_NET.$((11 + i))
        ip -n "$ns" addr add "${NODE_ADDR[$n]}/24" dev "$node_end"
        ip -n "$ns" link set "$node_end" up
        ip -n "$ns" link set lo up
        if [[ -n ${NODE_GRES[$n]:-} ]]; then  # the "GPUs": device files SLURM hands out
            count=$(cut -d: -f3 <<<"${NODE_GRES[$n]}")
            for ((k = 0; k < count; k++)); do
                mknod -m 666 "$(gpu_device "$n" "$k")" c 1 3
            done
        fi
    done
}

cgroup_remount() {
    # `ip netns exec` mounts a fresh /sys, hiding /sys/fs/cgroup, without which slurmd will
    # not start: mount this machine's cgroup hierarchies again (same hierarchies, same jobs).
    if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
        echo "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
        return 0
    fi
    echo "mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup"
    local dev mnt type opts keep o
    while read -r dev mnt type opts _; do
        [[ $dev == cgroup || $dev == cgroup2 ]] || continue
        if [[ $type == cgroup2 ]]; then
            echo "mkdir -p $mnt && mount -t cgroup2 cgroup2 $mnt"
            continue
        fi
        keep=""
        IFS=, read -ra o <<<"$opts"
        for opt in "${o[@]}"; do
            case $opt in
                rw | ro | relatime | noatime | nosuid | nodev | noexec | clone_children | xattr | \
                    seclabel | nsdelegate) ;;
                *) keep=${keep:+$keep,}$opt ;;
            esac
        done
        echo "mkdir -p $mnt && mount -t cgroup -o $keep cgroup $mnt"
    done < <(grep -E '^cgroup2? /sys/fs/cgroup/' /proc/mounts)
}

launch_node() {  # launch_node NODE: its slurmd, inside its namespace
    local n=$1 ns
    ns=$(node_ns "$n")
    launch "slurmd-$n" /usr/sbin/slurmd ip netns exec "$ns" bash -c \
        "$(cgroup_remount | paste -sd ';'); exec /usr/sbin/slurmd -D -N $n -f $SLURM_CONF"
}

all_nodes_ready() {
    local n
    for n in "${COMPUTE_NODES[@]}"; do node_ready "$n" || return 1; done
}

start_compute_nodes() {
    [[ -n $NODE_NET ]] || return 0
    local n ns
    for n in "${COMPUTE_NODES[@]}"; do
        ns=$(node_ns "$n")
        mkdir -p "/etc/netns/$ns/slurm" "$PUB/slurmd-spool/$n"
        # `ip netns exec` bind-mounts /etc/netns/<ns>/slurm over /etc/slurm
        write_slurm_conf "$NODE_NET.1" >"/etc/netns/$ns/slurm/slurm.conf"
        write_gres_conf >"/etc/netns/$ns/slurm/gres.conf"
        if has cgroup; then cgroup_conf >"/etc/netns/$ns/slurm/cgroup.conf"; fi
        launch_node "$n"
    done
    wait_for 60 "the compute nodes (${COMPUTE_NODES[*]} idle)" all_nodes_ready
}

start_slurm() {
    launch slurmctld /usr/sbin/slurmctld /usr/sbin/slurmctld -D -i -f "$SLURM_CONF"
    wait_for 30 slurmctld bash -c "scontrol ping | grep -q UP"
    launch slurmd /usr/sbin/slurmd /usr/sbin/slurmd -D -N "$NODE" -f "$SLURM_CONF"
    wait_for 30 "slurmd (node $NODE idle)" node_ready
}

write_sshd_config() {  # write_sshd_config NAME LISTEN PORT [AUTH]: AUTH key, 2fa or password
    local name=$1 addr=$2 port=$3 auth=${4:-key} keyf=$RIG/ssh/${1}_host_ed25519_key
    local pubkey=yes password=no kbd=no methods=publickey
    case $auth in
        2fa) kbd=yes methods=publickey,keyboard-interactive ;;
        password) pubkey=no password=yes methods=password ;;
    esac
    [[ -f $keyf ]] || ssh-keygen -q -t ed25519 -N '' -C "corral-rig-$name" -f "$keyf"
    cat >"$RIG/ssh/$name.conf" <<EOF
$MARK
Port $port
ListenAddress $addr
HostKey $keyf
PidFile $RIG/ssh/$name.pid
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication $pubkey
PasswordAuthentication $password
KbdInteractiveAuthentication $kbd
AuthenticationMethods $methods
PermitRootLogin no
AllowUsers $TUSER
UsePAM yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 100:30:200
# Debian's default: corral's shared connection must live within it
MaxSessions 10
EOF
}

setup_ssh_keys() {
    mkdir -p "$RIG/ssh" /run/sshd
    chmod 700 "$RIG/ssh"
    chmod 755 /run/sshd
    CLIENT_KEY=$RIG/ssh/id_ed25519
    [[ -f $CLIENT_KEY ]] || ssh-keygen -q -t ed25519 -N '' -C corral-rig-client -f "$CLIENT_KEY"
    install -d -m 700 -o "$TUSER" -g "$(id -g "$TUSER")" "$TUSER_HOME/.ssh"
    # A second client key, protected by a passphrase (kept in a root-only file).
    PASS_KEY=$RIG/ssh/id_ed25519_passphrase
    if [[ ! -f $PASS_KEY || ! -f $RIG/ssh/passphrase ]]; then
        rm -f "$PASS_KEY" "$PASS_KEY.pub"
        head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$RIG/ssh/passphrase"
        chmod 600 "$RIG/ssh/passphrase"
        ssh-keygen -q -t ed25519 -N "$(<"$RIG/ssh/passphrase")" -C corral-rig-passphrase \
            -f "$PASS_KEY"
    fi
    # The test user is the rig's own: only the current rig's client keys may log in.
    local ak=$TUSER_HOME/.ssh/authorized_keys
    cat "$CLIENT_KEY.pub" "$PASS_KEY.pub" >"$ak"
    chown "$TUSER:$(id -g "$TUSER")" "$ak"
    chmod 600 "$ak"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

start_sshd() {
    SSH_PORT=${CORRAL_RIG_SSH_PORT:-$(free_port 2222)}
    write_sshd_config sshd 127.0.0.1 "$SSH_PORT"
    /usr/sbin/sshd -t -f "$RIG/ssh/sshd.conf" || die "sshd rejects $RIG/ssh/sshd.conf"
    launch sshd /usr/sbin/sshd /usr/sbin/sshd -D -e -f "$RIG/ssh/sshd.conf"
    wait_for 10 sshd port_open 127.0.0.1 "$SSH_PORT"
}

# ---------------------------------------------------------------------------------------------
# Logins with more than a key: each sshd a symlink of its own name, so that its PAM service
# (the program's name) is the rig's, never the machine's /etc/pam.d/sshd.

pam_service() { echo "corral-rig-$RIG_ID-$1"; }  # pam_service 2fa|password

write_pam_files() {
    install_etc_file "/etc/pam.d/$(pam_service 2fa)" 644 <<EOF
$MARK
# The second factor of the rig's two-factor sshd: a TOTP code (the key was the first).
auth required pam_google_authenticator.so secret=$RIG/otp/\${USER} user=root
account required pam_unix.so
session required pam_permit.so
EOF
    install_etc_file "/etc/pam.d/$(pam_service password)" 644 <<EOF
$MARK
auth required pam_unix.so
account required pam_unix.so
session required pam_permit.so
EOF
}

setup_login_secrets() {
    # The test user's TOTP secret (RFC 6238, 30 s, 6 digits) and password, root-only.
    mkdir -p "$RIG/otp"
    chmod 700 "$RIG/otp"
    if [[ ! -s $RIG/otp/$TUSER ]]; then
        python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode())' \
            >"$RIG/otp/secret"
        printf '%s\n" TOTP_AUTH\n' "$(<"$RIG/otp/secret")" >"$RIG/otp/$TUSER"
    fi
    chmod 600 "$RIG/otp/$TUSER" "$RIG/otp/secret"
    if [[ ! -s $RIG/ssh/password ]]; then
        head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$RIG/ssh/password"
    fi
    chmod 600 "$RIG/ssh/password"
    printf '%s:%s\n' "$TUSER" "$(<"$RIG/ssh/password")" | chpasswd
    if ! id "$OTHER_USER" >/dev/null 2>&1; then
        log "creating user $OTHER_USER"
        useradd -m -s /bin/bash "$OTHER_USER"
    fi
}

start_auth_sshds() {
    setup_login_secrets
    write_pam_files
    mkdir -p "$RIG/bin"
    local kind port base
    for kind in 2fa password; do
        ln -sfn /usr/sbin/sshd "$RIG/bin/$(pam_service "$kind")"
        if [[ $kind == 2fa ]]; then base=2322; else base=2422; fi
        port=$(free_port "$base")
        write_sshd_config "sshd-$kind" 127.0.0.1 "$port" "$kind"
        "$RIG/bin/$(pam_service "$kind")" -t -f "$RIG/ssh/sshd-$kind.conf" ||
            die "sshd rejects $RIG/ssh/sshd-$kind.conf"
        launch "sshd-$kind" /usr/sbin/sshd "$RIG/bin/$(pam_service "$kind")" -D -e \
            -f "$RIG/ssh/sshd-$kind.conf"
        wait_for 10 "sshd-$kind" port_open 127.0.0.1 "$port"
        if [[ $kind == 2fa ]]; then SSH_2FA_PORT=$port; else SSH_PW_PORT=$port; fi
    done
}

net_in_use() { ip -4 -o addr show | grep -qF " $1."; }

pick_net() {  # the /24 prefix for the second host: CORRAL_RIG_NET, else the first free one
    if [[ -n ${CORRAL_RIG_NET:-} ]]; then
        net_in_use "$CORRAL_RIG_NET" && return 1
        echo "$CORRAL_RIG_NET"
        return 0
    fi
    local i
    for ((i = 0; i < 255; i++)); do
        net_in_use "10.200.$i" || { echo "10.200.$i"; return 0; }
    done
    return 1
}

remove_host2() {  # the namespace, its veth pair and its /etc/netns files (also stale ones)
    local ns=${1:-$NS}
    ip netns del "$ns" 2>/dev/null || true
    ip link del "$VETH_HOST" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
    # The kernel frees a namespace (and the veth end in it) once its last process is gone.
    local i
    for ((i = 0; i < 50; i++)); do
        ip link show "$VETH_HOST" >/dev/null 2>&1 || break
        sleep 0.1
    done
}

start_host2() {
    HOST2=""
    [[ ${CORRAL_RIG_NO_NETNS:-0} == 1 ]] && { log "second host disabled"; return 0; }
    remove_host2  # a namespace of this rig dir left behind (by a killed session, a crash)
    if ! NET=$(pick_net); then
        log "second host skipped: ${CORRAL_RIG_NET:-every 10.200.x.0/24} is in use here" \
            "(set CORRAL_RIG_NET to a free /24 prefix)"
        return 0
    fi
    if ! ip netns add "$NS" 2>"$LOG/netns.err"; then
        log "second host skipped: ip netns add failed: $(<"$LOG/netns.err")"
        return 0
    fi
    echo "$NS" >"$RUN/netns"
    ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
    ip link set "$VETH_NS" netns "$NS"
    ip addr add "$NET.1/24" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip -n "$NS" addr add "$NET.2/24" dev "$VETH_NS"
    ip -n "$NS" link set "$VETH_NS" up
    ip -n "$NS" link set lo up
    # `ip netns exec` bind-mounts /etc/netns/<ns>/slurm over /etc/slurm: sbatch in there
    # reaches slurmctld through the veth (slurmctld listens on every address).
    mkdir -p "/etc/netns/$NS/slurm"
    write_slurm_conf "$NET.1" >"/etc/netns/$NS/slurm/slurm.conf"
    write_sshd_config sshd2 "$NET.2" 22
    launch sshd2 /usr/sbin/sshd ip netns exec "$NS" /usr/sbin/sshd -D -e -f "$RIG/ssh/sshd2.conf"
    wait_for 10 "sshd in namespace $NS" port_open "$NET.2" 22
    HOST2=$NET.2
}

write_client_files() {
    local kh=$RIG/ssh/known_hosts cfg=$RIG/ssh/ssh_config
    {
        echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$RIG/ssh/sshd_host_ed25519_key.pub")"
        echo "[127.0.0.1]:$SSH_2FA_PORT $(cut -d' ' -f1,2 "$RIG/ssh/sshd-2fa_host_ed25519_key.pub")"
        echo "[127.0.0.1]:$SSH_PW_PORT $(cut -d' ' -f1,2 \
            "$RIG/ssh/sshd-password_host_ed25519_key.pub")"
        if [[ -n $HOST2 ]]; then
            echo "$HOST2 $(cut -d' ' -f1,2 "$RIG/ssh/sshd2_host_ed25519_key.pub")"
        fi
    } >"$kh"
    {
        echo "$MARK"
        echo "Host corral-rig"
        echo "    HostName 127.0.0.1"
        echo "    Port $SSH_PORT"
        if [[ -n $HOST2 ]]; then
            echo "Host corral-rig2"
            echo "    HostName $HOST2"
            echo "    Port 22"
        fi
        echo "Host corral-rig corral-rig2"
        echo "    User $TUSER"
        echo "    IdentityFile $CLIENT_KEY"
        echo "    IdentitiesOnly yes"
        echo "    UserKnownHostsFile $kh"
        echo "    StrictHostKeyChecking yes"
        echo "    BatchMode yes"
        # logins that ask: a TOTP code after the key, a password, a key's passphrase
        echo "Host corral-rig-2fa"
        echo "    HostName 127.0.0.1"
        echo "    Port $SSH_2FA_PORT"
        echo "    IdentityFile $CLIENT_KEY"
        echo "Host corral-rig-password"
        echo "    HostName 127.0.0.1"
        echo "    Port $SSH_PW_PORT"
        echo "    PreferredAuthentications password"
        echo "Host corral-rig-passphrase"
        echo "    HostName 127.0.0.1"
        echo "    Port $SSH_PORT"
        echo "    IdentityFile $PASS_KEY"
        echo "Host corral-rig-2fa corral-rig-password corral-rig-passphrase"
        echo "    User $TUSER"
        echo "    IdentitiesOnly yes"
        echo "    UserKnownHostsFile $kh"
        echo "    StrictHostKeyChecking yes"
    } >"$cfg"
    chmod 644 "$kh" "$cfg"
}

setup_python() {
    # The remote side's Python: Debian's python3 in a venv the test user can read (the
    # machine's default python3 may live in root's home). Editable install of this checkout
    # when the test user can read it, else a copy (rebuilt when corral's sources change).
    local venv=$PUB/venv editable=0 want
    if as_user test -r "$REPO/pyproject.toml" -a -x "$REPO/corral"; then editable=1; fi
    want="pyproject=$(sha256sum <"$REPO/pyproject.toml" | cut -c1-16) editable=$editable"
    if ((!editable)); then
        want="$want tree=$(cd "$REPO" && find corral -type f | sort | xargs sha256sum |
            sha256sum | cut -c1-16)"
    fi
    if [[ ! -x $venv/bin/python || $(cat "$venv/.corral-rig-stamp" 2>/dev/null) != "$want" ]]
    then
        log "building the remote Python environment in $venv (editable=$editable)"
        rm -rf "$venv"
        /usr/bin/python3 -m venv "$venv"
        local spec=("$REPO")
        ((editable)) && spec=(-e "$REPO")
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${spec[@]}" \
            >"$LOG/venv.out" 2>&1 || { tail -20 "$LOG/venv.out" >&2; die "pip install failed"; }
        echo "$want" >"$venv/.corral-rig-stamp"
        chmod -R a+rX "$venv"
    fi
    PYTHON=$venv/bin/python
    PY_EDITABLE=$editable
}

node_facts() {  # node_facts name|addr|ns|gres: comma-separated, NODE=value for all but name
    [[ -n ${NODE_NET:-} ]] || return 0
    local n out=()
    for n in "${COMPUTE_NODES[@]}"; do
        case $1 in
            name) out+=("$n") ;;
            addr) out+=("$n=${NODE_ADDR[$n]}") ;;
            ns) out+=("$n=$(node_ns "$n")") ;;
            gres) [[ -n ${NODE_GRES[$n]:-} ]] && out+=("$n=${NODE_GRES[$n]#gpu:}") ;;
        esac
    done
    (IFS=,; echo "${out[*]}")
}

write_env_file() {
    local tmp=$ENV_FILE.tmp sacct=0 cgroup=0
    has sacct && sacct=1
    has cgroup && cgroup=1
    cat >"$tmp" <<EOF
# corral test rig: facts for the test suite (KEY=value, no quoting). Removed by \`rig.sh down\`.
CORRAL_RIG_DIR=$RIG
CORRAL_RIG_PUBLIC_DIR=$PUB
CORRAL_RIG_MODE=${MODE/,/+}
CORRAL_RIG_SACCT=$sacct
CORRAL_RIG_CGROUP=$cgroup
CORRAL_RIG_SSH_HOST=127.0.0.1
CORRAL_RIG_SSH_PORT=$SSH_PORT
CORRAL_RIG_SSH_USER=$TUSER
CORRAL_RIG_SSH_KEY=$CLIENT_KEY
CORRAL_RIG_KNOWN_HOSTS=$RIG/ssh/known_hosts
CORRAL_RIG_SSH_CONFIG=$RIG/ssh/ssh_config
CORRAL_RIG_SSH_ALIAS=corral-rig
CORRAL_RIG_SSH_2FA_PORT=$SSH_2FA_PORT
CORRAL_RIG_SSH_2FA_ALIAS=corral-rig-2fa
CORRAL_RIG_SSH_2FA_LOG=$LOG/sshd-2fa.out
CORRAL_RIG_OTP_SECRET_FILE=$RIG/otp/secret
CORRAL_RIG_SSH_PASSWORD_PORT=$SSH_PW_PORT
CORRAL_RIG_SSH_PASSWORD_ALIAS=corral-rig-password
CORRAL_RIG_SSH_PASSWORD_LOG=$LOG/sshd-password.out
CORRAL_RIG_PASSWORD_FILE=$RIG/ssh/password
CORRAL_RIG_SSH_PASSPHRASE_ALIAS=corral-rig-passphrase
CORRAL_RIG_PASSPHRASE_KEY=$PASS_KEY
CORRAL_RIG_PASSPHRASE_FILE=$RIG/ssh/passphrase
CORRAL_RIG_SSH_LOG=$LOG/sshd.out
CORRAL_RIG_OTHER_USER=$OTHER_USER
CORRAL_RIG_HOST2=$HOST2
CORRAL_RIG_HOST2_PORT=${HOST2:+22}
CORRAL_RIG_HOST2_ALIAS=${HOST2:+corral-rig2}
CORRAL_RIG_NETNS=${HOST2:+$NS}
SLURM_CONF=$SLURM_CONF
CORRAL_RIG_CLUSTER=$CLUSTER
CORRAL_RIG_NODE=$NODE
CORRAL_RIG_NODE_CPUS=$NODE_CPUS
CORRAL_RIG_PARTITIONS=debug,short${NODE_NET:+,gpu,cpu,low,lowrq,high}
CORRAL_RIG_DEFAULT_PARTITION=debug
CORRAL_RIG_COMPUTE_NODES=$(node_facts name)
CORRAL_RIG_NODE_ADDRS=$(node_facts addr)
CORRAL_RIG_NODE_NETNS=$(node_facts ns)
CORRAL_RIG_NODE_GPUS=$(node_facts gres)
CORRAL_RIG_NODE_CPUS_EACH=$COMPUTE_CPUS
CORRAL_RIG_SHORT_MAXTIME=$SHORT_MAXTIME
CORRAL_RIG_MUNGE_SOCKET=$MUNGE_SOCK
CORRAL_RIG_PYTHON=$PYTHON
CORRAL_RIG_PYTHON_EDITABLE=$PY_EDITABLE
EOF
    chmod 644 "$tmp"
    mv "$tmp" "$ENV_FILE"
}

all_alive() {
    local n any=0
    for n in $(components); do alive "$n" || return 1; any=1; done
    ((any))
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up() {
    need_root up
    local t0=$EPOCHREALTIME running_mode=""
    [[ -f $RUN/mode ]] && running_mode=$(<"$RUN/mode")
    if [[ -z ${MODE:-} ]]; then
        MODE=${running_mode:-squeue}
    fi
    if [[ $running_mode == "$MODE" && -f $ENV_FILE ]] && all_alive; then
        setup_dirs
        setup_python  # a no-op unless corral's dependencies changed since
        log "already up (mode ${MODE/,/+}); nothing to do"
        return 0
    fi
    has cgroup && check_cgroup_support
    if [[ -n $(components) || -n $running_mode ]]; then
        running_mode=${running_mode:-partial}
        log "restarting (was: ${running_mode/,/+}, now: ${MODE/,/+})"
        cmd_down
    fi
    local port
    for port in 6817 6818 6819; do  # slurmctld, slurmd, slurmdbd
        if ss -Hltn "sport = :$port" | grep -q .; then
            die "port $port is taken (another Slurm, or a rig started from another directory?)"
        fi
    done
    setup_dirs
    : >"$RUN/components"
    echo "$MODE" >"$RUN/mode"
    local pkgs=("${BASE_PKGS[@]}")
    has sacct && pkgs+=("${SACCT_PKGS[@]}")
    ensure_packages "${pkgs[@]}"
    ensure_hostname
    ensure_user
    start_munge
    setup_compute_nodes
    write_slurm_files
    if has sacct; then
        start_mariadb
        start_slurmdbd
    else
        restore_etc_file "$SLURM_ETC/slurmdbd.conf"
    fi
    start_slurm
    start_compute_nodes
    setup_ssh_keys
    start_sshd
    start_auth_sshds
    start_host2
    write_client_files
    setup_python
    write_env_file
    local t1=$EPOCHREALTIME
    log "up (mode ${MODE/,/+}) in $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s; env file: $ENV_FILE"
}

cancel_jobs() {
    alive slurmctld || return 0
    squeue -h -o %A | xargs -r scancel >/dev/null 2>&1 || true
    local i
    # slurmstepd outlives slurmd: wait until no job is running or completing.
    for ((i = 0; i < 150; i++)); do
        [[ -z $(squeue -h -t R,CG,S -o %A 2>/dev/null) ]] && break
        sleep 0.1
    done
}

kill_user_leftovers() {
    # Whatever the test user left running (nohup ... & over SSH, a job's children).
    id "$TUSER" >/dev/null 2>&1 || return 0
    local uid pids=() p i
    uid=$(id -u "$TUSER")
    for p in /proc/[0-9]*; do
        [[ $(stat -c %u "$p" 2>/dev/null) == "$uid" ]] && pids+=("${p#/proc/}")
    done
    ((${#pids[@]})) || return 0
    log "ending ${#pids[@]} leftover process(es) of $TUSER"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        kill -0 "${pids[@]}" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

cmd_down() {
    need_root down
    [[ -d $RUN ]] || { log "nothing to stop"; return 0; }
    rm -f "$ENV_FILE"
    cancel_jobs
    local n
    for n in "${COMPUTE_NODES[@]}"; do stop "slurmd-$n"; done
    for n in sshd-2fa sshd-password sshd2 sshd slurmd slurmctld slurmdbd mariadb munged; do
        stop "$n"
    done
    # Anything recorded that the list above does not name (should not happen).
    for n in $(components); do stop "$n"; done
    : >"$RUN/components"
    rm -f "$RUN/mode"
    # slurmstepd of a job that ignored the cancel: only those slurmd spawned for our spool.
    local p spool
    spool=$(cat "$RUN/public-dir" 2>/dev/null || echo "$RIG")/slurmd-spool
    for p in $(pgrep -x slurmstepd || true); do
        if [[ $(readlink -f "/proc/$p/cwd") == "$spool"* ]]; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    # The test user's leftovers first: a process still in the namespace keeps it (and its veth)
    # alive after `ip netns del`.
    kill_user_leftovers
    if [[ -f $RUN/netns ]]; then
        remove_host2 "$(<"$RUN/netns")"
        rm -f "$RUN/netns"
    fi
    remove_compute_nodes
    for n in slurm.conf gres.conf cgroup.conf slurmdbd.conf; do restore_etc_file "$SLURM_ETC/$n"; done
    for n in 2fa password; do restore_etc_file "/etc/pam.d/$(pam_service "$n")"; done
    # the test user's password worked only while the rig ran
    if id "$TUSER" >/dev/null 2>&1; then usermod -p '!' "$TUSER" 2>/dev/null || true; fi
    log "down"
}

kill_tree() {  # kill_tree PID: SIGKILL the descendants of PID (not PID itself)
    local child
    for child in $(pgrep -P "$1" || true); do
        kill_tree "$child"
        kill -KILL "$child" 2>/dev/null || true
    done
}

cmd_restart() {  # restart sshd|slurmctld: stop one daemon and start it again, same config
    need_root restart
    [[ -f $ENV_FILE ]] || die "the rig is not up"
    case ${TARGET:-} in
        sshd)
            # Like a reboot of the host, not a polite reload: open sessions drop too.
            alive sshd && kill_tree "$(<"$RUN/sshd.pid")"
            stop sshd
            SSH_PORT=$(sed -n 's/^CORRAL_RIG_SSH_PORT=//p' "$ENV_FILE")
            launch sshd /usr/sbin/sshd /usr/sbin/sshd -D -e -f "$RIG/ssh/sshd.conf"
            wait_for 10 sshd port_open 127.0.0.1 "$SSH_PORT"
            ;;
        slurmctld)
            stop slurmctld
            launch slurmctld /usr/sbin/slurmctld /usr/sbin/slurmctld -D -i -f "$SLURM_CONF"
            wait_for 30 slurmctld bash -c "scontrol ping | grep -q UP"
            ;;
        *) die "restart what? sshd or slurmctld" ;;
    esac
    log "restarted ${TARGET}"
}

cmd_node() {  # node-down NODE | node-up NODE
    need_root "node-$1"
    [[ -f $ENV_FILE ]] || die "the rig is not up"
    local action=$1 n=${TARGET:-} ns p
    [[ " ${COMPUTE_NODES[*]} " == *" $n "* ]] || die "node-$action what? one of: ${COMPUTE_NODES[*]}"
    [[ -f $RUN/node-net ]] || die "the rig has no compute nodes"
    ns=$(node_ns "$n")
    case $action in
        down)
            # As a machine dies: its slurmd, its slurmstepds and the jobs' processes at once.
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
            rm -f "$RUN/slurmd-$n.pid"
            log "node $n is down (SLURM notices within ~$((2 * SLURMD_TIMEOUT)) s)"
            ;;
        up)
            setup_dirs
            alive "slurmd-$n" || launch_node "$n"
            wait_for 60 "node $n back" node_ready "$n"
            log "node $n is up"
            ;;
    esac
}

leftovers() {  # what of ours runs or exists without being recorded (after a crash, a kill)
    local p spool uid
    spool=$(cat "$RUN/public-dir" 2>/dev/null || echo "$RIG")/slurmd-spool
    for p in $(pgrep -x slurmstepd || true); do
        [[ $(readlink -f "/proc/$p/cwd") == "$spool"* ]] && echo "slurmstepd pid $p"
    done
    if id "$TUSER" >/dev/null 2>&1; then
        uid=$(id -u "$TUSER")
        for p in /proc/[0-9]*; do
            [[ $(stat -c %u "$p" 2>/dev/null) == "$uid" ]] && echo "process of $TUSER: pid ${p#/proc/}"
        done
    fi
    ip netns list 2>/dev/null | grep -qw "$NS" && echo "network namespace $NS"
    ip link show "$VETH_HOST" >/dev/null 2>&1 && echo "network link $VETH_HOST"
    local n
    for n in "${COMPUTE_NODES[@]}"; do
        ip netns list 2>/dev/null | grep -qw "$(node_ns "$n")" && echo "network namespace $(node_ns "$n")"
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && echo "network bridge $BRIDGE"
    return 0
}

cmd_status() {
    local n pid up=0 total=0 mode="" extra
    [[ -f $RUN/mode ]] && mode=$(<"$RUN/mode")
    for n in $(components); do
        total=$((total + 1))
        pid=$(cat "$RUN/$n.pid" 2>/dev/null || echo -)
        if alive "$n"; then
            up=$((up + 1))
            printf '%-10s running  pid %s\n' "$n" "$pid"
        else
            printf '%-10s STOPPED  (was pid %s)\n' "$n" "$pid"
        fi
    done
    if ((total == 0 || up == 0)); then
        extra=$(leftovers)
        if [[ -n $extra ]]; then
            echo "rig: no daemon running, but left over:"
            printf '  %s\n' "$extra"
            return 1
        fi
        echo "rig: nothing running"
        return 3
    fi
    echo "rig: mode ${mode/,/+}, $up/$total running; env file: $ENV_FILE"
    ((up == total)) && return 0
    return 1
}

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || usage
    shift
    MODE=""
    TARGET=""
    if [[ ($cmd == restart || $cmd == node-down || $cmd == node-up) && $# -ge 1 ]]; then
        TARGET=$1
        shift
    fi
    while (($#)); do
        case $1 in
            --mode) [[ $# -ge 2 ]] || usage; MODE=$(parse_mode "$2"); shift 2 ;;
            --mode=*) MODE=$(parse_mode "${1#--mode=}"); shift ;;
            -h|--help) usage ;;
            *) die "unknown argument '$1'" ;;
        esac
    done
    if [[ $cmd != status && $cmd != check-cgroup ]]; then
        mkdir -p "$RIG"
        exec 9>"$RIG/.lock"
        flock 9
    fi
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        restart) cmd_restart ;;
        node-down) cmd_node down ;;
        node-up) cmd_node up ;;
        check-cgroup) need_root check-cgroup; check_cgroup_support; log "cgroup mode can work here" ;;
        *) usage ;;
    esac
}

main "$@"
