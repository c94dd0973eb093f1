# Load/unload, parameters, claim/release, ESRCH/EBUSY/EOPNOTSUPP, status.
. ./lib.sh

for bad in nr_vifs=0 nr_vifs=4097 period_ms=9 period_ms=10001 tol_pct=0 \
	   min_quota_us=999 link_mbps=0 cgroup_root=relative; do
	if load $bad 2>/dev/null; then
		fail "insmod $bad refused"
		unload
	else
		pass "insmod $bad refused"
	fi
done

# init.sh holds the CFS bandwidth key on for every test (see there).
expect "bandwidth key held by init" "$(cat $CG/depcon-bw-key/cpu.max)" "1000000 100000"
# ... before the other CPUs came online (maxcpus=1): every CPU is up.
expect "every CPU online" "$(cat /sys/devices/system/cpu/online)" "$(cat /sys/devices/system/cpu/present)"
check "insmod nr_vifs=4096" load nr_vifs=4096
check "vif4096 exists" test -f $OSLAB/vif4096/stat
check "no vif4097" test ! -e $OSLAB/vif4097
check "rmmod" unload
check "/proc/oslab gone" test ! -e $OSLAB

check "insmod with defaults" load
expect "default nr_vifs" "$(cat /sys/module/vif/parameters/nr_vifs)" 64
expect "default period_ms" "$(cat /sys/module/vif/parameters/period_ms)" 200
check "vif64 exists" test -d $OSLAB/vif64
check "no vif65" test ! -e $OSLAB/vif65
for f in pid goal weight min_credit stat; do
	check "vif1/$f exists" test -f $OSLAB/vif1/$f
done
expect "free slot pid" "$(cat $OSLAB/vif1/pid)" 0
expect "default goal" "$(cat $OSLAB/vif1/goal)" 0
expect "default weight" "$(cat $OSLAB/vif1/weight)" 1
expect "default min_credit" "$(cat $OSLAB/vif1/min_credit)" 0
expect "free slot state" "$(field 1 state)" idle
expect "status header only" "$(wc -l < $OSLAB/status)" 1

new_cgroup c1 "50000 100000"
new_cgroup c2 "max 100000"
spawn_idle c1
P1=$!
spawn_idle c2
P2=$!

expect "goal before pid" "$(wr $OSLAB/vif1/goal 300)" ok
expect "claim vif1" "$(wr $OSLAB/vif1/pid $P1)" ok
expect "pid reads back" "$(cat $OSLAB/vif1/pid)" "$P1"
expect "goal kept over claim" "$(cat $OSLAB/vif1/goal)" 300
expect "cgroup resolved" "$(field 1 cgroup)" /c1
expect "quota recorded" "$(field 1 quota_us)" 50000
expect "period recorded" "$(field 1 period_us)" 100000
expect "same pid again, same slot" "$(wr $OSLAB/vif1/pid $P1)" ok
expect "same pid, other slot: EBUSY" "$(wr $OSLAB/vif2/pid $P1)" EBUSY
expect "other pid, held slot: EBUSY" "$(wr $OSLAB/vif1/pid $P2)" EBUSY
expect "no such pid: ESRCH" "$(wr $OSLAB/vif2/pid 999999)" ESRCH
expect "init in root cgroup: EOPNOTSUPP" "$(wr $OSLAB/vif2/pid 1)" EOPNOTSUPP
expect "claim vif2" "$(wr $OSLAB/vif2/pid $P2)" ok
expect "unlimited quota shows max" "$(field 2 quota_us)" max
expect "status has two rows" "$(wc -l < $OSLAB/status)" 3
check "status row of vif1" grep -q "^vif1 $P1 300 1 0 300 " $OSLAB/status
cat $OSLAB/status | sed 's/^/# /'

expect "weight" "$(wr $OSLAB/vif2/weight 7)" ok
expect "release vif2" "$(wr $OSLAB/vif2/pid 0)" ok
expect "released pid" "$(cat $OSLAB/vif2/pid)" 0
expect "weight reset on release" "$(cat $OSLAB/vif2/weight)" 1
expect "released state" "$(field 2 state)" idle
expect "released cgroup" "$(field 2 cgroup)" -
expect "cpu.max of c2 untouched" "$(cat $CG/c2/cpu.max)" "max 100000"
expect "release of free slot" "$(wr $OSLAB/vif2/pid 0)" ok
expect "released pid claims again" "$(wr $OSLAB/vif3/pid $P2)" ok
expect "release vif1" "$(wr $OSLAB/vif1/pid 0)" ok
expect "cpu.max of c1 restored" "$(cat $CG/c1/cpu.max)" "50000 100000"

check "rmmod with a claimed slot" unload
expect "cpu.max of c2 after rmmod" "$(cat $CG/c2/cpu.max)" "max 100000"
check "reload" load nr_vifs=1
check "single slot" test ! -e $OSLAB/vif2
check "rmmod" unload
kill $P1 $P2
finish
