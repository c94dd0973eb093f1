# Control: a CPU-bound iperf3 sender in a cgroup, two netns joined by veth.
# A reachable goal is reached and held, lower goals (down to a few percent
# of a CPU) hand CPU back, an unreachable goal is reported as such, goal 0
# restores the quota.
# Goals are fractions of the bandwidth measured unlimited in this very VM,
# so the test holds on fast and slow machines alike.
. ./lib.sh
load period_ms=${VIF_PERIOD_MS:-200} || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net
claimed_sender ctr 600 "claim the sender"
S=$SENDER
sleep 2
BMAX=$(avg 1 bw_mbps 4)
CEIL=$(($(nproc) * 100000))
echo "# bw_unlimited_mbps=$BMAX ceiling_us=$CEIL"
check "sender is sending ($BMAX Mbps)" test "$BMAX" -gt 50

# trace: prints the slot every 0.5 s in the background
( while :; do echo "# trace t=$(cut -d' ' -f1 /proc/uptime) $(cat $OSLAB/vif1/stat)"; sleep 0.5; done ) &
TRACE=$!

is_state() { [ "$(field 1 state)" = "$1" ]; }
# within VALUE GOAL LO_PCT HI_PCT
within() { [ "$1" -ge $(($2 * $3 / 100)) ] && [ "$1" -le $(($2 * $4 / 100)) ]; }
# held_bw GOAL: mean bandwidth over 8 s. Under software emulation on a busy
# host the VM's CPU comes in bursts and one window can catch a burst; a
# window outside the band gets one more, and both are printed.
held_bw() {
	b=$(avg 1 bw_mbps 8)
	if ! within "$b" "$1" 85 125; then
		echo "# hold window 1: mean $b Mbps outside -15%/+25% of $1; measuring again" >&2
		b=$(avg 1 bw_mbps 8)
	fi
	echo "$b"
}

# hold GOAL LO_PCT HI_PCT: set GOAL, wait for state met, then check the mean
# bandwidth is within LO_PCT-HI_PCT% of it; the mean in $B, the quota in $Q
hold() {
	t0=$(cut -d. -f1 /proc/uptime)
	wr $OSLAB/vif1/goal "$1" >/dev/null
	check "goal $1 Mbps reached (state met)" wait_until 30 is_state met
	echo "# converge_s=$(($(cut -d. -f1 /proc/uptime) - t0)) goal_mbps=$1"
	B=$(held_bw "$1")
	Q=$(avg 1 quota_us 8)
	echo "# held goal_mbps=$1 bw_mbps=$B quota_us=$Q"
	check "goal $1 held: mean $B Mbps within -$((100 - $2))%/+$(($3 - 100))%" \
		within "$B" "$1" "$2" "$3"
}

# 1. a goal inside the reachable range
G1=$((BMAX * 35 / 100))
hold $G1 85 125
Q1=$Q
check "quota $Q1 below the ceiling" test "$Q1" -lt "$CEIL"

# 2. a lower goal hands CPU back
G2=$((G1 / 2))
hold $G2 85 125
Q2=$Q
check "CPU handed back: quota $Q2 < 80% of $Q1" test $((Q2 * 100)) -lt $((Q1 * 80))

# 3. a small goal, the lab's regime: a few percent of a CPU. Wider: at a
# quota of a few ms CFS overruns it by up to a tick (docs/vif-procfs.md)
G4=$((BMAX * 5 / 100))
hold $G4 80 140
Q4=$Q
check "CPU handed back: quota $Q4 < 60% of $Q2" test $((Q4 * 100)) -lt $((Q2 * 60))

# 4. an unreachable goal
G3=$((BMAX * 4))
wr $OSLAB/vif1/goal $G3 >/dev/null
check "goal $G3 Mbps reported unreachable" wait_until 30 is_state unreachable
expect "quota at the ceiling" "$(field 1 quota_us)" "$CEIL"

# 5. no goal: the original quota comes back
wr $OSLAB/vif1/goal 0 >/dev/null
check "goal 0 restores cpu.max" wait_until 5 grep -q "^max 100000" $CG/ctr/cpu.max
kill $TRACE
kill $S
check "rmmod" unload
finish
