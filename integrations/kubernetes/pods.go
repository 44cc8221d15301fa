package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/runbookbot/runbookbot/engine"
)

// maxListedPods caps listPods output; count still reports every match.
const maxListedPods = 500

func listPods(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return engine.Result{}, err
	}
	opts := metav1.ListOptions{}
	if s := stringParam(c, "labelSelector"); s != "" {
		sel, err := labels.Parse(s)
		if err != nil {
			return engine.Result{}, fmt.Errorf("param labelSelector %q: %v", s, err)
		}
		opts.LabelSelector = sel.String()
	}
	if s := stringParam(c, "fieldSelector"); s != "" {
		sel, err := fields.ParseSelector(s)
		if err != nil {
			return engine.Result{}, fmt.Errorf("param fieldSelector %q: %v", s, err)
		}
		opts.FieldSelector = sel.String()
	}
	list, err := cl.Client.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return engine.Result{}, apiError(err, "list", fmt.Sprintf("pods in namespace %q", ns))
	}
	pods := list.Items
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	items := make([]any, 0, min(len(pods), maxListedPods))
	for i := range pods {
		if i == maxListedPods {
			break
		}
		items = append(items, podSummary(&pods[i]))
	}
	return engine.Result{Output: map[string]any{"items": items, "count": len(pods), "truncated": len(pods) > maxListedPods}}, nil
}

func deletePod(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return engine.Result{}, err
	}
	pod, err := requireString(c, "pod")
	if err != nil {
		return engine.Result{}, err
	}
	grace, ok, err := intParam(c, "gracePeriodSeconds")
	if err != nil {
		return engine.Result{}, err
	}
	opts := metav1.DeleteOptions{}
	if ok {
		if grace < 0 {
			return engine.Result{}, fmt.Errorf("param gracePeriodSeconds: %d is negative", grace)
		}
		opts.GracePeriodSeconds = &grace
	}
	out := map[string]any{"pod": pod, "deleted": false, "alreadyGone": false}
	err = cl.Client.CoreV1().Pods(ns).Delete(ctx, pod, opts)
	switch {
	case apierrors.IsNotFound(err):
		out["alreadyGone"] = true
		return engine.Result{Output: out}, nil
	case err != nil:
		return engine.Result{Output: out}, apiError(err, "delete", podRef(ns, pod))
	}
	out["deleted"] = true
	k.log.Info("deleted pod", "namespace", ns, "pod", pod)
	return engine.Result{Output: out}, nil
}

// ErrNoExitStatus is what an ExecFunc returns when the command's stream
// ended without reporting how the command exited; execCommand then
// reports the exit code as unknown instead of 0.
var ErrNoExitStatus = errors.New("the exec stream ended without an exit status")

// maxExecOutput is how much of stdout and stderr the output keeps.
const maxExecOutput = 4 << 10

func execCommand(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error) {
	ns, err := k.namespace(c)
	if err != nil {
		return engine.Result{}, err
	}
	pod, err := requireString(c, "pod")
	if err != nil {
		return engine.Result{}, err
	}
	cmd, err := commandParam(c.Params["command"])
	if err != nil {
		return engine.Result{}, err
	}
	p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return engine.Result{}, apiError(err, "get", podRef(ns, pod))
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return engine.Result{}, fmt.Errorf("cannot run a command in %s: it has finished (phase %s)", podRef(ns, pod), p.Status.Phase)
	}
	container, err := pickContainer(p, stringParam(c, "container"))
	if err != nil {
		return engine.Result{}, err
	}
	run, err := k.execFor(stringParam(c, "kubeContext"), cl)
	if err != nil {
		return engine.Result{}, err
	}
	stdout, stderr, err := run(ctx, ns, pod, container, cmd)
	out := map[string]any{"stdout": trimOutput(stdout), "stderr": trimOutput(stderr), "exitCode": 0, "exitCodeKnown": true, "container": container}
	if err == nil {
		return engine.Result{Output: out}, nil
	}
	var ee utilexec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		out["exitCode"] = ee.ExitStatus()
		detail := excerpt(stderr)
		if detail == "" {
			detail = excerpt(stdout)
		}
		if detail == "" {
			detail = "(no output)"
		}
		return engine.Result{Output: out}, fmt.Errorf("command %s in container %q of %s exited with code %d: %s",
			excerpt(strings.Join(cmd, " ")), container, podRef(ns, pod), ee.ExitStatus(), detail)
	}
	// The command may have run, in part or whole, but how it ended is not
	// known: never report that as exit code 0.
	out["exitCode"], out["exitCodeKnown"] = nil, false
	if ctx.Err() != nil {
		return engine.Result{Output: out}, fmt.Errorf("command %s in container %q of %s: %w; its exit status is unknown",
			excerpt(strings.Join(cmd, " ")), container, podRef(ns, pod), context.Cause(ctx))
	}
	if errors.Is(err, ErrNoExitStatus) {
		return engine.Result{Output: out}, fmt.Errorf("command %s in container %q of %s: the connection ended without an exit status, so whether it succeeded is unknown",
			excerpt(strings.Join(cmd, " ")), container, podRef(ns, pod))
	}
	return engine.Result{Output: out}, fmt.Errorf("cannot run a command in container %q of %s: %v; its exit status is unknown", container, podRef(ns, pod), err)
}

// pickContainer chooses the exec container like kubectl: the one named,
// else the default-container annotation, else the first.
func pickContainer(p *corev1.Pod, want string) (string, error) {
	names := make([]string, 0, len(p.Spec.Containers))
	for _, ct := range p.Spec.Containers {
		names = append(names, ct.Name)
	}
	if want == "" {
		want = p.Annotations[defaultContainerAnnotation]
	}
	if want == "" {
		if len(names) == 0 {
			return "", fmt.Errorf("%s has no containers", podRef(p.Namespace, p.Name))
		}
		return names[0], nil
	}
	for _, n := range names {
		if n == want {
			return want, nil
		}
	}
	return "", fmt.Errorf("%s has no container %q (containers: %s)", podRef(p.Namespace, p.Name), want, strings.Join(names, ", "))
}

// execFor returns Deps.Exec, or the cluster's remotecommand exec.
func (k *Integration) execFor(kctx string, cl Cluster) (ExecFunc, error) {
	if k.deps.Exec != nil {
		return k.deps.Exec, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if f, ok := k.execs[kctx]; ok {
		return f, nil
	}
	if cl.Config == nil {
		return nil, errors.New("execCommand needs the cluster's REST config, and none is configured")
	}
	f, err := NewExec(cl.Config)
	if err != nil {
		return nil, err
	}
	k.execs[kctx] = f
	return f, nil
}

// trimOutput trims whitespace and keeps the first maxExecOutput bytes.
func trimOutput(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxExecOutput {
		return s
	}
	return cutUTF8(s, maxExecOutput) + fmt.Sprintf("\n… (%d bytes cut)", len(s)-maxExecOutput)
}

// excerpt is a one-line start of s for error messages.
func excerpt(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		return cutUTF8(s, 300) + "…"
	}
	return s
}

// cutUTF8 cuts s to at most n bytes without splitting a rune.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// maxCapture bounds how much of a command's stdout or stderr is kept in
// memory while it runs; the rest is counted and dropped.
const maxCapture = 64 << 10

// NewExec returns an ExecFunc that runs commands through the pods/exec
// subresource, over WebSocket with a fallback to SPDY, as kubectl exec does.
func NewExec(cfg *rest.Config) (ExecFunc, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("exec client: %w", err)
	}
	return func(ctx context.Context, ns, pod, container string, cmd []string) (string, string, error) {
		req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
		if err != nil {
			return "", "", err
		}
		ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
		if err != nil {
			return "", "", err
		}
		ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
		if err != nil {
			return "", "", err
		}
		var stdout, stderr capBuffer
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
		return stdout.String(), stderr.String(), err
	}, nil
}

// capBuffer keeps the first maxCapture bytes written and accepts the rest
// without storing it, so a chatty command cannot exhaust memory or be cut
// off by a write error.
type capBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxCapture - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
