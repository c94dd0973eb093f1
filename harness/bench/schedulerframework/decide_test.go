package schedulerframework

import (
	"context"
	"errors"
	"flag"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"
	fwk "k8s.io/kube-scheduler/framework"
)

const (
	depconProfile  = "depcon-scheduler"
	defaultProfile = "default-scheduler"
)

// The rendered mode (a) configuration; tests/unit/test_bench_scheduler.py
// holds the checked-in copy equal to the template's render.
var (
	configPath  = flag.String("depcon.config", "testdata/kube-scheduler-config.yaml", "KubeSchedulerConfiguration with both profiles")
	clusterPath = flag.String("depcon.cluster", "", "cluster JSON for BenchmarkDecision (harness/bench/scheduler.py writes it)")
)

func decider(tb testing.TB, profile string, c *Cluster) *Decider {
	tb.Helper()
	profiles, global, err := LoadProfiles(*configPath)
	if err != nil {
		tb.Fatal(err)
	}
	p, ok := profiles[profile]
	if !ok {
		tb.Fatalf("%s has no profile %q", *configPath, profile)
	}
	_, ctx := ktesting.NewTestContext(tb)
	nodes, pods := c.Objects()
	d, err := NewDecider(ctx, p, global, nodes, pods)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestDecide(t *testing.T) {
	// "slo-poor" has the most free CPU but too little SLO capacity left.
	cluster := &Cluster{
		SLOResource: "example.com/SLO",
		Nodes: []Node{
			{Name: "slo-poor", CPUMilli: 32000, MemoryMi: 131072, Pods: 110, SLO: 20, LoadCPUMilli: 0},
			{Name: "busy", CPUMilli: 32000, MemoryMi: 131072, Pods: 110, SLO: 1000, LoadCPUMilli: 24000},
			{Name: "free", CPUMilli: 32000, MemoryMi: 131072, Pods: 110, SLO: 1000, LoadCPUMilli: 4000},
		},
	}
	tests := []struct {
		name     string
		profile  string
		pod      PodRequest
		want     []string // any of these
		feasible int
		err      error
	}{
		{"depcon: SLO filter, then most free CPU", depconProfile, PodRequest{CPUMilli: 500, MemoryMi: 512, SLO: 50}, []string{"free"}, 2, nil},
		{"depcon: no SLO request, most free CPU", depconProfile, PodRequest{CPUMilli: 500, MemoryMi: 512}, []string{"slo-poor"}, 3, nil},
		{"depcon: SLO fits nowhere", depconProfile, PodRequest{CPUMilli: 500, SLO: 2000}, nil, 0, ErrUnschedulable},
		{"default: SLO filter", defaultProfile, PodRequest{CPUMilli: 500, MemoryMi: 512, SLO: 50}, []string{"busy", "free"}, 2, nil},
		{"default: CPU fits nowhere", defaultProfile, PodRequest{CPUMilli: 40000}, nil, 0, ErrUnschedulable},
	}
	// RequestedToCapacityRatio leaves a resource that scores 0 out of the
	// weighted mean; the shape's floor of 1 keeps a node the pod fills to
	// exactly 100% CPU from being scored on its free memory alone.
	filled := &Cluster{
		SLOResource: "example.com/SLO",
		Nodes: []Node{
			{Name: "filled", CPUMilli: 32000, MemoryMi: 131072, Pods: 110, SLO: 1000, LoadCPUMilli: 31500},
			{Name: "half", CPUMilli: 32000, MemoryMi: 131072, Pods: 110, SLO: 1000, LoadCPUMilli: 16000, LoadMemoryMi: 65536},
		},
	}
	t.Run("depcon: a pod that fills a node's CPU", func(t *testing.T) {
		_, ctx := ktesting.NewTestContext(t)
		pod := filled.NewPod("p", PodRequest{CPUMilli: 500, MemoryMi: 512, SLO: 50})
		got, err := decider(t, depconProfile, filled).Decide(ctx, pod)
		if err != nil || got.Node != "half" {
			t.Errorf("placed on %q (%v), want %q", got.Node, err, "half")
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decider(t, tt.profile, cluster)
			_, ctx := ktesting.NewTestContext(t)
			got, err := d.Decide(ctx, cluster.NewPod("p", tt.pod))
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decide: error %v, want %v", err, tt.err)
			}
			if got.Feasible != tt.feasible || got.Evaluated != len(cluster.Nodes) {
				t.Errorf("feasible %d of %d evaluated, want %d of %d", got.Feasible, got.Evaluated, tt.feasible, len(cluster.Nodes))
			}
			if tt.err == nil {
				ok := false
				for _, w := range tt.want {
					ok = ok || got.Node == w
				}
				if !ok {
					t.Errorf("placed on %q, want one of %v", got.Node, tt.want)
				}
			}
		})
	}
}

func TestFeasibleToFind(t *testing.T) {
	pct := func(p int32) *int32 { return &p }
	tests := []struct {
		nodes      int
		percentage *int32
		want       int
	}{
		{50, nil, 50},        // under 100 nodes: all of them
		{300, nil, 144},      // adaptive: 50 - 300/125 = 48%
		{500, pct(0), 230},   // 0 is adaptive too: 46%
		{300, pct(100), 300}, // DepCon: every node
		{5000, nil, 500},     // adaptive floor 10%... 50 - 40 = 10%
		{300, pct(10), 100},  // never under 100 nodes
	}
	for _, tt := range tests {
		d := &Decider{nodes: make([]fwk.NodeInfo, tt.nodes), percentage: tt.percentage}
		if got := d.feasibleToFind(); got != tt.want {
			t.Errorf("%d nodes, percentage %v: %d, want %d", tt.nodes, tt.percentage, got, tt.want)
		}
	}
}

// BenchmarkDecision times Decide for the cluster's pod, one sub-benchmark per
// profile; harness/bench/scheduler.py runs them one at a time, alternately.
func BenchmarkDecision(b *testing.B) {
	if *clusterPath == "" {
		b.Skip("needs -depcon.cluster (make bench-scheduler writes one)")
	}
	cluster, err := LoadCluster(*clusterPath)
	if err != nil {
		b.Fatal(err)
	}
	for _, profile := range []string{depconProfile, defaultProfile} {
		b.Run(profile, func(b *testing.B) {
			d := decider(b, profile, cluster)
			pod := cluster.NewPod("bench", cluster.Pod)
			// klog's global logger at kube-scheduler's default verbosity (0),
			// not the test logger, which would format every V(4) line.
			ctx := context.Background()
			var feasible, evaluated int
			b.ReportAllocs()
			// CPU time of the whole process (Filter's goroutines and GC
			// included): on a shared machine it is inflated far less than
			// wall time.
			start := cpuTime(b)
			for b.Loop() {
				got, err := d.Decide(ctx, pod)
				if err != nil {
					b.Fatal(err)
				}
				feasible += got.Feasible
				evaluated += got.Evaluated
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(feasible)/float64(b.N), "scored/op")
			b.ReportMetric(float64(evaluated)/float64(b.N), "filtered/op")
		})
	}
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
