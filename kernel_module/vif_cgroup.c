// SPDX-License-Identifier: GPL-2.0
/*
 * vif: cgroup quota I/O through cgroupfs.
 *
 * Why files: the kernel's own quota setter (tg_set_cfs_bandwidth()) is
 * static and not exported, and a stock kernel exports no other way for a
 * module to change a cgroup's CPU bandwidth. Writing cpu.max through the VFS
 * (filp_open() and kernel_write(), both exported) is the interface the kernel
 * offers everybody; it goes through the cpu controller's own validation and
 * locking, so the module cannot leave the scheduler in a state user space
 * could not also have produced.
 *
 * Why a workqueue: the files are opened and written from kworkers only.
 * Kworkers run with init's filesystem root, mount namespace, cgroup
 * namespace and kernel credentials, so "<cgroup_root><path>/cpu.max" names
 * the same file whoever wrote to /proc/oslab (a containerised kubelet
 * included), and cgroup delegation checks do not apply. VFS I/O also sleeps,
 * which a timer could not. vif_io_call() runs a function there: directly when
 * the caller already is a kworker (the control loop), else on the vif_io
 * workqueue, waiting for it. See vif_slot.c for why waiting is safe.
 *
 * Outside changes win. cg->quota_us and cg->period_us are what cpu.max held
 * when vif last read or wrote it. Before every write, and once per control
 * period, cpu.max is read again: a different value was written by someone
 * else (the kubelet resizing a pod in place, an administrator). It becomes
 * the original that a release writes back, and that write is then skipped,
 * so vif never undoes a change it did not make. A change landing between
 * that read and vif's own write is still lost: cgroupfs offers no
 * compare-and-swap.
 *
 * Only cgroup v2 is supported: on v1 usage lives in another controller
 * (cpuacct) and claims fail with EOPNOTSUPP.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cgroup.h>
#include <linux/fs.h>
#include <linux/limits.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/workqueue.h>

#include "vif.h"

static struct workqueue_struct *vif_io_wq;

struct vif_io_req {
	struct work_struct work;
	int (*fn)(void *arg);
	void *arg;
	int ret;
};

int vif_io_init(void)
{
	vif_io_wq = alloc_workqueue("vif_io", WQ_UNBOUND, 0);
	return vif_io_wq ? 0 : -ENOMEM;
}

void vif_io_exit(void)
{
	if (vif_io_wq)
		destroy_workqueue(vif_io_wq);
	vif_io_wq = NULL;
}

static void vif_io_work(struct work_struct *work)
{
	struct vif_io_req *req = container_of(work, struct vif_io_req, work);

	req->ret = req->fn(req->arg);
}

static int vif_io_call(int (*fn)(void *arg), void *arg)
{
	struct vif_io_req req = { .fn = fn, .arg = arg };

	if (current->flags & PF_WQ_WORKER)
		return fn(arg);

	INIT_WORK_ONSTACK(&req.work, vif_io_work);
	queue_work(vif_io_wq, &req.work);
	flush_work(&req.work);
	destroy_work_on_stack(&req.work);
	return req.ret;
}

/*
 * Runs in the claimer's context (it needs the task): finds the cgroup whose
 * cpu.max applies to @task, the nearest one with the cpu controller enabled.
 */
int vif_cg_resolve(struct vif_cg *cg, struct task_struct *task)
{
	struct cgroup_subsys_state *css;
	char *buf;
	u64 id;
	int len;

	if (!cgroup_subsys_on_dfl(cpu_cgrp_subsys))
		return -EOPNOTSUPP;

	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;

	rcu_read_lock();
	css = task_css(task, cpu_cgrp_id);
	if (!cgroup_parent(css->cgroup))
		len = -EOPNOTSUPP;	/* the root cgroup has no cpu.max */
	else
		len = cgroup_path(css->cgroup, buf, PATH_MAX);
	id = cgroup_id(css->cgroup);
	rcu_read_unlock();

	if (len < 0 || len >= PATH_MAX) {
		kfree(buf);
		return len < 0 ? len : -ENAMETOOLONG;
	}
	cg->path = buf;
	cg->id = id;
	return 0;
}

static struct file *vif_cg_open(const struct vif_cg *cg, const char *name,
				int flags)
{
	struct file *file;
	char *path;

	path = kasprintf(GFP_KERNEL, "%s%s/%s", vif_cgroup_root, cg->path,
			 name);
	if (!path)
		return ERR_PTR(-ENOMEM);
	file = filp_open(path, flags, 0);
	if (IS_ERR(file))
		pr_warn("cannot open %s: %ld\n", path, PTR_ERR(file));
	kfree(path);
	return file;
}

static ssize_t vif_cg_read(struct file *file, char *buf, size_t size)
{
	loff_t pos = 0;
	ssize_t n;

	n = kernel_read(file, buf, size - 1, &pos);
	if (n < 0)
		return n;
	buf[n] = '\0';
	return n;
}

/* "max 100000" or "50000 100000" */
static int vif_cg_parse_max(const char *s, u64 *quota_us, u64 *period_us)
{
	char quota[24];

	if (sscanf(s, "%23s %llu", quota, period_us) != 2)
		return -EINVAL;
	if (!strcmp(quota, "max")) {
		*quota_us = VIF_QUOTA_MAX;
		return 0;
	}
	return kstrtou64(quota, 10, quota_us);
}

/* Reads cpu.max into @buf (without its newline) and parses it. */
static int vif_cg_read_max(struct vif_cg *cg, char *buf, size_t size,
			   u64 *quota_us, u64 *period_us)
{
	char *nl;
	ssize_t n;

	n = vif_cg_read(cg->max, buf, size);
	if (n < 0)
		return n;
	nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	if (vif_cg_parse_max(buf, quota_us, period_us) || !*period_us) {
		pr_warn("cannot parse cpu.max \"%s\" of %s\n", buf, cg->path);
		return -EINVAL;
	}
	return 0;
}

static int __vif_cg_attach(void *arg)
{
	struct vif_cg *cg = arg;
	int ret;

	cg->max = vif_cg_open(cg, "cpu.max", O_RDWR);
	if (IS_ERR(cg->max)) {
		ret = PTR_ERR(cg->max);
		goto err;
	}
	cg->stat = vif_cg_open(cg, "cpu.stat", O_RDONLY);
	if (IS_ERR(cg->stat)) {
		ret = PTR_ERR(cg->stat);
		goto err_max;
	}

	ret = vif_cg_read_max(cg, cg->orig, sizeof(cg->orig), &cg->quota_us,
			      &cg->period_us);
	if (ret)
		goto err_stat;
	cg->orig_quota_us = cg->quota_us;
	cg->outside_changes = 0;
	return 0;

err_stat:
	filp_close(cg->stat, NULL);
err_max:
	filp_close(cg->max, NULL);
err:
	cg->max = NULL;
	cg->stat = NULL;
	return ret;
}

/* Opens cpu.max and cpu.stat and records the quota found. */
int vif_cg_attach(struct vif_cg *cg)
{
	return vif_io_call(__vif_cg_attach, cg);
}

static int vif_cg_write_max(struct vif_cg *cg, const char *s)
{
	loff_t pos = 0;
	ssize_t n;

	n = kernel_write(cg->max, s, strlen(s), &pos);
	return n < 0 ? n : 0;
}

/*
 * Kworker only. Returns 1 when cpu.max no longer holds what vif last read or
 * wrote: the value found is adopted as the original (see the top of this
 * file). 0 when unchanged, or a negative errno.
 */
int vif_cg_sync(struct vif_cg *cg)
{
	char buf[sizeof(cg->orig)];
	u64 quota_us, period_us;
	int ret;

	ret = vif_cg_read_max(cg, buf, sizeof(buf), &quota_us, &period_us);
	if (ret)
		return ret;
	if (quota_us == cg->quota_us && period_us == cg->period_us)
		return 0;
	pr_info_ratelimited("cpu.max of %s changed to \"%s\" by someone else: adopted, a release keeps it\n",
			    cg->path, buf);
	strscpy(cg->orig, buf, sizeof(cg->orig));
	cg->orig_quota_us = quota_us;
	cg->quota_us = quota_us;
	cg->period_us = period_us;
	cg->outside_changes++;
	return 1;
}

/*
 * Kworker only: back to the original cpu.max, unless someone else has
 * changed it since vif's last write; then their value stays.
 */
int vif_cg_restore(struct vif_cg *cg)
{
	int ret;

	if (cg->quota_us == cg->orig_quota_us)
		return 0;
	ret = vif_cg_sync(cg);
	if (ret)
		return ret < 0 ? ret : 0;
	ret = vif_cg_write_max(cg, cg->orig);
	if (!ret)
		cg->quota_us = cg->orig_quota_us;
	return ret;
}

static int __vif_cg_detach(void *arg)
{
	struct vif_cg *cg = arg;
	int ret;

	ret = vif_cg_restore(cg);
	if (ret)
		pr_warn("cannot restore cpu.max \"%s\" of %s: %d\n", cg->orig,
			cg->path, ret);
	filp_close(cg->stat, NULL);
	filp_close(cg->max, NULL);
	return ret;
}

/* Writes the original cpu.max back and closes the files. */
void vif_cg_detach(struct vif_cg *cg)
{
	if (cg->max)
		vif_io_call(__vif_cg_detach, cg);
	kfree(cg->path);
	cg->path = NULL;
	cg->max = NULL;
	cg->stat = NULL;
}

/*
 * Control loop only (a kworker). -EAGAIN: someone else changed cpu.max since
 * vif's last write; their value was adopted and nothing was written.
 */
int vif_cg_set_quota(struct vif_cg *cg, u64 quota_us)
{
	char buf[48];
	int ret;

	if (quota_us == cg->quota_us)
		return 0;
	ret = vif_cg_sync(cg);
	if (ret)
		return ret < 0 ? ret : -EAGAIN;
	snprintf(buf, sizeof(buf), "%llu %llu", quota_us, cg->period_us);
	ret = vif_cg_write_max(cg, buf);
	if (ret) {
		pr_warn_ratelimited("cannot write cpu.max \"%s\" to %s: %d\n",
				    buf, cg->path, ret);
		return ret;
	}
	cg->quota_us = quota_us;
	return 0;
}

static int vif_cg_stat_field(const char *s, const char *key, u64 *val)
{
	size_t len = strlen(key);
	const char *p = s;
	char num[24];

	while (p && *p) {
		if (!strncmp(p, key, len) && p[len] == ' ') {
			if (sscanf(p + len + 1, "%23s", num) != 1)
				return -EINVAL;
			return kstrtou64(num, 10, val);
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -ENOENT;
}

/* Control loop only (a kworker): CPU used and throttled periods so far. */
int vif_cg_sample(struct vif_cg *cg, u64 *usage_us, u64 *nr_throttled)
{
	char *buf;
	ssize_t n;
	int ret;

	buf = kmalloc(1024, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	n = vif_cg_read(cg->stat, buf, 1024);
	if (n < 0) {
		ret = n;
		goto out;
	}
	ret = vif_cg_stat_field(buf, "usage_usec", usage_us);
	if (!ret)
		ret = vif_cg_stat_field(buf, "nr_throttled", nr_throttled);
out:
	kfree(buf);
	return ret;
}
