package kubernetes

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/runbookbot/runbookbot/engine"
)

// Specs lists the kubernetes step actions.
func (k *Integration) Specs() []engine.ActionSpec {
	return []engine.ActionSpec{
		{
			Type: StepType, Action: "checkDeploymentReady", Run: action{k, checkDeploymentReady},
			Required: []string{"namespace"},
			Outputs:  []string{"deployment", "readyReplicas", "minReadyReplicas"},
			Estimate: fixed(time.Second), Validate: validateInts("minReadyReplicas"),
		},
		{
			Type: StepType, Action: "rolloutRestart", Run: action{k, rolloutRestart}, Mutating: true,
			Required:   []string{"namespace", "deployment"},
			Outputs:    []string{"deployment", "restartedAt", "previousRevision"},
			SavesState: []string{"previousRevision"},
			Estimate:   fixed(2 * time.Second),
		},
		{
			Type: StepType, Action: "rolloutUndo", Run: action{k, rolloutUndo}, Mutating: true,
			Required: []string{"namespace", "deployment"},
			Outputs:  []string{"deployment", "fromRevision", "toRevision", "skipped", "message"},
			Estimate: fixed(2 * time.Second), Validate: validateInts("toRevision"),
		},
		{
			Type: StepType, Action: "scale", Run: action{k, scale}, Mutating: true,
			Required: []string{"namespace", "deployment", "replicas"},
			Outputs:  []string{"deployment", "previousReplicas", "replicas", "changed"},
			Estimate: fixed(2 * time.Second), Validate: validateInts("replicas"),
		},
		{
			// Mutating: a command can change anything in the container.
			Type: StepType, Action: "execCommand", Run: action{k, execCommand}, Mutating: true,
			Required: []string{"namespace", "pod", "command"},
			Outputs:  []string{"stdout", "stderr", "exitCode", "exitCodeKnown", "container"},
			Estimate: fixed(10 * time.Second), Validate: validateCommand,
		},
		{
			Type: StepType, Action: "getDeployment", Run: action{k, getDeploymentAction},
			Required: []string{"namespace", "deployment"},
			Outputs:  []string{"deployment"},
			Estimate: fixed(time.Second),
		},
		{
			Type: StepType, Action: "listPods", Run: action{k, listPods},
			Required: []string{"namespace"},
			Outputs:  []string{"items", "count", "truncated"},
			Estimate: fixed(time.Second), Validate: validateSelectors,
		},
		{
			Type: StepType, Action: "deletePod", Run: action{k, deletePod}, Mutating: true,
			Required: []string{"namespace", "pod"},
			Outputs:  []string{"pod", "deleted", "alreadyGone"},
			Estimate: fixed(2 * time.Second), Validate: validateInts("gracePeriodSeconds"),
		},
		{
			Type: StepType, Action: "waitForRollout", Run: action{k, waitForRollout},
			Required: []string{"namespace", "deployment"},
			Outputs:  []string{"deployment", "attempts", "waitedSeconds"},
			Estimate: durationParam("timeout", 5*time.Minute), Validate: validateDurations("timeout", "pollInterval"),
		},
	}
}

func fixed(d time.Duration) func(*engine.Step) time.Duration {
	return func(*engine.Step) time.Duration { return d }
}

func durationParam(key string, def time.Duration) func(*engine.Step) time.Duration {
	return func(s *engine.Step) time.Duration {
		if v, ok := staticParam(s, key); ok {
			if d, err := engine.ParseDuration(engine.Stringify(v)); err == nil {
				return d
			}
		}
		return def
	}
}

// validateInts checks that static values of the keys are whole numbers of
// zero or more.
func validateInts(keys ...string) func(*engine.Step) error {
	return func(s *engine.Step) error {
		for _, key := range keys {
			v, ok := staticParam(s, key)
			if !ok || absent(v) {
				continue
			}
			n, err := toInt64(v)
			if err != nil {
				return fmt.Errorf("params.%s: %w", key, err)
			}
			if n < 0 {
				return fmt.Errorf("params.%s: %d is negative", key, n)
			}
		}
		return nil
	}
}

func validateDurations(keys ...string) func(*engine.Step) error {
	return func(s *engine.Step) error {
		for _, key := range keys {
			if v, ok := staticParam(s, key); ok && !absent(v) {
				if _, err := engine.ParseDuration(engine.Stringify(v)); err != nil {
					return fmt.Errorf("params.%s: %w", key, err)
				}
			}
		}
		return nil
	}
}

func validateCommand(s *engine.Step) error {
	v, ok := staticParam(s, "command")
	if !ok {
		return nil
	}
	_, err := commandParam(v)
	return err
}

func validateSelectors(s *engine.Step) error {
	if v, ok := staticParam(s, "labelSelector"); ok && !absent(v) {
		if _, err := labels.Parse(engine.Stringify(v)); err != nil {
			return fmt.Errorf("params.labelSelector: %v", err)
		}
	}
	if v, ok := staticParam(s, "fieldSelector"); ok && !absent(v) {
		if _, err := fields.ParseSelector(engine.Stringify(v)); err != nil {
			return fmt.Errorf("params.fieldSelector: %v", err)
		}
	}
	return nil
}
