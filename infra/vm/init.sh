#!/bin/busybox sh
# /init of the vif test VM: mount the basics, run /test/run.sh, print its exit
# code and dmesg between markers the harness looks for, power off.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /sys/fs/cgroup /run/netns /var && ln -s /run /var/run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpu +cpuset" > /sys/fs/cgroup/cgroup.subtree_control
# A limit that never binds (10 CPUs, no tasks), held for the whole run, keeps
# the kernel's CFS bandwidth static key on, so no test flips it. A flip
# patches the scheduler's hottest code through int3, and QEMU's multi-threaded
# TCG races with it: with the other vCPU entering the scheduler often, 6.12
# takes "Oops: int3" within 2000 flips in 4 of 4 boots, with no vif loaded at
# all (6.1 sometimes hangs instead). With one vCPU online, or single-threaded
# TCG, 8000 flips pass (docs/vif-procfs.md, "Testing under emulation"). So the hold is taken while
# CPU 0 runs alone. Real nodes flip the key harmlessly: this pins the test VM,
# not the module.
cpus=$(ls -d /sys/devices/system/cpu/cpu[1-9]* 2>/dev/null)
for c in $cpus; do echo 0 > "$c/online"; done
mkdir /sys/fs/cgroup/depcon-bw-key && echo "1000000 100000" > /sys/fs/cgroup/depcon-bw-key/cpu.max
for c in $cpus; do echo 1 > "$c/online"; done
ip link set lo up
for m in /lib/modules/*.ko; do insmod "$m"; done
echo "==VIF-BEGIN== cpus=$(nproc) kernel=$(uname -r)"
[ -f /test/env.sh ] && . /test/env.sh
cd /test && sh ./run.sh
echo "==VIF-END rc=$?=="
echo "==DMESG-BEGIN=="
dmesg
echo "==DMESG-END=="
sync
poweroff -f
