# Outside changes win: a cpu.max written by someone else while a slot is
# claimed (an in-place pod resize, an administrator) is adopted as the
# original, counted in stat, and is what release, goal 0 and rmmod leave.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net
# is_field SLOT KEY VALUE
is_field() { [ "$(field $1 $2)" = "$3" ]; }

# 1. a slot vif has not written to: release keeps the outside value
new_cgroup o1 "max 100000"
spawn_idle o1
P=$!
expect "claim vif1 (idle)" "$(wr $OSLAB/vif1/pid $P)" ok
expect "no outside change yet" "$(field 1 outside_changes)" 0
echo "70000 100000" > $CG/o1/cpu.max
check "the change is counted" wait_until 5 is_field 1 outside_changes 1
expect "and shown as the quota" "$(field 1 quota_us)" 70000
expect "release vif1" "$(wr $OSLAB/vif1/pid 0)" ok
expect "cpu.max of o1 is the outside value" "$(cat $CG/o1/cpu.max)" "70000 100000"

# 2. a slot vif steers: the outside value, new period included, becomes the
# original; vif steers on from it; goal 0 and release give it back
steered_sender o2 5201 2 "claim vif2 (sender)"
S=$SENDER
echo "# o2 controlled: $(cat $CG/o2/cpu.max)"
echo "60000 50000" > $CG/o2/cpu.max
check "the change is counted" wait_until 5 is_field 2 outside_changes 1
check "its period adopted" wait_until 5 is_field 2 period_us 50000
check "vif steers on from it" wait_until 20 is_controlled o2 "60000 50000"
echo "# o2 controlled again: $(cat $CG/o2/cpu.max)"
expect "goal 0" "$(wr $OSLAB/vif2/goal 0)" ok
check "goal 0 restores the outside value" wait_until 5 grep -qx "60000 50000" $CG/o2/cpu.max
expect "release vif2" "$(wr $OSLAB/vif2/pid 0)" ok
expect "cpu.max of o2 after release" "$(cat $CG/o2/cpu.max)" "60000 50000"

# 3. rmmod right after an outside change of a quota vif steers, before or
# after the loop has seen it
steered_sender o3 5202 3 "claim vif3 (sender)"
S3=$SENDER
echo "40000 100000" > $CG/o3/cpu.max
check "rmmod right after the change" unload
expect "cpu.max of o3 is the outside value" "$(cat $CG/o3/cpu.max)" "40000 100000"
kill $P $S $S3
finish
