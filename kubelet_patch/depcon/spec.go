package depcon

import (
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Names and ranges shared with the vif module (docs/vif-procfs.md).
const (
	// DefaultResourceName is the extended resource that carries a
	// container's network SLO, in Mbps.
	DefaultResourceName v1.ResourceName = "example.com/SLO"
	// WeightAnnotation is the pod annotation for the slots' weight (1-10000):
	// how CPU is shared when the node cannot meet every SLO. The node's
	// Policy caps it.
	WeightAnnotation = "depcon.io/weight"
	// MinCreditAnnotation is the pod annotation for the slots' min_credit
	// (0-100): a bandwidth floor in percent of the node's link capacity. The
	// node's Policy caps it (by default to 0).
	MinCreditAnnotation = "depcon.io/min-credit"

	// MaxGoalMbps is the largest goal the module accepts.
	MaxGoalMbps = 1000000
	// DefaultWeight, MinWeight and MaxWeight bound the weight file.
	DefaultWeight = 1
	MinWeight     = 1
	MaxWeight     = 10000
	// DefaultMinCredit and MaxMinCredit bound the min_credit file.
	DefaultMinCredit = 0
	MaxMinCredit     = 100
)

// Event reasons the Manager records on a pod.
const (
	// ReasonInvalidSLO: the SLO quantity is not a whole number of Mbps in
	// 0-1000000. The container runs without a slot.
	ReasonInvalidSLO = "DepConInvalidSLO"
	// ReasonInvalidWeight: the weight annotation is not an integer in
	// 1-10000. The slot gets the default weight.
	ReasonInvalidWeight = "DepConInvalidWeight"
	// ReasonInvalidMinCredit: the min-credit annotation is not an integer in
	// 0-100. The slot gets the default min_credit.
	ReasonInvalidMinCredit = "DepConInvalidMinCredit"
	// ReasonPolicyClamped: the weight or min-credit annotation is above the
	// node's cap (Policy, set by the cluster admin). The slot gets the cap.
	ReasonPolicyClamped = "DepConPolicyClamped"
	// ReasonRegistered: the container holds a vif slot.
	ReasonRegistered = "DepConRegistered"
	// ReasonRegisterFailed: the container could not be given a slot (no free
	// slot, or the module refused); it runs without network SLO control.
	ReasonRegisterFailed = "DepConRegisterFailed"
)

// Spec is what one container asks of the vif module.
type Spec struct {
	GoalMbps  uint64
	Weight    uint64
	MinCredit uint64
}

// Problem is an invalid value found while reading a Spec; it becomes a pod
// Event with Reason.
type Problem struct {
	Reason  string
	Message string
}

// SLOQuantity returns the container's SLO resource quantity: the limit, or
// the request when there is no limit. ok is false when the container does not
// carry the resource at all.
func SLOQuantity(c *v1.Container, name v1.ResourceName) (q resource.Quantity, ok bool) {
	if c == nil {
		return resource.Quantity{}, false
	}
	if l, found := c.Resources.Limits[name]; found {
		return l, true
	}
	if r, found := c.Resources.Requests[name]; found {
		return r, true
	}
	return resource.Quantity{}, false
}

// goalMbps returns q as a whole number of Mbps in 0-MaxGoalMbps. "1k" is
// 1000; "1.5", "500m" and anything out of range are refused.
func goalMbps(q resource.Quantity) (uint64, bool) {
	if q.Sign() < 0 || q.Cmp(*resource.NewQuantity(MaxGoalMbps, resource.DecimalSI)) > 0 {
		return 0, false
	}
	if q.MilliValue()%1000 != 0 {
		return 0, false
	}
	return uint64(q.Value()), true
}

// SpecFor reads a container's Spec from its SLO resource and the pod's
// annotations. ok is false when the container does not carry the resource,
// or its value is unusable (then problems says why). An invalid weight or
// min-credit annotation falls back to the default and is reported in
// problems; the Spec is still returned. SpecFor returns what the pod asks
// for: the Manager then caps it by the node's Policy.
//
// The SLO is a container resource, so each container that carries it gets a
// slot of its own with its own goal. The annotations are pod-wide and apply
// to every such container of the pod.
func SpecFor(pod *v1.Pod, c *v1.Container, name v1.ResourceName) (spec Spec, ok bool, problems []Problem) {
	q, found := SLOQuantity(c, name)
	if !found {
		return Spec{}, false, nil
	}
	goal, valid := goalMbps(q)
	if !valid {
		return Spec{}, false, []Problem{{
			Reason: ReasonInvalidSLO,
			Message: fmt.Sprintf("container %q: %s %s is not a whole number of Mbps in 0-%d; "+
				"the container runs without a network SLO", c.Name, name, q.String(), MaxGoalMbps),
		}}
	}
	if goal == 0 {
		return Spec{}, false, nil
	}
	spec = Spec{GoalMbps: goal, Weight: DefaultWeight, MinCredit: DefaultMinCredit}
	var annotations map[string]string
	if pod != nil {
		annotations = pod.Annotations
	}
	if v, set := annotations[WeightAnnotation]; set {
		w, err := parseRange(v, MinWeight, MaxWeight)
		if err != nil {
			problems = append(problems, Problem{
				Reason: ReasonInvalidWeight,
				Message: fmt.Sprintf("annotation %s=%q is not an integer in %d-%d; using %d",
					WeightAnnotation, v, MinWeight, MaxWeight, DefaultWeight),
			})
		} else {
			spec.Weight = w
		}
	}
	if v, set := annotations[MinCreditAnnotation]; set {
		mc, err := parseRange(v, 0, MaxMinCredit)
		if err != nil {
			problems = append(problems, Problem{
				Reason: ReasonInvalidMinCredit,
				Message: fmt.Sprintf("annotation %s=%q is not an integer in 0-%d; using %d",
					MinCreditAnnotation, v, MaxMinCredit, DefaultMinCredit),
			})
		} else {
			spec.MinCredit = mc
		}
	}
	return spec, true, problems
}

// parseRange accepts a plain decimal integer in [lo, hi] (an annotation value).
func parseRange(s string, lo, hi uint64) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d out of range %d-%d", n, lo, hi)
	}
	return n, nil
}
