# vif benchmark, run inside the test VM by harness/bench/vif.py. Prints
# "# key=value ..." records; harness/bench/vif_analysis.py turns them into the
# report. Times are /proc/uptime seconds; the Python side takes differences.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }
REPS=${BENCH_REPS:-5}
SETTLE=${BENCH_SETTLE:-4}  # s from the start to the steady window
STEADY=${BENCH_STEADY:-5}  # s of steady window
AFTER=${BENCH_AFTER:-6}    # s after the goal change
# scenario = name:N:load_pct:batch; load = total goals in % of the node's capacity
SCENARIOS=${BENCH_SCENARIOS:-n4l50:4:50:0 n4l100:4:100:0 n4l150:4:150:0 n8l50:8:50:0 n4batch:4:50:1}
CONFIGS="requests limits tbf vif"
HEAD_PCT=1 # vif aims at the middle of its band: goal * (1 + tol_pct/200), tol_pct 2
HOG_UNIT=${BENCH_HOG_UNIT:-1000} # ~0.01 CPU s per unit under TCG
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
	mkdir -p $CG/s$i
	i=$((i + 1))
done
ip -n srv link set lo up
sleep 1

now() { cut -d' ' -f1 /proc/uptime; }
sender() { # sender I: iperf3 client of container I, PID in $!
	sh -c "echo \$\$ > $CG/s$1/cgroup.procs; exec /usr/sbin/ip netns exec c$1 iperf3 -c 10.10.$1.2 -p $((5300 + $1)) -t 900 -i 0 >/dev/null 2>&1" &
}
# sampler N: every 100 ms, the uptime and the byte count (rx + tx, what vif
# counts) of every server-side veth w1..wN, read in one pass; PID in $!
sampler() {
	/usr/sbin/ip netns exec srv awk -v n=$1 'BEGIN {
		for (;;) {
			getline up < "/proc/uptime"; close("/proc/uptime")
			split(up, u, " ")
			while ((getline l < "/proc/net/dev") > 0) {
				sub(/^ +/, "", l)
				k = split(l, f, /[: ]+/)
				if (f[1] ~ /^w[0-9]+$/) b[substr(f[1], 2) + 0] = f[2] + f[10]
			}
			close("/proc/net/dev")
			s = "# d t=" u[1]
			for (i = 1; i <= n; i++) s = sprintf("%s %.0f", s, b[i])
			print s
			fflush()
			system("sleep 0.1")
		}
	}' &
}
# usage: the CPU (usage_usec) of every SLO cgroup, the hog and the batch job
usage() {
	u=""
	i=1
	while [ $i -le $1 ]; do
		u="$u,$(sed -n 's/^usage_usec //p' $CG/s$i/cpu.stat)"
		i=$((i + 1))
	done
	echo "cpu=${u#,} hog_cpu=$(sed -n 's/^usage_usec //p' $CG/hog/cpu.stat) batch_cpu=$(sed -n 's/^usage_usec //p' $CG/batch/cpu.stat)"
}
# hog work units done so far (each hog thread appends its count per unit)
units() { echo $(($(tail -n1 /tmp/hog1) + $(tail -n1 /tmp/hog2))); }
mark() { # mark RUN NAME: a timestamped record with CPU and hog counters
	echo "# mark run=$1 k=$2 t=$(now) $(usage $3) hog_units=$(units)"
}
# need MBPS: the quota (mCPU) one sender needs for MBPS, from the calibration
# curve CURVE ("pct:mbps ..."), linear between points, extrapolated past the
# ends; at least 10 m, at most the node (2000 m)
need() {
	echo "$CURVE" | awk -v g=$1 '{
		for (i = 1; i <= NF; i++) { split($i, p, ":"); q[i] = p[1]; b[i] = p[2] }
		k = 2
		while (k < NF && b[k] < g) k++
		if (b[k] > b[k - 1]) m = q[k - 1] + (g - b[k - 1]) * (q[k] - q[k - 1]) / (b[k] - b[k - 1])
		else m = q[k]
		m = int(m * 10 + 0.5)
		if (m < 10) m = 10
		if (m > 2000) m = 2000
		print m
	}'
}
# weight MCPU: cpu.weight of a container requesting MCPU, the kubelet's rule
# (shares = m * 1024 / 1000, weight = 1 + (shares - 2) * 9999 / 262142)
weight() {
	sh_=$(($1 * 1024 / 1000))
	[ $sh_ -lt 2 ] && sh_=2
	echo $((1 + (sh_ - 2) * 9999 / 262142))
}
bytes_total() { # bytes_total N: all N veths' bytes now
	ip netns exec srv cat /proc/net/dev | awk -F'[: ]+' -v n=$1 '$2 ~ /^w[0-9]+$/ && substr($2, 2) + 0 <= n { s += $3 + $11 } END { printf "%.0f", s }'
}
# measure N SECONDS: total Mbps of senders 1..N over SECONDS
measure() {
	a=$(bytes_total $1)
	ta=$(now)
	sleep $2
	b=$(bytes_total $1)
	tb=$(now)
	awk -v a=$a -v b=$b -v ta=$ta -v tb=$tb 'BEGIN { printf "%.1f", (b - a) * 8 / (tb - ta) / 1e6 }'
}
stop_senders() {
	for p in $*; do
		kill $p
		wait $p 2>/dev/null
	done
}

# 1. the node's capacity: N senders, no limits, no hog, the whole VM
for n in $(for s in $SCENARIOS; do echo $s | cut -d: -f2; done | sort -u); do
	pids=""
	i=1
	while [ $i -le $n ]; do
		echo "max 100000" > $CG/s$i/cpu.max
		sender $i
		pids="$pids $!"
		i=$((i + 1))
	done
	sleep 2
	c=$(measure $n 4)
	eval CAP_$n=$c
	echo "# capacity n=$n mbps=$c"
	stop_senders $pids
	sleep 1
done

# 2. the best-effort hog: two threads, cpu.weight 1 (a BestEffort pod),
# each counting work units of HOG_UNIT loop iterations
mkdir -p $CG/hog $CG/batch
echo 1 > $CG/hog/cpu.weight
for k in 1 2; do
	echo 0 > /tmp/hog$k
	sh -c "echo \$\$ > $CG/hog/cgroup.procs; exec awk -v f=/tmp/hog$k -v u=$HOG_UNIT 'BEGIN { for (;;) { for (j = 0; j < u; j++) ; n++; printf \"%d\\n\", n >> f; close(f) } }'" &
	HOGS="$HOGS $!"
done
sleep 1

# 3. calibration curve: sender 1 alone next to the hog, one quota after the
# other; the Guaranteed limits and the requests come from it. A point below
# the one before is host noise (more CPU never moves less): the curve used
# keeps the running maximum.
CURVE=""
used=0
sender 1
S=$!
sleep 1
for q in 10 20 35 50 75; do
	echo "$((q * 1000)) 100000" > $CG/s1/cpu.max
	sleep 1
	b=$(measure 1 3)
	used=$(awk -v b=$b -v u=$used 'BEGIN { print (b > u) ? b : u }')
	echo "# curve quota_pct=$q mbps=$b used_mbps=$used"
	CURVE="$CURVE $q:$used"
done
echo "max 100000" > $CG/s1/cpu.max
stop_senders $S
sleep 1

# goals SCENARIO-N LOAD_PCT: two classes, containers 1..N/2 "low" with goal g,
# the rest "high" with 2 g, all together LOAD_PCT % of the capacity at N
goal_low() { eval c=\$CAP_$1; awk -v c=$c -v n=$1 -v l=$2 'BEGIN { printf "%d", 2 * l / 100 * c / (3 * n) }'; }

run() { # run ID SCENARIO CONFIG N LOAD_PCT BATCH REP
	id=$1
	cfg=$3
	n=$4
	gl=$(goal_low $n $5)
	pids=""
	bpids=""
	echo "# run id=$id scenario=$2 config=$cfg n=$n load_pct=$5 batch=$6 rep=$7 t=$(now)"
	i=1
	while [ $i -le $n ]; do
		if [ $i -le $((n / 2)) ]; then g=$gl; cl=low; else g=$((2 * gl)); cl=high; fi
		m=$(need $((g * (100 + HEAD_PCT) / 100)))
		eval goal_$i=$g
		echo $(weight $m) > $CG/s$i/cpu.weight
		if [ $cfg = limits ]; then echo "$((m * 100)) 100000" > $CG/s$i/cpu.max; else echo "max 100000" > $CG/s$i/cpu.max; fi
		[ $cfg = tbf ] && ip netns exec c$i /usr/sbin/tc qdisc add dev v$i root tbf rate $((g * (100 + HEAD_PCT) / 100))mbit burst 256kb latency 50ms
		echo "# ctr run=$id i=$i class=$cl goal=$g request_m=$m weight=$(weight $m)"
		sender $i
		pids="$pids $!"
		i=$((i + 1))
	done
	if [ $6 = 1 ]; then
		# a Burstable batch job requesting 1500 m (weight 59), no limit
		echo $(weight 1500) > $CG/batch/cpu.weight
		for k in 1 2; do
			sh -c "echo \$\$ > $CG/batch/cgroup.procs; while :; do :; done" &
			bpids="$bpids $!"
		done
	fi
	sleep 0.5
	if [ $cfg = vif ]; then
		i=1
		for p in $pids; do
			eval g=\$goal_$i
			wr $OSLAB/vif$i/goal $g >/dev/null
			wr $OSLAB/vif$i/pid $p >/dev/null
			i=$((i + 1))
		done
	fi
	sampler $n
	sp=$!
	mark $id start $n
	sleep $SETTLE
	mark $id steady_start $n
	sleep $STEADY
	mark $id steady_end $n
	# the goal change: the low class's goals go up by half, each config
	# doing what it would (vif: the goal; tbf: the rate; limits: an in-place
	# resize to the curve's quota; requests: the new request's weight)
	i=1
	while [ $i -le $((n / 2)) ]; do
		g=$((gl * 3 / 2))
		m=$(need $((g * (100 + HEAD_PCT) / 100)))
		case $cfg in
		vif) wr $OSLAB/vif$i/goal $g >/dev/null ;;
		tbf) ip netns exec c$i /usr/sbin/tc qdisc change dev v$i root tbf rate $((g * (100 + HEAD_PCT) / 100))mbit burst 256kb latency 50ms ;;
		limits) echo "$((m * 100)) 100000" > $CG/s$i/cpu.max ;;
		esac
		echo $(weight $m) > $CG/s$i/cpu.weight
		i=$((i + 1))
	done
	echo "# change run=$id t=$(now) goal_low=$((gl * 3 / 2))"
	sleep $AFTER
	mark $id end $n
	kill $sp
	wait $sp 2>/dev/null
	stop_senders $bpids
	i=1
	for p in $pids; do
		[ $cfg = vif ] && wr $OSLAB/vif$i/pid 0 >/dev/null
		kill $p
		wait $p 2>/dev/null
		[ $cfg = tbf ] && ip netns exec c$i /usr/sbin/tc qdisc del dev v$i root
		echo "max 100000" > $CG/s$i/cpu.max
		i=$((i + 1))
	done
	echo "# end run=$id t=$(now)"
	sleep 0.5
}

# 4. the runs: repetition after repetition; within one, every scenario, its
# configurations in an order rotated by the repetition
id=0
rep=1
while [ $rep -le $REPS ]; do
	for s in $SCENARIOS; do
		set -- $(echo $s | tr ':' ' ')
		order=$(echo $CONFIGS | awk -v r=$rep '{ for (i = 0; i < NF; i++) printf "%s ", $((i + r - 1) % NF + 1) }')
		for cfg in $order; do
			id=$((id + 1))
			run $id $1 $cfg $2 $3 $4 $rep
		done
	done
	rep=$((rep + 1))
done
stop_senders $HOGS
unload
exit 0
