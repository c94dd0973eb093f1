// SPDX-License-Identifier: GPL-2.0
/*
 * wr FILE [DATA]: one write(2) of DATA (may be empty) to FILE, then prints
 * "ok" or the errno name and exits 0 or 1. The shell cannot issue an empty
 * write or guarantee a single write; the vif bad-input tests need both.
 * Built statically by the VM harness and put into the initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *name(int e)
{
	switch (e) {
	case EINVAL: return "EINVAL";
	case ESRCH: return "ESRCH";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENOENT: return "ENOENT";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	default: return "EOTHER";
	}
}

int main(int argc, char **argv)
{
	const char *data = argc > 2 ? argv[2] : "";
	ssize_t n;
	int fd;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: wr FILE [DATA]\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		printf("open:%s\n", name(errno));
		return 1;
	}
	n = write(fd, data, strlen(data));
	if (n < 0) {
		printf("%s\n", name(errno));
		return 1;
	}
	printf("ok\n");
	return 0;
}
