package depcon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// Environment of the real-module test. The vif VM harness (tests/vm) boots a
// kernel with vif loaded and runs the statically linked test binary as root:
//
//	CGO_ENABLED=0 go test -c -o depcon.test .
//	DEPCON_REAL_PROCFS=/proc/oslab ./depcon.test -test.run TestRealModule -test.v
const (
	realProcfsEnv = "DEPCON_REAL_PROCFS"
	// realCgroupEnv is where cgroup v2 is mounted (default /sys/fs/cgroup).
	realCgroupEnv = "DEPCON_REAL_CGROUP"
	// helperEnv turns the test binary into a process that just waits, so the
	// test needs no sleep(1) in the VM's initramfs.
	helperEnv = "DEPCON_TEST_HELPER_SLEEP"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// cgroupSeq numbers the test's cgroups (the test is not parallel).
var cgroupSeq int

// startInCgroup starts a helper process and moves it into a fresh cgroup with
// the cpu controller, as a container's main process would be.
func startInCgroup(t *testing.T) *exec.Cmd {
	t.Helper()
	cgRoot := os.Getenv(realCgroupEnv)
	if cgRoot == "" {
		cgRoot = "/sys/fs/cgroup"
	}
	if err := os.WriteFile(filepath.Join(cgRoot, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
		t.Fatalf("enable the cpu controller under %s: %v", cgRoot, err)
	}
	cgroupSeq++
	cg := filepath.Join(cgRoot, fmt.Sprintf("depcon-test-%d-%d", os.Getpid(), cgroupSeq))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// The module frees the slot within a period; rmdir may need a moment.
		for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatalf("move the helper into %s: %v", cg, err)
	}
	return cmd
}

// TestRealModule runs the Manager against the loaded vif module: claim,
// values, the module's ESRCH and EBUSY answers, a second writer, release and
// reset. Skipped unless
// DEPCON_REAL_PROCFS is set (see above); it needs root and cgroup v2.
func TestRealModule(t *testing.T) {
	root := os.Getenv(realProcfsEnv)
	if root == "" {
		t.Skipf("%s not set: no real vif module to test against", realProcfsEnv)
	}
	ctx := context.Background()
	rec := &fakeRecorder{}
	// A node whose admin allows min-credit: the real module takes the values.
	m := NewManager(Options{ProcfsRoot: root, Recorder: rec, StateFile: filepath.Join(t.TempDir(), "slots.json"),
		Policy: &Policy{MaxWeight: DefaultPolicyMaxWeight, MaxMinCredit: 10}})
	slotOf := func(pid int) string {
		names, _ := m.slots(klog.Background())
		for _, s := range names {
			if p, err := m.readPID(s); err == nil && p == pid {
				return s
			}
		}
		return ""
	}

	a := startInCgroup(t)
	pod := sloPod("real-a", "500", "", map[string]string{WeightAnnotation: "3", MinCreditAnnotation: "10"})
	m.ContainerStarted(ctx, pod, &pod.Spec.Containers[0], "ctr-a", pidIs(a.Process.Pid))
	slot := slotOf(a.Process.Pid)
	if slot == "" {
		t.Fatalf("pid %d holds no slot; events %+v", a.Process.Pid, rec.events)
	}
	for file, want := range map[string]int{"goal": 500, "weight": 3, "min_credit": 10} {
		if got := readSlot(t, root, slot, file); got != want {
			t.Errorf("%s/%s = %d, want %d", slot, file, got, want)
		}
	}
	stat, err := os.ReadFile(filepath.Join(root, slot, "stat"))
	if err != nil || !strings.Contains(string(stat), fmt.Sprintf("pid=%d ", a.Process.Pid)) {
		t.Errorf("%s/stat = %q, %v", slot, stat, err)
	}

	// A second container whose PID the module cannot find (ESRCH) gets no
	// slot and an Event; the first keeps its slot.
	dead := exec.Command(os.Args[0], "-test.run=^$")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	podB := sloPod("real-b", "200", "", nil)
	m.ContainerStarted(ctx, podB, &podB.Spec.Containers[0], "ctr-b", pidIs(dead.Process.Pid))
	if got := rec.reasons(); got[len(got)-1] != ReasonRegisterFailed {
		t.Errorf("dead PID: events %v, want %s last", got, ReasonRegisterFailed)
	}

	// Another writer (a second manager with no shared state) skips the held
	// slot: were it to write there, the module would answer EBUSY.
	c := startInCgroup(t)
	other := NewManager(Options{ProcfsRoot: root})
	podC := sloPod("real-c", "100", "", nil)
	other.ContainerStarted(ctx, podC, &podC.Spec.Containers[0], "ctr-c", pidIs(c.Process.Pid))
	if s := slotOf(c.Process.Pid); s == "" || s == slot {
		t.Errorf("second writer got slot %q (first holds %q)", s, slot)
	}
	other.ContainerStopped(ctx, "ctr-c")

	// A real EBUSY: another writer claims the free slot the manager is about
	// to write (between its read and its write); the manager moves on.
	d, e := startInCgroup(t), startInCgroup(t)
	var raced string
	racer := &hookFS{FS: OSFS{}, before: func(name string) {
		if raced == "" && filepath.Base(name) == "pid" {
			raced = filepath.Base(filepath.Dir(name))
			if err := (OSFS{}).WriteFile(name, []byte(strconv.Itoa(e.Process.Pid))); err != nil {
				t.Errorf("racing claim of %s: %v", raced, err)
			}
		}
	}}
	racing := NewManager(Options{ProcfsRoot: root, FS: racer})
	podD := sloPod("real-d", "100", "", nil)
	racing.ContainerStarted(ctx, podD, &podD.Spec.Containers[0], "ctr-d", pidIs(d.Process.Pid))
	if s := slotOf(d.Process.Pid); s == "" || s == raced || slotOf(e.Process.Pid) != raced {
		t.Errorf("after EBUSY on %s: d holds %q, e holds %q", raced, s, slotOf(e.Process.Pid))
	}
	racing.ContainerStopped(ctx, "ctr-d")
	if err := (OSFS{}).WriteFile(filepath.Join(root, raced, "pid"), []byte("0")); err != nil {
		t.Error(err)
	}

	m.ContainerStopped(ctx, "ctr-a")
	if got := readSlot(t, root, slot, "pid"); got != 0 {
		t.Errorf("after stop %s/pid = %d, want 0", slot, got)
	}
	if got := readSlot(t, root, slot, "goal"); got != 0 {
		t.Errorf("after stop %s/goal = %d, want 0 (module reset)", slot, got)
	}
}

// hookFS calls before ahead of every write: a second writer racing the
// Manager against the real module.
type hookFS struct {
	FS
	before func(name string)
}

func (h *hookFS) WriteFile(name string, data []byte) error {
	h.before(name)
	return h.FS.WriteFile(name, data)
}
