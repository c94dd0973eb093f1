# Who may steer a quota. Writes need CAP_SYS_ADMIN in the initial user
# namespace: root in a new user namespace and root without CAP_SYS_ADMIN (a
# container's root, as docker and containerd start it) get EPERM on every
# file of a victim's slot, whose cpu.max then does not move. Readers without
# it see "-" for PIDs and cgroup paths.
. ./lib.sh
load || { echo "insmod failed"; exit $KSFT_FAIL; }
setup_net

# userns CMD...: root in a new user namespace (uid 0 there is uid 0 here)
userns() { unshare -r "$@"; }
# nosysadmin CMD...: uid 0 with every capability but CAP_SYS_ADMIN
nosysadmin() { /usr/bin/setpriv --bounding-set -sys_admin --inh-caps -sys_admin "$@"; }
# nonroot CMD...: uid 1000, no capabilities
nonroot() { /usr/bin/setpriv --reuid 1000 --regid 1000 --clear-groups "$@"; }
# sysadmin_bit CMD...: bit 21 (CAP_SYS_ADMIN) of the effective set CMD runs with
sysadmin_bit() {
	e=$("$@" sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
	echo $((0x$e >> 21 & 1))
}

expect "userns: uid 0 maps to host uid 0" "$(userns cat /proc/self/uid_map | tr -s ' ')" " 0 0 1"
expect "userns: CAP_SYS_ADMIN in its own namespace" "$(sysadmin_bit userns)" 1
expect "nosysadmin: uid 0" "$(nosysadmin id -u)" 0
expect "nosysadmin: no CAP_SYS_ADMIN" "$(sysadmin_bit nosysadmin)" 0

new_cgroup v1 "max 100000"
new_cgroup v2 "max 100000"
start_sender v1 5201 600
S=$!
spawn_idle v2
P=$!
# The victim: a sender the host's root registered with no goal, so nothing
# but a foreign write would move its quota.
expect "root claims vif1 for the sender" "$(wr $OSLAB/vif1/pid $S)" ok
expect "root sees the holder's PID" "$(cat $OSLAB/vif1/pid)" "$S"

for who in userns nosysadmin; do
	for fv in goal=20 weight=5 min_credit=50 goal=abc; do
		f=${fv%%=*}
		v=${fv#*=}
		expect "$who: vif1/$f <- $v EPERM" "$($who /usr/bin/wr $OSLAB/vif1/$f $v)" EPERM
	done
done
expect "nonroot: vif1/goal refused" "$(nonroot /usr/bin/wr $OSLAB/vif1/goal 20)" open:EACCES
# Ten control periods: long enough for a goal that got through to move it.
sleep 2
expect "victim's cpu.max did not move" "$(cat $CG/v1/cpu.max)" "max 100000"
for who in userns nosysadmin; do
	expect "$who: release of vif1 EPERM" "$($who /usr/bin/wr $OSLAB/vif1/pid 0)" EPERM
	expect "$who: claim of free vif2 EPERM" "$($who /usr/bin/wr $OSLAB/vif2/pid $P)" EPERM
	expect "$who: goal of free vif2 EPERM" "$($who /usr/bin/wr $OSLAB/vif2/goal 5)" EPERM
done
expect "victim's slot unchanged" \
	"$(cat $OSLAB/vif1/pid $OSLAB/vif1/goal $OSLAB/vif1/weight $OSLAB/vif1/min_credit | tr '\n' ' ')" \
	"$S 0 1 0 "
expect "vif2 still free" "$(cat $OSLAB/vif2/pid $OSLAB/vif2/goal | tr '\n' ' ')" "0 0 "
expect "cpu.max of v2 untouched" "$(cat $CG/v2/cpu.max)" "max 100000"

# The opener's credentials count, not the writer's: a descriptor the host's
# root opened still writes after the capability is gone.
exec 3>$OSLAB/vif2/weight
check "fd opened by root, written without CAP_SYS_ADMIN" nosysadmin sh -c 'echo 7 >&3'
exec 3>&-
expect "weight written through it" "$(cat $OSLAB/vif2/weight)" 7

# Reading: the host's root sees everything, the others "-" for PID and cgroup.
expect "root: status row" "$(sed -n 2p $OSLAB/status | cut -d' ' -f1,2,14)" "vif1 $S /v1"
expect "root: stat" "$(field 1 pid) $(field 1 cgroup)" "$S /v1"
for who in userns nosysadmin nonroot; do
	expect "$who: status row redacted" "$($who cat $OSLAB/status | sed -n 2p | cut -d' ' -f1,2,14)" "vif1 - -"
	expect "$who: stat redacted" \
		"$($who cat $OSLAB/vif1/stat | tr ' ' '\n' | sed -n 's/^\(pid\|cgroup\)=//p' | tr '\n' ' ')" "- - "
	expect "$who: pid redacted" "$($who cat $OSLAB/vif1/pid)" -
	expect "$who: free slot's pid is 0" "$($who cat $OSLAB/vif3/pid)" 0
	expect "$who: goal readable" "$($who cat $OSLAB/vif1/goal)" 0
done

check "rmmod" unload
expect "cpu.max of v1 after rmmod" "$(cat $CG/v1/cpu.max)" "max 100000"
kill $S $P
finish
