package depcon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func TestSpecFor(t *testing.T) {
	tests := []struct {
		name         string
		pod          *v1.Pod
		want         Spec
		wantOK       bool
		wantProblems []string
	}{
		{name: "no SLO resource", pod: sloPod("p", "", "", nil)},
		{name: "limit", pod: sloPod("p", "500", "", nil), want: Spec{500, 1, 0}, wantOK: true},
		{name: "request when no limit", pod: sloPod("p", "", "300", nil), want: Spec{300, 1, 0}, wantOK: true},
		{name: "limit wins over request", pod: sloPod("p", "500", "300", nil), want: Spec{500, 1, 0}, wantOK: true},
		{name: "suffixed whole number", pod: sloPod("p", "1k", "", nil), want: Spec{1000, 1, 0}, wantOK: true},
		{name: "zero is no SLO", pod: sloPod("p", "0", "", nil)},
		{name: "fraction", pod: sloPod("p", "1500m", "", nil), wantProblems: []string{ReasonInvalidSLO}},
		{name: "decimal", pod: sloPod("p", "2.5", "", nil), wantProblems: []string{ReasonInvalidSLO}},
		{name: "above the module's range", pod: sloPod("p", "1000001", "", nil), wantProblems: []string{ReasonInvalidSLO}},
		{name: "top of the range", pod: sloPod("p", "1M", "", nil), want: Spec{1000000, 1, 0}, wantOK: true},
		{
			name: "annotations", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "7", MinCreditAnnotation: "20"}),
			want: Spec{500, 7, 20}, wantOK: true,
		},
		{
			name: "range ends", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "10000", MinCreditAnnotation: "100"}),
			want: Spec{500, 10000, 100}, wantOK: true,
		},
		{
			name: "weight zero", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "0"}),
			want: Spec{500, 1, 0}, wantOK: true, wantProblems: []string{ReasonInvalidWeight},
		},
		{
			name: "weight too large", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "10001"}),
			want: Spec{500, 1, 0}, wantOK: true, wantProblems: []string{ReasonInvalidWeight},
		},
		{
			name: "weight not a number", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "high"}),
			want: Spec{500, 1, 0}, wantOK: true, wantProblems: []string{ReasonInvalidWeight},
		},
		{
			name: "min-credit too large and negative weight", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "-3", MinCreditAnnotation: "101"}),
			want: Spec{500, 1, 0}, wantOK: true, wantProblems: []string{ReasonInvalidWeight, ReasonInvalidMinCredit},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, problems := SpecFor(tt.pod, &tt.pod.Spec.Containers[0], DefaultResourceName)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("SpecFor = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
			var reasons []string
			for _, p := range problems {
				reasons = append(reasons, p.Reason)
				if p.Message == "" {
					t.Errorf("problem %s has no message", p.Reason)
				}
			}
			if !reflect.DeepEqual(reasons, tt.wantProblems) {
				t.Errorf("problems = %v, want %v", reasons, tt.wantProblems)
			}
		})
	}
}

func TestContainerStarted(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name   string
		pod    *v1.Pod
		setup  func(t *testing.T, root string, fs *moduleFS)
		pidFn  func() (int, error)
		nSlots int
		// policy is the node's (DefaultPolicy when nil).
		policy *Policy
		// wantSlot is the slot holding pid afterwards ("" = none).
		wantSlot    string
		wantValues  [3]int // goal, weight, min_credit of wantSlot
		wantReasons []string
	}{
		{
			name: "limit registers in the first slot", pod: sloPod("p", "500", "", nil),
			wantSlot: "vif1", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "annotations within the caps are written", pod: sloPod("p", "", "300", map[string]string{WeightAnnotation: "7", MinCreditAnnotation: "20"}),
			policy:   &Policy{MaxWeight: 100, MaxMinCredit: 20},
			wantSlot: "vif1", wantValues: [3]int{300, 7, 20}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "the module's whole range where the admin allows it", pod: sloPod("p", "1", "", map[string]string{WeightAnnotation: "10000", MinCreditAnnotation: "100"}),
			policy:   &Policy{MaxWeight: MaxWeight, MaxMinCredit: MaxMinCredit},
			wantSlot: "vif1", wantValues: [3]int{1, 10000, 100}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "default policy: weight capped at 100, min-credit not honoured", pod: sloPod("p", "1", "", map[string]string{WeightAnnotation: "10000", MinCreditAnnotation: "100"}),
			wantSlot: "vif1", wantValues: [3]int{1, 100, 0}, wantReasons: []string{ReasonPolicyClamped, ReasonRegistered},
		},
		{
			name: "default policy: the weight cap itself is not clamped", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "100", MinCreditAnnotation: "0"}),
			wantSlot: "vif1", wantValues: [3]int{500, 100, 0}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "admin allows min-credit 20: 50 is clamped to 20", pod: sloPod("p", "500", "", map[string]string{MinCreditAnnotation: "50"}),
			policy:   &Policy{MaxWeight: 100, MaxMinCredit: 20},
			wantSlot: "vif1", wantValues: [3]int{500, 1, 20}, wantReasons: []string{ReasonPolicyClamped, ReasonRegistered},
		},
		{
			name: "invalid and clamped: both reported, default and cap written", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "high", MinCreditAnnotation: "30"}),
			wantSlot: "vif1", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonInvalidWeight, ReasonPolicyClamped, ReasonRegistered},
		},
		{
			name: "invalid weight: event, default weight, still registered", pod: sloPod("p", "500", "", map[string]string{WeightAnnotation: "0"}),
			wantSlot: "vif1", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonInvalidWeight, ReasonRegistered},
		},
		{
			name: "invalid min-credit: event, default, still registered", pod: sloPod("p", "500", "", map[string]string{MinCreditAnnotation: "250"}),
			wantSlot: "vif1", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonInvalidMinCredit, ReasonRegistered},
		},
		{
			name: "non-integer SLO: event, no slot", pod: sloPod("p", "1500m", "", nil),
			wantReasons: []string{ReasonInvalidSLO},
		},
		{
			name: "held slots are skipped", pod: sloPod("p", "500", "", nil),
			setup:    func(t *testing.T, root string, _ *moduleFS) { setSlot(t, root, "vif1", "pid", 100) },
			wantSlot: "vif2", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "EBUSY race: another writer claims the slot first, the next one is used", pod: sloPod("p", "500", "", nil),
			setup: func(t *testing.T, root string, fs *moduleFS) {
				fs.beforeWrite = func(rel string) {
					if rel == filepath.Join("vif1", "pid") && fs.pidOf("vif1") == 0 {
						setSlot(t, root, "vif1", "pid", 100)
						setSlot(t, root, "vif1", "goal", 50)
					}
				}
			},
			wantSlot: "vif2", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "a slot already holding the PID is adopted", pod: sloPod("p", "500", "", nil),
			setup:    func(t *testing.T, root string, _ *moduleFS) { setSlot(t, root, "vif3", "pid", pid) },
			wantSlot: "vif3", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "slots sort numerically", pod: sloPod("p", "500", "", nil), nSlots: 12,
			setup: func(t *testing.T, root string, _ *moduleFS) {
				for i := 1; i <= 9; i++ {
					setSlot(t, root, fmt.Sprintf("vif%d", i), "pid", 100+i)
				}
			},
			wantSlot: "vif10", wantValues: [3]int{500, 1, 0}, wantReasons: []string{ReasonRegistered},
		},
		{
			name: "all slots held", pod: sloPod("p", "500", "", nil), nSlots: 2,
			setup: func(t *testing.T, root string, _ *moduleFS) {
				setSlot(t, root, "vif1", "pid", 100)
				setSlot(t, root, "vif2", "pid", 101)
			},
			wantReasons: []string{ReasonRegisterFailed},
		},
		{
			name: "ESRCH: the process is gone", pod: sloPod("p", "500", "", nil),
			setup:       func(_ *testing.T, _ string, fs *moduleFS) { fs.dead[pid] = true },
			wantReasons: []string{ReasonRegisterFailed},
		},
		{
			name: "EOPNOTSUPP (cgroup v1) stops the scan", pod: sloPod("p", "500", "", nil),
			setup:       func(_ *testing.T, _ string, fs *moduleFS) { fs.fail["vif1/pid"] = syscall.EOPNOTSUPP },
			wantReasons: []string{ReasonRegisterFailed},
		},
		{
			name: "a failed value write releases the slot", pod: sloPod("p", "500", "", nil),
			setup:       func(_ *testing.T, _ string, fs *moduleFS) { fs.fail["vif1/goal"] = syscall.EINVAL },
			wantReasons: []string{ReasonRegisterFailed},
		},
		{
			name: "no PID from the runtime", pod: sloPod("p", "500", "", nil),
			pidFn:       func() (int, error) { return 0, errors.New("runtime down") },
			wantReasons: []string{ReasonRegisterFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.nSlots
			if n == 0 {
				n = 4
			}
			root := newProcfs(t, n)
			fs := newModuleFS(root)
			if tt.setup != nil {
				tt.setup(t, root, fs)
			}
			rec := &fakeRecorder{}
			m := NewManager(Options{ProcfsRoot: root, FS: fs, Recorder: rec, StateFile: filepath.Join(t.TempDir(), "slots.json"), Policy: tt.policy})
			pidFn := tt.pidFn
			if pidFn == nil {
				pidFn = pidIs(pid)
			}
			m.ContainerStarted(context.Background(), tt.pod, &tt.pod.Spec.Containers[0], "ctr1", pidFn)

			if got := rec.reasons(); !reflect.DeepEqual(got, tt.wantReasons) {
				t.Errorf("events = %v, want %v (%+v)", got, tt.wantReasons, rec.events)
			}
			for i := 1; i <= n; i++ {
				slot := fmt.Sprintf("vif%d", i)
				holds := readSlot(t, root, slot, "pid") == pid
				if holds != (slot == tt.wantSlot) {
					t.Errorf("%s holds pid: %v, want slot %q", slot, holds, tt.wantSlot)
				}
			}
			if tt.wantSlot != "" {
				got := [3]int{readSlot(t, root, tt.wantSlot, "goal"), readSlot(t, root, tt.wantSlot, "weight"), readSlot(t, root, tt.wantSlot, "min_credit")}
				if got != tt.wantValues {
					t.Errorf("%s goal/weight/min_credit = %v, want %v", tt.wantSlot, got, tt.wantValues)
				}
			}
			_, owned := m.owned["ctr1"]
			if owned != (tt.wantSlot != "") {
				t.Errorf("owned = %v, want %v", owned, tt.wantSlot != "")
			}
		})
	}
}

func TestStockContainerTouchesNothing(t *testing.T) {
	root := newProcfs(t, 2)
	fs := newModuleFS(root)
	rec := &fakeRecorder{}
	m := NewManager(Options{ProcfsRoot: root, FS: fs, Recorder: rec})
	pod := sloPod("stock", "", "", nil)
	called := false
	m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], "c", func() (int, error) { called = true; return 1, nil })
	m.ContainerStopped(context.Background(), "c")
	if called || fs.touched != 0 || len(rec.events) != 0 {
		t.Errorf("stock container: pid looked up %v, %d procfs calls, events %v; want none", called, fs.touched, rec.events)
	}
}

func TestModuleAbsent(t *testing.T) {
	var logs logCapture
	ctx := logs.ctx()
	rec := &fakeRecorder{}
	root := filepath.Join(t.TempDir(), "oslab") // never created: no module
	m := NewManager(Options{ProcfsRoot: root, Recorder: rec, StateFile: filepath.Join(t.TempDir(), "slots.json")})
	called := false
	for i := 0; i < 3; i++ {
		// Invalid values too: without the module there is not even an Event.
		pod := sloPod(fmt.Sprintf("p%d", i), "500", "", map[string]string{WeightAnnotation: "0"})
		if i == 2 {
			pod = sloPod("p2", "1500m", "", nil)
		}
		m.ContainerStarted(ctx, pod, &pod.Spec.Containers[0], fmt.Sprintf("c%d", i), func() (int, error) { called = true; return 1, nil })
		m.ContainerStopped(ctx, fmt.Sprintf("c%d", i))
	}
	rt := newFakeRuntime()
	m.Reconcile(ctx, rt.list)
	if lists, _ := rt.calls(); called || lists != 0 || len(rec.events) != 0 {
		t.Errorf("without the module: pid looked up %v, runtime listed %d times, events %v; want none", called, lists, rec.events)
	}
	if got := logs.count("vif module not loaded"); got != 1 {
		t.Errorf("absence logged %d times, want once", got)
	}
	if _, err := os.Stat(filepath.Join(root)); !os.IsNotExist(err) {
		t.Errorf("procfs root was created: %v", err)
	}

	// The module is loaded later: the next SLO container is registered.
	newRoot := newProcfs(t, 1)
	if err := os.Rename(newRoot, root); err != nil {
		t.Fatal(err)
	}
	pod := sloPod("late", "500", "", nil)
	m.ContainerStarted(ctx, pod, &pod.Spec.Containers[0], "late", pidIs(77))
	if got := readSlot(t, root, "vif1", "pid"); got != 77 {
		t.Errorf("after the module loaded, vif1 pid = %d, want 77", got)
	}
	if got := logs.count("vif module found"); got != 1 {
		t.Errorf("module found logged %d times, want once", got)
	}
}

func TestContainerStopped(t *testing.T) {
	tests := []struct {
		name string
		// between runs after the start and before the stop.
		between  func(t *testing.T, root string)
		wantPID  int
		wantGoal int
	}{
		{name: "releases the slot and the module resets it", wantPID: 0, wantGoal: 0},
		{
			name: "a slot the module freed and another container took is left alone",
			between: func(t *testing.T, root string) {
				setSlot(t, root, "vif1", "pid", 999)
				setSlot(t, root, "vif1", "goal", 10)
			},
			wantPID: 999, wantGoal: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newProcfs(t, 2)
			fs := newModuleFS(root)
			state := filepath.Join(t.TempDir(), "slots.json")
			m := NewManager(Options{ProcfsRoot: root, FS: fs, StateFile: state})
			pod := sloPod("p", "500", "", map[string]string{WeightAnnotation: "5"})
			m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], "ctr", pidIs(300))
			if tt.between != nil {
				tt.between(t, root)
			}
			m.ContainerStopped(context.Background(), "ctr")
			m.ContainerStopped(context.Background(), "ctr") // twice is harmless
			if got := readSlot(t, root, "vif1", "pid"); got != tt.wantPID {
				t.Errorf("pid = %d, want %d", got, tt.wantPID)
			}
			if got := readSlot(t, root, "vif1", "goal"); got != tt.wantGoal {
				t.Errorf("goal = %d, want %d", got, tt.wantGoal)
			}
			owners, err := loadState(state)
			if err != nil || len(owners) != 0 {
				t.Errorf("state after stop = %v, %v; want empty", owners, err)
			}
		})
	}
}

func TestCorruptStateFile(t *testing.T) {
	root := newProcfs(t, 1)
	state := filepath.Join(t.TempDir(), "slots.json")
	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logCapture
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: state})
	pod := sloPod("p", "500", "", nil)
	m.ContainerStarted(logs.ctx(), pod, &pod.Spec.Containers[0], "c", pidIs(12))
	if got := readSlot(t, root, "vif1", "pid"); got != 12 {
		t.Errorf("vif1 pid = %d, want 12", got)
	}
	if logs.count("Cannot read the DepCon state file") != 1 {
		t.Errorf("corrupt state file not logged: %v", logs.msgs)
	}
	if owners, err := loadState(state); err != nil || len(owners) != 1 {
		t.Errorf("state rewritten = %v, %v; want one owner", owners, err)
	}
}

func TestConcurrentStarts(t *testing.T) {
	const n = 16
	root := newProcfs(t, n)
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), StateFile: filepath.Join(t.TempDir(), "s.json")})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			pod := sloPod(fmt.Sprintf("p%d", i), "100", "", nil)
			m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], fmt.Sprintf("c%d", i), pidIs(2000+i))
		}(i)
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := 1; i <= n; i++ {
		p := readSlot(t, root, fmt.Sprintf("vif%d", i), "pid")
		if p < 2000 || p >= 2000+n || seen[p] {
			t.Errorf("vif%d pid = %d: want each container in its own slot", i, p)
		}
		seen[p] = true
	}
}

func TestNilManager(t *testing.T) {
	var m *Manager
	pod := sloPod("p", "500", "", nil)
	m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], "c", pidIs(1))
	m.ContainerStopped(context.Background(), "c")
	m.Reconcile(context.Background(), newFakeRuntime().list)
	if m.MaskedPaths([]string{"/proc/kcore"})[0] != "/proc/kcore" || len(m.MaskedPaths([]string{"/proc/kcore"})) != 1 {
		t.Error("a nil Manager masks nothing more")
	}
	if m.Wants(&pod.Spec.Containers[0]) {
		t.Error("a nil Manager wants nothing")
	}
}

// panicFS panics on every call: a bug below the Manager must not escape.
type panicFS struct{}

func (panicFS) ReadDir(string) ([]string, error) { panic("boom") }
func (panicFS) ReadFile(string) ([]byte, error)  { panic("boom") }
func (panicFS) WriteFile(string, []byte) error   { panic("boom") }

func TestPanicIsContained(t *testing.T) {
	var logs logCapture
	m := NewManager(Options{FS: panicFS{}})
	pod := sloPod("p", "500", "", nil)
	m.ContainerStarted(logs.ctx(), pod, &pod.Spec.Containers[0], "c", pidIs(1))
	m.Reconcile(logs.ctx(), newFakeRuntime().list)
	if logs.count("recovered from a panic") != 2 {
		t.Errorf("panics not logged: %v", logs.msgs)
	}
}

func TestNewFromEnv(t *testing.T) {
	t.Setenv(ProcfsRootEnv, "/tmp/x")
	t.Setenv(ResourceNameEnv, "example.org/net")
	m := NewFromEnv(context.Background(), "/var/lib/kubelet", nil)
	if m.root != "/tmp/x" || m.resource != "example.org/net" || m.statePath != "/var/lib/kubelet/depcon/slots.json" {
		t.Errorf("NewFromEnv = root %q resource %q state %q", m.root, m.resource, m.statePath)
	}
	t.Setenv(ProcfsRootEnv, "")
	t.Setenv(ResourceNameEnv, "")
	m = NewFromEnv(context.Background(), "", nil)
	if m.root != DefaultProcfsRoot || m.resource != DefaultResourceName || m.statePath != "" {
		t.Errorf("defaults = root %q resource %q state %q", m.root, m.resource, m.statePath)
	}
}

func TestPIDFromStatusInfo(t *testing.T) {
	tests := []struct {
		name    string
		info    map[string]string
		want    int
		wantErr bool
	}{
		{name: "containerd", info: map[string]string{"info": `{"sandboxID":"abc","pid":1234,"removing":false}`}, want: 1234},
		{name: "not verbose", info: nil, wantErr: true},
		{name: "no pid", info: map[string]string{"info": `{"sandboxID":"abc"}`}, wantErr: true},
		{name: "garbage", info: map[string]string{"info": `{`}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PIDFromStatusInfo(tt.info)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("PIDFromStatusInfo = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestOSFSWriteFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "goal")
	if err := os.WriteFile(name, []byte("12345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (OSFS{}).WriteFile(name, []byte("7\n")); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(name); string(data) != "7\n" {
		t.Errorf("after write: %q, want %q", data, "7\n")
	}
	if err := (OSFS{}).WriteFile(filepath.Join(dir, "missing"), []byte("1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("writing a missing file: %v, want not-exist (never create)", err)
	}
}

func TestPIDLookupDoesNotHoldTheLock(t *testing.T) {
	root := newProcfs(t, 2)
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root)})
	pod := sloPod("p", "500", "", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A stop of another container while the runtime answers the PID
		// lookup; with the lock held during the lookup this deadlocks.
		m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], "c", func() (int, error) {
			m.ContainerStopped(context.Background(), "other")
			return 5, nil
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ContainerStarted holds the lock while looking up the PID")
	}
	if got := readSlot(t, root, "vif1", "pid"); got != 5 {
		t.Errorf("vif1 pid = %d, want 5", got)
	}
}
