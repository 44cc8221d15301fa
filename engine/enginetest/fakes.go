package enginetest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/runbookbot/runbookbot/engine"
)

// Cluster is a hand-written fake of the outside systems the seed's
// high-memory runbook touches: Kubernetes actions, the GC endpoint, pod
// memory metrics and notifications. Set the fields to shape a scenario.
type Cluster struct {
	mu sync.Mutex
	// Memory returns podMemoryPercent for the nth query (0-based).
	Memory func(n int) float64
	// Replicas and Ready describe the deployment.
	Replicas, Ready int
	// Fail makes an action ("kubernetes.rolloutRestart") fail.
	Fail map[string]error
	// Block makes an action wait until its context ends.
	Block map[string]bool
	// Started receives the name of every action as it starts.
	Started chan string
	// ErrorRate returns metrics.errorRate for the nth query (default 0).
	ErrorRate func(n int) float64
	// Health returns healthcheck for the nth check: failed, or an error
	// when the check cannot be made (default healthy).
	Health func(n int) (failed bool, err error)

	calls    []string
	memQuery int
	errQuery int
	health   int
	notes    []engine.Notification
}

// NewCluster returns a healthy 3-replica deployment whose memory stays at 92%.
func NewCluster() *Cluster {
	return &Cluster{Replicas: 3, Ready: 3, Memory: func(int) float64 { return 92 }, Fail: map[string]error{}, Block: map[string]bool{}}
}

// Calls returns the actions called so far, as type.action.
func (c *Cluster) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// Called counts calls of one action.
func (c *Cluster) Called(name string) int {
	n := 0
	for _, x := range c.Calls() {
		if x == name {
			n++
		}
	}
	return n
}

// Notifications returns what notification steps sent.
func (c *Cluster) Notifications() []engine.Notification {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]engine.Notification(nil), c.notes...)
}

func (c *Cluster) deployment() map[string]any {
	return map[string]any{
		"spec":   map[string]any{"replicas": c.Replicas},
		"status": map[string]any{"readyReplicas": c.Ready, "replicas": c.Replicas},
	}
}

// Registry returns a registry with the built-ins (notifications go to the
// fake) and fake kubernetes and http actions and metrics/deployment data.
func (c *Cluster) Registry() *engine.Registry {
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, engine.NotifierFunc(func(_ context.Context, n engine.Notification) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.notes = append(c.notes, n)
		return nil
	}))
	act := func(typ string) engine.Action {
		return engine.ActionFunc(func(ctx context.Context, call *engine.Call) (engine.Result, error) {
			name := typ + "." + call.Step.Action
			c.mu.Lock()
			c.calls = append(c.calls, name)
			err := c.Fail[name]
			block := c.Block[name]
			out := map[string]any{"deployment": c.deployment()}
			started := c.Started
			c.mu.Unlock()
			if started != nil {
				started <- name
			}
			if block {
				<-ctx.Done()
				return engine.Result{}, context.Cause(ctx)
			}
			state := map[string]any{}
			if name == "kubernetes.rolloutRestart" {
				state["previousRevision"] = 4
			}
			return engine.Result{Output: out, State: state}, err
		})
	}
	reg.Register(engine.ActionSpec{Type: "kubernetes", Action: "*", Run: act("kubernetes"), SavesState: []string{"previousRevision"}, Outputs: []string{"deployment"}, Mutating: true})
	reg.Register(engine.ActionSpec{Type: "http", Action: "*", Run: act("http"), Mutating: true})
	reg.Resolver("metrics", func(_ context.Context, members []string, _ map[string]any) (any, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := map[string]any{}
		for _, m := range members {
			switch m {
			case "podMemoryPercent":
				out[m] = c.Memory(c.memQuery)
				c.memQuery++
			case "errorRate":
				if c.ErrorRate != nil {
					out[m] = c.ErrorRate(c.errQuery)
				} else {
					out[m] = 0.0
				}
				c.errQuery++
			default:
				return nil, fmt.Errorf("no query named %q", m)
			}
		}
		return out, nil
	})
	reg.Resolver("deployment", func(context.Context, []string, map[string]any) (any, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.deployment(), nil
	})
	reg.Resolver("healthcheck", func(context.Context, []string, map[string]any) (any, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := c.health
		c.health++
		if c.Health == nil {
			return map[string]any{"failed": false, "healthy": true}, nil
		}
		failed, err := c.Health(n)
		if err != nil {
			return nil, err
		}
		return map[string]any{"failed": failed, "healthy": !failed}, nil
	})
	return reg
}

// MemorySequence returns a Memory func giving vals in turn, then the last.
func MemorySequence(vals ...float64) func(int) float64 {
	return func(n int) float64 {
		if n >= len(vals) {
			return vals[len(vals)-1]
		}
		return vals[n]
	}
}

// Approvers is a fake engine.Approvers: Members maps a role/team/group name
// to its users; Bypass lists users who may bypass.
type Approvers struct {
	Members map[string][]string
	Bypass  []string
}

// Satisfies reports membership of user in ref.Value (or, for the
// approvals:respond permission, in any group).
func (a Approvers) Satisfies(_ context.Context, user string, ref engine.ApproverRef) (bool, error) {
	if ref.Type == "user" {
		return ref.Value == user, nil
	}
	if ref.Type == "permission" {
		for _, us := range a.Members {
			for _, u := range us {
				if u == user {
					return true, nil
				}
			}
		}
		return false, nil
	}
	for _, u := range a.Members[ref.Value] {
		if u == user {
			return true, nil
		}
	}
	return false, nil
}

// CanBypass reports whether user is in Bypass.
func (a Approvers) CanBypass(_ context.Context, user string, _ []engine.Permission) (bool, error) {
	for _, u := range a.Bypass {
		if u == user {
			return true, nil
		}
	}
	return false, nil
}

// ErrAPIDown is a ready-made failure.
var ErrAPIDown = errors.New("API server unavailable")
