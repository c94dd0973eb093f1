# Contention: two SLO containers (own netns and cgroup, weights 1 and 3) and
# a CPU hog (one busy loop per CPU, own cgroup, default cpu.weight) on the
# same CPUs.
# A: goals that together need clearly less CPU than the node has are both
#    met and held.
# B: goals that together need more CPU than the node has leave both slots
#    cpu-limited, the node's CPU split by weight.
#
# The hog is not under vif control: the module shares online CPUs x period
# among its slots and never counts the hog, which only makes the senders get
# less CPU from CFS than their quota. So B's goals are chosen so that the
# module's own need estimate exceeds the node, hog or no hog, and B asserts
# on the quotas the module writes (3 : 1, summing to the node), which do not
# depend on the scheduler's luck. Bandwidth, which does, is asserted where a
# quota binds (B2). Goals are scaled by what the senders reach in this very
# VM, so the test holds on fast and slow (loaded) machines alike.
. ./lib.sh
load period_ms=${VIF_PERIOD_MS:-200} || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net
# Each container has its own network namespace, as in a pod: the module
# measures a slot's bandwidth per netns. setup_net gives "a" (10.9.0.1 to the
# servers in "b"); "c" is the second one (10.9.1.1 to 10.9.1.2 in "b").
# The receivers stand for the far end, another machine in a cluster: in
# this VM they share the two CPUs, so they get a cgroup of their own.
setup_second_netns
NCPU=$(nproc)
CEIL=$((NCPU * 100000))

# 1. calibration: sender 1 alone, no limit, no hog
new_cgroup c1 "max 100000"
new_cgroup c2 "max 100000"
sender c1 a 10.9.0.2 5201
S1=$!
expect "claim sender 1" "$(wr $OSLAB/vif1/pid $S1)" ok
sleep 2
BMAX=$(avg 1 bw_mbps 4)
UMAX=$(avg 1 cpu_pct 4)
echo "# calibration bw_unlimited_mbps=$BMAX cpu_unlimited_pct=$UMAX ncpu=$NCPU ceiling_us=$CEIL"
require "sender is sending ($BMAX Mbps)" test "$BMAX" -gt 50
require "sender uses CPU ($UMAX% of one)" test "$UMAX" -gt 10

sender c2 c 10.9.1.2 5202
S2=$!
expect "claim sender 2" "$(wr $OSLAB/vif2/pid $S2)" ok
expect "weight 1 for slot 1" "$(wr $OSLAB/vif1/weight 1)" ok
expect "weight 3 for slot 2" "$(wr $OSLAB/vif2/weight 3)" ok

# the hog
mkdir -p $CG/hog
HOGS=""
k=0
while [ $k -lt "$NCPU" ]; do
	sh -c "echo \$\$ > $CG/hog/cgroup.procs; while :; do :; done" &
	HOGS="$HOGS $!"
	k=$((k + 1))
done
hog_up() { [ "$(wc -l < $CG/hog/cgroup.procs)" -eq "$NCPU" ]; }
require "hog runs ($NCPU busy loops)" wait_until 5 hog_up

# trace: both slots every 0.5 s in the background
( while :; do
	t=$(cut -d' ' -f1 /proc/uptime)
	echo "# trace t=$t 1: $(cut -d' ' -f4-11 $OSLAB/vif1/stat)"
	echo "# trace t=$t 2: $(cut -d' ' -f4-11 $OSLAB/vif2/stat)"
	sleep 0.5
done ) &
TRACE=$!

both() { [ "$(field 1 state)" = "$1" ] && [ "$(field 2 state)" = "$1" ]; }
# within VALUE GOAL LO_PCT HI_PCT
within() { [ "$1" -ge $(($2 * $3 / 100)) ] && [ "$1" -le $(($2 * $4 / 100)) ]; }
# sample SECONDS STATE: both slots every 0.5 s; sets B1 B2 Q1 Q2 (means) and
# IN (percent of samples with both slots in STATE), SHORT (percent with
# either slot cpu-limited or unreachable)
sample() {
	n=$(($1 * 2))
	i=0
	while [ $i -lt $n ]; do
		echo "$(field 1 bw_mbps) $(field 1 quota_us) $(field 1 state)" \
			"$(field 2 bw_mbps) $(field 2 quota_us) $(field 2 state)"
		sleep 0.5
		i=$((i + 1))
	done > /tmp/samples
	set -- $(awk -v st="$2" '{ b1 += $1; q1 += $2; b2 += $4; q2 += $5; n++
		if ($3 == st && $6 == st) in_ += 1
		if ($3 ~ /^(cpu-limited|unreachable)$/ || $6 ~ /^(cpu-limited|unreachable)$/) sh += 1 }
		END { printf "%d %d %d %d %d %d\n", b1 / n, q1 / n, b2 / n, q2 / n, 100 * in_ / n, 100 * sh / n }' /tmp/samples)
	B1=$1 Q1=$2 B2=$3 Q2=$4 IN=$5 SHORT=$6
}

# both senders unlimited next to the hog: what this VM gives them now
sample 6 idle
BH=$B1
[ "$B2" -lt "$BH" ] && BH=$B2
echo "# unlimited_with_hog bw1_mbps=$B1 bw2_mbps=$B2"
require "both send next to the hog ($B1, $B2 Mbps)" test "$BH" -gt 20

# 2. A, feasible: goals of 40% and 55% of what the slower sender got
# unlimited next to the hog, so reachable on a fast or a loaded machine. By
# the module's (proportional) accounting they need well under a CPU together,
# a fraction of the node.
GA1=$((BH * 40 / 100))
GA2=$((BH * 55 / 100))
echo "# A need_pct_of_node=$(((GA1 + GA2) * UMAX * 100 / (BMAX * NCPU * 100)))"
T0=$(cut -d. -f1 /proc/uptime)
wr $OSLAB/vif1/goal $GA1 >/dev/null
wr $OSLAB/vif2/goal $GA2 >/dev/null
# Per-period bandwidth swings far wider than the 5% band on a loaded TCG
# host, so each slot is asked to reach met, not both at the same instant;
# holding is judged on the means.
is_met() { [ "$(field $1 state)" = met ]; }
check "A: slot 1 reaches goal $GA1 Mbps (state met)" wait_until 40 is_met 1
check "A: slot 2 reaches goal $GA2 Mbps (state met)" wait_until 40 is_met 2
echo "# A converge_s=$(($(cut -d. -f1 /proc/uptime) - T0))"
sleep 2
sample 12 met
# A window that catches an emulation burst on a busy host gets one more
# (both are printed); the goals are judged on the second then.
if ! within "$B1" "$GA1" 85 125 || ! within "$B2" "$GA2" 85 125; then
	echo "# A window 1 outside the band: bw1_mbps=$B1 bw2_mbps=$B2; measuring again"
	sample 12 met
fi
echo "# A held goal1_mbps=$GA1 bw1_mbps=$B1 quota1_us=$Q1 goal2_mbps=$GA2 bw2_mbps=$B2 quota2_us=$Q2 both_met_pct=$IN short_pct=$SHORT"
check "A: slot 1 holds $GA1 Mbps: mean $B1 within -15%/+25%" within "$B1" "$GA1" 85 125
check "A: slot 2 holds $GA2 Mbps: mean $B2 within -15%/+25%" within "$B2" "$GA2" 85 125
check "A: quotas $Q1 + $Q2 us fit the node ($CEIL us) with room" \
	test $((Q1 + Q2)) -lt $((CEIL * 3 / 4))
check "A: neither short of CPU in $((100 - SHORT))% of samples (>= 75%)" test "$SHORT" -le 25

# split_by_weight CASE WEIGHT LO HI SECONDS: sample both slots (cpu-limited)
# for SECONDS; the quotas must split about WEIGHT : 1 (ratio x10 within LO-HI
# percent of 10) and share out the whole node.
split_by_weight() {
	sample $5 cpu-limited
	check "$1: both cpu-limited in $IN% of samples (>= 80%)" test "$IN" -ge 80
	[ "$Q1" -gt 0 ] || Q1=1
	R10=$((Q2 * 10 / Q1))
	echo "# $1 held goal_mbps=$GB bw1_mbps=$B1 quota1_us=$Q1 bw2_mbps=$B2 quota2_us=$Q2 quota_ratio_x10=$R10 both_limited_pct=$IN"
	check "$1: quota ratio $Q2 / $Q1 = $R10/10 within $3-$4% of 1 (weights $2 : 1)" \
		within "$R10" 10 $3 $4
	check "$1: quotas $Q1 + $Q2 us share out the node ($CEIL us) within -10%/+2%" \
		within $((Q1 + Q2)) "$CEIL" 90 102
}

# 3. B, infeasible: one sender reaches BMAX with UMAX% of a CPU; a goal G
# needs UMAX x G / BMAX of CPU by the module's estimate. Both goals at 5/4 of
# the point where the two needs fill the node exactly (G = BMAX x NCPU x 100
# / (2 x UMAX)): together 125% of the node, hog or no hog. Max-min fairness
# then gives weight 1 a quarter and weight 3 three quarters of online CPUs x
# period: quotas 3 : 1, summing to the node.
GB=$((BMAX * NCPU * 100 * 5 / (2 * UMAX * 4)))
echo "# B goal_mbps=$GB need_pct_of_node=$((2 * UMAX * GB * 100 / (BMAX * NCPU * 100)))"
wr $OSLAB/vif1/goal $GB >/dev/null
wr $OSLAB/vif2/goal $GB >/dev/null
check "B1: goal $GB Mbps for both: both cpu-limited" wait_until 40 both cpu-limited
sleep 2
split_by_weight B1 3 200 450 10
# The 3 : 1 split need not show in bandwidth here: in this VM each sender's
# pipeline (its softirqs, the receivers) shares the same two CPUs, and a
# sender next to the hog gets less CPU than slot 1's 0.5 CPU cap anyway, so
# neither quota binds much. B2: weights 1 and 9 put slot 1 at 0.2 CPU, below
# that, and then bandwidth must follow the quotas.
expect "weight 9 for slot 2" "$(wr $OSLAB/vif2/weight 9)" ok
sleep 3
split_by_weight B2 9 600 1350 12
check "B2: weight 9 gets more bandwidth ($B2 Mbps) than weight 1 ($B1 Mbps), by >= 20%" \
	test $((B2 * 100)) -ge $((B1 * 120))

# 4. cleanup: goal 0 restores both quotas
kill $HOGS
wr $OSLAB/vif1/goal 0 >/dev/null
wr $OSLAB/vif2/goal 0 >/dev/null
check "goal 0 restores cpu.max of c1" wait_until 5 grep -q "^max 100000" $CG/c1/cpu.max
check "goal 0 restores cpu.max of c2" wait_until 5 grep -q "^max 100000" $CG/c2/cpu.max
kill $TRACE
kill $S1 $S2
check "rmmod" unload
finish
