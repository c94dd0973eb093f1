// Package depcon registers containers that carry a network SLO with the vif
// kernel module (the DepCon node agent), through the procfs files described in
// docs/vif-procfs.md of the DepCon deploy project:
//
//	/proc/oslab/vifN/{pid,goal,weight,min_credit,stat}
//
// When a container whose resources carry the SLO resource (limits, or requests
// when there is no limit) starts, the Manager claims a free slot for its main
// PID and writes its goal and the pod's weight and min-credit annotations,
// capped by the node's Policy (policy.go), which the cluster admin sets.
// When the container is stopped it releases the slot. Reconcile, which the
// kubelet calls periodically, converges the slots to the running containers
// whatever was missed: a kubelet restart, a CRI error, the module loaded late
// or reloaded, a slot freed by someone else, no free slot at start.
//
// The Manager is strictly best effort: it never returns an error to the
// kubelet, never blocks a container from starting and never panics. Without
// the module (no /proc/oslab) it logs once and does nothing, which is exactly
// the stock kubelet's behaviour. A nil *Manager is valid and does nothing.
//
// Ownership: the vif slots are a node-wide table that others may write too (an
// operator with echo, the tests). The Manager only ever releases a slot it
// claimed itself, and only while the slot still holds the PID it wrote. What it
// claimed survives a kubelet restart in a small state file (by default
// <kubelet root dir>/depcon/slots.json).
package depcon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
)

const (
	// DefaultProcfsRoot is where the vif module puts its slots.
	DefaultProcfsRoot = "/proc/oslab"
	// ProcfsRootEnv overrides the procfs root (tests, unusual hosts).
	ProcfsRootEnv = "DEPCON_PROCFS_ROOT"
	// ResourceNameEnv overrides the SLO resource name (versions.yml
	// slo.resource_name, set by the kubelet's systemd drop-in).
	ResourceNameEnv = "DEPCON_SLO_RESOURCE"
	// StateFileName is the state file inside <kubelet root dir>/depcon.
	StateFileName = "slots.json"
)

// EventRecorder is the part of k8s.io/client-go/tools/record.EventRecorder
// the Manager uses, so the package does not depend on client-go.
type EventRecorder interface {
	Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...interface{})
}

// Options configure a Manager. Zero values take the defaults.
type Options struct {
	// ProcfsRoot is the directory holding the vifN slots.
	ProcfsRoot string
	// ResourceName is the extended resource carrying the SLO in Mbps.
	ResourceName v1.ResourceName
	// StateFile remembers the slots this kubelet claimed across restarts.
	// Empty: slots claimed before this kubelet started are never released.
	StateFile string
	// FS is the filesystem of ProcfsRoot (OSFS when nil).
	FS FS
	// Recorder receives the pod Events (none are recorded when nil).
	Recorder EventRecorder
	// Policy caps the annotations' weight and min_credit (DefaultPolicy
	// when nil; brought into the module's ranges).
	Policy *Policy
}

// RunningContainer is a running container listed for Reconcile.
type RunningContainer struct {
	ContainerID string
	// Pod and Container are its spec, nil when the kubelet does not know
	// the pod: such a container keeps a slot it holds but gets none.
	Pod       *v1.Pod
	Container *v1.Container
	// PID looks up its main PID (a CRI call); Reconcile calls it only for an
	// SLO container that holds no slot.
	PID func() (int, error)
}

type moduleState int

const (
	moduleUnknown moduleState = iota
	modulePresent
	moduleAbsent
)

// Manager keeps the vif slots in step with the node's SLO containers. It is
// safe for concurrent use: the kubelet's pod workers start containers in
// parallel, and all slot I/O happens under one mutex.
type Manager struct {
	root      string
	resource  v1.ResourceName
	statePath string
	fs        FS
	recorder  EventRecorder
	policy    Policy

	mu     sync.Mutex
	module moduleState
	loaded bool
	owned  map[string]*owner // by container ID
	// gen counts claims; an owner records the count at its claim, so
	// Reconcile can tell slots claimed after it listed the containers.
	gen uint64
	// failed: containers whose registration failure was already recorded as
	// an Event; Reconcile retries them without another one.
	failed map[string]bool
}

// NewManager returns a Manager. It touches nothing until a container that
// carries the SLO resource starts (or Reconcile runs).
func NewManager(opts Options) *Manager {
	m := &Manager{
		root:      opts.ProcfsRoot,
		resource:  opts.ResourceName,
		statePath: opts.StateFile,
		fs:        opts.FS,
		recorder:  opts.Recorder,
		policy:    DefaultPolicy(),
		owned:     map[string]*owner{},
		failed:    map[string]bool{},
	}
	if m.root == "" {
		m.root = DefaultProcfsRoot
	}
	if m.resource == "" {
		m.resource = DefaultResourceName
	}
	if m.fs == nil {
		m.fs = OSFS{}
	}
	if opts.Policy != nil {
		m.policy = opts.Policy.normalized()
	}
	return m
}

// NewFromEnv is the kubelet's constructor: the procfs root and resource name
// come from DEPCON_PROCFS_ROOT and DEPCON_SLO_RESOURCE when set, the policy
// from DEPCON_MAX_WEIGHT and DEPCON_MAX_MIN_CREDIT (an invalid value is
// logged and the default used), the state file lives under the kubelet's
// root directory. The environment is read once, here.
func NewFromEnv(ctx context.Context, kubeletRootDir string, recorder EventRecorder) *Manager {
	policy, errs := PolicyFromEnv(os.Getenv)
	logger := klog.FromContext(ctx)
	for _, err := range errs {
		logger.Error(err, "Invalid DepCon policy in the kubelet's environment, using the default")
	}
	opts := Options{
		ProcfsRoot:   os.Getenv(ProcfsRootEnv),
		ResourceName: v1.ResourceName(os.Getenv(ResourceNameEnv)),
		Recorder:     recorder,
		Policy:       &policy,
	}
	if kubeletRootDir != "" {
		opts.StateFile = filepath.Join(kubeletRootDir, "depcon", StateFileName)
	}
	return NewManager(opts)
}

// ResourceName is the extended resource the Manager reads the SLO from.
func (m *Manager) ResourceName() v1.ResourceName {
	if m == nil {
		return DefaultResourceName
	}
	return m.resource
}

// MaskedPaths returns the container's masked paths with the procfs root
// added, so no container can read or write the node's vif slots. An empty
// list (procMount Unmasked) is returned as it is: that container asked for
// an unmasked /proc. The result is a new slice: the kubelet's default list is
// shared between containers. A nil Manager adds nothing.
func (m *Manager) MaskedPaths(paths []string) []string {
	if m == nil || len(paths) == 0 {
		return paths
	}
	for _, p := range paths {
		if p == m.root {
			return paths
		}
	}
	out := make([]string, 0, len(paths)+1)
	return append(append(out, paths...), m.root)
}

// Wants reports whether container c carries the SLO resource, i.e. whether
// the caller should look up its PID for ContainerStarted.
func (m *Manager) Wants(c *v1.Container) bool {
	if m == nil {
		return false
	}
	_, ok := SLOQuantity(c, m.resource)
	return ok
}

// ContainerStarted registers a container that has just started. pid is only
// called when the container carries the SLO resource and the module is
// loaded, so a stock pod costs nothing.
func (m *Manager) ContainerStarted(ctx context.Context, pod *v1.Pod, c *v1.Container, containerID string, pid func() (int, error)) {
	if m == nil || !m.Wants(c) {
		return
	}
	logger := klog.FromContext(ctx)
	defer m.recoverPanic(logger)

	spec, ok, problems := m.specFor(pod, c)
	if !ok && len(problems) == 0 {
		return
	}
	// Without the module the kubelet is stock: not even an Event.
	if !m.modulePresent(logger) {
		return
	}
	m.recordProblems(pod, problems)
	if !ok {
		return
	}
	// The PID lookup is a CRI call: made without the lock, so a slow runtime
	// does not hold up other containers' registrations and releases.
	p, err := pid()
	if err == nil && p <= 0 {
		err = fmt.Errorf("runtime reported PID %d", p)
	}
	if err != nil {
		logger.Error(err, "Cannot register container with vif: no PID", "pod", klog.KObj(pod), "containerName", c.Name, "containerID", containerID)
		m.event(pod, v1.EventTypeWarning, ReasonRegisterFailed, "Container %s runs without network SLO control: no PID: %v", c.Name, err)
		m.mu.Lock()
		m.failed[containerID] = true
		m.mu.Unlock()
		return
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	slots, present := m.slots(logger)
	if !present {
		return
	}
	m.load(logger)
	m.prune(logger)
	m.register(logger, pod, c, containerID, p, spec, slots, false)
	m.save(logger)
}

// ContainerStopped releases the slot of a container the kubelet stopped.
func (m *Manager) ContainerStopped(ctx context.Context, containerID string) {
	if m == nil {
		return
	}
	logger := klog.FromContext(ctx)
	defer m.recoverPanic(logger)

	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failed, containerID)
	m.load(logger)
	o, ok := m.owned[containerID]
	if !ok {
		return
	}
	if _, present := m.slots(logger); present {
		m.release(logger, o)
	}
	delete(m.owned, containerID)
	m.save(logger)
}

// ListFunc lists the running containers of the node for Reconcile: every
// running container, whether or not it carries an SLO. An error means the
// list is unknown, not empty.
type ListFunc func(ctx context.Context) ([]RunningContainer, error)

// Reconcile converges the vif slots to the running containers. The kubelet
// calls it periodically, so whatever happened in between (a kubelet restart,
// a CRI error, the module loaded late or reloaded, a slot freed by someone
// else, no free slot at start) is repaired within one period:
//
//   - a running SLO container that holds no slot is registered;
//   - a held slot whose goal, weight or min_credit drifted is rewritten;
//   - a slot this kubelet claimed (in this run or an earlier one) for a
//     container that is no longer running is released.
//
// Without the module it costs one ReadDir and list is not called. Otherwise
// list is called once; PIDs are looked up only for containers that hold no
// slot. When list fails nothing is registered or released: an unknown list
// must not look like an empty node. Slots claimed after list was called are
// never released here (their container may have started after the listing).
func (m *Manager) Reconcile(ctx context.Context, list ListFunc) {
	if m == nil {
		return
	}
	logger := klog.FromContext(ctx)
	defer m.recoverPanic(logger)

	m.mu.Lock()
	if _, present := m.slots(logger); !present {
		m.mu.Unlock()
		return
	}
	before := m.gen
	m.mu.Unlock()

	// The CRI calls (list, PIDs) are made without the lock, as in
	// ContainerStarted.
	running, err := list(ctx)
	if err != nil {
		logger.Error(err, "Cannot list running containers; vif slots left as they are until the next reconcile")
		return
	}
	pending := m.reconcileHeld(logger, running)
	pids := make([]int, len(pending))
	for i, rc := range pending {
		p, err := rc.PID()
		if err == nil && p <= 0 {
			err = fmt.Errorf("runtime reported PID %d", p)
		}
		if err != nil {
			// Retried at the next reconcile; a held slot is never dropped
			// for want of a PID.
			logger.V(2).Info("Cannot get the PID of a running SLO container, will retry", "pod", klog.KObj(rc.Pod), "containerName", rc.Container.Name, "containerID", rc.ContainerID, "err", err)
			continue
		}
		pids[i] = p
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	slots, present := m.slots(logger)
	if !present {
		return
	}
	m.load(logger)
	m.prune(logger)
	for i, rc := range pending {
		if pids[i] == 0 {
			continue
		}
		if _, held := m.owned[rc.ContainerID]; held {
			continue // ContainerStarted registered it meanwhile
		}
		spec, ok, problems := m.specFor(rc.Pod, rc.Container)
		if !ok {
			continue
		}
		quiet := m.failed[rc.ContainerID]
		if !quiet {
			m.recordProblems(rc.Pod, problems)
		}
		m.register(logger, rc.Pod, rc.Container, rc.ContainerID, pids[i], spec, slots, quiet)
	}
	isRunning := make(map[string]bool, len(running))
	for _, rc := range running {
		isRunning[rc.ContainerID] = true
	}
	for id, o := range m.owned {
		if o.gen <= before && !isRunning[id] {
			logger.Info("Releasing the vif slot of a container that is not running", "slot", o.Slot, "pid", o.PID, "pod", o.Pod, "containerName", o.Container, "containerID", id)
			m.release(logger, o)
			delete(m.owned, id)
		}
	}
	for id := range m.failed {
		if !isRunning[id] {
			delete(m.failed, id)
		}
	}
	m.save(logger)
}

// reconcileHeld rewrites the values of held slots that drifted and returns the
// running SLO containers that hold no slot.
func (m *Manager) reconcileHeld(logger klog.Logger, running []RunningContainer) []RunningContainer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, present := m.slots(logger); !present {
		return nil
	}
	m.load(logger)
	m.prune(logger)
	var pending []RunningContainer
	for _, rc := range running {
		if rc.Pod == nil || rc.Container == nil || rc.PID == nil {
			continue
		}
		spec, ok, _ := m.specFor(rc.Pod, rc.Container)
		if !ok {
			continue
		}
		o, held := m.owned[rc.ContainerID]
		if !held {
			pending = append(pending, rc)
			continue
		}
		if err := m.rewriteDrifted(o.Slot, spec); err != nil {
			logger.Error(err, "Cannot rewrite vif slot values", "slot", o.Slot, "pod", klog.KObj(rc.Pod), "containerName", rc.Container.Name)
		}
	}
	return pending
}

// specFor is SpecFor capped by the node's policy: what the Manager writes.
// Reconcile rewrites a held slot to it too, so a value written by hand above
// a cap does not last beyond one period.
func (m *Manager) specFor(pod *v1.Pod, c *v1.Container) (Spec, bool, []Problem) {
	spec, ok, problems := SpecFor(pod, c, m.resource)
	if !ok {
		return spec, ok, problems
	}
	spec, clamped := m.policy.clamp(spec)
	return spec, ok, append(problems, clamped...)
}

// register claims a slot for pid and writes spec. A failure is recorded as an
// Event unless quiet: Reconcile retries every period, and one Event says it.
// Callers hold m.mu.
func (m *Manager) register(logger klog.Logger, pod *v1.Pod, c *v1.Container, containerID string, pid int, spec Spec, slots []string, quiet bool) {
	fail := func(msg string, err error) {
		if quiet {
			logger.V(2).Info(msg+", will retry", "pod", klog.KObj(pod), "containerName", c.Name, "containerID", containerID, "pid", pid, "err", err)
			return
		}
		logger.Error(err, msg, "pod", klog.KObj(pod), "containerName", c.Name, "containerID", containerID, "pid", pid)
		m.event(pod, v1.EventTypeWarning, ReasonRegisterFailed, "Container %s runs without network SLO control: %v", c.Name, err)
		m.failed[containerID] = true
	}
	slot, err := m.claim(slots, pid)
	if err != nil {
		fail("Cannot register container with vif", err)
		return
	}
	m.gen++
	o := &owner{Slot: slot, PID: pid, ContainerID: containerID, Container: c.Name, gen: m.gen}
	if pod != nil {
		o.PodUID = string(pod.UID)
		o.Pod = pod.Namespace + "/" + pod.Name
	}
	if err := m.writeSpec(slot, spec); err != nil {
		fail("Cannot write vif slot values, releasing the slot "+slot, err)
		m.release(logger, o)
		return
	}
	m.owned[containerID] = o
	delete(m.failed, containerID)
	logger.Info("Registered container with vif", "slot", slot, "pod", klog.KObj(pod), "containerName", c.Name,
		"containerID", containerID, "pid", pid, "goalMbps", spec.GoalMbps, "weight", spec.Weight, "minCredit", spec.MinCredit)
	m.event(pod, v1.EventTypeNormal, ReasonRegistered, "Container %s holds vif slot %s: goal %d Mbps, weight %d, min_credit %d%%",
		c.Name, slot, spec.GoalMbps, spec.Weight, spec.MinCredit)
}

// errNoFreeSlot: every slot is held.
var errNoFreeSlot = errors.New("no free vif slot (all held; raise the module's nr_vifs)")

// claim writes pid into a free slot and returns the slot. The PID is written
// before the values: the write that claims is the one the module arbitrates,
// so values never land on a slot another writer claimed in between, and none
// are left behind on a free slot when the claim fails. A slot that already
// holds pid (a restarted kubelet, a lost state file) is adopted. EBUSY means
// another writer won the slot since it was read as free: try the next one.
func (m *Manager) claim(slots []string, pid int) (string, error) {
	pids := make([]int, len(slots))
	for i, s := range slots {
		p, err := m.readPID(s)
		if err != nil {
			pids[i] = -1
			continue
		}
		if p == pid {
			return s, nil
		}
		pids[i] = p
	}
	for i, s := range slots {
		if pids[i] != 0 {
			continue
		}
		err := m.writeUint(s, "pid", uint64(pid))
		switch {
		case err == nil:
			return s, nil
		case errors.Is(err, syscall.EBUSY):
			continue
		case errors.Is(err, syscall.ESRCH):
			return "", fmt.Errorf("process %d is gone: %w", pid, err)
		default:
			return "", err
		}
	}
	return "", errNoFreeSlot
}

// writeSpec writes goal, weight and min_credit of a claimed slot.
func (m *Manager) writeSpec(slot string, spec Spec) error {
	if err := m.writeUint(slot, "goal", spec.GoalMbps); err != nil {
		return err
	}
	if err := m.writeUint(slot, "weight", spec.Weight); err != nil {
		return err
	}
	return m.writeUint(slot, "min_credit", spec.MinCredit)
}

// rewriteDrifted writes the values of a held slot that differ from spec
// (someone wrote them by hand), and only those: a reconcile of an unchanged
// slot reads and writes nothing else.
func (m *Manager) rewriteDrifted(slot string, spec Spec) error {
	for _, f := range []struct {
		name string
		want uint64
	}{{"goal", spec.GoalMbps}, {"weight", spec.Weight}, {"min_credit", spec.MinCredit}} {
		got, err := m.readUint(slot, f.name)
		if err == nil && got == f.want {
			continue
		}
		if err := m.writeUint(slot, f.name, f.want); err != nil {
			return err
		}
	}
	return nil
}

// release frees o's slot if it still holds o's PID. When the process exited
// the module has freed the slot itself (and another container may hold it
// now), so then there is nothing to write.
func (m *Manager) release(logger klog.Logger, o *owner) {
	p, err := m.readPID(o.Slot)
	if err != nil {
		logger.Error(err, "Cannot read vif slot to release it", "slot", o.Slot, "pid", o.PID)
		return
	}
	if p != o.PID {
		return
	}
	if err := m.writeUint(o.Slot, "pid", 0); err != nil {
		logger.Error(err, "Cannot release vif slot", "slot", o.Slot, "pid", o.PID)
		return
	}
	logger.V(2).Info("Released vif slot", "slot", o.Slot, "pid", o.PID, "pod", o.Pod, "containerName", o.Container)
}

// prune forgets owners whose slot no longer holds their PID: the process
// exited and the module freed the slot on its own.
func (m *Manager) prune(logger klog.Logger) {
	for id, o := range m.owned {
		if p, err := m.readPID(o.Slot); err != nil || p != o.PID {
			logger.V(4).Info("Forgetting vif slot the module freed", "slot", o.Slot, "pid", o.PID, "containerID", id)
			delete(m.owned, id)
		}
	}
}

// modulePresent reports whether the procfs root exists (logging changes once).
func (m *Manager) modulePresent(logger klog.Logger) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, present := m.slots(logger)
	return present
}

// slots lists the vifN slot names in numeric order, and reports whether the
// module is loaded. The module's absence is logged once (and its return).
func (m *Manager) slots(logger klog.Logger) ([]string, bool) {
	names, err := m.fs.ReadDir(m.root)
	if err != nil {
		if m.module != moduleAbsent {
			if errors.Is(err, os.ErrNotExist) {
				logger.Info("vif module not loaded: network SLOs are not enforced on this node", "procfsRoot", m.root)
			} else {
				logger.Error(err, "Cannot read the vif procfs root: network SLOs are not enforced on this node", "procfsRoot", m.root)
			}
			m.module = moduleAbsent
		}
		return nil, false
	}
	if m.module != modulePresent {
		logger.Info("vif module found: registering SLO containers", "procfsRoot", m.root, "resource", m.resource,
			"maxWeight", m.policy.MaxWeight, "maxMinCredit", m.policy.MaxMinCredit)
		m.module = modulePresent
	}
	type slot struct {
		name string
		n    int
	}
	var found []slot
	for _, name := range names {
		num, ok := strings.CutPrefix(name, "vif")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n <= 0 || strconv.Itoa(n) != num {
			continue
		}
		found = append(found, slot{name, n})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].n < found[j].n })
	out := make([]string, len(found))
	for i, s := range found {
		out[i] = s.name
	}
	return out, true
}

// load reads the state file once. Callers hold m.mu.
func (m *Manager) load(logger klog.Logger) {
	if m.loaded {
		return
	}
	m.loaded = true
	owners, err := loadState(m.statePath)
	if err != nil {
		logger.Error(err, "Cannot read the DepCon state file; slots claimed before this kubelet started will not be released", "path", m.statePath)
		return
	}
	for _, o := range owners {
		if o == nil || o.ContainerID == "" {
			continue
		}
		m.owned[o.ContainerID] = o
	}
}

// save writes the state file. Callers hold m.mu.
func (m *Manager) save(logger klog.Logger) {
	owners := make([]*owner, 0, len(m.owned))
	for _, o := range m.owned {
		owners = append(owners, o)
	}
	sort.Slice(owners, func(i, j int) bool { return owners[i].ContainerID < owners[j].ContainerID })
	if err := saveState(m.statePath, owners); err != nil {
		logger.Error(err, "Cannot write the DepCon state file", "path", m.statePath)
	}
}

func (m *Manager) readPID(slot string) (int, error) {
	data, err := m.fs.ReadFile(filepath.Join(m.root, slot, "pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func (m *Manager) readUint(slot, file string) (uint64, error) {
	data, err := m.fs.ReadFile(filepath.Join(m.root, slot, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

func (m *Manager) writeUint(slot, file string, v uint64) error {
	return m.fs.WriteFile(filepath.Join(m.root, slot, file), []byte(strconv.FormatUint(v, 10)+"\n"))
}

func (m *Manager) recordProblems(pod *v1.Pod, problems []Problem) {
	for _, p := range problems {
		m.event(pod, v1.EventTypeWarning, p.Reason, "%s", p.Message)
	}
}

func (m *Manager) event(pod *v1.Pod, eventtype, reason, format string, args ...interface{}) {
	if m.recorder == nil || pod == nil {
		return
	}
	m.recorder.Eventf(pod, eventtype, reason, format, args...)
}

// recoverPanic keeps a bug in this optional feature from taking the kubelet
// down: a panic is logged and the container goes on without SLO control.
func (m *Manager) recoverPanic(logger klog.Logger) {
	if r := recover(); r != nil {
		logger.Error(fmt.Errorf("panic: %v", r), "DepCon: recovered from a panic; network SLO control skipped")
	}
}

// PIDFromStatusInfo returns the container's main PID from the Info map of a
// verbose CRI ContainerStatus response: containerd and CRI-O both put a JSON
// object with a "pid" field under the "info" key.
func PIDFromStatusInfo(info map[string]string) (int, error) {
	raw, ok := info["info"]
	if !ok {
		return 0, errors.New(`container status has no "info" (is verbose set?)`)
	}
	var v struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return 0, fmt.Errorf("container status info: %w", err)
	}
	if v.PID <= 0 {
		return 0, fmt.Errorf("container status info has no pid (got %d)", v.PID)
	}
	return v.PID, nil
}
