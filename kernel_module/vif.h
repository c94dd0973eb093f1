/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vif: the DepCon node agent.
 *
 * For every claimed slot the module measures the network bandwidth of a
 * container (bytes on the non-loopback devices of its network namespace)
 * and raises or lowers the CPU quota of its cgroup (cgroup v2 cpu.max) so
 * that the container meets its bandwidth goal.
 *
 * Files, by concern:
 *   vif_main.c    module parameters, init and exit
 *   vif_slot.c    slot table, claim and release; owns the state and the lock
 *   vif_proc.c    /proc/oslab interface (the contract: docs/vif-procfs.md)
 *   vif_ctl.c     the periodic control loop and CPU sharing by weight
 *   vif_cgroup.c  cgroup quota I/O through cgroupfs
 *   vif_net.c     byte counters of a network namespace
 */
#ifndef _VIF_H
#define _VIF_H

#include <linux/ktime.h>
#include <linux/mutex.h>
#include <linux/types.h>

struct file;
struct net;
struct pid;
struct task_struct;

#define VIF_VERSION		"0.1.0"

#define VIF_NR_VIFS_MAX		4096
#define VIF_PERIOD_MS_MIN	10
#define VIF_PERIOD_MS_MAX	10000
#define VIF_WEIGHT_MAX		10000
#define VIF_GOAL_MAX		1000000		/* Mbps: 1 Tbps */
#define VIF_PPM			1000000ULL	/* one CPU, in parts per million */
#define VIF_QUOTA_MAX		U64_MAX		/* "max" in cpu.max */

/* Module parameters (vif_main.c). */
extern unsigned int vif_nr_vifs;
extern unsigned int vif_period_ms;
extern unsigned int vif_link_mbps;
extern unsigned int vif_min_quota_us;
extern unsigned int vif_tol_pct;
extern char *vif_cgroup_root;

enum vif_state {
	VIF_IDLE,
	VIF_CONVERGING,
	VIF_MET,
	VIF_CPU_LIMITED,
	VIF_UNREACHABLE,
};

/*
 * The cgroup a slot controls, and the cpu.max to give back: the one found at
 * claim time, or the last one someone else wrote since (vif_cgroup.c).
 */
struct vif_cg {
	char *path;		/* inside the v2 hierarchy, e.g. "/pod/ctr" */
	u64 id;			/* cgroup_id(): one slot per cgroup */
	struct file *max;	/* <root><path>/cpu.max, read-write */
	struct file *stat;	/* <root><path>/cpu.stat, read-only */
	char orig[64];		/* cpu.max to write back on release */
	u64 orig_quota_us;	/* its quota, VIF_QUOTA_MAX for "max" */
	u64 period_us;		/* CFS period, as vif last read or wrote it */
	u64 quota_us;		/* quota, as vif last read or wrote it */
	u64 outside_changes;	/* cpu.max changes by others adopted since claim */
};

/* One /proc/oslab/vifN directory. All fields are guarded by vif_lock. */
struct vif_slot {
	unsigned int id;		/* N in vifN, from 1 */
	struct proc_dir_entry *dir;

	/* Set by user space. */
	pid_t nr;			/* PID as written; 0 while free */
	u32 goal_mbps;
	u32 weight;
	u32 min_credit;

	/* Held while claimed. */
	struct pid *pid;
	struct net *net;
	struct vif_cg cg;

	/* Control loop. */
	unsigned int samples;		/* 0: none, 1: baseline, 2+: rates */
	bool controlled;		/* the quota was changed by us */
	bool active;			/* takes part in this tick's sharing */
	bool settled;			/* sharing scratch: need granted */
	ktime_t last_time;
	u64 last_bytes;
	u64 last_usage_us;
	u64 last_throttled;
	u64 bw_kbps;			/* last period */
	u64 bw_smooth_kbps;		/* EWMA, alpha 1/4 */
	u64 cpu_ppm;			/* CPU used last period */
	u64 cpu_smooth_ppm;		/* EWMA, alpha 1/4 */
	u64 need_ppm;			/* CPU wanted for the target */
	u64 alloc_ppm;			/* CPU granted after sharing */
	u64 throttled;			/* throttled CFS periods since claim */
	enum vif_state state;
};

/* vif_slot.c */
extern struct mutex vif_lock;
extern struct vif_slot *vif_slots;
int vif_slots_init(void);
void vif_slots_exit(void);
int vif_slot_claim(struct vif_slot *slot, pid_t nr);
void vif_slot_release(struct vif_slot *slot);
u32 vif_slot_target_mbps(const struct vif_slot *slot);
const char *vif_state_name(enum vif_state state);

/* vif_cgroup.c */
int vif_io_init(void);
void vif_io_exit(void);
int vif_cg_resolve(struct vif_cg *cg, struct task_struct *task);
int vif_cg_attach(struct vif_cg *cg);
void vif_cg_detach(struct vif_cg *cg);
int vif_cg_sync(struct vif_cg *cg);
int vif_cg_restore(struct vif_cg *cg);
int vif_cg_set_quota(struct vif_cg *cg, u64 quota_us);
int vif_cg_sample(struct vif_cg *cg, u64 *usage_us, u64 *nr_throttled);

/* vif_net.c */
u64 vif_net_bytes(struct net *net);

/* vif_ctl.c */
int vif_ctl_start(void);
void vif_ctl_stop(void);

/* vif_proc.c */
int vif_proc_init(void);
void vif_proc_exit(void);

#endif /* _VIF_H */
