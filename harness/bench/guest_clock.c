/* Times N clock_gettime(CLOCK_MONOTONIC) calls and a fixed integer loop; one line of JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	volatile unsigned long sum = 0;
	struct timespec t;
	double a, b, c;

	a = now();
	for (long i = 0; i < n; i++)
		clock_gettime(CLOCK_MONOTONIC, &t);
	b = now();
	for (long i = 0; i < 50000000; i++)
		sum += i;
	c = now();
	printf("{\"clock_ns_per_call\": %.1f, \"loop_s\": %.4f}\n", (b - a) / n * 1e9, c - b);
	return 0;
}
