# Concurrent writers and readers on the same slots, racing claims and
# releases (P1 and P3 share cgroup k1), and the control loop running
# underneath. A checker reads the tables while they race: no PID or cgroup
# in two slots, at most one row per cgroup, every row and stat line
# consistent. Then the invariants at rest, and rmmod restores both quotas.
. ./lib.sh
load period_ms=10 nr_vifs=8 || { echo "insmod failed"; exit $KSFT_FAIL; }
new_cgroup k1 "max 100000"
new_cgroup k2 "40000 100000"
spawn_idle k1
P1=$!
spawn_idle k2
P2=$!
spawn_idle k1
P3=$!
DUR=${VIF_STRESS_S:-8}
MIN_READS=10
now() { cut -d. -f1 /proc/uptime; }
end=$(($(now) + DUR))
# The racers run until the checker is done: at least DUR seconds and
# MIN_READS snapshots, so a slow host lengthens the race instead of
# failing it; the hard stop only bounds a checker that cannot read.
hard_end=$((end + 10 * DUR))
: > /tmp/racing
running() { [ -e /tmp/racing ]; }
writer() { # writer FILE VALUES...
	f=$1
	shift
	while running; do
		for v in "$@"; do wr $f "$v" >/dev/null; done
	done
}
reader() {
	while running; do
		cat $OSLAB/status $OSLAB/vif*/stat >/dev/null
	done
}
# snapshot_bad: one read each of status and vif1-3/stat (one process, so
# the checker keeps up): the number of status rows, then what is wrong
# (nothing when consistent)
snapshot_bad() {
	awk -v p1=$P1 -v p2=$P2 -v p3=$P3 '
	FILENAME ~ /status$/ && FNR == 1 { if ($1 != "slot") bad = bad " header:" $1; next }
	FILENAME ~ /status$/ {
		rows++
		if (NF != 14) bad = bad " columns:" NF
		if ($2 != p1 && $2 != p2 && $2 != p3) bad = bad " pid:" $2
		if ($14 != ($2 == p2 ? "/k2" : "/k1")) bad = bad " cgroup:" $2 ":" $14
		if (pid[$2]++) bad = bad " pid-twice:" $2
		if (cg[$14]++) bad = bad " cgroup-twice:" $14
		if ($4 < 1 || $4 > 10000) bad = bad " weight:" $4
		if ($11 != 100000) bad = bad " period:" $11
		next
	}
	{
		split("", v)
		for (i = 1; i <= NF; i++) {
			j = index($i, "=")
			v[substr($i, 1, j - 1)] = substr($i, j + 1)
		}
		if (v["pid"] == 0) {
			if (v["cgroup"] != "-" || v["quota_us"] != 0 || v["period_us"] != 0)
				bad = bad " free-stat:" v["cgroup"] ":" v["quota_us"]
		} else if (v["pid"] != p1 && v["pid"] != p2 && v["pid"] != p3 ||
			   v["cgroup"] != (v["pid"] == p2 ? "/k2" : "/k1") ||
			   v["period_us"] != 100000) {
			bad = bad " stat:" v["pid"] ":" v["cgroup"] ":" v["period_us"]
		}
	}
	END { if (rows > 2) bad = bad " rows:" rows; print rows + 0 bad }' \
		$OSLAB/status $OSLAB/vif1/stat $OSLAB/vif2/stat $OSLAB/vif3/stat
}
checker() {
	n=0
	while [ "$(now)" -lt $end ] || [ $n -lt $MIN_READS -a "$(now)" -lt $hard_end ]; do
		set -- $(snapshot_bad)
		echo "$1" >> /tmp/rows
		n=$((n + 1))
		shift
		[ $# -eq 0 ] || echo "$*" >> /tmp/bad
	done
	rm -f /tmp/racing
}
: > /tmp/rows
: > /tmp/bad
pids=""
for s in 1 2 3; do
	writer $OSLAB/vif$s/goal 10 500 0 abc 99 &
	pids="$pids $!"
	writer $OSLAB/vif$s/weight 1 10000 0 7 &
	pids="$pids $!"
done
# Each slot starts the cycle at another PID, so that the claims collide,
# and holds each claim for three writes (the holder's own PID again is a
# no-op), so that slots are held most of the time.
claims() { for p in "$@"; do echo $p $p $p 0; done; }
writer $OSLAB/vif1/pid $(claims $P1 $P2 $P3) 999999 &
pids="$pids $!"
writer $OSLAB/vif2/pid $(claims $P3 $P1 $P2) 999999 &
pids="$pids $!"
writer $OSLAB/vif3/pid $(claims $P2 $P3 $P1) 999999 &
pids="$pids $!"
# Two PIDs of k1 each claiming a slot of its own, all the time.
writer $OSLAB/vif5/pid $(claims $P1) &
pids="$pids $!"
writer $OSLAB/vif6/pid $(claims $P3) &
pids="$pids $!"
writer $OSLAB/vif4/min_credit 0 100 101 50 &
pids="$pids $!"
reader &
pids="$pids $!"
checker &
pids="$pids $!"
for p in $pids; do wait $p; done
pass "at least $DUR s of concurrent writers and readers"

reads=$(wc -l < /tmp/rows)
two=$(grep -c '^2$' /tmp/rows)
echo "# checker: $reads reads of status, $two with two slots claimed"
sed 's/^/# /' /tmp/bad | head -20
expect "no inconsistency seen while racing" "$(wc -l < /tmp/bad)" 0
check "the checker read status while racing ($reads >= $MIN_READS)" test "$reads" -ge $MIN_READS
check "and saw both cgroups claimed at once ($two)" test "$two" -ge 1

claimed=$(cat $OSLAB/vif*/pid | grep -v '^0$' | sort)
expect "no PID in two slots" "$(echo "$claimed" | uniq -d)" ""
expect "at rest: consistent, at most one row per cgroup" "$(snapshot_bad)" "$(sed -n '2,$p' $OSLAB/status | wc -l)"
for s in 1 2 3 4; do
	w=$(cat $OSLAB/vif$s/weight)
	check "vif$s weight $w in range" test "$w" -ge 1 -a "$w" -le 10000
done
sed 's/^/# /' $OSLAB/status
check "rmmod after the storm" unload
expect "k1 restored" "$(cat $CG/k1/cpu.max)" "max 100000"
expect "k2 restored" "$(cat $CG/k2/cpu.max)" "40000 100000"
kill $P1 $P2 $P3
finish
