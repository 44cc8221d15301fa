package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

func TestDryRunGolden(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	cat, diags := engine.LoadPaths(reg, "../runbooks")
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	cases := []struct {
		name, runbook string
		params        map[string]any
	}{
		{"high-memory-production", seedRunbook, map[string]any{"namespace": "production", "podName": "api-server-7d4b9c6f8-x2x7q", "memoryThreshold": "92"}},
		{"high-memory-staging", seedRunbook, map[string]any{"namespace": "staging", "podName": "api-server-abc123"}},
		{"certificate-renewal", "certificate-renewal", map[string]any{"namespace": "web", "secretName": "web-tls", "deployment": "web"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := engine.DryRun(context.Background(), reg, cat.Runbooks[c.runbook], c.params, nil)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "dryrun/"+c.name+".txt", plan.Text())
			var js strings.Builder
			enc := json.NewEncoder(&js)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(plan); err != nil {
				t.Fatal(err)
			}
			golden(t, "dryrun/"+c.name+".json", js.String())
		})
	}
}

func TestDryRunPlanFacts(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	cat, _ := engine.LoadPaths(reg, "../runbooks")
	rb := cat.Runbooks[seedRunbook]
	prod, _ := engine.DryRun(context.Background(), reg, rb, production(), nil)
	stag, _ := engine.DryRun(context.Background(), reg, rb, staging(), nil)
	// Production: the change-window precondition (requestApproval) and the
	// restart need approval; staging only the precondition.
	if prod.ApprovalsNeeded != 2 || stag.ApprovalsNeeded != 1 {
		t.Errorf("approvals needed: production %d, staging %d; want 2 and 1", prod.ApprovalsNeeded, stag.ApprovalsNeeded)
	}
	if prod.Steps[0].Name != "precondition-check-deployment-health" || len(prod.Steps) != 7 {
		t.Errorf("steps = %d, first %s", len(prod.Steps), prod.Steps[0].Name)
	}
	// 5+5 (preconditions) + 30 + 10 + 60 + 30 + 300 (timeouts)
	if prod.EstimatedSeconds != 440 {
		t.Errorf("estimated %ds, want 440", prod.EstimatedSeconds)
	}
	gc := prod.Steps[3]
	if gc.Params["headers"].(map[string]any)["Authorization"] != "Bearer "+engine.Mask {
		t.Errorf("secret not masked in plan: %v", gc.Params["headers"])
	}
	restart := prod.Steps[5]
	if restart.Params["deployment"] != "api-server" || !restart.ApprovalRequired {
		t.Errorf("rolling-restart plan = %+v", restart)
	}
	if _, err := engine.DryRun(context.Background(), reg, rb, map[string]any{"namespace": "x"}, nil); !errors.As(err, new(*engine.ParamError)) {
		t.Errorf("missing podName err = %v", err)
	}
}
