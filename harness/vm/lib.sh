# lib.sh: kselftest-style helpers for the vif VM tests (busybox sh).
# Exit codes: 0 pass, 1 fail, 4 skip. Each check prints "ok N ..." or
# "not ok N ..."; lines starting with "# " are comments/metrics.
KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4
NTEST=0
NFAIL=0
CG=/sys/fs/cgroup
OSLAB=/proc/oslab

pass() { NTEST=$((NTEST + 1)); echo "ok $NTEST $*"; }
fail() { NTEST=$((NTEST + 1)); NFAIL=$((NFAIL + 1)); echo "not ok $NTEST $*"; }
skip_all() { echo "1..0 # SKIP $*"; exit $KSFT_SKIP; }
finish() {
	echo "# $NFAIL of $NTEST checks failed"
	[ "$NFAIL" -eq 0 ] && exit $KSFT_PASS
	exit $KSFT_FAIL
}
# expect DESC ACTUAL WANTED
expect() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (got '$2', want '$3')"; fi
}
# check DESC CMD...: passes when CMD succeeds
check() {
	d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
# require DESC CMD...: a check the rest of the script builds on; a failure
# ends the script at once instead of running the rest into the VM's timeout
require() {
	d=$1
	shift
	if "$@"; then pass "$d"; else fail "$d"; finish; fi
}

[ "$(id -u)" = 0 ] || skip_all "not root"

# busybox sh runs its own applets before $PATH; these need the real ones.
ip() { /usr/sbin/ip "$@"; }
tc() { /usr/sbin/tc "$@"; }

load() { insmod /test/vif.ko "$@"; }
unload() { rmmod vif; }

# field SLOT KEY: one value of /proc/oslab/vifSLOT/stat
field() { tr ' ' '\n' < $OSLAB/vif$1/stat | sed -n "s/^$2=//p"; }

# wr FILE DATA: one write(2); prints ok or the errno name
wr() { /usr/bin/wr "$@"; }

# new_cgroup NAME CPU_MAX
new_cgroup() {
	mkdir -p $CG/$1
	echo "$2" > $CG/$1/cpu.max
}

# runs COMM PID: PID has exec'd into COMM, so it is in the cgroup and network
# namespace its wrapper set up. vif takes both when a PID claims a slot, so
# the spawners below return only then (a fixed sleep lost that race on a
# loaded host, and the slot measured the root namespace's traffic).
runs() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }

# spawn_idle CGROUP: a sleeping process in CGROUP; its PID in $!
spawn_idle() {
	sh -c "echo \$\$ > $CG/$1/cgroup.procs; exec sleep 100000" &
	wait_until 10 runs sleep $!
}

# wait_until SECONDS CMD...: polls CMD every 0.2 s; fails after SECONDS
wait_until() {
	t=$(($1 * 5))
	shift
	while [ $t -gt 0 ]; do
		"$@" && return 0
		sleep 0.2
		t=$((t - 1))
	done
	return 1
}

# Two network namespaces joined by veth, an iperf3 server in "b" (ports
# 5201 and 5202).
setup_net() {
	ip netns add a &&
	ip netns add b &&
	ip link add va netns a type veth peer name vb netns b &&
	ip -n a addr add 10.9.0.1/24 dev va &&
	ip -n b addr add 10.9.0.2/24 dev vb &&
	ip -n a link set lo up && ip -n b link set lo up &&
	ip -n a link set va up &&
	ip -n b link set vb up &&
	ip netns exec b iperf3 -s -D -p 5201 &&
	ip netns exec b iperf3 -s -D -p 5202 &&
	wait_until 10 ip netns exec a iperf3 -c 10.9.0.2 -p 5201 -t 1 -i 0 >/dev/null 2>&1 ||
	{ fail "network setup (netns, veth, iperf3)"; finish; }
}

# sender CGROUP NETNS SERVER PORT [SECONDS]: iperf3 client in NETNS inside
# CGROUP; its PID in $! (the shell execs into ip, which execs into iperf3)
sender() {
	# shellcheck disable=SC2016 # expanded by the inner sh
	sh -c 'echo $$ > "$1"; exec /usr/sbin/ip netns exec "$2" iperf3 -c "$3" -p "$4" -t "$5" -i 0 >/dev/null 2>&1' \
		sender "$CG/$1/cgroup.procs" "$2" "$3" "$4" "${5:-900}" &
	wait_until 10 runs iperf3 $!
}

# start_sender CGROUP PORT SECONDS: a sender in netns a; its PID in $!
start_sender() { sender "$1" a 10.9.0.2 "$2" "$3"; }

# avg SLOT KEY SECONDS: mean of a stat field sampled every 0.5 s
avg() {
	n=$(($3 * 2))
	i=0
	while [ $i -lt $n ]; do
		field $1 $2
		sleep 0.5
		i=$((i + 1))
	done | awk '{ s += $1; n++ } END { printf "%d\n", s / n }'
}

# is_controlled CGROUP CPU_MAX: vif has changed CGROUP's cpu.max from CPU_MAX
is_controlled() { [ "$(cat "$CG/$1/cpu.max")" != "$2" ]; }

# claimed_sender CGROUP SECONDS DESC: an iperf3 sender (port 5201) in a new
# CGROUP at cpu.max "max 100000", claimed by vif1; its PID in $SENDER
claimed_sender() {
	new_cgroup "$1" "max 100000"
	start_sender "$1" 5201 "$2"
	SENDER=$!
	expect "$3" "$(wr $OSLAB/vif1/pid $SENDER)" ok
}

# steered_sender CGROUP PORT SLOT DESC: an iperf3 sender in a new CGROUP at
# cpu.max "max 100000"; SLOT gets a 30 Mbps goal, then claims it, and vif
# must change the quota; its PID in $SENDER
steered_sender() {
	new_cgroup "$1" "max 100000"
	start_sender "$1" "$2" 600
	SENDER=$!
	wr "$OSLAB/vif$3/goal" 30 >/dev/null
	expect "$4" "$(wr "$OSLAB/vif$3/pid" $SENDER)" ok
	check "quota of $1 changed by the loop" wait_until 20 is_controlled "$1" "max 100000"
}

# setup_second_netns: netns "c" (10.9.1.1 to 10.9.1.2 in "b") for a second
# sender, and the receivers in a cgroup "srv" with the highest cpu.weight:
# they stand for the far end (another machine), or they would cap both
# senders alike.
setup_second_netns() {
	ip netns add c &&
	ip link add vc netns c type veth peer name vd netns b &&
	ip -n c addr add 10.9.1.1/24 dev vc &&
	ip -n b addr add 10.9.1.2/24 dev vd &&
	ip -n c link set lo up && ip -n c link set vc up && ip -n b link set vd up &&
	wait_until 10 ip netns exec c iperf3 -c 10.9.1.2 -p 5202 -t 1 -i 0 >/dev/null 2>&1 ||
		{ fail "second netns c"; finish; }
	mkdir -p "$CG/srv"
	echo 10000 > "$CG/srv/cpu.weight"
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = iperf3 ] && echo "${d#/proc/}" > "$CG/srv/cgroup.procs"
	done
	check "receivers in cgroup srv" test "$(wc -l < "$CG/srv/cgroup.procs")" -eq 2
}
