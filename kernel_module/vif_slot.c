// SPDX-License-Identifier: GPL-2.0
/*
 * vif: the slot table, claim and release.
 *
 * Lock story. This file owns all mutable state: the array vif_slots and
 * every field of every slot. One mutex, vif_lock, guards all of it. It is
 * taken by the procfs handlers (vif_proc.c) for every read and write, and by
 * the control loop (vif_ctl.c) for a whole tick, so a reader always sees one
 * consistent slot and a writer never races the loop.
 *
 * Cgroup file I/O (vif_cgroup.c) runs in workqueue context only. The control
 * loop already runs there; procfs writers hand the I/O to the vif_io
 * workqueue and wait for it while holding vif_lock. That is deadlock-free
 * because vif_io work items never take vif_lock, and the control loop,
 * which does take it, runs on a different workqueue and never waits for
 * vif_io.
 *
 * One slot per cgroup: a second slot on the same cgroup would record the
 * first one's quota as its original and write it back after the first had
 * let go, so a claim of a cgroup another slot holds is refused (EEXIST).
 *
 * Lifetime: a claimed slot holds a reference on the task's struct pid, on
 * its network namespace and two open cgroupfs files. vif_slot_release()
 * drops them all and writes the original cpu.max back. It is called for
 * "0" written to pid, by the control loop when the process has exited, and
 * for every slot on module exit, after procfs is gone and the loop stopped.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/nsproxy.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <net/net_namespace.h>

#include "vif.h"

/* Guards vif_slots and every field of every slot: see the top of this file. */
DEFINE_MUTEX(vif_lock);
struct vif_slot *vif_slots;

static const char * const vif_state_names[] = {
	[VIF_IDLE]		= "idle",
	[VIF_CONVERGING]	= "converging",
	[VIF_MET]		= "met",
	[VIF_CPU_LIMITED]	= "cpu-limited",
	[VIF_UNREACHABLE]	= "unreachable",
};

const char *vif_state_name(enum vif_state state)
{
	return vif_state_names[state];
}

static void vif_slot_reset(struct vif_slot *slot)
{
	slot->nr = 0;
	slot->goal_mbps = 0;
	slot->weight = 1;
	slot->min_credit = 0;
	slot->pid = NULL;
	slot->net = NULL;
	memset(&slot->cg, 0, sizeof(slot->cg));
	slot->samples = 0;
	slot->controlled = false;
	slot->active = false;
	slot->settled = false;
	slot->bw_kbps = 0;
	slot->bw_smooth_kbps = 0;
	slot->cpu_ppm = 0;
	slot->cpu_smooth_ppm = 0;
	slot->need_ppm = 0;
	slot->alloc_ppm = 0;
	slot->throttled = 0;
	slot->state = VIF_IDLE;
}

int vif_slots_init(void)
{
	unsigned int i;

	vif_slots = kvcalloc(vif_nr_vifs, sizeof(*vif_slots), GFP_KERNEL);
	if (!vif_slots)
		return -ENOMEM;
	for (i = 0; i < vif_nr_vifs; i++) {
		vif_slots[i].id = i + 1;
		vif_slot_reset(&vif_slots[i]);
	}
	return 0;
}

void vif_slots_exit(void)
{
	unsigned int i;

	if (!vif_slots)
		return;
	mutex_lock(&vif_lock);
	for (i = 0; i < vif_nr_vifs; i++)
		vif_slot_release(&vif_slots[i]);
	mutex_unlock(&vif_lock);
	kvfree(vif_slots);
	vif_slots = NULL;
}

u32 vif_slot_target_mbps(const struct vif_slot *slot)
{
	u32 floor = (u32)div_u64((u64)slot->min_credit * vif_link_mbps, 100);

	return max(slot->goal_mbps, floor);
}

static bool vif_pid_registered(struct pid *pid)
{
	unsigned int i;

	for (i = 0; i < vif_nr_vifs; i++)
		if (vif_slots[i].pid == pid)
			return true;
	return false;
}

static bool vif_cgroup_registered(u64 id)
{
	unsigned int i;

	for (i = 0; i < vif_nr_vifs; i++)
		if (vif_slots[i].pid && vif_slots[i].cg.id == id)
			return true;
	return false;
}

/* Caller holds vif_lock. @nr is a PID in the caller's PID namespace. */
int vif_slot_claim(struct vif_slot *slot, pid_t nr)
{
	struct task_struct *task;
	struct pid *pid;
	int ret;

	lockdep_assert_held(&vif_lock);

	pid = find_get_pid(nr);
	if (!pid)
		return -ESRCH;

	if (slot->pid) {
		/* Writing the holder's own PID again is a no-op. */
		ret = slot->pid == pid ? 0 : -EBUSY;
		goto err_pid;
	}
	if (vif_pid_registered(pid)) {
		ret = -EBUSY;
		goto err_pid;
	}

	task = get_pid_task(pid, PIDTYPE_PID);
	if (!task) {
		ret = -ESRCH;
		goto err_pid;
	}

	task_lock(task);
	if (task->nsproxy && !(task->flags & PF_EXITING))
		slot->net = get_net(task->nsproxy->net_ns);
	task_unlock(task);
	if (!slot->net) {
		ret = -ESRCH;
		goto err_task;
	}

	ret = vif_cg_resolve(&slot->cg, task);
	if (ret)
		goto err_net;
	if (vif_cgroup_registered(slot->cg.id)) {
		ret = -EEXIST;
		goto err_path;
	}

	ret = vif_cg_attach(&slot->cg);
	if (ret)
		goto err_path;

	put_task_struct(task);
	slot->pid = pid;
	slot->nr = nr;
	slot->samples = 0;
	slot->controlled = false;
	slot->throttled = 0;
	slot->state = VIF_IDLE;
	pr_info("vif%u: claimed by pid %d, cgroup %s\n", slot->id, nr,
		slot->cg.path);
	return 0;

err_path:
	kfree(slot->cg.path);
	slot->cg.path = NULL;
	slot->cg.id = 0;
err_net:
	put_net(slot->net);
	slot->net = NULL;
err_task:
	put_task_struct(task);
err_pid:
	put_pid(pid);
	return ret;
}

/*
 * Caller holds vif_lock. Restores the cgroup's original cpu.max (unless
 * someone else has changed it since: see vif_cgroup.c), drops every
 * reference and resets the slot's settings to their defaults, so the next
 * claimer starts clean. A free slot is left alone: its goal may have been
 * written ahead of its PID.
 */
void vif_slot_release(struct vif_slot *slot)
{
	lockdep_assert_held(&vif_lock);

	if (!slot->pid)
		return;
	pr_info("vif%u: released (pid %d), cgroup %s\n", slot->id, slot->nr,
		slot->cg.path);
	vif_cg_detach(&slot->cg);
	put_net(slot->net);
	put_pid(slot->pid);
	vif_slot_reset(slot);
}
