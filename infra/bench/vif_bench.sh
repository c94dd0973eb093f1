# vif benchmark, run inside the test VM by infra/bench/vif.py. Prints
# "# key=value ..." records; the Python side turns them into the report.
. ./lib.sh
load period_ms=${VIF_PERIOD_MS:-200} || { echo "insmod failed"; exit $KSFT_FAIL; }
DUR=${BENCH_DUR:-16}
NMAX=8
ip netns add srv
i=1
while [ $i -le $NMAX ]; do
	ip netns add c$i
	ip link add v$i netns c$i type veth peer name w$i netns srv
	ip -n c$i addr add 10.10.$i.1/24 dev v$i
	ip -n srv addr add 10.10.$i.2/24 dev w$i
	ip -n c$i link set lo up
	ip -n c$i link set v$i up
	ip -n srv link set w$i up
	ip netns exec srv iperf3 -s -D -p $((5300 + i)) -B 10.10.$i.2
	mkdir -p $CG/b$i
	i=$((i + 1))
done
ip -n srv link set lo up
sleep 1

sender() { # sender I: iperf3 client of container I, PID in $!
	sh -c "echo \$\$ > $CG/b$1/cgroup.procs; exec /usr/sbin/ip netns exec c$1 iperf3 -c 10.10.$1.2 -p $((5300 + $1)) -t 600 -i 0 >/dev/null 2>&1" &
}
usage() { sed -n 's/^usage_usec //p' $CG/b$1/cpu.stat; }

# 1. sweep: container 1 alone, static quotas
sender 1
S=$!
sleep 1
wr $OSLAB/vif1/pid $S >/dev/null
SWEEP=""
for q in 10 20 30 40 60 100; do
	echo "$((q * 1000)) 100000" > $CG/b1/cpu.max
	sleep 2
	b=$(avg 1 bw_mbps 3)
	[ $q = 20 ] && B20=$b
	SWEEP="$SWEEP $q:$b"
	echo "# sweep quota_pct=$q bw_mbps=$b"
done
echo "max 100000" > $CG/b1/cpu.max
kill $S
wait $S 2>/dev/null
wr $OSLAB/vif1/pid 0 >/dev/null
# The SLO: what one container gets from 20% of a CPU, so N = 2 and 4 are
# feasible next to the hog on two CPUs and N = 8 is not.
GOAL=${BENCH_GOAL:-$B20}
echo "# goal goal_mbps=$GOAL"
# The smallest swept quota that meets the goal (>= 95%) on its own: the
# static limit vif's CPU use is compared with (config staticmin).
SMIN=100
for qb in $SWEEP; do
	if awk -v b=${qb#*:} -v g=$GOAL 'BEGIN { exit !(b >= 0.95 * g) }'; then
		SMIN=${qb%%:*}
		break
	fi
done
echo "# smallest_static quota_pct=$SMIN"

# 2. the hog: two busy loops, default weight, no limit
mkdir -p $CG/hog
for k in 1 2; do
	sh -c "echo \$\$ > $CG/hog/cgroup.procs; while :; do :; done" &
	HOGS="$HOGS $!"
done

# bytes CFG N: one snapshot of every container's veth byte count (rx + tx,
# what vif counts), read at once from the server's side, stamped with the
# middle of the read. Two of them give each container's exact mean over the
# steady window; the 0.5 s samples of stat only see 40% of it.
bytes() {
	ta=$(cut -d' ' -f1 /proc/uptime)
	b=$(ip netns exec srv cat /proc/net/dev | awk -F'[: ]+' '$2 ~ /^w[0-9]+$/ { printf " %s=%.0f", $2, $3 + $11 }')
	echo "# bytes cfg=$1 n=$2 t=$(awk -v t0=$t0 -v ta=$ta '{print (ta + $1) / 2 - t0}' /proc/uptime)$b"
}

# goal_of I G: container I's goal, G or, in a mixed run, MIXPCT's share of it
goal_of() {
	if [ -z "$MIXPCT" ]; then echo $2; else echo $(($2 * $(echo $MIXPCT | cut -d' ' -f$1) / 100)); fi
}

run() { # run CONFIG N GOAL; CONFIGmix: the same with MIXPCT's goals
	cfg=$1
	base=${cfg%mix}
	vif=false
	case $cfg in vif*) vif=true ;; esac
	n=$2
	g=$3
	pids=""
	i=1
	while [ $i -le $n ]; do
		case $base in
		static) echo "$((200000 / (n + 1))) 100000" > $CG/b$i/cpu.max ;;
		staticmin) echo "$((SMIN * 1000)) 100000" > $CG/b$i/cpu.max ;;
		*) echo "max 100000" > $CG/b$i/cpu.max ;;
		esac
		[ $base = tbf ] && ip netns exec c$i /usr/sbin/tc qdisc add dev v$i root tbf rate $(goal_of $i $g)mbit burst 256kb latency 50ms
		sender $i
		pids="$pids $!"
		i=$((i + 1))
	done
	sleep 0.5
	i=1
	for p in $pids; do
		$vif && wr $OSLAB/vif$i/goal $(goal_of $i $g) >/dev/null
		wr $OSLAB/vif$i/pid $p >/dev/null
		eval u0_$i=$(usage $i)
		i=$((i + 1))
	done
	t0=$(cut -d' ' -f1 /proc/uptime)
	samples=$((DUR * 2))
	$vif && [ $n = 2 ] && samples=$((samples + 20))
	k=0
	while [ $k -lt $samples ]; do
		# the steady window: from the ninth sample (t >= SETTLE_S of vif.py)
		# to the end of DUR
		[ $k = 8 ] || [ $k = $((DUR * 2)) ] && bytes $cfg $n
		# CPU over the first DUR seconds, the window every config shares
		# (vif at N = 2 goes on with a lowered goal).
		if [ $k = $((DUR * 2)) ]; then
			i=1
			while [ $i -le $n ]; do
				eval u0=\$u0_$i
				echo "# cpu_window cfg=$cfg n=$n i=$i usec=$(($(usage $i) - u0))"
				i=$((i + 1))
			done
		fi
		if $vif && [ $n = 2 ] && [ $k = $((DUR * 2)) ]; then
			g=$((g / 2))
			echo "# goal_change cfg=$cfg n=$n t=$(awk -v t0=$t0 '{print $1 - t0}' /proc/uptime) goal=$g"
			for s in 1 2; do wr $OSLAB/vif$s/goal $g >/dev/null; done
		fi
		t=$(awk -v t0=$t0 '{print $1 - t0}' /proc/uptime)
		i=1
		while [ $i -le $n ]; do
			echo "# s cfg=$cfg n=$n t=$t i=$i goal=$(goal_of $i $g) $(cut -d' ' -f4-10 $OSLAB/vif$i/stat)"
			i=$((i + 1))
		done
		sleep 0.5
		k=$((k + 1))
	done
	[ $k = $((DUR * 2)) ] && bytes $cfg $n
	el=$(awk -v t0=$t0 '{print $1 - t0}' /proc/uptime)
	i=1
	for p in $pids; do
		eval u0=\$u0_$i
		echo "# cpu cfg=$cfg n=$n i=$i usec=$(($(usage $i) - u0)) elapsed=$el"
		kill $p
		wait $p 2>/dev/null
		wr $OSLAB/vif$i/pid 0 >/dev/null
		[ $base = tbf ] && ip netns exec c$i /usr/sbin/tc qdisc del dev v$i root
		i=$((i + 1))
	done
	sleep 1
}

for n in ${BENCH_N:-2 4 8}; do
	for cfg in vif static staticmin none tbf; do
		run $cfg $n $GOAL
	done
done
# Mixed goals: N = 4 with goals of MIXPCT percent of the SLO (cfg CONFIGmix).
# With one goal for all, no limit is an upper bound for any quota; with
# different goals an even split of the CPU starves the high ones.
MIXPCT=${BENCH_MIX:-50 50 150 150}
[ "$(echo $MIXPCT | wc -w)" = 4 ] || { echo "BENCH_MIX '$MIXPCT': four percentages"; exit $KSFT_FAIL; }
echo "# mix goal_pct=$(echo $MIXPCT | tr ' ' ',')"
for cfg in vif static none tbf; do
	run ${cfg}mix 4 $GOAL
done
MIXPCT=
# period_ms sweep: vif, N = 2 with the goal change, next to the same hog,
# the module reloaded with each period (cfg vifpP)
for pm in ${BENCH_PERIODS:-100 200 500}; do
	unload
	load period_ms=$pm || { echo "insmod period_ms=$pm failed"; exit $KSFT_FAIL; }
	run vifp$pm 2 $GOAL
done
# tol_pct sweep: the same run at the default period with each hysteresis
# band (cfg viftTrK: band T, repetition K), the measurement behind the default
# tol_pct. Run to run, spread varies as much as between bands, so the bands
# take turns within each repetition and drift on the host hits them alike.
rep=1
while [ $rep -le ${BENCH_TOL_REPEATS:-3} ]; do
	for tp in ${BENCH_TOLS:-1 2 5}; do
		unload
		load period_ms=${VIF_PERIOD_MS:-200} tol_pct=$tp || { echo "insmod tol_pct=$tp failed"; exit $KSFT_FAIL; }
		run vift${tp}r$rep ${BENCH_TOL_N:-2} $GOAL
	done
	rep=$((rep + 1))
done
unload
load period_ms=${VIF_PERIOD_MS:-200} || { echo "insmod failed"; exit $KSFT_FAIL; }
kill $HOGS

# 3. module overhead: all 64 slots claimed by idle processes with goals
i=1
while [ $i -le 64 ]; do
	mkdir -p $CG/o$i
	spawn_idle o$i
	wr $OSLAB/vif$i/goal 100 >/dev/null
	wr $OSLAB/vif$i/pid $! >/dev/null
	i=$((i + 1))
done
kw() { for f in /proc/[0-9]*/stat; do case "$(cut -d' ' -f2 $f 2>/dev/null)" in *kworker*) cut -d' ' -f14,15 $f ;; esac; done | awk '{ s += $1 + $2 } END { print s + 0 }'; }
a=$(kw)
t0=$(cut -d' ' -f1 /proc/uptime)
sleep 10
echo "# overhead slots=64 kworker_ticks=$(($(kw) - a)) seconds=$(awk -v t0=$t0 '{print $1 - t0}' /proc/uptime) hz=100"
unload
exit 0
