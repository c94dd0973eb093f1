package depcon

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestPolicyFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Policy
		// wantErrs are the variables reported invalid.
		wantErrs []string
	}{
		{name: "unset: defaults", want: Policy{100, 0}},
		{name: "empty: defaults", env: map[string]string{MaxWeightEnv: "", MaxMinCreditEnv: ""}, want: Policy{100, 0}},
		{name: "set", env: map[string]string{MaxWeightEnv: "10", MaxMinCreditEnv: "25"}, want: Policy{10, 25}},
		{name: "range ends", env: map[string]string{MaxWeightEnv: "1", MaxMinCreditEnv: "100"}, want: Policy{1, 100}},
		{name: "other range ends", env: map[string]string{MaxWeightEnv: "10000", MaxMinCreditEnv: "0"}, want: Policy{10000, 0}},
		{
			name: "weight 0", env: map[string]string{MaxWeightEnv: "0", MaxMinCreditEnv: "5"},
			want: Policy{100, 5}, wantErrs: []string{MaxWeightEnv},
		},
		{
			name: "above the module's ranges", env: map[string]string{MaxWeightEnv: "10001", MaxMinCreditEnv: "101"},
			want: Policy{100, 0}, wantErrs: []string{MaxWeightEnv, MaxMinCreditEnv},
		},
		{
			name: "not numbers", env: map[string]string{MaxWeightEnv: "lots", MaxMinCreditEnv: "-1"},
			want: Policy{100, 0}, wantErrs: []string{MaxWeightEnv, MaxMinCreditEnv},
		},
		{
			name: "spaces and signs are refused", env: map[string]string{MaxWeightEnv: " 5", MaxMinCreditEnv: "+5"},
			want: Policy{100, 0}, wantErrs: []string{MaxWeightEnv, MaxMinCreditEnv},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := PolicyFromEnv(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Errorf("policy = %+v, want %+v", got, tt.want)
			}
			var named []string
			for _, err := range errs {
				named = append(named, strings.SplitN(err.Error(), "=", 2)[0])
			}
			if !reflect.DeepEqual(named, tt.wantErrs) {
				t.Errorf("errors %v name %v, want %v", errs, named, tt.wantErrs)
			}
		})
	}
}

// greedyPod asks for everything the module allows, to starve its neighbours.
func greedyPod(name string) *v1.Pod {
	return sloPod(name, "1", "", map[string]string{WeightAnnotation: "10000", MinCreditAnnotation: "100"})
}

func TestPolicyClampedEvent(t *testing.T) {
	root := newProcfs(t, 2)
	rec := &fakeRecorder{}
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), Recorder: rec})
	pod := greedyPod("greedy")
	m.ContainerStarted(context.Background(), pod, &pod.Spec.Containers[0], "ctr", pidIs(4242))

	var clamped []event
	for _, e := range rec.events {
		if e.Reason == ReasonPolicyClamped {
			clamped = append(clamped, e)
		}
	}
	if len(clamped) != 1 {
		t.Fatalf("%s events = %+v, want one", ReasonPolicyClamped, rec.events)
	}
	e := clamped[0]
	for _, want := range []string{"depcon.io/weight 10000 clamped to 100", "depcon.io/min-credit 100 clamped to 0"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if e.Pod != "greedy" || e.Type != v1.EventTypeWarning {
		t.Errorf("event on pod %q of type %s, want a Warning on greedy", e.Pod, e.Type)
	}
	if got := [2]int{readSlot(t, root, "vif1", "weight"), readSlot(t, root, "vif1", "min_credit")}; got != [2]int{100, 0} {
		t.Errorf("vif1 weight/min_credit = %v, want the caps [100 0]", got)
	}
}

func TestNewFromEnvPolicy(t *testing.T) {
	tests := []struct {
		name                string
		maxWeight, maxMC    string
		wantWeight, wantMC  int
		wantLoggedInvalid   int
		wantClampedMessages []string
	}{
		{
			name: "unset: defaults", wantWeight: 100, wantMC: 0,
			wantClampedMessages: []string{"depcon.io/weight 10000 clamped to 100", "depcon.io/min-credit 100 clamped to 0"},
		},
		{
			name: "the admin's caps", maxWeight: "50", maxMC: "10", wantWeight: 50, wantMC: 10,
			wantClampedMessages: []string{"depcon.io/weight 10000 clamped to 50", "depcon.io/min-credit 100 clamped to 10"},
		},
		{name: "the module's whole range", maxWeight: "10000", maxMC: "100", wantWeight: 10000, wantMC: 100},
		{
			name: "invalid: logged, defaults", maxWeight: "1e3", maxMC: "200", wantWeight: 100, wantMC: 0, wantLoggedInvalid: 2,
			wantClampedMessages: []string{"depcon.io/weight 10000 clamped to 100", "depcon.io/min-credit 100 clamped to 0"},
		},
		{
			name: "one invalid, the other kept", maxWeight: "0", maxMC: "30", wantWeight: 100, wantMC: 30, wantLoggedInvalid: 1,
			wantClampedMessages: []string{"depcon.io/weight 10000 clamped to 100", "depcon.io/min-credit 100 clamped to 30"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newProcfs(t, 2)
			t.Setenv(ProcfsRootEnv, root)
			t.Setenv(ResourceNameEnv, "")
			t.Setenv(MaxWeightEnv, tt.maxWeight)
			t.Setenv(MaxMinCreditEnv, tt.maxMC)
			logs := &logCapture{}
			rec := &fakeRecorder{}
			m := NewFromEnv(logs.ctx(), filepath.Join(t.TempDir(), "kubelet"), rec)
			if n := logs.count("Invalid DepCon policy"); n != tt.wantLoggedInvalid {
				t.Errorf("%d invalid-policy errors logged, want %d: %v", n, tt.wantLoggedInvalid, logs.msgs)
			}

			pod := greedyPod("greedy")
			m.ContainerStarted(logs.ctx(), pod, &pod.Spec.Containers[0], "ctr", pidIs(4242))
			if got := readSlot(t, root, "vif1", "pid"); got != 4242 {
				t.Fatalf("vif1 pid = %d, want 4242; events %+v", got, rec.events)
			}
			got := [3]int{readSlot(t, root, "vif1", "goal"), readSlot(t, root, "vif1", "weight"), readSlot(t, root, "vif1", "min_credit")}
			if want := [3]int{1, tt.wantWeight, tt.wantMC}; got != want {
				t.Errorf("vif1 goal/weight/min_credit = %v, want %v", got, want)
			}
			var message string
			for _, e := range rec.events {
				if e.Reason == ReasonPolicyClamped {
					message += e.Message
				}
			}
			if (message != "") != (len(tt.wantClampedMessages) > 0) {
				t.Errorf("clamp event %q, want one saying %v", message, tt.wantClampedMessages)
			}
			for _, want := range tt.wantClampedMessages {
				if !strings.Contains(message, want) {
					t.Errorf("clamp event %q does not say %q", message, want)
				}
			}
		})
	}
}

func TestReconcileKeepsTheCaps(t *testing.T) {
	m, root, _, rec := newReconcileManager(t, 2)
	rt := newFakeRuntime()
	start(m, rt, "ctr-a", greedyPod("a"), 1000)
	// Someone writes the pod's wish by hand into the held slot.
	setSlot(t, root, "vif1", "weight", 10000)
	setSlot(t, root, "vif1", "min_credit", 100)
	m.Reconcile(context.Background(), rt.list)
	if got := [2]int{readSlot(t, root, "vif1", "weight"), readSlot(t, root, "vif1", "min_credit")}; got != [2]int{100, 0} {
		t.Errorf("after a reconcile vif1 weight/min_credit = %v, want the caps [100 0]", got)
	}
	// The reconciles that follow keep the slot and tell the pod nothing new.
	m.Reconcile(context.Background(), rt.list)
	if got := rec.reasons(); !reflect.DeepEqual(got, []string{ReasonPolicyClamped, ReasonRegistered}) {
		t.Errorf("events = %v, want one %s and one %s", got, ReasonPolicyClamped, ReasonRegistered)
	}
}

func TestReconcileRegistersWithinTheCaps(t *testing.T) {
	root := filepath.Join(t.TempDir(), "oslab") // the module loads after the container started
	rec := &fakeRecorder{}
	m := NewManager(Options{ProcfsRoot: root, FS: newModuleFS(root), Recorder: rec, StateFile: filepath.Join(t.TempDir(), "slots.json")})
	rt := newFakeRuntime()
	start(m, rt, "ctr-a", greedyPod("a"), 1000)
	loadModule(t, root, 2)
	m.Reconcile(context.Background(), rt.list)
	m.Reconcile(context.Background(), rt.list)
	got := [3]int{readSlot(t, root, "vif1", "pid"), readSlot(t, root, "vif1", "weight"), readSlot(t, root, "vif1", "min_credit")}
	if got != [3]int{1000, 100, 0} {
		t.Errorf("vif1 pid/weight/min_credit = %v, want [1000 100 0]", got)
	}
	if got := rec.reasons(); !reflect.DeepEqual(got, []string{ReasonPolicyClamped, ReasonRegistered}) {
		t.Errorf("events = %v, want one %s and one %s", got, ReasonPolicyClamped, ReasonRegistered)
	}
}

func TestOptionsPolicyIsBroughtIntoTheModulesRanges(t *testing.T) {
	m := NewManager(Options{Policy: &Policy{MaxWeight: 0, MaxMinCredit: 500}})
	if m.policy != (Policy{MaxWeight: MinWeight, MaxMinCredit: MaxMinCredit}) {
		t.Errorf("policy = %+v", m.policy)
	}
	m = NewManager(Options{Policy: &Policy{MaxWeight: 20000}})
	if m.policy != (Policy{MaxWeight: MaxWeight}) {
		t.Errorf("policy = %+v", m.policy)
	}
}
