# A registered process exiting frees its slot and restores the quota;
# rmmod with claimed, controlled slots restores every quota.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net
is_free() { [ "$(cat $OSLAB/vif$1/pid)" = 0 ]; }

# 1. process exit
steered_sender e1 5201 1 "claim sender"
S=$SENDER
echo "# e1 controlled: $(cat $CG/e1/cpu.max)"
kill $S
wait $S 2>/dev/null
check "slot frees itself after exit" wait_until 5 is_free 1
expect "cpu.max of e1 restored" "$(cat $CG/e1/cpu.max)" "max 100000"
expect "goal reset after exit" "$(cat $OSLAB/vif1/goal)" 0
expect "state idle after exit" "$(field 1 state)" idle

# 2. rmmod with claimed, controlled slots
new_cgroup r1 "max 100000"
new_cgroup r2 "70000 100000"
new_cgroup r3 "250000 50000"
start_sender r1 5201 600
S1=$!
start_sender r2 5202 600
S2=$!
spawn_idle r3
S3=$!
for i in 1 2; do wr $OSLAB/vif$i/goal 25 >/dev/null; done
expect "claim r1" "$(wr $OSLAB/vif1/pid $S1)" ok
expect "claim r2" "$(wr $OSLAB/vif2/pid $S2)" ok
expect "claim r3 (idle)" "$(wr $OSLAB/vif7/pid $S3)" ok
check "quota of r1 changed" wait_until 20 is_controlled r1 "max 100000"
check "quota of r2 changed" wait_until 20 is_controlled r2 "70000 100000"
sed 's/^/# /' $OSLAB/status
check "rmmod with three claimed slots" unload
expect "r1 restored" "$(cat $CG/r1/cpu.max)" "max 100000"
expect "r2 restored" "$(cat $CG/r2/cpu.max)" "70000 100000"
expect "r3 untouched" "$(cat $CG/r3/cpu.max)" "250000 50000"
check "load again" load
expect "fresh slots after reload" "$(cat $OSLAB/vif1/pid)" 0
expect "old pid can claim again" "$(wr $OSLAB/vif1/pid $S1)" ok
kill $S1 $S2 $S3
check "slot frees after kill, then rmmod" wait_until 5 is_free 1
check "rmmod" unload
finish
