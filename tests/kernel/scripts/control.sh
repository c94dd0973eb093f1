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

# 1. a goal inside the reachable range
G1=$((BMAX * 35 / 100))
T0=$(cut -d. -f1 /proc/uptime)
wr $OSLAB/vif1/goal $G1 >/dev/null
check "goal $G1 Mbps reached (state met)" wait_until 30 is_state met
echo "# converge_s=$(($(cut -d. -f1 /proc/uptime) - T0)) goal_mbps=$G1"
B1=$(held_bw $G1)
Q1=$(avg 1 quota_us 8)
echo "# held goal_mbps=$G1 bw_mbps=$B1 quota_us=$Q1"
check "goal $G1 held: mean $B1 Mbps within -15%/+25%" within "$B1" "$G1" 85 125
check "quota $Q1 below the ceiling" test "$Q1" -lt "$CEIL"

# 2. a lower goal hands CPU back
G2=$((G1 / 2))
wr $OSLAB/vif1/goal $G2 >/dev/null
check "goal $G2 Mbps reached (state met)" wait_until 30 is_state met
B2=$(held_bw $G2)
Q2=$(avg 1 quota_us 8)
echo "# held goal_mbps=$G2 bw_mbps=$B2 quota_us=$Q2"
check "goal $G2 held: mean $B2 Mbps within -15%/+25%" within "$B2" "$G2" 85 125
check "CPU handed back: quota $Q2 < 80% of $Q1" test $((Q2 * 100)) -lt $((Q1 * 80))

# 3. a small goal, the lab's regime: a few percent of a CPU
G4=$((BMAX * 5 / 100))
wr $OSLAB/vif1/goal $G4 >/dev/null
check "goal $G4 Mbps reached (state met)" wait_until 30 is_state met
B4=$(held_bw $G4)
Q4=$(avg 1 quota_us 8)
echo "# held goal_mbps=$G4 bw_mbps=$B4 quota_us=$Q4"
# Wider: at a quota of a few ms CFS overruns it by up to a tick (docs/vif-procfs.md)
check "goal $G4 held: mean $B4 Mbps within -20%/+40%" within "$B4" "$G4" 80 140
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
