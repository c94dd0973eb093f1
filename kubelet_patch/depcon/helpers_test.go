package depcon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// newProcfs lays out n slots in a temporary directory exactly as the vif
// module does under /proc/oslab (docs/vif-procfs.md): vifN/{pid,goal,weight,
// min_credit,stat} with the load-time defaults, plus the status file.
func newProcfs(t *testing.T, n int) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "oslab")
	files := map[string]string{
		"pid": "0\n", "goal": "0\n", "weight": "1\n", "min_credit": "0\n",
		"stat": "pid=0 goal_mbps=0 target_mbps=0 bw_mbps=0.0 bw_smooth_mbps=0.0 cpu_pct=0 quota_us=0 period_us=0 throttled=0 weight=1 state=idle cgroup=-\n",
	}
	for i := 1; i <= n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("vif%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	header := "slot pid goal_mbps weight min_credit target_mbps bw_mbps bw_smooth_mbps cpu_pct quota_us period_us throttled state cgroup\n"
	if err := os.WriteFile(filepath.Join(root, "status"), []byte(header), 0o444); err != nil {
		t.Fatal(err)
	}
	return root
}

// readSlot returns a slot's file as a number.
func readSlot(t *testing.T, root, slot, file string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, slot, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s/%s: %q is not a number", slot, file, data)
	}
	return n
}

// setSlot writes a slot's file directly, as another writer (an operator's
// echo, a previous kubelet) would.
func setSlot(t *testing.T, root, slot, file string, v int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, slot, file), []byte(strconv.Itoa(v)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// moduleFS answers writes the way the vif module does, on top of the real
// files of a temporary directory laid out by newProcfs.
//
// A fake is used here, and only here, because a temporary directory cannot
// refuse a write: the module's answers (EBUSY when the slot is held by another
// PID or the PID holds another slot, ESRCH for a process that does not exist,
// EINVAL for a value out of the file's range, the reset of goal/weight/
// min_credit on release) are kernel behaviour. Everything else, reading and
// writing the files, is real I/O on the directory. The real module is
// exercised by the integration test in the vif VM harness.
type moduleFS struct {
	OSFS

	mu sync.Mutex
	// dead PIDs answer ESRCH.
	dead map[int]bool
	// fail makes a write to a path (relative to the root, e.g. "vif1/pid")
	// answer this errno.
	fail map[string]syscall.Errno
	// beforeWrite runs before a write is arbitrated, with the path relative
	// to the root; it simulates another writer racing the Manager.
	beforeWrite func(rel string)
	root        string
	// touched counts every call, to prove a stock pod costs no I/O;
	// writes counts the writes among them.
	touched, writes int
}

func newModuleFS(root string) *moduleFS {
	return &moduleFS{root: root, dead: map[int]bool{}, fail: map[string]syscall.Errno{}}
}

func (f *moduleFS) ReadDir(dir string) ([]string, error) {
	f.mu.Lock()
	f.touched++
	f.mu.Unlock()
	return f.OSFS.ReadDir(dir)
}

func (f *moduleFS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	f.touched++
	f.mu.Unlock()
	return f.OSFS.ReadFile(name)
}

func (f *moduleFS) WriteFile(name string, data []byte) error {
	rel, err := filepath.Rel(f.root, name)
	if err != nil {
		return err
	}
	if f.beforeWrite != nil {
		f.beforeWrite(rel)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touched++
	f.writes++
	perr := func(errno syscall.Errno) error { return &os.PathError{Op: "write", Path: name, Err: errno} }
	if errno, ok := f.fail[rel]; ok {
		return perr(errno)
	}
	slot, file := filepath.Split(rel)
	slot = filepath.Clean(slot)
	s := string(data)
	s = strings.TrimSuffix(s, "\n")
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || s == "" || strings.HasPrefix(s, " ") {
		return perr(syscall.EINVAL)
	}
	limits := map[string][2]uint64{"goal": {0, 1000000}, "weight": {1, 10000}, "min_credit": {0, 100}}
	if r, ok := limits[file]; ok && (v < r[0] || v > r[1]) {
		return perr(syscall.EINVAL)
	}
	if file == "pid" {
		cur := f.pidOf(slot)
		switch {
		case v == 0:
			if cur != 0 {
				for name, def := range map[string]string{"goal": "0\n", "weight": "1\n", "min_credit": "0\n"} {
					if err := os.WriteFile(filepath.Join(f.root, slot, name), []byte(def), 0o644); err != nil {
						return err
					}
				}
			}
		case int(v) == cur:
			return nil
		case f.dead[int(v)]:
			return perr(syscall.ESRCH)
		case cur != 0 || f.holdsAnother(slot, int(v)):
			return perr(syscall.EBUSY)
		}
	}
	return f.OSFS.WriteFile(name, []byte(strconv.FormatUint(v, 10)+"\n"))
}

// counts returns touched and writes.
func (f *moduleFS) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.touched, f.writes
}

func (f *moduleFS) pidOf(slot string) int {
	data, err := os.ReadFile(filepath.Join(f.root, slot, "pid"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

func (f *moduleFS) holdsAnother(slot string, pid int) bool {
	entries, _ := os.ReadDir(f.root)
	for _, e := range entries {
		if e.IsDir() && e.Name() != slot && f.pidOf(e.Name()) == pid {
			return true
		}
	}
	return false
}

// event is one recorded pod Event.
type event struct {
	Pod, Type, Reason, Message string
}

// fakeRecorder collects Events; the real recorder needs an API server.
type fakeRecorder struct {
	mu     sync.Mutex
	events []event
}

func (r *fakeRecorder) Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := ""
	if p, ok := object.(*v1.Pod); ok {
		name = p.Name
	}
	r.events = append(r.events, event{name, eventtype, reason, fmt.Sprintf(messageFmt, args...)})
}

func (r *fakeRecorder) reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.events))
	for _, e := range r.events {
		out = append(out, e.Reason)
	}
	return out
}

// logCapture is a context whose klog logger records every message.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (c *logCapture) ctx() context.Context {
	logger := funcr.New(func(prefix, args string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.msgs = append(c.msgs, args)
	}, funcr.Options{Verbosity: 4})
	return klog.NewContext(context.Background(), logr.Logger(logger))
}

func (c *logCapture) count(substr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// sloPod is a pod with one container "app" carrying limits (and requests)
// of the SLO resource; empty strings leave them out.
func sloPod(name, limit, request string, annotations map[string]string) *v1.Pod {
	c := v1.Container{Name: "app", Resources: v1.ResourceRequirements{Limits: v1.ResourceList{}, Requests: v1.ResourceList{}}}
	if limit != "" {
		c.Resources.Limits[DefaultResourceName] = resource.MustParse(limit)
	}
	if request != "" {
		c.Resources.Requests[DefaultResourceName] = resource.MustParse(request)
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Annotations: annotations},
		Spec:       v1.PodSpec{Containers: []v1.Container{c}},
	}
}

func pidIs(p int) func() (int, error) { return func() (int, error) { return p, nil } }

// fakeRuntime stands for the container runtime behind Reconcile's ListFunc:
// the CRI needs a runtime socket, and the tests need its errors on demand.
// It lists its running containers and answers PID lookups, failing them as
// told, and counts both kinds of call (each is one CRI call in the kubelet).
type fakeRuntime struct {
	mu         sync.Mutex
	containers []fakeContainer
	// listErr fails the list; pidErr fails one container's PID lookup.
	listErr error
	pidErr  map[string]error
	// beforeList runs inside the list, as something racing it would.
	beforeList func()

	lists, pidLookups int
}

type fakeContainer struct {
	id  string
	pod *v1.Pod // nil: a pod the kubelet does not know
	pid int
}

func newFakeRuntime() *fakeRuntime { return &fakeRuntime{pidErr: map[string]error{}} }

// run adds a running container (the pod's first container).
func (r *fakeRuntime) run(id string, pod *v1.Pod, pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.containers = append(r.containers, fakeContainer{id, pod, pid})
}

// stop removes a container from the running ones.
func (r *fakeRuntime) stop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.containers {
		if c.id == id {
			r.containers = append(r.containers[:i], r.containers[i+1:]...)
			return
		}
	}
}

func (r *fakeRuntime) list(context.Context) ([]RunningContainer, error) {
	if r.beforeList != nil {
		r.beforeList()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	if r.listErr != nil {
		return nil, r.listErr
	}
	out := make([]RunningContainer, 0, len(r.containers))
	for _, c := range r.containers {
		rc := RunningContainer{ContainerID: c.id, Pod: c.pod}
		if c.pod != nil {
			rc.Container = &c.pod.Spec.Containers[0]
		}
		id, pid := c.id, c.pid
		rc.PID = func() (int, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.pidLookups++
			if err := r.pidErr[id]; err != nil {
				return 0, err
			}
			return pid, nil
		}
		out = append(out, rc)
	}
	return out, nil
}

// calls returns the list and PID lookup counts.
func (r *fakeRuntime) calls() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lists, r.pidLookups
}

// loadModule lays out a fresh module's slots at root, replacing what is
// there: a module loaded late, or reloaded (every slot free again).
func loadModule(t *testing.T, root string, n int) {
	t.Helper()
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newProcfs(t, n), root); err != nil {
		t.Fatal(err)
	}
}

// slotPIDs returns the pid of every slot vif1..vifN.
func slotPIDs(t *testing.T, root string, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		out[i] = readSlot(t, root, fmt.Sprintf("vif%d", i+1), "pid")
	}
	return out
}
