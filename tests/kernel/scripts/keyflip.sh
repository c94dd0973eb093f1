# The premise of init.sh's bandwidth-key hold: flipping the CFS bandwidth
# static key while only CPU 0 is online is safe under QEMU's multi-threaded
# TCG. With the other vCPU online and entering the scheduler often, the same
# loop takes "Oops: int3" (6.12) or hangs (6.1). No vif here.
. ./lib.sh

mkdir $CG/flip
for c in /sys/devices/system/cpu/cpu[1-9]*; do echo 0 > "$c/online"; done
expect "CPU 0 alone" "$(cat /sys/devices/system/cpu/online)" "0"
# Let go of init's hold, so each write below flips the key.
echo "max 100000" > $CG/depcon-bw-key/cpu.max
# A task that sleeps and wakes all the time runs the scheduler's key sites.
(while :; do usleep 100; done) &
waker=$!
i=0
while [ $i -lt "${FLIPS:-1000}" ]; do
	echo "50000 100000" > $CG/flip/cpu.max
	echo "max 100000" > $CG/flip/cpu.max
	i=$((i + 1))
done
kill $waker
pass "$i key flips"
echo "1000000 100000" > $CG/depcon-bw-key/cpu.max
for c in /sys/devices/system/cpu/cpu[1-9]*; do echo 1 > "$c/online"; done
expect "every CPU online again" "$(cat /sys/devices/system/cpu/online)" "$(cat /sys/devices/system/cpu/present)"
finish
