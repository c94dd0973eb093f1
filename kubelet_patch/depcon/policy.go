package depcon

import (
	"fmt"
	"os"
	"strings"
)

// The node's policy: how much of the weight and min-credit annotations a pod
// gets. The annotations are written by the pod's author; the caps are set by
// the cluster admin (roles/depcon_kubelet puts them in the kubelet's
// environment), so a pod cannot take a node's CPU from the other SLO pods by
// asking for it.
const (
	// MaxWeightEnv caps a pod's weight annotation (1-10000).
	MaxWeightEnv = "DEPCON_MAX_WEIGHT"
	// MaxMinCreditEnv caps a pod's min-credit annotation (0-100).
	MaxMinCreditEnv = "DEPCON_MAX_MIN_CREDIT"

	// DefaultPolicyMaxWeight bounds what one pod can take from a default
	// (weight 1) pod when the node is short of CPU: 100 times its share.
	DefaultPolicyMaxWeight = 100
	// DefaultPolicyMaxMinCredit is 0: a floor inflates the slot's target
	// to a share of the whole link whatever its goal, so it is honoured
	// only where the admin allows it.
	DefaultPolicyMaxMinCredit = 0
)

// Policy caps the values a pod's annotations may write into its slots. A
// value above a cap is written as the cap, and the pod gets a
// ReasonPolicyClamped Event.
type Policy struct {
	// MaxWeight is the largest weight written (1-10000).
	MaxWeight uint64
	// MaxMinCredit is the largest min_credit written (0-100).
	MaxMinCredit uint64
}

// DefaultPolicy is the policy of a node whose admin set nothing.
func DefaultPolicy() Policy {
	return Policy{MaxWeight: DefaultPolicyMaxWeight, MaxMinCredit: DefaultPolicyMaxMinCredit}
}

// normalized brings p into the module's ranges, so a caller's Policy cannot
// make the Manager write a value the module refuses.
func (p Policy) normalized() Policy {
	p.MaxWeight = min(max(p.MaxWeight, MinWeight), MaxWeight)
	p.MaxMinCredit = min(p.MaxMinCredit, MaxMinCredit)
	return p
}

// PolicyFromEnv reads the policy from DEPCON_MAX_WEIGHT and
// DEPCON_MAX_MIN_CREDIT. An unset or empty variable takes the default; an
// invalid one takes the default too and is returned as an error, which the
// kubelet logs: a typo in a drop-in must not stop the node.
func PolicyFromEnv(getenv func(string) string) (Policy, []error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := DefaultPolicy()
	var errs []error
	for _, v := range []struct {
		env    string
		lo, hi uint64
		dst    *uint64
	}{
		{MaxWeightEnv, MinWeight, MaxWeight, &p.MaxWeight},
		{MaxMinCreditEnv, 0, MaxMinCredit, &p.MaxMinCredit},
	} {
		s := getenv(v.env)
		if s == "" {
			continue
		}
		n, err := parseRange(s, v.lo, v.hi)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not an integer in %d-%d, using %d", v.env, s, v.lo, v.hi, *v.dst))
			continue
		}
		*v.dst = n
	}
	return p, errs
}

// clamp caps spec's weight and min_credit. The Problem, when one was capped,
// names each annotation with the value asked for and the value written; it is
// pod-wide (no container name), so the kubelet's event correlator folds the
// same message for several SLO containers of one pod into one Event.
func (p Policy) clamp(spec Spec) (Spec, []Problem) {
	var clamped []string
	if spec.Weight > p.MaxWeight {
		clamped = append(clamped, fmt.Sprintf("%s %d clamped to %d (%s)", WeightAnnotation, spec.Weight, p.MaxWeight, MaxWeightEnv))
		spec.Weight = p.MaxWeight
	}
	if spec.MinCredit > p.MaxMinCredit {
		clamped = append(clamped, fmt.Sprintf("%s %d clamped to %d (%s)", MinCreditAnnotation, spec.MinCredit, p.MaxMinCredit, MaxMinCreditEnv))
		spec.MinCredit = p.MaxMinCredit
	}
	if len(clamped) == 0 {
		return spec, nil
	}
	return spec, []Problem{{
		Reason:  ReasonPolicyClamped,
		Message: "The node's DepCon policy caps this pod's annotations: " + strings.Join(clamped, ", "),
	}}
}
