// SPDX-License-Identifier: GPL-2.0
/*
 * vif: module parameters, init and exit.
 *
 * Algorithm (see vif_ctl.c): every period_ms the agent measures each claimed
 * container's bandwidth B (tx + rx bytes on the non-loopback devices of its
 * network namespace) and the CPU it used, both smoothed. Outside the
 * hysteresis band [T, T * (1 + tol_pct / 100)] around its target T the quota
 * is multiplied by exp((T' - B) / 2T'), T' = T * (1 + tol_pct / 200), so the
 * mean bandwidth settles on T'; inside the band it holds. Quotas stay within
 * [min_quota_us, online CPUs x CFS period]; when the CPU wanted by all slots
 * exceeds the online CPUs it is shared by weight (weighted max-min fairness).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "vif.h"

unsigned int vif_nr_vifs = 64;
module_param_named(nr_vifs, vif_nr_vifs, uint, 0444);
MODULE_PARM_DESC(nr_vifs, "Number of /proc/oslab/vifN slots, 1-4096 (default 64)");

/*
 * 200 ms: two CFS periods (100 ms), so a sample never aliases with the
 * throttling cycle of one CFS period, and short enough to converge within
 * about a second (the benchmark's convergence target is 2 s).
 */
unsigned int vif_period_ms = 200;
module_param_named(period_ms, vif_period_ms, uint, 0444);
MODULE_PARM_DESC(period_ms, "Control period in ms, 10-10000 (default 200)");

unsigned int vif_link_mbps = 10000;
module_param_named(link_mbps, vif_link_mbps, uint, 0444);
MODULE_PARM_DESC(link_mbps, "Link capacity in Mbps that min_credit is a percentage of (default 10000)");

unsigned int vif_min_quota_us = 1000;
module_param_named(min_quota_us, vif_min_quota_us, uint, 0444);
MODULE_PARM_DESC(min_quota_us, "Lowest CPU quota per CFS period in us, >= 1000 (default 1000)");

unsigned int vif_tol_pct = 2;
module_param_named(tol_pct, vif_tol_pct, uint, 0444);
MODULE_PARM_DESC(tol_pct, "Hysteresis band above the target in percent, 1-50; the quota holds while the bandwidth is in [target, target * (1 + tol_pct / 100)] (default 2)");

char *vif_cgroup_root = "/sys/fs/cgroup";
module_param_named(cgroup_root, vif_cgroup_root, charp, 0444);
MODULE_PARM_DESC(cgroup_root, "Mount point of the cgroup v2 hierarchy (default /sys/fs/cgroup)");

static int __init vif_check_params(void)
{
	if (vif_nr_vifs < 1 || vif_nr_vifs > VIF_NR_VIFS_MAX) {
		pr_err("nr_vifs=%u out of range 1-%u\n", vif_nr_vifs,
		       VIF_NR_VIFS_MAX);
		return -EINVAL;
	}
	if (vif_period_ms < VIF_PERIOD_MS_MIN ||
	    vif_period_ms > VIF_PERIOD_MS_MAX) {
		pr_err("period_ms=%u out of range %u-%u\n", vif_period_ms,
		       VIF_PERIOD_MS_MIN, VIF_PERIOD_MS_MAX);
		return -EINVAL;
	}
	if (vif_link_mbps < 1 || vif_link_mbps > VIF_GOAL_MAX) {
		pr_err("link_mbps=%u out of range 1-%u\n", vif_link_mbps,
		       VIF_GOAL_MAX);
		return -EINVAL;
	}
	if (vif_min_quota_us < 1000 || vif_min_quota_us > 1000000) {
		pr_err("min_quota_us=%u out of range 1000-1000000\n",
		       vif_min_quota_us);
		return -EINVAL;
	}
	if (vif_tol_pct < 1 || vif_tol_pct > 50) {
		pr_err("tol_pct=%u out of range 1-50\n", vif_tol_pct);
		return -EINVAL;
	}
	if (!vif_cgroup_root || vif_cgroup_root[0] != '/') {
		pr_err("cgroup_root must be an absolute path\n");
		return -EINVAL;
	}
	return 0;
}

static int __init vif_init(void)
{
	int ret;

	ret = vif_check_params();
	if (ret)
		return ret;

	ret = vif_io_init();
	if (ret)
		return ret;

	ret = vif_slots_init();
	if (ret)
		goto err_io;

	ret = vif_proc_init();
	if (ret)
		goto err_slots;

	ret = vif_ctl_start();
	if (ret)
		goto err_proc;

	pr_info("loaded: %u slots, period %u ms\n", vif_nr_vifs, vif_period_ms);
	return 0;

err_proc:
	vif_proc_exit();
err_slots:
	vif_slots_exit();
err_io:
	vif_io_exit();
	return ret;
}

static void __exit vif_exit(void)
{
	/* No new procfs callers, and waits for the running ones. */
	vif_proc_exit();
	vif_ctl_stop();
	/* Restores every claimed cgroup's quota. */
	vif_slots_exit();
	vif_io_exit();
	pr_info("unloaded\n");
}

module_init(vif_init);
module_exit(vif_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("DepCon");
MODULE_DESCRIPTION("DepCon node agent: CPU quota for network SLOs of containers");
MODULE_VERSION(VIF_VERSION);
MODULE_INFO(algorithm,
	    "every period_ms: B = netns tx+rx, EWMA 1/4; quota x exp((T'-B)/2T'), T' = target*(1+tol_pct/200), x0.625-x1.625 per period; holds while B in [target, target*(1+tol_pct/100)]; an unlimited cgroup starts half-way to CPU used x T'/B; clamped to [min_quota_us, online CPUs x CFS period]; weighted max-min share when CPUs run short");
