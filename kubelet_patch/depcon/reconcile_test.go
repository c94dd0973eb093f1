package depcon

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// newReconcileManager is a Manager on n slots with a state file, its module
// and its recorder.
func newReconcileManager(t *testing.T, n int) (*Manager, string, *moduleFS, *fakeRecorder) {
	t.Helper()
	root := newProcfs(t, n)
	fs := newModuleFS(root)
	rec := &fakeRecorder{}
	m := NewManager(Options{ProcfsRoot: root, FS: fs, Recorder: rec, StateFile: filepath.Join(t.TempDir(), "slots.json")})
	return m, root, fs, rec
}

// start starts a container in the runtime and tells the Manager, as the
// kubelet's startContainer does.
func start(m *Manager, rt *fakeRuntime, id string, pod *v1.Pod, pid int) {
	rt.run(id, pod, pid)
	m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], id, pidIs(pid))
}

func stateIDs(t *testing.T, m *Manager) []string {
	t.Helper()
	owners, err := loadState(m.statePath)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range owners {
		ids = append(ids, o.ContainerID+"@"+o.Slot)
	}
	return ids
}

func TestReconcileAfterRestart(t *testing.T) {
	root := newProcfs(t, 6)
	state := filepath.Join(t.TempDir(), "depcon", "slots.json")
	rt := newFakeRuntime()

	// An earlier kubelet run registered a, b and c.
	first := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state})
	pods := map[string]*v1.Pod{
		"a": sloPod("a", "100", "", nil),
		"b": sloPod("b", "200", "", nil),
		"c": sloPod("c", "300", "", nil),
		"d": sloPod("d", "400", "", map[string]string{WeightAnnotation: "3"}),
	}
	for i, name := range []string{"a", "b", "c"} {
		start(first, rt, "ctr-"+name, pods[name], 1000+i)
	}
	// vif1=a(1000) vif2=b(1001) vif3=c(1002). While the kubelet was down:
	// c exited, the module freed vif3 and an operator claimed it by hand;
	// an operator also claimed vif4. b was removed from the runtime but its
	// process lingers. d was started by a stock kubelet.
	rt.stop("ctr-c")
	rt.stop("ctr-b")
	setSlot(t, root, "vif3", "goal", 0) // the module's reset when c exited
	setSlot(t, root, "vif3", "pid", 5000)
	setSlot(t, root, "vif4", "pid", 6000)
	setSlot(t, root, "vif1", "goal", 1) // a's goal drifted (written by hand)
	rt.run("ctr-d", pods["d"], 1003)

	var logs logCapture
	second := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state, Recorder: &fakeRecorder{}})
	second.Reconcile(logs.ctx(), rt.list)

	want := map[string][2]int{ // pid, goal
		"vif1": {1000, 100}, // a kept, goal rewritten
		"vif2": {0, 0},      // b: not running, released
		"vif3": {5000, 0},   // not ours any more: untouched
		"vif4": {6000, 0},   // never ours: untouched
		"vif5": {1003, 400}, // d registered
		"vif6": {0, 0},
	}
	for slot, w := range want {
		got := [2]int{readSlot(t, root, slot, "pid"), readSlot(t, root, slot, "goal")}
		if got != w {
			t.Errorf("%s pid/goal = %v, want %v", slot, got, w)
		}
	}
	if got := readSlot(t, root, "vif5", "weight"); got != 3 {
		t.Errorf("vif5 weight = %d, want 3", got)
	}
	if n := logs.count("Releasing the vif slot of a container that is not running"); n != 1 {
		t.Errorf("released %d slots, want 1; logs: %v", n, logs.msgs)
	}
	if ids := stateIDs(t, second); !reflect.DeepEqual(ids, []string{"ctr-a@vif1", "ctr-d@vif5"}) {
		t.Errorf("state = %v", ids)
	}
}

func TestReconcileCRIErrorKeepsSlots(t *testing.T) {
	root := newProcfs(t, 4)
	state := filepath.Join(t.TempDir(), "slots.json")
	rt := newFakeRuntime()
	first := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state})
	a, b := sloPod("a", "100", "", nil), sloPod("b", "200", "", nil)
	start(first, rt, "ctr-a", a, 1000)
	start(first, rt, "ctr-b", b, 1001)

	// The kubelet restarts; its first reconciles meet CRI errors.
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state})
	rt.listErr = errors.New("rpc error: code = Unavailable")
	m.Reconcile(context.Background(), rt.list)
	if got := slotPIDs(t, root, 4); !reflect.DeepEqual(got, []int{1000, 1001, 0, 0}) {
		t.Fatalf("after a failed list: slots %v, want a and b kept", got)
	}

	// The list works, but the status of both containers fails: a running
	// container holding its slot keeps it, whatever its PID lookup says.
	rt.listErr = nil
	rt.pidErr["ctr-a"] = errors.New("rpc error: code = DeadlineExceeded")
	rt.pidErr["ctr-b"] = errors.New("rpc error: code = DeadlineExceeded")
	m.Reconcile(context.Background(), rt.list)
	if got := slotPIDs(t, root, 4); !reflect.DeepEqual(got, []int{1000, 1001, 0, 0}) {
		t.Fatalf("after failed PID lookups: slots %v, want a and b kept", got)
	}
	if ids := stateIDs(t, m); !reflect.DeepEqual(ids, []string{"ctr-a@vif1", "ctr-b@vif2"}) {
		t.Errorf("state = %v, want both kept", ids)
	}

	// A container that holds no slot and whose PID lookup fails is
	// registered once the runtime answers.
	c := sloPod("c", "300", "", nil)
	rt.run("ctr-c", c, 1002)
	rt.pidErr["ctr-c"] = errors.New("rpc error: code = Unavailable")
	m.Reconcile(context.Background(), rt.list)
	if got := readSlot(t, root, "vif3", "pid"); got != 0 {
		t.Fatalf("vif3 pid = %d with no PID known, want 0", got)
	}
	delete(rt.pidErr, "ctr-c")
	m.Reconcile(context.Background(), rt.list)
	if got := slotPIDs(t, root, 4); !reflect.DeepEqual(got, []int{1000, 1001, 1002, 0}) {
		t.Errorf("after the runtime recovered: slots %v, want c in vif3", got)
	}
}

func TestReconcileModuleLoadedLate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "oslab") // no module yet
	fs := newModuleFS(root)
	m := NewManager(Options{ProcfsRoot: root, FS: fs, StateFile: filepath.Join(t.TempDir(), "slots.json")})
	rt := newFakeRuntime()
	start(m, rt, "ctr-a", sloPod("a", "100", "", nil), 1000)
	rt.run("ctr-stock", sloPod("stock", "", "", nil), 1500)

	m.Reconcile(context.Background(), rt.list)
	m.Reconcile(context.Background(), rt.list)
	if lists, _ := rt.calls(); lists != 0 {
		t.Errorf("without the module the runtime was listed %d times, want 0", lists)
	}

	loadModule(t, root, 2)
	m.Reconcile(context.Background(), rt.list)
	if got := slotPIDs(t, root, 2); !reflect.DeepEqual(got, []int{1000, 0}) {
		t.Fatalf("after the module loaded: slots %v, want a in vif1", got)
	}
	if got := readSlot(t, root, "vif1", "goal"); got != 100 {
		t.Errorf("vif1 goal = %d, want 100", got)
	}
}

func TestReconcileModuleReloaded(t *testing.T) {
	m, root, _, _ := newReconcileManager(t, 3)
	m.policy = Policy{MaxWeight: DefaultPolicyMaxWeight, MaxMinCredit: 10} // min-credit allowed
	rt := newFakeRuntime()
	start(m, rt, "ctr-a", sloPod("a", "100", "", map[string]string{WeightAnnotation: "4"}), 1000)
	start(m, rt, "ctr-b", sloPod("b", "200", "", map[string]string{MinCreditAnnotation: "10"}), 1001)

	m.Reconcile(context.Background(), rt.list) // the kubelet's periodic one, before the reload
	loadModule(t, root, 3)                     // rmmod + insmod: every slot free, values default
	m.Reconcile(context.Background(), rt.list)

	if got := slotPIDs(t, root, 3); !reflect.DeepEqual(got, []int{1000, 1001, 0}) {
		t.Fatalf("after the reload: slots %v, want a and b registered again", got)
	}
	for slot, want := range map[string][3]int{"vif1": {100, 4, 0}, "vif2": {200, 1, 10}} {
		got := [3]int{readSlot(t, root, slot, "goal"), readSlot(t, root, slot, "weight"), readSlot(t, root, slot, "min_credit")}
		if got != want {
			t.Errorf("%s goal/weight/min_credit = %v, want %v", slot, got, want)
		}
	}
	if ids := stateIDs(t, m); !reflect.DeepEqual(ids, []string{"ctr-a@vif1", "ctr-b@vif2"}) {
		t.Errorf("state = %v", ids)
	}
}

func TestReconcileSlotFreedBySomeoneElse(t *testing.T) {
	m, root, fs, _ := newReconcileManager(t, 2)
	rt := newFakeRuntime()
	start(m, rt, "ctr-a", sloPod("a", "100", "", nil), 1000)
	m.Reconcile(context.Background(), rt.list)
	// An operator releases a's slot (echo 0 > pid): the module resets it.
	if err := fs.WriteFile(filepath.Join(root, "vif1", "pid"), []byte("0\n")); err != nil {
		t.Fatal(err)
	}
	m.Reconcile(context.Background(), rt.list)
	if got := slotPIDs(t, root, 2); !reflect.DeepEqual(got, []int{1000, 0}) {
		t.Fatalf("slots %v, want a back in vif1", got)
	}
	if got := readSlot(t, root, "vif1", "goal"); got != 100 {
		t.Errorf("vif1 goal = %d, want 100", got)
	}
}

func TestReconcileRetriesNoFreeSlot(t *testing.T) {
	m, root, _, rec := newReconcileManager(t, 1)
	rt := newFakeRuntime()
	setSlot(t, root, "vif1", "pid", 100) // held by someone else
	start(m, rt, "ctr-a", sloPod("a", "100", "", nil), 1000)
	if got := rec.reasons(); !reflect.DeepEqual(got, []string{ReasonRegisterFailed}) {
		t.Fatalf("events = %v, want one %s", got, ReasonRegisterFailed)
	}

	m.Reconcile(context.Background(), rt.list)
	m.Reconcile(context.Background(), rt.list)
	if got := readSlot(t, root, "vif1", "pid"); got != 100 {
		t.Fatalf("vif1 pid = %d, want the other writer's 100", got)
	}
	if got := rec.reasons(); len(got) != 1 {
		t.Errorf("events = %v: the retries must not repeat the failure Event", got)
	}

	setSlot(t, root, "vif1", "pid", 0) // the other writer lets go
	m.Reconcile(context.Background(), rt.list)
	if got := readSlot(t, root, "vif1", "pid"); got != 1000 {
		t.Fatalf("vif1 pid = %d, want a (1000) once the slot is free", got)
	}
	if got := rec.reasons(); !reflect.DeepEqual(got, []string{ReasonRegisterFailed, ReasonRegistered}) {
		t.Errorf("events = %v", got)
	}
}

func TestReconcileCost(t *testing.T) {
	const nSlots, held = 8, 3
	m, root, fs, _ := newReconcileManager(t, nSlots)
	rt := newFakeRuntime()
	for i, name := range []string{"a", "b", "c"} {
		start(m, rt, "ctr-"+name, sloPod(name, "100", "", nil), 1000+i)
	}
	for i, name := range []string{"x", "y"} {
		rt.run("ctr-"+name, sloPod(name, "", "", nil), 2000+i) // stock
	}
	rt.run("ctr-unknown", nil, 3000) // a pod the kubelet does not know

	for i := 0; i < 3; i++ {
		lists0, pids0 := rt.calls()
		touched0, writes0 := fs.counts()
		m.Reconcile(context.Background(), rt.list)
		lists, pids := rt.calls()
		touched, writes := fs.counts()
		if lists-lists0 != 1 || pids-pids0 != 0 {
			t.Errorf("reconcile %d: %d list calls and %d PID lookups, want 1 and 0", i, lists-lists0, pids-pids0)
		}
		// Per reconcile: 3 slot listings, and per held slot its pid twice
		// and its three values; no write. Slots nobody holds are not read.
		if writes-writes0 != 0 || touched-touched0 > 3+5*held {
			t.Errorf("reconcile %d: %d procfs calls (%d writes), want at most %d and no write", i, touched-touched0, writes-writes0, 3+5*held)
		}
	}
	if got := slotPIDs(t, root, nSlots); !reflect.DeepEqual(got, []int{1000, 1001, 1002, 0, 0, 0, 0, 0}) {
		t.Errorf("slots %v", got)
	}
}

func TestReconcileKeepsSlotsClaimedDuringTheList(t *testing.T) {
	m, root, _, _ := newReconcileManager(t, 2)
	rt := newFakeRuntime()
	pod := sloPod("new", "500", "", nil)
	// The container starts and registers while the runtime is being listed,
	// after the listing saw the containers: it is missing from the list.
	rt.beforeList = func() {
		rt.beforeList = nil
		m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], "ctr-new", pidIs(10))
	}
	m.Reconcile(context.Background(), rt.list)
	if got := readSlot(t, root, "vif1", "pid"); got != 10 {
		t.Errorf("vif1 pid = %d, want 10 (claimed after the listing started: never released by it)", got)
	}
	// The next reconcile does not see it running either: now it goes.
	m.Reconcile(context.Background(), rt.list)
	if got := readSlot(t, root, "vif1", "pid"); got != 0 {
		t.Errorf("vif1 pid = %d, want 0 (not running at the next listing)", got)
	}
}

func TestReconcileKeepsUnknownPodsSlot(t *testing.T) {
	root := newProcfs(t, 2)
	state := filepath.Join(t.TempDir(), "slots.json")
	rt := newFakeRuntime()
	first := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state})
	start(first, rt, "ctr-a", sloPod("a", "100", "", nil), 1000)

	// After a restart the kubelet does not know a's pod (yet): its running
	// container keeps the slot, and nothing is looked up for it.
	rt.containers[0].pod = nil
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state})
	m.Reconcile(context.Background(), rt.list)
	if got := readSlot(t, root, "vif1", "pid"); got != 1000 {
		t.Errorf("vif1 pid = %d, want 1000 kept", got)
	}
	if _, pids := rt.calls(); pids != 0 {
		t.Errorf("%d PID lookups, want 0", pids)
	}
}

func TestMaskedPaths(t *testing.T) {
	defaults := make([]string, 2, 8) // spare capacity: appending in place would corrupt it
	copy(defaults, []string{"/proc/kcore", "/sys/firmware"})
	tests := []struct {
		name  string
		root  string
		paths []string
		want  []string
	}{
		{name: "defaults get the procfs root", paths: defaults, want: []string{"/proc/kcore", "/sys/firmware", "/proc/oslab"}},
		{name: "another root", root: "/proc/vif", paths: defaults, want: []string{"/proc/kcore", "/sys/firmware", "/proc/vif"}},
		{name: "unmasked stays unmasked", paths: []string{}, want: []string{}},
		{name: "already there", paths: []string{"/proc/oslab"}, want: []string{"/proc/oslab"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewManager(Options{ProcfsRoot: tt.root})
			if got := m.MaskedPaths(tt.paths); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("MaskedPaths = %q, want %q", got, tt.want)
			}
			if full := defaults[:3]; full[2] != "" {
				t.Errorf("the caller's list was written past its end: %q", full)
			}
		})
	}
}
