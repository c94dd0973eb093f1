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
# the kernel's CFS bandwidth static key on. Otherwise the first quota vif
# writes flips it, which patches kernel text through int3; once, a kernel
# test under QEMU TCG then took "Oops: int3" in update_curr, most likely a
# stale translation on the other vCPU. Real nodes flip it too, harmlessly:
# this pins the test VM, not the module.
mkdir /sys/fs/cgroup/depcon-bw-key && echo "1000000 100000" > /sys/fs/cgroup/depcon-bw-key/cpu.max
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
