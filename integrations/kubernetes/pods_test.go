package kubernetes_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	k8stesting "k8s.io/client-go/testing"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

// fakeExec records exec calls and answers with canned output.
type fakeExec struct {
	mu             sync.Mutex
	calls          [][]string // namespace, pod, container, cmd...
	stdout, stderr string
	err            error
}

func (f *fakeExec) exec(_ context.Context, ns, pod, container string, cmd []string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]string{ns, pod, container}, cmd...))
	return f.stdout, f.stderr, f.err
}

func TestExecCommand(t *testing.T) {
	fx := &fakeExec{stdout: "USER PID %MEM\nroot 1 42.0\n\n"}
	e := newEnv(t, kubernetes.Deps{Exec: fx.exec}, apiServer("staging")...)
	// The seed's capture-diagnostics step.
	res := e.mustRun("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123",
		"command": []any{"sh", "-c", "ps aux --sort=-%mem | head -20"}}, nil)
	if got := strings.Join(fx.calls[0], "|"); got != "staging|api-server-abc123|app|sh|-c|ps aux --sort=-%mem | head -20" {
		t.Errorf("exec call = %s", got)
	}
	if res.Output["stdout"] != "USER PID %MEM\nroot 1 42.0" || res.Output["exitCode"] != 0 || res.Output["exitCodeKnown"] != true || res.Output["container"] != "app" {
		t.Errorf("output = %v", res.Output)
	}

	// A string runs under sh -c; an explicit container is used.
	e.mustRun("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "container": "sidecar", "command": "echo hi"}, nil)
	if got := strings.Join(fx.calls[1], "|"); got != "staging|api-server-abc123|sidecar|sh|-c|echo hi" {
		t.Errorf("exec call = %s", got)
	}
}

func TestExecCommandDefaultContainerAnnotation(t *testing.T) {
	fx := &fakeExec{}
	p := pod("staging", "web-1", nil)
	p.Annotations = map[string]string{"kubectl.kubernetes.io/default-container": "sidecar"}
	e := newEnv(t, kubernetes.Deps{Exec: fx.exec}, p)
	e.mustRun("execCommand", map[string]any{"namespace": "staging", "pod": "web-1", "command": []any{"true"}}, nil)
	if fx.calls[0][2] != "sidecar" {
		t.Errorf("container = %s, want the default-container annotation's", fx.calls[0][2])
	}
}

func TestExecCommandFailures(t *testing.T) {
	fx := &fakeExec{stdout: "partial", stderr: "sh: pss: not found\n", err: utilexec.CodeExitError{Err: errors.New("command terminated with exit code 127"), Code: 127}}
	e := newEnv(t, kubernetes.Deps{Exec: fx.exec}, apiServer("staging")...)
	res, err := e.run("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "command": []any{"pss"}}, nil)
	wantErr(t, err, "exited with code 127", "pss: not found", `container "app" of pod "api-server-abc123"`)
	if res.Output["exitCode"] != 127 || res.Output["exitCodeKnown"] != true || res.Output["stdout"] != "partial" {
		t.Errorf("output = %v", res.Output)
	}

	_, err = e.run("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "container": "db", "command": "ls"}, nil)
	wantErr(t, err, `no container "db"`, "containers: app, sidecar")

	_, err = e.run("execCommand", map[string]any{"namespace": "staging", "pod": "gone", "command": "ls"}, nil)
	wantErr(t, err, `pod "gone" in namespace "staging" not found`)

	for _, bad := range []any{nil, "", []any{}, map[string]any{"a": 1}, []any{"ok", nil}} {
		_, err = e.run("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "command": bad}, nil)
		wantErr(t, err, "command")
	}

	done := pod("staging", "job-1", nil)
	done.Status.Phase = corev1.PodSucceeded
	e = newEnv(t, kubernetes.Deps{Exec: fx.exec}, done)
	_, err = e.run("execCommand", map[string]any{"namespace": "staging", "pod": "job-1", "command": "ls"}, nil)
	wantErr(t, err, "has finished (phase Succeeded)")
}

func TestExecCommandTrimsOutput(t *testing.T) {
	fx := &fakeExec{stdout: strings.Repeat("é", 10000)} // 20000 bytes
	e := newEnv(t, kubernetes.Deps{Exec: fx.exec}, apiServer("staging")...)
	res := e.mustRun("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "command": "cat big"}, nil)
	out := res.Output["stdout"].(string)
	if len(out) > 4200 || !strings.Contains(out, "bytes cut") || !strings.HasPrefix(out, "éé") {
		t.Errorf("stdout is %d bytes: ...%s", len(out), out[len(out)-40:])
	}
	if strings.ContainsRune(out, '\uFFFD') {
		t.Error("trimming split a rune")
	}
}

func TestExecCommandWithoutConfig(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	_, err := e.run("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "command": "ls"}, nil)
	wantErr(t, err, "needs the cluster's REST config")
}

func TestListPods(t *testing.T) {
	objs := append(apiServer("staging"), pod("staging", "other-1", nil))
	e := newEnv(t, kubernetes.Deps{}, objs...)
	res := e.mustRun("listPods", map[string]any{"namespace": "staging", "labelSelector": "app=api-server"}, nil)
	items := res.Output["items"].([]any)
	if len(items) != 1 || res.Output["count"] != 1 {
		t.Fatalf("items = %v", items)
	}
	it := items[0].(map[string]any)
	if it["name"] != "api-server-abc123" || it["phase"] != "Running" || it["ready"] != true || it["node"] != "node-1" || it["restarts"] != int64(3) {
		t.Errorf("item = %v", it)
	}
	res = e.mustRun("listPods", map[string]any{"namespace": "staging"}, nil)
	if res.Output["count"] != 2 {
		t.Errorf("count = %v, want 2", res.Output["count"])
	}
	_, err := e.run("listPods", map[string]any{"namespace": "staging", "labelSelector": "app in (("}, nil)
	wantErr(t, err, "labelSelector")
	_, err = e.run("listPods", map[string]any{"namespace": "staging", "fieldSelector": "status.phase"}, nil)
	wantErr(t, err, "fieldSelector")
}

func TestDeletePod(t *testing.T) {
	e := newEnv(t, kubernetes.Deps{}, apiServer("staging")...)
	res := e.mustRun("deletePod", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "gracePeriodSeconds": "30"}, nil)
	if res.Output["deleted"] != true {
		t.Errorf("output = %v", res.Output)
	}
	var grace *int64
	for _, a := range e.client.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok {
			grace = d.GetDeleteOptions().GracePeriodSeconds
		}
	}
	if grace == nil || *grace != 30 {
		t.Errorf("grace period = %v, want 30", grace)
	}
	res = e.mustRun("deletePod", map[string]any{"namespace": "staging", "pod": "api-server-abc123"}, nil)
	if res.Output["alreadyGone"] != true || res.Output["deleted"] != false {
		t.Errorf("second delete output = %v", res.Output)
	}
	_, err := e.run("deletePod", map[string]any{"namespace": "staging", "pod": "x", "gracePeriodSeconds": -5}, nil)
	wantErr(t, err, "gracePeriodSeconds")
}

// signalled is an ExitError of a command that did not exit (killed).
type signalled struct{}

func (signalled) Error() string   { return "signal: killed" }
func (signalled) String() string  { return "signal: killed" }
func (signalled) Exited() bool    { return false }
func (signalled) ExitStatus() int { return -1 }

func TestExecCommandUnknownExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"connection failed", errors.New("error dialing backend: EOF"), []string{"cannot run a command", "error dialing backend", "exit status is unknown"}},
		{"stream ended without a status", kubernetes.ErrNoExitStatus, []string{"ended without an exit status", "unknown"}},
		{"did not exit", signalled{}, []string{"signal: killed", "exit status is unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := &fakeExec{stdout: "half the output", err: tc.err}
			e := newEnv(t, kubernetes.Deps{Exec: fx.exec}, apiServer("staging")...)
			res, err := e.run("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "command": "ls"}, nil)
			wantErr(t, err, tc.want...)
			if v, ok := res.Output["exitCode"]; !ok || v != nil || res.Output["exitCodeKnown"] != false {
				t.Errorf("exitCode = %#v, exitCodeKnown = %#v; want nil and false", v, res.Output["exitCodeKnown"])
			}
			if res.Output["stdout"] != "half the output" {
				t.Errorf("stdout = %q", res.Output["stdout"])
			}
		})
	}
}

func TestExecCommandCancelled(t *testing.T) {
	stop := errors.New("step timed out after 30s")
	ctx, cancel := context.WithCancelCause(context.Background())
	e := newEnv(t, kubernetes.Deps{Exec: func(ctx context.Context, _, _, _ string, _ []string) (string, string, error) {
		cancel(stop) // the step times out while the command runs
		return "", "", ctx.Err()
	}}, apiServer("staging")...)
	spec, _ := e.reg.Lookup("kubernetes", "execCommand")
	res, err := spec.Run.Run(ctx, e.call("execCommand", map[string]any{"namespace": "staging", "pod": "api-server-abc123", "command": "sleep 60"}, nil))
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the step's timeout", err)
	}
	wantErr(t, err, "exit status is unknown")
	if res.Output["exitCode"] != nil || res.Output["exitCodeKnown"] != false {
		t.Errorf("output = %v", res.Output)
	}
}
