// SPDX-License-Identifier: GPL-2.0
/*
 * vif: the control loop.
 *
 * One delayed work item runs every period_ms on an ordered workqueue and
 * holds vif_lock for the whole tick (lock story: vif_slot.c). Per claimed
 * slot it
 *
 *  1. releases the slot if its process has exited (restoring the quota);
 *     reads cpu.max: a value someone else wrote becomes the slot's
 *     original (vif_cgroup.c) and the quota the loop starts from;
 *  2. samples the bytes of the slot's network namespace and the CPU time of
 *     its cgroup over the elapsed time: bandwidth B (kbps) and CPU U (ppm
 *     of one CPU), both smoothed (EWMA, alpha 1/4) against sampling noise;
 *  3. decides the CPU it needs for its target T = max(goal, min_credit x
 *     link_mbps / 100), aiming at T' = T x (1 + tol/200), the middle of
 *     the hysteresis band [T, T x (1 + tol/100)]. Inside the band the quota
 *     holds. Outside it the quota is multiplied by exp((T' - B) / 2T'),
 *     x0.625 to x1.625 per period (vif_ctl_step): an integrating loop whose
 *     mean bandwidth settles on T'. A network-bound sender below the band
 *     so ends at the ceiling and is reported unreachable. An unlimited
 *     cgroup starts from the CPU it used: a CPU-bound sender's bandwidth is
 *     proportional to its CPU, so it moves half-way to U x T' / B.
 *
 * Then the needs of all slots are granted from the online CPUs: in full
 * when they fit, else by weighted max-min fairness (a slot never gets more
 * than it needs, the rest is shared in proportion to weight), and each
 * quota is written to cpu.max, clamped to [min_quota_us, online CPUs x CFS
 * period].
 *
 * A slot with no target, or with no traffic or CPU use last period, is idle
 * and takes no part; if the loop had changed its quota before, the original
 * one is written back.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpumask.h>
#include <linux/math64.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/workqueue.h>

#include "vif.h"

static struct workqueue_struct *vif_ctl_wq;
static struct delayed_work vif_ctl_work;

/* The process is gone once its last thread is exiting or reaped. */
static bool vif_ctl_task_gone(struct vif_slot *slot)
{
	struct task_struct *task;
	bool gone;

	task = get_pid_task(slot->pid, PIDTYPE_PID);
	if (!task)
		return true;
	gone = (task->exit_state || (task->flags & PF_EXITING)) &&
	       thread_group_empty(task);
	put_task_struct(task);
	return gone;
}

/* Exponentially weighted moving average, alpha 1/4. */
static u64 vif_ewma(u64 avg, u64 sample)
{
	return avg - avg / 4 + sample / 4;
}

static void vif_ctl_sample(struct vif_slot *slot, ktime_t now)
{
	u64 bytes, usage, throttled;
	s64 dt_us;

	bytes = vif_net_bytes(slot->net);
	if (vif_cg_sample(&slot->cg, &usage, &throttled)) {
		slot->samples = 0;
		return;
	}
	dt_us = ktime_us_delta(now, slot->last_time);

	if (slot->samples && dt_us > 0 && bytes >= slot->last_bytes &&
	    usage >= slot->last_usage_us && throttled >= slot->last_throttled) {
		slot->bw_kbps = div64_u64((bytes - slot->last_bytes) * 8000,
					  dt_us);
		slot->cpu_ppm = div64_u64((usage - slot->last_usage_us) *
					  VIF_PPM, dt_us);
		slot->throttled += throttled - slot->last_throttled;
		if (slot->samples > 1) {
			slot->bw_smooth_kbps = vif_ewma(slot->bw_smooth_kbps,
							slot->bw_kbps);
			slot->cpu_smooth_ppm = vif_ewma(slot->cpu_smooth_ppm,
							slot->cpu_ppm);
		} else {
			slot->bw_smooth_kbps = slot->bw_kbps;
			slot->cpu_smooth_ppm = slot->cpu_ppm;
		}
		if (slot->samples < 2)
			slot->samples++;
	} else {
		/* First sample, or a device went away: a new baseline. */
		slot->samples = 1;
	}
	slot->last_time = now;
	slot->last_bytes = bytes;
	slot->last_usage_us = usage;
	slot->last_throttled = throttled;
}

static u64 vif_ctl_quota_ppm(const struct vif_slot *slot, u64 cap_ppm)
{
	if (slot->cg.quota_us == VIF_QUOTA_MAX)
		return cap_ppm;
	return div64_u64(slot->cg.quota_us * VIF_PPM, slot->cg.period_us);
}

/*
 * The quota times exp(e / 2) for the relative error e = (T' - B) / T',
 * e clamped to [-1, 1], exp taken to second order: between x0.625 and x1.625
 * per period. Linear in B, so the loop pins the mean bandwidth to T' however
 * noisy B is; a step by the ratio T' / B would pin its harmonic mean and
 * deliver more than asked (docs/vif-procfs.md, "Control loop").
 */
static u64 vif_ctl_step(u64 quota, u64 bw, u64 aim)
{
	const s64 ppm = VIF_PPM;
	s64 e = div64_s64(((s64)aim - (s64)bw) * ppm, (s64)aim);
	s64 ge = clamp_t(s64, e, -ppm, ppm) / 2;
	s64 factor = ppm + ge + div64_s64(ge * ge, 2 * ppm);

	return div64_u64(quota * (u64)factor, VIF_PPM);
}

static void vif_ctl_decide(struct vif_slot *slot, u64 cap_ppm)
{
	u64 target = (u64)vif_slot_target_mbps(slot) * 1000;
	u64 quota = vif_ctl_quota_ppm(slot, cap_ppm);
	u64 bw = slot->bw_smooth_kbps, cpu = slot->cpu_smooth_ppm;
	u64 min_ppm, hi, aim, need;

	slot->active = false;
	slot->need_ppm = 0;
	slot->alloc_ppm = 0;

	if (!target || slot->samples < 2 || !bw || !cpu) {
		slot->state = VIF_IDLE;
		if (!target && slot->controlled && !vif_cg_restore(&slot->cg))
			slot->controlled = false;
		return;
	}

	hi = div_u64(target * (100 + vif_tol_pct), 100);
	aim = div_u64(target * (200 + vif_tol_pct), 200);

	if (slot->cg.quota_us == VIF_QUOTA_MAX) {
		/*
		 * Unlimited: start from the CPU it used, half-way to the
		 * proportional estimate; below the target it stays unlimited.
		 */
		u64 est = div64_u64(cpu * aim, bw);

		if (bw < target)
			need = cap_ppm;
		else if (bw > hi)
			need = max((cpu + est) / 2, cpu - cpu / 4);
		else
			need = est;
		slot->state = bw < target || bw > hi ? VIF_CONVERGING : VIF_MET;
	} else if (bw < target || bw > hi) {
		/* Far from binding, cut from what it uses, not the quota. */
		u64 base = bw > hi && cpu * 2 < quota ? cpu * 2 : quota;

		need = vif_ctl_step(base, bw, aim);
		slot->state = VIF_CONVERGING;
	} else {
		need = quota;
		slot->state = VIF_MET;
	}

	min_ppm = div64_u64((u64)vif_min_quota_us * VIF_PPM,
			    slot->cg.period_us);
	slot->need_ppm = clamp(need, min_ppm, cap_ppm);
	slot->active = true;
}

/* Weighted max-min fair shares of @cap_ppm among the active slots. */
static void vif_ctl_share(u64 cap_ppm)
{
	u64 sum = 0, left = cap_ppm, wsum;
	struct vif_slot *slot;
	bool changed;
	unsigned int i;

	for (i = 0; i < vif_nr_vifs; i++) {
		slot = &vif_slots[i];
		slot->settled = !slot->active;
		if (slot->active) {
			slot->alloc_ppm = slot->need_ppm;
			sum += slot->need_ppm;
		}
	}
	if (sum <= cap_ppm)
		return;

	do {
		changed = false;
		wsum = 0;
		for (i = 0; i < vif_nr_vifs; i++)
			if (!vif_slots[i].settled)
				wsum += vif_slots[i].weight;
		if (!wsum)
			return;
		for (i = 0; i < vif_nr_vifs; i++) {
			slot = &vif_slots[i];
			if (slot->settled ||
			    slot->need_ppm > div64_u64(left * slot->weight, wsum))
				continue;
			left -= slot->need_ppm;
			slot->settled = true;
			changed = true;
		}
	} while (changed);

	for (i = 0; i < vif_nr_vifs; i++) {
		slot = &vif_slots[i];
		if (!slot->settled)
			slot->alloc_ppm = div64_u64(left * slot->weight, wsum);
	}
}

static void vif_ctl_apply(struct vif_slot *slot, u64 cap_ppm)
{
	u64 period = slot->cg.period_us;
	u64 quota, cap_us = div64_u64(cap_ppm * period, VIF_PPM);
	u64 target = (u64)vif_slot_target_mbps(slot) * 1000;
	int ret;

	quota = div64_u64(slot->alloc_ppm * period, VIF_PPM);
	quota = clamp_t(u64, quota, vif_min_quota_us, cap_us);
	ret = vif_cg_set_quota(&slot->cg, quota);
	if (!ret)
		slot->controlled = true;
	else if (ret == -EAGAIN)
		slot->controlled = false;	/* cpu.max is the original now */

	if (slot->alloc_ppm < slot->need_ppm)
		slot->state = VIF_CPU_LIMITED;
	else if (slot->bw_smooth_kbps < target && quota >= cap_us)
		slot->state = VIF_UNREACHABLE;
	else if (slot->bw_smooth_kbps > target && quota <= vif_min_quota_us)
		slot->state = VIF_MET;
}

static void vif_ctl_tick(struct work_struct *work)
{
	u64 cap_ppm = num_online_cpus() * VIF_PPM;
	ktime_t now = ktime_get();
	struct vif_slot *slot;
	unsigned int i;

	mutex_lock(&vif_lock);
	for (i = 0; i < vif_nr_vifs; i++) {
		slot = &vif_slots[i];
		slot->active = false;
		if (!slot->pid)
			continue;
		if (vif_ctl_task_gone(slot)) {
			vif_slot_release(slot);
			continue;
		}
		if (vif_cg_sync(&slot->cg) > 0)
			slot->controlled = false;
		vif_ctl_sample(slot, now);
		vif_ctl_decide(slot, cap_ppm);
	}
	vif_ctl_share(cap_ppm);
	for (i = 0; i < vif_nr_vifs; i++)
		if (vif_slots[i].active)
			vif_ctl_apply(&vif_slots[i], cap_ppm);
	mutex_unlock(&vif_lock);

	queue_delayed_work(vif_ctl_wq, &vif_ctl_work,
			   msecs_to_jiffies(vif_period_ms));
}

int vif_ctl_start(void)
{
	vif_ctl_wq = alloc_ordered_workqueue("vif_ctl", 0);
	if (!vif_ctl_wq)
		return -ENOMEM;
	INIT_DELAYED_WORK(&vif_ctl_work, vif_ctl_tick);
	queue_delayed_work(vif_ctl_wq, &vif_ctl_work,
			   msecs_to_jiffies(vif_period_ms));
	return 0;
}

void vif_ctl_stop(void)
{
	if (!vif_ctl_wq)
		return;
	cancel_delayed_work_sync(&vif_ctl_work);
	destroy_workqueue(vif_ctl_wq);
	vif_ctl_wq = NULL;
}
