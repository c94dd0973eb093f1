// Package depcon registers containers that carry a network SLO with the vif
// kernel module (the DepCon node agent), through the procfs files described in
// docs/vif-procfs.md of the DepCon deploy project:
//
//	/proc/oslab/vifN/{pid,goal,weight,min_credit,stat}
//
// When a container whose resources carry the SLO resource (limits, or requests
// when there is no limit) starts, the Manager claims a free slot for its main
// PID and writes its goal and the pod's weight and min-credit annotations.
// When the container is stopped it releases the slot. After a kubelet restart
// Resync re-registers the running SLO containers and releases the slots an
// earlier run claimed for containers that are gone.
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
	// Empty: nothing is remembered, and Resync releases no slot.
	StateFile string
	// FS is the filesystem of ProcfsRoot (OSFS when nil).
	FS FS
	// Recorder receives the pod Events (none are recorded when nil).
	Recorder EventRecorder
}

// RunningContainer is a running container handed to Resync.
type RunningContainer struct {
	Pod         *v1.Pod
	Container   *v1.Container
	ContainerID string
	PID         int
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

	mu     sync.Mutex
	module moduleState
	loaded bool
	owned  map[string]*owner // by container ID
}

// NewManager returns a Manager. It touches nothing until a container that
// carries the SLO resource starts (or Resync runs).
func NewManager(opts Options) *Manager {
	m := &Manager{
		root:      opts.ProcfsRoot,
		resource:  opts.ResourceName,
		statePath: opts.StateFile,
		fs:        opts.FS,
		recorder:  opts.Recorder,
		owned:     map[string]*owner{},
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
	return m
}

// NewFromEnv is the kubelet's constructor: the procfs root and resource name
// come from DEPCON_PROCFS_ROOT and DEPCON_SLO_RESOURCE when set, the state
// file lives under the kubelet's root directory.
func NewFromEnv(kubeletRootDir string, recorder EventRecorder) *Manager {
	opts := Options{
		ProcfsRoot:   os.Getenv(ProcfsRootEnv),
		ResourceName: v1.ResourceName(os.Getenv(ResourceNameEnv)),
		Recorder:     recorder,
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

// Wants reports whether container c carries the SLO resource, i.e. whether
// the caller should look up its PID for ContainerStarted or Resync.
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

	spec, ok, problems := SpecFor(pod, c, m.resource)
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
	m.register(logger, pod, c, containerID, p, spec, slots)
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

// Resync is called once after a kubelet (re)start with every running
// container of the node's pods that carries the SLO resource, and its PID.
// It re-registers them (a container that still holds its slot keeps it and
// gets its values written again) and releases the slots an earlier kubelet
// run claimed for containers that are no longer running. Slots claimed by
// ContainerStarted in this run are never released here, even when missing
// from running (they may have started after the caller listed containers).
func (m *Manager) Resync(ctx context.Context, running []RunningContainer) {
	if m == nil {
		return
	}
	logger := klog.FromContext(ctx)
	defer m.recoverPanic(logger)

	m.mu.Lock()
	defer m.mu.Unlock()
	slots, present := m.slots(logger)
	if !present {
		return
	}
	m.load(logger)
	m.prune(logger)

	seen := map[string]bool{}
	for _, rc := range running {
		if rc.PID <= 0 || rc.Container == nil {
			continue
		}
		spec, ok, problems := SpecFor(rc.Pod, rc.Container, m.resource)
		if !ok {
			continue
		}
		seen[rc.ContainerID] = true
		if o, held := m.owned[rc.ContainerID]; held && o.PID == rc.PID {
			o.inherited = false
			if err := m.writeSpec(o.Slot, spec); err != nil {
				logger.Error(err, "Cannot rewrite vif slot values", "slot", o.Slot, "pod", klog.KObj(rc.Pod), "containerName", rc.Container.Name)
			}
			continue
		}
		m.recordProblems(rc.Pod, problems)
		m.register(logger, rc.Pod, rc.Container, rc.ContainerID, rc.PID, spec, slots)
	}
	for id, o := range m.owned {
		if o.inherited && !seen[id] {
			logger.Info("Releasing stale vif slot", "slot", o.Slot, "pid", o.PID, "pod", o.Pod, "containerName", o.Container, "containerID", id)
			m.release(logger, o)
			delete(m.owned, id)
		}
	}
	m.save(logger)
}

// register claims a slot for pid and writes spec. Callers hold m.mu.
func (m *Manager) register(logger klog.Logger, pod *v1.Pod, c *v1.Container, containerID string, pid int, spec Spec, slots []string) {
	slot, err := m.claim(slots, pid)
	if err != nil {
		logger.Error(err, "Cannot register container with vif", "pod", klog.KObj(pod), "containerName", c.Name, "containerID", containerID, "pid", pid)
		m.event(pod, v1.EventTypeWarning, ReasonRegisterFailed, "Container %s runs without network SLO control: %v", c.Name, err)
		return
	}
	o := &owner{Slot: slot, PID: pid, ContainerID: containerID, Container: c.Name}
	if pod != nil {
		o.PodUID = string(pod.UID)
		o.Pod = pod.Namespace + "/" + pod.Name
	}
	if err := m.writeSpec(slot, spec); err != nil {
		logger.Error(err, "Cannot write vif slot values, releasing the slot", "slot", slot, "pod", klog.KObj(pod), "containerName", c.Name)
		m.event(pod, v1.EventTypeWarning, ReasonRegisterFailed, "Container %s runs without network SLO control: %v", c.Name, err)
		m.release(logger, o)
		return
	}
	m.owned[containerID] = o
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
		logger.Info("vif module found: registering SLO containers", "procfsRoot", m.root, "resource", m.resource)
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
		o.inherited = true
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
