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
# The kernel patches its own code through int3 whenever a static key flips,
# and QEMU's multi-threaded TCG races with that when another vCPU runs the
# patched code: 6.12 took "Oops: int3" in 1 of 40 plain boots, during
# initcalls, and 6.1 sometimes hangs (docs/vif-procfs.md, "Testing under
# emulation"). So the kernel boots on CPU 0 alone (maxcpus=1, runner.py) and
# the others come up here, after the one flip every test would otherwise
# cause: a limit that never binds (10 CPUs, no tasks), held for the whole
# run, keeps the CFS bandwidth key on. Real nodes flip keys harmlessly: this
# pins the test VM, not the module.
mkdir /sys/fs/cgroup/depcon-bw-key && echo "1000000 100000" > /sys/fs/cgroup/depcon-bw-key/cpu.max
for c in /sys/devices/system/cpu/cpu[1-9]*; do echo 1 > "$c/online"; done
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
