# One slot per cgroup: a second PID of a cgroup another slot holds is
# refused with EEXIST, so no slot records vif's own quota as the original,
# and rmmod leaves cpu.max exactly as it was before the first claim.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net

new_cgroup d1 "max 100000"
start_sender d1 5201 600
S=$!
spawn_idle d1
P=$!
wr $OSLAB/vif1/goal 30 >/dev/null
expect "claim vif1 for the sender" "$(wr $OSLAB/vif1/pid $S)" ok
check "quota of d1 changed by the loop" wait_until 20 is_controlled d1 "max 100000"
echo "# d1 controlled: $(cat $CG/d1/cpu.max)"
expect "second PID of d1, other slot: EEXIST" "$(wr $OSLAB/vif2/pid $P)" EEXIST
expect "vif2 stays free" "$(cat $OSLAB/vif2/pid)" 0
expect "same PID, other slot: still EBUSY" "$(wr $OSLAB/vif2/pid $S)" EBUSY
expect "status has one row" "$(wc -l < $OSLAB/status)" 2
check "rmmod with d1 controlled" unload
expect "cpu.max of d1 exactly as before the first claim" "$(cat $CG/d1/cpu.max)" "max 100000"

# The cgroup is free again once its slot is released.
check "load again" load
expect "claim vif1 for the idle PID" "$(wr $OSLAB/vif1/pid $P)" ok
expect "sender of the same cgroup: EEXIST" "$(wr $OSLAB/vif2/pid $S)" EEXIST
expect "release vif1" "$(wr $OSLAB/vif1/pid 0)" ok
expect "then the sender may claim d1" "$(wr $OSLAB/vif2/pid $S)" ok
check "rmmod" unload
expect "cpu.max of d1 at the end" "$(cat $CG/d1/cpu.max)" "max 100000"
kill $S $P
finish
