# Concurrent writers and readers on the same slots, racing claims and
# releases, and the control loop running underneath; then the invariants.
. ./lib.sh
load period_ms=10 nr_vifs=8 || { echo "insmod failed"; exit $KSFT_FAIL; }
new_cgroup k1 "max 100000"
new_cgroup k2 "40000 100000"
spawn_idle k1
P1=$!
spawn_idle k2
P2=$!
sleep 0.3
DUR=${VIF_STRESS_S:-8}
end=$(($(cut -d. -f1 /proc/uptime) + DUR))
writer() { # writer FILE VALUES...
	f=$1
	shift
	while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
		for v in "$@"; do wr $f "$v" >/dev/null; done
	done
}
reader() {
	while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
		cat $OSLAB/status $OSLAB/vif*/stat >/dev/null
	done
}
pids=""
for s in 1 2 3; do
	writer $OSLAB/vif$s/goal 10 500 0 abc 99 &
	pids="$pids $!"
	writer $OSLAB/vif$s/weight 1 10000 0 7 &
	pids="$pids $!"
	writer $OSLAB/vif$s/pid $P1 0 $P2 0 999999 &
	pids="$pids $!"
done
writer $OSLAB/vif4/min_credit 0 100 101 50 &
pids="$pids $!"
reader &
pids="$pids $!"
reader &
pids="$pids $!"
for p in $pids; do wait $p; done
pass "$DUR s of concurrent writers and readers"

claimed=$(cat $OSLAB/vif*/pid | grep -v '^0$' | sort)
expect "no PID in two slots" "$(echo "$claimed" | uniq -d)" ""
for s in 1 2 3 4; do
	w=$(cat $OSLAB/vif$s/weight)
	check "vif$s weight $w in range" test "$w" -ge 1 -a "$w" -le 10000
done
sed 's/^/# /' $OSLAB/status
check "rmmod after the storm" unload
expect "k1 restored" "$(cat $CG/k1/cpu.max)" "max 100000"
expect "k2 restored" "$(cat $CG/k2/cpu.max)" "40000 100000"
kill $P1 $P2
finish
