# demo.sh: the vif SLO demo `make lab` runs in the test VM (stage vif-demo).
# A CPU-bound iperf3 sender in a cgroup, netns a -> b over veth; vif is
# given a goal at a third of what the sender reaches unlimited and must
# bring the bandwidth to it by lowering the quota, then hand the CPU back
# when the goal is dropped. Prints the slot's stat line as it goes.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net
claimed_sender demo 120 "register the sender in vif1"
S=$SENDER
sleep 2
BMAX=$(avg 1 bw_mbps 4)
echo "# unlimited: $BMAX Mbps"
check "sender is sending ($BMAX Mbps)" test "$BMAX" -gt 50
GOAL=$((BMAX / 3))
wr $OSLAB/vif1/goal $GOAL >/dev/null
is_met() { [ "$(field 1 state)" = met ]; }
check "goal $GOAL Mbps met" wait_until 30 is_met
B=$(avg 1 bw_mbps 4)
echo "# goal $GOAL Mbps: $B Mbps at quota $(field 1 quota_us) us"
echo "# $(cat $OSLAB/vif1/stat)"
check "bandwidth $B Mbps within 25% of the goal" \
	test $((B * 100)) -ge $((GOAL * 75)) -a $((B * 100)) -le $((GOAL * 125))
wr $OSLAB/vif1/goal 0 >/dev/null
check "goal 0 restores cpu.max" wait_until 5 grep -q "^max 100000" $CG/demo/cpu.max
kill $S
check "rmmod" unload
finish
