package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs the program in-process and returns its exit code and output.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLintExitCodes(t *testing.T) {
	code, out, errs := cli(t, "", "lint", "../../runbooks/example-echo.yaml")
	if code != exitOK || !strings.Contains(out, "ok: 1 runbook(s)") {
		t.Fatalf("lint of a good file: %d %q %q", code, out, errs)
	}
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "apiVersion: runbooks/v1\nkind: Runbook\nmetadata: {name: b, version: \"1\"}\ntrigger: {type: manual}\nsteps:\n  - name: s\n    type: log\n    action: print\n    timeout: soon\n    params: {m: \"{{ nope }}\"}\n")
	code, _, errs = cli(t, "", "lint", bad)
	if code != exitFailure {
		t.Fatalf("lint of a bad file exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], bad+":9:14: ") || !strings.HasPrefix(lines[1], bad+":10:17: ") || !strings.Contains(lines[2], "2 problem(s)") {
		t.Fatalf("lint output:\n%s", errs)
	}
	code, out, _ = cli(t, "", "lint", "--json", bad)
	var diags []map[string]any
	if code != exitFailure || json.Unmarshal([]byte(out), &diags) != nil || len(diags) != 2 || diags[0]["line"] != 9.0 {
		t.Fatalf("lint --json: %d %s", code, out)
	}
	if code, _, errs := cli(t, "", "lint", filepath.Join(dir, "missing")); code != exitFailure || !strings.Contains(errs, "no such file") {
		t.Errorf("lint of a missing path: %d %s", code, errs)
	}
}

func TestDryRunCLI(t *testing.T) {
	code, out, errs := cli(t, "", "dry-run", "--runbooks", "../../runbooks", "example-echo", "--param", "service=checkout", "environment=production", "--json")
	if code != exitOK {
		t.Fatalf("dry-run: %d %s", code, errs)
	}
	var plan struct {
		Runbook         string
		ApprovalsNeeded int
		Steps           []struct {
			Name             string
			ApprovalRequired bool
			EstimatedSeconds int
		}
		EstimatedSeconds int
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("dry-run --json is not JSON: %v\n%s", err, out)
	}
	if plan.Runbook != "example-echo" || plan.ApprovalsNeeded != 1 || len(plan.Steps) != 4 || !plan.Steps[2].ApprovalRequired {
		t.Errorf("plan = %+v", plan)
	}
	code, out, _ = cli(t, "", "dry-run", "--runbooks", "../../runbooks", "example-echo", "service=checkout")
	if code != exitOK || !strings.Contains(out, "DRY RUN SUMMARY") || !strings.Contains(out, "Approvals needed: 0") {
		t.Errorf("text plan: %d\n%s", code, out)
	}
	code, _, errs = cli(t, "", "dry-run", "--runbooks", "../../runbooks", "example-echo")
	if code != exitUsage || !strings.Contains(errs, "parameter service: is required") {
		t.Errorf("missing parameter: %d %s", code, errs)
	}
	code, _, errs = cli(t, "", "dry-run", "--runbooks", "../../runbooks", "exampl-echo", "service=x")
	if code != exitUsage || !strings.Contains(errs, `did you mean "example-echo"`) {
		t.Errorf("unknown runbook: %d %s", code, errs)
	}
}

func TestRunAndHistoryCLI(t *testing.T) {
	data := t.TempDir()
	code, out, errs := cli(t, "", "run", "--runbooks", "../../runbooks", "--data-dir", data, "--as", "alice", "example-echo", "service=checkout", "failRestart=true", "--yes")
	if code != exitRollback {
		t.Fatalf("run with a failing restart: exit %d, want %d\n%s%s", code, exitRollback, out, errs)
	}
	for _, want := range []string{"[1/4] inspect ok", "[3/4] restart FAILED", "↩ rollback (undo-restart)", "[rollback] restore ok", ": rollback"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
	// Production asks at the prompt; the requester may not approve.
	code, out, _ = cli(t, "y\nalice\ny\nbob\n", "run", "--runbooks", "../../runbooks", "--data-dir", data, "--as", "alice", "example-echo", "service=checkout", "environment=production")
	if code != exitOK || !strings.Contains(out, "cannot approve their own") || !strings.Contains(out, "approved by bob") {
		t.Fatalf("prompted run: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "", "history", "--data-dir", data, "--json")
	var rows []map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 || rows[0]["outcome"] != "success" || rows[1]["outcome"] != "rollback" {
		t.Fatalf("history --json: %d %s", code, out)
	}
	code, out, _ = cli(t, "", "history", "--data-dir", data, "--outcome", "rollback")
	if code != exitOK || strings.Count(out, "example-echo") != 1 {
		t.Errorf("history --outcome rollback:\n%s", out)
	}
	if code, _, errs := cli(t, "", "history", "--data-dir", data, "--outcome", "meh"); code != exitUsage || !strings.Contains(errs, "unknown outcome") {
		t.Errorf("bad outcome: %d %s", code, errs)
	}
	if code, _, _ := cli(t, "", "frobnicate"); code != exitUsage {
		t.Errorf("unknown command exit %d", code)
	}
}

// run shows what log steps print, and a step that fails before it starts
// (its template cannot be rendered) keeps its own number.
func TestRunShowsLogsAndNumbersEveryStep(t *testing.T) {
	dir := t.TempDir()
	rb := writeFile(t, dir, "numbered.yaml", `apiVersion: runbooks/v1
kind: Runbook
metadata: {name: numbered, version: "1"}
steps:
  - name: say
    type: log
    action: print
    params: {message: "checking the queue depth"}
  - name: broken
    type: log
    action: print
    params: {message: "{{ secrets.notConfigured }}"}
  - name: after
    type: log
    action: print
    params: {message: never}
`)
	code, out, errs := cli(t, "", "run", "--data-dir", t.TempDir(), rb)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFailure, out, errs)
	}
	for _, want := range []string{"[1/3] say ok", "      checking the queue depth", "[2/3] broken FAILED", "[3/3] after skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
}

// Without a cluster or Prometheus configured, lint refuses what could only
// fail, saying what would make it run; a dry run still plans it, and run
// says why the runbook does not load instead of calling it unknown.
func TestLintRefusesWhatThisConfigurationCannotRun(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("PROMETHEUS_URL", "")
	t.Setenv("RUNBOOKBOT_METRICS_CONFIG", "")
	seed := "../../runbooks/high-memory-pod-remediation.yaml"
	code, _, errs := cli(t, "", "lint", seed)
	if code != exitFailure {
		t.Fatalf("lint exit %d, want %d\n%s", code, exitFailure, errs)
	}
	for _, want := range []string{"kubernetes steps cannot run in this configuration (hint: no Kubernetes configuration: set KUBECONFIG",
		"nothing in this configuration answers metrics.errorRate", "set PROMETHEUS_URL", "nothing in this configuration answers healthcheck.failed"} {
		if !strings.Contains(errs, want) {
			t.Errorf("lint output lacks %q:\n%s", want, errs)
		}
	}
	if code, out, errs := cli(t, "", "dry-run", "--runbooks", "../../runbooks", "high-memory-pod-remediation", "namespace=staging", "podName=api-7d4b9c6f8-x2x7q"); code != exitOK || !strings.Contains(out, "DRY RUN SUMMARY") {
		t.Errorf("dry-run: %d %s%s", code, out, errs)
	}
	code, _, errs = cli(t, "", "run", "--runbooks", "../../runbooks", "--data-dir", t.TempDir(), "high-memory-pod-remediation", "namespace=staging", "podName=api-7d4b9c6f8-x2x7q")
	if code != exitFailure || !strings.Contains(errs, "does not load in this configuration") || strings.Contains(errs, "unknown runbook") {
		t.Errorf("run: %d %s", code, errs)
	}

	// With a (here unreachable) cluster and a Prometheus configured, the
	// same file lints clean.
	kc := writeFile(t, t.TempDir(), "kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
	t.Setenv("KUBECONFIG", kc)
	t.Setenv("PROMETHEUS_URL", "http://127.0.0.1:1")
	if code, _, errs := cli(t, "", "lint", seed); code != exitOK {
		t.Errorf("lint with a cluster and Prometheus configured: %d\n%s", code, errs)
	}
}

// End of input at the approval prompt is a "no": the run ends aborted
// instead of waiting forever.
func TestRunPromptEndOfInputRejects(t *testing.T) {
	code, out, errs := cli(t, "", "run", "--runbooks", "../../runbooks", "--data-dir", t.TempDir(), "--as", "alice", "example-echo", "service=checkout", "environment=production")
	if code != exitAborted || !strings.Contains(out, "no answer (end of input)") {
		t.Fatalf("exit %d, want %d (aborted)\n%s%s", code, exitAborted, out, errs)
	}
}
