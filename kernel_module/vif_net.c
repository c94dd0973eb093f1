// SPDX-License-Identifier: GPL-2.0
/*
 * vif: byte counters of a network namespace.
 *
 * The research version hooked the bridge in a patched kernel. A stock kernel
 * already counts every device's bytes; summing them over the namespace's
 * devices needs only exported interfaces and works with any CNI plugin.
 */
#include <linux/netdevice.h>
#include <linux/rcupdate.h>
#include <net/net_namespace.h>

#include "vif.h"

/*
 * Bytes sent plus received on the non-loopback devices of @net since they
 * were created. The sum drops when a device goes away; the caller treats a
 * drop as a new baseline.
 */
u64 vif_net_bytes(struct net *net)
{
	struct rtnl_link_stats64 stats;
	struct net_device *dev;
	u64 sum = 0;

	rcu_read_lock();
	for_each_netdev_rcu(net, dev) {
		if (dev->flags & IFF_LOOPBACK)
			continue;
		dev_get_stats(dev, &stats);
		sum += stats.rx_bytes + stats.tx_bytes;
	}
	rcu_read_unlock();
	return sum;
}
