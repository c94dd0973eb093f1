// SPDX-License-Identifier: GPL-2.0
/*
 * vif: the /proc/oslab interface. The contract is docs/vif-procfs.md.
 *
 * Every handler takes vif_lock (see vif_slot.c), so a read shows one
 * consistent slot and concurrent writers serialise. Input is parsed with
 * kstrto*_from_user(); anything that is not a plain decimal number in range
 * (optionally followed by one newline) is EINVAL and changes nothing. The
 * kstrto*_from_user() helpers silently truncate long input, so input longer
 * than VIF_INPUT_MAX bytes is refused before it gets there.
 *
 * Permissions. Procfs is not namespaced: /proc/oslab is visible in every
 * container. So every write needs CAP_SYS_ADMIN in the initial user
 * namespace, else EPERM, and so does seeing the PIDs and cgroup paths of
 * other containers; other readers get "-" in their place. Both check the
 * opener's credentials (file_ns_capable()), as /proc/sys does, so a
 * privileged program cannot be tricked into writing through a descriptor
 * an unprivileged one opened.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>
#include <linux/user_namespace.h>

#include "vif.h"

#define VIF_INPUT_MAX	32

static struct proc_dir_entry *vif_proc_root;

/* The host's root: whoever opened @file has CAP_SYS_ADMIN in init_user_ns. */
static bool vif_host_admin(const struct file *file)
{
	return file_ns_capable(file, &init_user_ns, CAP_SYS_ADMIN);
}

/* A holder's PID, or "-" to a reader who may not see it. */
static void vif_seq_pid(struct seq_file *m, const struct vif_slot *slot)
{
	if (!slot->nr || vif_host_admin(m->file))
		seq_printf(m, "%d", slot->nr);
	else
		seq_putc(m, '-');
}

static const char *vif_shown_path(struct seq_file *m,
				  const struct vif_slot *slot)
{
	if (!slot->cg.path || !vif_host_admin(m->file))
		return "-";
	return slot->cg.path;
}

static int vif_parse_uint(const char __user *ubuf, size_t count,
			  unsigned int min, unsigned int max,
			  unsigned int *val)
{
	unsigned int v;

	if (!count || count > VIF_INPUT_MAX)
		return -EINVAL;
	if (kstrtouint_from_user(ubuf, count, 10, &v))
		return -EINVAL;
	if (v < min || v > max)
		return -EINVAL;
	*val = v;
	return 0;
}

/* Prints @prefix and a kbps value as Mbps with one decimal. */
static void vif_seq_mbps(struct seq_file *m, const char *prefix, u64 kbps)
{
	u64 tenths = div_u64(kbps + 50, 100);

	seq_printf(m, "%s%llu.%llu", prefix, div_u64(tenths, 10),
		   tenths % 10);
}

static void vif_seq_quota(struct seq_file *m, const struct vif_slot *slot)
{
	if (slot->pid && slot->cg.quota_us == VIF_QUOTA_MAX)
		seq_puts(m, "max");
	else
		seq_printf(m, "%llu", slot->pid ? slot->cg.quota_us : 0);
}

/* pid */

static int vif_pid_show(struct seq_file *m, void *v)
{
	struct vif_slot *slot = m->private;

	mutex_lock(&vif_lock);
	vif_seq_pid(m, slot);
	seq_putc(m, '\n');
	mutex_unlock(&vif_lock);
	return 0;
}

static ssize_t vif_pid_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	struct vif_slot *slot = pde_data(file_inode(file));
	int nr, ret;

	if (!vif_host_admin(file))
		return -EPERM;
	if (!count || count > VIF_INPUT_MAX)
		return -EINVAL;
	if (kstrtoint_from_user(ubuf, count, 10, &nr) || nr < 0)
		return -EINVAL;

	ret = 0;
	mutex_lock(&vif_lock);
	if (nr)
		ret = vif_slot_claim(slot, nr);
	else
		vif_slot_release(slot);
	mutex_unlock(&vif_lock);
	return ret ? ret : count;
}

/* goal, weight, min_credit */

static int vif_goal_show(struct seq_file *m, void *v)
{
	struct vif_slot *slot = m->private;

	mutex_lock(&vif_lock);
	seq_printf(m, "%u\n", slot->goal_mbps);
	mutex_unlock(&vif_lock);
	return 0;
}

static ssize_t vif_goal_write(struct file *file, const char __user *ubuf,
			      size_t count, loff_t *ppos)
{
	struct vif_slot *slot = pde_data(file_inode(file));
	unsigned int val;
	int ret;

	if (!vif_host_admin(file))
		return -EPERM;
	ret = vif_parse_uint(ubuf, count, 0, VIF_GOAL_MAX, &val);
	if (ret)
		return ret;
	mutex_lock(&vif_lock);
	slot->goal_mbps = val;
	mutex_unlock(&vif_lock);
	return count;
}

static int vif_weight_show(struct seq_file *m, void *v)
{
	struct vif_slot *slot = m->private;

	mutex_lock(&vif_lock);
	seq_printf(m, "%u\n", slot->weight);
	mutex_unlock(&vif_lock);
	return 0;
}

static ssize_t vif_weight_write(struct file *file, const char __user *ubuf,
				size_t count, loff_t *ppos)
{
	struct vif_slot *slot = pde_data(file_inode(file));
	unsigned int val;
	int ret;

	if (!vif_host_admin(file))
		return -EPERM;
	ret = vif_parse_uint(ubuf, count, 1, VIF_WEIGHT_MAX, &val);
	if (ret)
		return ret;
	mutex_lock(&vif_lock);
	slot->weight = val;
	mutex_unlock(&vif_lock);
	return count;
}

static int vif_min_credit_show(struct seq_file *m, void *v)
{
	struct vif_slot *slot = m->private;

	mutex_lock(&vif_lock);
	seq_printf(m, "%u\n", slot->min_credit);
	mutex_unlock(&vif_lock);
	return 0;
}

static ssize_t vif_min_credit_write(struct file *file,
				    const char __user *ubuf, size_t count,
				    loff_t *ppos)
{
	struct vif_slot *slot = pde_data(file_inode(file));
	unsigned int val;
	int ret;

	if (!vif_host_admin(file))
		return -EPERM;
	ret = vif_parse_uint(ubuf, count, 0, 100, &val);
	if (ret)
		return ret;
	mutex_lock(&vif_lock);
	slot->min_credit = val;
	mutex_unlock(&vif_lock);
	return count;
}

/* stat and status */

static int vif_stat_show(struct seq_file *m, void *v)
{
	struct vif_slot *slot = m->private;

	mutex_lock(&vif_lock);
	seq_puts(m, "pid=");
	vif_seq_pid(m, slot);
	seq_printf(m, " goal_mbps=%u target_mbps=%u ", slot->goal_mbps,
		   vif_slot_target_mbps(slot));
	vif_seq_mbps(m, "bw_mbps=", slot->bw_kbps);
	vif_seq_mbps(m, " bw_smooth_mbps=", slot->bw_smooth_kbps);
	seq_printf(m, " cpu_pct=%llu quota_us=", div_u64(slot->cpu_ppm,
							 10000));
	vif_seq_quota(m, slot);
	seq_printf(m, " period_us=%llu throttled=%llu weight=%u state=%s outside_changes=%llu cgroup=%s\n",
		   slot->cg.period_us, slot->throttled, slot->weight,
		   vif_state_name(slot->state), slot->cg.outside_changes,
		   vif_shown_path(m, slot));
	mutex_unlock(&vif_lock);
	return 0;
}

static int vif_status_show(struct seq_file *m, void *v)
{
	struct vif_slot *slot;
	unsigned int i;

	seq_puts(m, "slot pid goal_mbps weight min_credit target_mbps bw_mbps bw_smooth_mbps cpu_pct quota_us period_us throttled state cgroup\n");
	mutex_lock(&vif_lock);
	for (i = 0; i < vif_nr_vifs; i++) {
		slot = &vif_slots[i];
		if (!slot->pid)
			continue;
		seq_printf(m, "vif%u ", slot->id);
		vif_seq_pid(m, slot);
		seq_printf(m, " %u %u %u %u", slot->goal_mbps, slot->weight,
			   slot->min_credit, vif_slot_target_mbps(slot));
		vif_seq_mbps(m, " ", slot->bw_kbps);
		vif_seq_mbps(m, " ", slot->bw_smooth_kbps);
		seq_printf(m, " %llu ", div_u64(slot->cpu_ppm, 10000));
		vif_seq_quota(m, slot);
		seq_printf(m, " %llu %llu %s %s\n", slot->cg.period_us,
			   slot->throttled, vif_state_name(slot->state),
			   vif_shown_path(m, slot));
	}
	mutex_unlock(&vif_lock);
	return 0;
}

#define VIF_PROC_OPS(name, write_fn)					\
static int vif_##name##_open(struct inode *inode, struct file *file)	\
{									\
	return single_open(file, vif_##name##_show, pde_data(inode));	\
}									\
static const struct proc_ops vif_##name##_ops = {			\
	.proc_open	= vif_##name##_open,				\
	.proc_read	= seq_read,					\
	.proc_lseek	= seq_lseek,					\
	.proc_release	= single_release,				\
	.proc_write	= write_fn,					\
}

VIF_PROC_OPS(pid, vif_pid_write);
VIF_PROC_OPS(goal, vif_goal_write);
VIF_PROC_OPS(weight, vif_weight_write);
VIF_PROC_OPS(min_credit, vif_min_credit_write);
VIF_PROC_OPS(stat, NULL);
VIF_PROC_OPS(status, NULL);

static const struct {
	const char *name;
	umode_t mode;
	const struct proc_ops *ops;
} vif_files[] = {
	{ "pid",	0644, &vif_pid_ops },
	{ "goal",	0644, &vif_goal_ops },
	{ "weight",	0644, &vif_weight_ops },
	{ "min_credit",	0644, &vif_min_credit_ops },
	{ "stat",	0444, &vif_stat_ops },
};

static int vif_proc_slot(struct vif_slot *slot)
{
	char name[16];
	unsigned int i;

	snprintf(name, sizeof(name), "vif%u", slot->id);
	slot->dir = proc_mkdir(name, vif_proc_root);
	if (!slot->dir)
		return -ENOMEM;
	for (i = 0; i < ARRAY_SIZE(vif_files); i++)
		if (!proc_create_data(vif_files[i].name, vif_files[i].mode,
				      slot->dir, vif_files[i].ops, slot))
			return -ENOMEM;
	return 0;
}

int vif_proc_init(void)
{
	unsigned int i;
	int ret;

	vif_proc_root = proc_mkdir("oslab", NULL);
	if (!vif_proc_root) {
		pr_err("cannot create /proc/oslab (does it exist already?)\n");
		return -EEXIST;
	}
	if (!proc_create("status", 0444, vif_proc_root, &vif_status_ops)) {
		ret = -ENOMEM;
		goto err;
	}
	for (i = 0; i < vif_nr_vifs; i++) {
		ret = vif_proc_slot(&vif_slots[i]);
		if (ret)
			goto err;
	}
	return 0;

err:
	proc_remove(vif_proc_root);
	vif_proc_root = NULL;
	return ret;
}

/* Removes the tree; returns once no handler runs any more. */
void vif_proc_exit(void)
{
	proc_remove(vif_proc_root);
	vif_proc_root = NULL;
}
