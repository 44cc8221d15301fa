package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

// FuzzLoad feeds arbitrary bytes to the loader: it must report problems,
// never panic.
func FuzzLoad(f *testing.F) {
	// Small seeds keep the fuzzer fast; the big shipped runbooks are
	// covered by the lint tests.
	for _, pat := range []string{"../runbooks/*.yaml", "testdata/lint/*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err == nil && len(b) < 2500 {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("apiVersion: runbooks/v1\nkind: Runbook\nmetadata: {name: a, version: \"1\"}\ntrigger: {type: manual}\nparameters:\n  - {name: n, type: integer, default: 2}\nsteps:\n  - name: s\n    type: wait\n    action: until\n    params: {condition: \"n > 1\", timeout: 1s}\n    requiresApproval: {type: auto, conditions: [\"context.restartCount < n\"]}\n"))
	f.Add([]byte("a: &x [*x]"))
	reg := enginetest.NewCluster().Registry()
	// Mutated conditions can be slow on purpose (nested loops): they are
	// stopped at the evaluation limit, which here is short so the fuzzer
	// keeps its pace.
	engine.EvalLimit = 20 * time.Millisecond
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			// Large inputs cost the fuzzer seconds each and find nothing
			// small ones do not (the size cap has its own test).
			t.Skip()
		}
		cat, diags := engine.LoadSources(reg, []string{"f.yaml"}, map[string][]byte{"f.yaml": data})
		for _, d := range diags {
			if d.File != "f.yaml" || d.Message == "" {
				t.Fatalf("bad diagnostic %+v", d)
			}
		}
		for _, rb := range cat.Runbooks {
			if _, err := engine.DryRun(context.Background(), reg, rb, map[string]any{}, nil); err != nil {
				_ = err
			}
		}
	})
}

// FuzzTemplate parses and renders arbitrary templates.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{{ podName | extractDeployment }}", "{{ a | default('x') | upper }}", "Bearer {{ secrets.t }}",
		"{{ n | trunc(3) }}", "{{ x | json | quote }}", "{{ $labels.pod }}", "{{", "}}", "{{ a || b }}", "{{ 1/0 }}"} {
		f.Add(s)
	}
	filters := engine.BuiltinFilters()
	env := map[string]any{"podName": "api-7d4b9c6f8-x2x7q", "a": nil, "n": "hello", "x": map[string]any{"k": 1}, "secrets": map[string]any{"t": "v"}}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := engine.ParseTemplate(s, filters)
		if err != nil {
			return
		}
		_ = tp.Refs()
		_, _ = tp.Render(context.Background(), env, filters)
	})
}

// FuzzCondition compiles and evaluates arbitrary conditions.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"context.restartCount < maxRestarts", "metrics.errorRate > 5%", "state.previousReplicaCount != null",
		"deployment.status.readyReplicas == deployment.spec.replicas", "a % 3 == 1", "'50%' == x", "null", "5%"} {
		f.Add(s)
	}
	env := map[string]any{"context": map[string]any{"restartCount": 1}, "maxRestarts": 2, "metrics": map[string]any{"errorRate": 7.5}, "state": map[string]any{}, "a": 4}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := engine.CompileCondition(s)
		if err != nil {
			return
		}
		_ = c.Refs()
		_, _ = c.Eval(env)
	})
}

func TestConditionShorthands(t *testing.T) {
	env := map[string]any{"metrics": map[string]any{"errorRate": 7.5}, "state": map[string]any{"n": 3}, "a": 4, "x": "50%"}
	tests := []struct {
		src  string
		want bool
	}{
		{"metrics.errorRate > 5%", true},
		{"metrics.errorRate > 10%", false},
		{"(metrics.errorRate > 5%) && a == 4", true},
		{"a % 3 == 1", true},
		{"state.n != null", true},
		{"state.missing == null", true},
		{"x == '50%'", true},
	}
	for _, tt := range tests {
		c, err := engine.CompileCondition(tt.src)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		got, err := c.Eval(env)
		if err != nil || got != tt.want {
			t.Errorf("%s = %v, %v; want %v", tt.src, got, err, tt.want)
		}
	}
}

func TestTemplateFilters(t *testing.T) {
	env := map[string]any{"podName": "api-server-7d4b9c6f8-x2x7q", "short": "api-server-abc123", "empty": "", "obj": map[string]any{"k": 1}, "n": 3}
	tests := []struct{ src, want string }{
		{"{{ podName | extractDeployment }}", "api-server"},
		{"{{ short | extractDeployment }}", "api-server"},
		{"{{ podName | upper | trunc(3) }}", "API"},
		{"{{ empty | default('none') }}", "none"},
		{"{{ obj | json }}", `{"k":1}`},
		{"{{ short | quote }}", `"api-server-abc123"`},
		{"x={{ n + 1 }}", "x=4"},
	}
	for _, tt := range tests {
		tp, err := engine.ParseTemplate(tt.src, engine.BuiltinFilters())
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		got, err := tp.Render(context.Background(), env, engine.BuiltinFilters())
		if err != nil || engine.Stringify(got) != tt.want {
			t.Errorf("%s = %v, %v; want %s", tt.src, got, err, tt.want)
		}
	}
	tp, _ := engine.ParseTemplate("{{ n }}", engine.BuiltinFilters())
	if v, _ := tp.Render(context.Background(), env, nil); v != 3 {
		t.Errorf("single placeholder lost its type: %T %v", v, v)
	}
}
