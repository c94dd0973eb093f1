// Package schedulerframework times one scheduling decision (PreFilter,
// Filter, PreScore, Score, select) of a kube-scheduler profile in-process,
// on the pinned k8s.io/kubernetes scheduler framework and a snapshot of API
// objects: no API server, no binding, no queue. harness/bench/scheduler.py
// drives BenchmarkDecision; docs/scheduler.md reports it.
package schedulerframework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	resourceslicetracker "k8s.io/dynamic-resource-allocation/resourceslice/tracker"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"
	schedulerapi "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkplugins "k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/nodevolumelimits"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/kubernetes/pkg/scheduler/metrics"
	"k8s.io/kubernetes/pkg/scheduler/util/assumecache"
)

// The adaptive search of kube-scheduler's numFeasibleNodesToFind
// (pkg/scheduler/schedule_one.go): unexported there, so restated here.
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// Node is one Node object of the snapshot, with one bound pod requesting
// LoadCPUMilli and LoadMemoryMi, so free resources differ from node to node.
type Node struct {
	Name         string `json:"name"`
	CPUMilli     int64  `json:"cpuMilli"`
	MemoryMi     int64  `json:"memoryMi"`
	Pods         int64  `json:"pods"`
	SLO          int64  `json:"slo"`
	LoadCPUMilli int64  `json:"loadCpuMilli"`
	LoadMemoryMi int64  `json:"loadMemoryMi"`
}

// PodRequest is the requests of the pod being placed.
type PodRequest struct {
	CPUMilli int64 `json:"cpuMilli"`
	MemoryMi int64 `json:"memoryMi"`
	SLO      int64 `json:"slo"`
}

// Cluster is what harness/bench/scheduler.py writes: the nodes and the pod.
type Cluster struct {
	SLOResource v1.ResourceName `json:"sloResource"`
	Nodes       []Node          `json:"nodes"`
	Pod         PodRequest      `json:"pod"`
}

// LoadCluster reads a Cluster from a JSON file.
func LoadCluster(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.SLOResource == "" || len(c.Nodes) == 0 {
		return nil, fmt.Errorf("%s: needs sloResource and at least one node", path)
	}
	return &c, nil
}

// LoadProfiles decodes a KubeSchedulerConfiguration file as kube-scheduler
// does (conversion to the internal version, defaults applied) and returns its
// profiles by schedulerName and the file's global percentageOfNodesToScore.
func LoadProfiles(path string) (map[string]*schedulerapi.KubeSchedulerProfile, *int32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	obj, _, err := scheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, ok := obj.(*schedulerapi.KubeSchedulerConfiguration)
	if !ok {
		return nil, nil, fmt.Errorf("%s: decoded %T, want a KubeSchedulerConfiguration", path, obj)
	}
	profiles := make(map[string]*schedulerapi.KubeSchedulerProfile, len(cfg.Profiles))
	for i := range cfg.Profiles {
		profiles[cfg.Profiles[i].SchedulerName] = &cfg.Profiles[i]
	}
	return profiles, cfg.PercentageOfNodesToScore, nil
}

// Objects builds the Node objects and their bound load pods.
func (c *Cluster) Objects() ([]*v1.Node, []*v1.Pod) {
	nodes := make([]*v1.Node, 0, len(c.Nodes))
	pods := make([]*v1.Pod, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		capacity := v1.ResourceList{
			v1.ResourceCPU:    *resource.NewMilliQuantity(n.CPUMilli, resource.DecimalSI),
			v1.ResourceMemory: *resource.NewQuantity(n.MemoryMi<<20, resource.BinarySI),
			v1.ResourcePods:   *resource.NewQuantity(n.Pods, resource.DecimalSI),
			c.SLOResource:     *resource.NewQuantity(n.SLO, resource.DecimalSI),
		}
		nodes = append(nodes, &v1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:   n.Name,
				Labels: map[string]string{v1.LabelHostname: n.Name},
			},
			Status: v1.NodeStatus{
				Capacity:    capacity,
				Allocatable: capacity,
				Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
			},
		})
		load := c.NewPod("load-"+n.Name, PodRequest{CPUMilli: n.LoadCPUMilli, MemoryMi: n.LoadMemoryMi})
		load.Spec.NodeName = n.Name
		pods = append(pods, load)
	}
	return nodes, pods
}

// NewPod is a pod with req's requests (the SLO resource's limit equal to its
// request, as an extended resource must have).
func (c *Cluster) NewPod(name string, req PodRequest) *v1.Pod {
	requests := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(req.CPUMilli, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(req.MemoryMi<<20, resource.BinarySI),
	}
	limits := v1.ResourceList{}
	if req.SLO > 0 {
		q := *resource.NewQuantity(req.SLO, resource.DecimalSI)
		requests[c.SLOResource] = q
		limits[c.SLOResource] = q
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: k8stypes.UID(name)},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{
				Name:      "c",
				Image:     "registry.k8s.io/pause",
				Resources: v1.ResourceRequirements{Requests: requests, Limits: limits},
			}},
		},
	}
}

// noNominations answers the framework's nominated-pod lookups. Without a
// scheduling queue nothing is nominated, as in the benchmark's control-plane
// runs, where no pod preempts.
type noNominations struct{}

func (noNominations) AddNominatedPod(klog.Logger, fwk.PodInfo, *fwk.NominatingInfo) {}
func (noNominations) DeleteNominatedPodIfExists(*v1.Pod)                            {}
func (noNominations) UpdateNominatedPod(klog.Logger, *v1.Pod, fwk.PodInfo)          {}
func (noNominations) NominatedPodsForNode(string) []fwk.PodInfo                     { return nil }

// Decider runs one profile's scheduling algorithm over a fixed snapshot.
type Decider struct {
	fw         framework.Framework
	nodes      []fwk.NodeInfo
	percentage *int32
	next       int
}

// Decision is the outcome of one Decide.
type Decision struct {
	Node      string
	Feasible  int // nodes that passed Filter (and were scored when more than one)
	Evaluated int // nodes Filter ran on before the search stopped
}

// NewDecider builds the profile's framework with the in-tree plugins, as
// kube-scheduler does, over a snapshot of nodes and their bound pods.
// globalPercentage is the configuration's percentageOfNodesToScore.
func NewDecider(ctx context.Context, profile *schedulerapi.KubeSchedulerProfile, globalPercentage *int32, nodes []*v1.Node, pods []*v1.Pod) (*Decider, error) {
	// The framework records its extension points' histograms, as in kube-scheduler.
	metrics.Register()
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	snapshot := internalcache.NewSnapshot(pods, nodes)
	dra, err := draManager(ctx, client, factory)
	if err != nil {
		return nil, err
	}
	fw, err := frameworkruntime.NewFramework(ctx, frameworkplugins.NewInTreeRegistry(), profile,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithSharedDRAManager(dra),
		frameworkruntime.WithInformerFactory(factory),
		frameworkruntime.WithSnapshotSharedLister(snapshot),
		frameworkruntime.WithSharedCSIManager(nodevolumelimits.NewCSIManager(factory.Storage().V1().CSINodes().Lister())),
		frameworkruntime.WithPodNominator(noNominations{}),
	)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", profile.SchedulerName, err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	infos, err := snapshot.NodeInfos().List()
	if err != nil {
		return nil, err
	}
	percentage := fw.PercentageOfNodesToScore()
	if percentage == nil {
		percentage = globalPercentage
	}
	return &Decider{fw: fw, nodes: infos, percentage: percentage}, nil
}

// draManager is kube-scheduler's DRA manager, built as scheduler.New builds
// it: DynamicResources' PreFilter consults it for every pod that requests an
// extended resource, as the SLO pods do.
func draManager(ctx context.Context, client clientset.Interface, factory informers.SharedInformerFactory) (fwk.SharedDRAManager, error) {
	if !feature.DefaultFeatureGate.Enabled(features.DynamicResourceAllocation) {
		return nil, nil
	}
	claims := assumecache.NewAssumeCache(klog.FromContext(ctx), factory.Resource().V1().ResourceClaims().Informer(), "ResourceClaim", "", nil)
	opts := resourceslicetracker.Options{
		EnableDeviceTaintRules:   feature.DefaultFeatureGate.Enabled(features.DRADeviceTaintRules),
		EnableConsumableCapacity: feature.DefaultFeatureGate.Enabled(features.DRAConsumableCapacity),
		SliceInformer:            factory.Resource().V1().ResourceSlices(),
		KubeClient:               client,
	}
	if opts.EnableDeviceTaintRules {
		opts.TaintInformer = factory.Resource().V1beta2().DeviceTaintRules()
		opts.ClassInformer = factory.Resource().V1().DeviceClasses()
	}
	slices, err := resourceslicetracker.StartTracker(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("resource slice tracker: %w", err)
	}
	return dynamicresources.NewDRAManager(ctx, claims, slices, factory), nil
}

// feasibleToFind is how many feasible nodes the search stops at.
func (d *Decider) feasibleToFind() int {
	all := len(d.nodes)
	if all < minFeasibleNodesToFind {
		return all
	}
	var pct int
	if d.percentage != nil {
		pct = int(*d.percentage)
	}
	if pct == 0 {
		pct = max(50-all/125, minFeasibleNodesPercentageToFind)
	}
	return max(all*pct/100, minFeasibleNodesToFind)
}

// ErrUnschedulable: no node passed Filter.
var ErrUnschedulable = errors.New("no feasible node")

// Decide places pod on the snapshot as kube-scheduler's scheduling algorithm
// does: Filter in parallel from a rotating start until enough nodes are
// feasible, then PreScore and Score on those and the highest total wins
// (ties at random). The snapshot is not changed.
func (d *Decider) Decide(ctx context.Context, pod *v1.Pod) (Decision, error) {
	state := framework.NewCycleState()
	pre, status, _ := d.fw.RunPreFilterPlugins(ctx, state, pod)
	if !status.IsSuccess() {
		if status.IsRejected() {
			return Decision{}, ErrUnschedulable
		}
		return Decision{}, status.AsError()
	}
	nodes := d.nodes
	if !pre.AllNodes() {
		nodes = make([]fwk.NodeInfo, 0, len(pre.NodeNames))
		for _, n := range d.nodes {
			if pre.NodeNames.Has(n.Node().Name) {
				nodes = append(nodes, n)
			}
		}
	}
	if len(nodes) == 0 {
		return Decision{}, ErrUnschedulable
	}

	want := d.feasibleToFind()
	feasible := make([]fwk.NodeInfo, want)
	var found, rejected atomic.Int32
	var firstErr atomic.Pointer[error]
	filterCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.fw.Parallelizer().Until(filterCtx, len(nodes), func(i int) {
		node := nodes[(d.next+i)%len(nodes)]
		s := d.fw.RunFilterPluginsWithNominatedPods(filterCtx, state, pod, node)
		switch {
		case s.IsSuccess():
			k := int(found.Add(1))
			if k > want {
				found.Add(-1)
				cancel()
				return
			}
			feasible[k-1] = node
		case s.Code() == fwk.Error:
			err := s.AsError()
			firstErr.CompareAndSwap(nil, &err)
			cancel()
		default:
			rejected.Add(1)
		}
	}, "Filter")
	if err := firstErr.Load(); err != nil {
		return Decision{}, *err
	}
	feasible = feasible[:found.Load()]
	evaluated := len(feasible) + int(rejected.Load())
	d.next = (d.next + evaluated) % len(nodes)
	decision := Decision{Feasible: len(feasible), Evaluated: evaluated}
	switch len(feasible) {
	case 0:
		return decision, ErrUnschedulable
	case 1:
		decision.Node = feasible[0].Node().Name
		return decision, nil
	}

	if s := d.fw.RunPreScorePlugins(ctx, state, pod, feasible); !s.IsSuccess() {
		return decision, s.AsError()
	}
	scores, s := d.fw.RunScorePlugins(ctx, state, pod, feasible)
	if !s.IsSuccess() {
		return decision, s.AsError()
	}
	best, ties := int64(-1), 0
	for _, n := range scores {
		switch {
		case n.TotalScore > best:
			best, ties, decision.Node = n.TotalScore, 1, n.Name
		case n.TotalScore == best:
			// Reservoir sampling: each of the tied nodes wins with equal chance.
			ties++
			if rand.IntN(ties) == 0 {
				decision.Node = n.Name
			}
		}
	}
	return decision, nil
}
