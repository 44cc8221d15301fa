// Package kubernetes gives runbooks the `kubernetes` step type and live
// cluster data, using client-go. It is the only package of runbookbot that
// imports client-go.
//
// Register adds these actions (params in parentheses, * = optional):
//
//   - checkDeploymentReady (namespace, deployment*, minReadyReplicas*):
//     fails with "Insufficient ready replicas: N < M" when too few replicas
//     are ready. Without deployment, the Deployment is found from podName
//     (a param or the execution's podName) through ownerReferences.
//   - rolloutRestart (namespace, deployment): what `kubectl rollout
//     restart` does; outputs the deployment as it was before and saves its
//     revision as state.previousRevision.
//   - rolloutUndo (namespace, deployment, toRevision*): what `kubectl
//     rollout undo` does; toRevision empty or 0 means the previous revision.
//   - scale (namespace, deployment, replicas).
//   - execCommand (namespace, pod, container*, command): runs a command
//     in a container through pods/exec (a list is the argv, a string runs
//     under `sh -c`).
//   - getDeployment (namespace, deployment), listPods (namespace,
//     labelSelector*, fieldSelector*), deletePod (namespace, pod,
//     gracePeriodSeconds*), waitForRollout (namespace, deployment,
//     timeout*, pollInterval*).
//
// Every action also accepts kubeContext, naming the cluster when Deps has
// Contexts. Namespaces can be allowed and denied (Deps.AllowNamespaces,
// Deps.DenyNamespaces): an action, resolver or lookup on a namespace that is
// not permitted fails before anything is sent to the cluster.
//
// Register also replaces the extractDeployment template filter with an
// ownerReferences lookup (`{{ podName | extractDeployment }}` or
// `{{ podName | extractDeployment(namespace) }}`), falling back to trimming
// the pod name when the cluster cannot answer, and provides three live
// roots for conditions. Each finds its Deployment from the execution's
// parameters: deployment (a name, or an object saved by a step), else the
// Deployment owning podName, in namespace, on the cluster named by
// kubeContext.
//
//   - `deployment` is the Deployment as a settled view of its current
//     revision, so `deployment.status.readyReplicas ==
//     deployment.spec.replicas` means what it says right after a change.
//     While status.observedGeneration < metadata.generation (the
//     controller has not acted on the change yet) the lookup waits for it,
//     polling, for at most Deps.LookupTimeout; then it fails. While pods of
//     an older revision remain, status.readyReplicas, availableReplicas and
//     updatedReplicas count only the pods of the current revision's
//     ReplicaSet (the one whose deployment.kubernetes.io/revision is the
//     Deployment's). status.settled is true when the controller has caught
//     up, updatedReplicas == spec.replicas == replicas and every updated
//     replica is available. A Deployment nobody is changing reads as the
//     API returns it (plus status.settled). checkDeploymentReady counts
//     ready replicas the same way; waitForRollout waits until the view is
//     settled and every replica ready.
//   - `healthcheck` is the Deployment's health for rollback triggers such
//     as `healthcheck.failed` with consecutiveFailures: a mapping of failed
//     and healthy (bools), reason (for people: "2 of 3 replicas ready",
//     "rollout stuck: ProgressDeadlineExceeded", `deployment "api" in
//     namespace "x" not found`), readyReplicas and desiredReplicas (of the
//     current revision, as above), settled, and deployment (its name).
//     failed is true when the Deployment is missing, its Progressing
//     condition is False (progress deadline exceeded), its Available
//     condition is False, or every pod is of the current revision but fewer
//     than spec.replicas are ready. healthy is true when it is not failed
//     and settled. During a rollout that is still progressing both are
//     false. An error that is not "not found" (the cluster cannot be
//     reached, RBAC) is returned as an error: the check could not be made.
//   - `pod` is vars podName in vars namespace.
//
// execCommand outputs exitCode and exitCodeKnown: when the command's exit
// status is not known (the connection failed, or the stream ended without
// a status), exitCode is null, exitCodeKnown false, and the error says so.
//
// Objects are exposed to templates and conditions as the maps
// runtime.DefaultUnstructuredConverter produces (integers are int64),
// without metadata.managedFields, with the deployment status counters
// present even when zero and status.settled added.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/runbookbot/runbookbot/engine"
)

// StepType is the runbook step type the actions are registered under.
const StepType = "kubernetes"

// ExecFunc runs cmd in a container and returns what it wrote. A command
// that ran but exited non-zero is reported as an error implementing
// k8s.io/client-go/util/exec.ExitError (as remotecommand does), so its exit
// code can be told from a failure to run it. An ExecFunc that can tell a
// stream which ended without an exit status from a success returns
// ErrNoExitStatus for it; any other error means the exit status is
// unknown.
type ExecFunc func(ctx context.Context, namespace, pod, container string, cmd []string) (stdout, stderr string, err error)

// Cluster is the clients for one cluster.
type Cluster struct {
	Client kubernetes.Interface
	// Config is needed by execCommand unless Deps.Exec is set.
	Config *rest.Config
}

// Deps is what the actions need.
type Deps struct {
	// Client is the default cluster's clientset.
	Client kubernetes.Interface
	// Config is the default cluster's REST config, used to exec into pods.
	Config *rest.Config
	// Contexts, when set, returns the cluster for a kubeconfig context
	// name: steps choose one with the kubeContext param, resolvers with a
	// kubeContext execution parameter. "" means the default cluster, which
	// is Client/Config when Client is set. KubeconfigContexts builds one.
	Contexts func(name string) (Cluster, error)
	// Exec overrides how commands run in pods (tests, or a custom
	// transport). When nil, one is built from the cluster's Config.
	Exec ExecFunc
	// AllowNamespaces, when not empty, lists the only namespaces the
	// actions may touch. DenyNamespaces are never touched, even if also
	// allowed (e.g. production-critical). Entries may use path.Match
	// patterns such as "kube-*".
	AllowNamespaces []string
	DenyNamespaces  []string
	// Logger receives an info line per change made (restart, rollback,
	// scale, delete) and debug lines for lookups; nil discards them.
	Logger *slog.Logger
	// LookupTimeout bounds the cluster lookups of the extractDeployment
	// filter and the deployment, healthcheck and pod resolvers, including
	// the wait for the deployment controller to act on a change (default
	// 10s).
	LookupTimeout time.Duration
	// Clock times the polls of those waits (default engine.SystemClock).
	Clock engine.Clock
}

// Register adds the kubernetes actions, the deployment, healthcheck and pod
// resolvers and the cluster-aware extractDeployment filter to reg. It is
// New(deps).Register(reg).
func Register(reg *engine.Registry, deps Deps) {
	New(deps).Register(reg)
}

// Integration is the Kubernetes integration: its actions, resolvers and
// filter share a cache of pod → Deployment answers and per-cluster exec
// clients.
type Integration struct {
	deps  Deps
	log   *slog.Logger
	clock engine.Clock

	mu     sync.Mutex
	owners map[string]string   // "context/namespace/pod" → deployment
	execs  map[string]ExecFunc // per context, built from its Config
}

// New returns the integration for deps.
func New(deps Deps) *Integration {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deps.LookupTimeout <= 0 {
		deps.LookupTimeout = 10 * time.Second
	}
	clock := deps.Clock
	if clock == nil {
		clock = engine.SystemClock{}
	}
	return &Integration{deps: deps, log: log, clock: clock, owners: map[string]string{}, execs: map[string]ExecFunc{}}
}

// Register adds the actions (Specs), the `deployment`, `healthcheck` and
// `pod` resolvers and the extractDeployment filter to reg.
func (k *Integration) Register(reg *engine.Registry) {
	for _, a := range k.Specs() {
		reg.Register(a)
	}
	reg.Resolver("deployment", k.ResolveDeployment)
	reg.Resolver("healthcheck", k.ResolveHealthcheck)
	reg.Resolver("pod", k.ResolvePod)
	reg.Filter("extractDeployment", k.ExtractDeployment)
}

// action is one kubernetes step action.
type action struct {
	k   *Integration
	run func(ctx context.Context, k *Integration, cl Cluster, c *engine.Call) (engine.Result, error)
}

var _ engine.Action = action{}

// Run picks the cluster named by the kubeContext param and runs the action.
func (a action) Run(ctx context.Context, c *engine.Call) (engine.Result, error) {
	cl, err := a.k.cluster(c.String("kubeContext"))
	if err != nil {
		return engine.Result{}, err
	}
	return a.run(ctx, a.k, cl, c)
}

// cluster returns the clients for a kubeconfig context ("" = default).
func (k *Integration) cluster(name string) (Cluster, error) {
	if name == "" && k.deps.Client != nil {
		return Cluster{Client: k.deps.Client, Config: k.deps.Config}, nil
	}
	if k.deps.Contexts == nil {
		if name != "" {
			return Cluster{}, fmt.Errorf("kubeContext %q was requested but runbookbot is configured for a single cluster", name)
		}
		return Cluster{}, errors.New("no Kubernetes cluster is configured")
	}
	cl, err := k.deps.Contexts(name)
	if err != nil {
		if name == "" {
			return Cluster{}, fmt.Errorf("the default Kubernetes cluster: %w", err)
		}
		return Cluster{}, fmt.Errorf("kubeContext %q: %w", name, err)
	}
	if cl.Client == nil {
		return Cluster{}, fmt.Errorf("kubeContext %q has no client", name)
	}
	return cl, nil
}

// checkNamespace refuses empty, denied and not-allowed namespaces.
func (k *Integration) checkNamespace(ns string) error {
	if ns == "" {
		return errors.New("namespace is empty")
	}
	for _, p := range k.deps.DenyNamespaces {
		if nsMatch(p, ns) {
			return fmt.Errorf("namespace %q is protected: runbookbot is configured never to act on it", ns)
		}
	}
	if len(k.deps.AllowNamespaces) == 0 {
		return nil
	}
	for _, p := range k.deps.AllowNamespaces {
		if nsMatch(p, ns) {
			return nil
		}
	}
	return fmt.Errorf("namespace %q is not one runbookbot may act on (allowed: %s)", ns, strings.Join(k.deps.AllowNamespaces, ", "))
}

func nsMatch(pattern, ns string) bool {
	if pattern == ns {
		return true
	}
	ok, err := path.Match(pattern, ns)
	return err == nil && ok
}

// namespace reads and checks the namespace param.
func (k *Integration) namespace(c *engine.Call) (string, error) {
	ns := strings.TrimSpace(c.String("namespace"))
	if ns == "" {
		return "", errors.New("param namespace is empty")
	}
	return ns, k.checkNamespace(ns)
}

// kubeError is an API error rephrased for people, keeping the cause for
// errors.Is/As.
type kubeError struct {
	msg string
	err error
}

func (e *kubeError) Error() string { return e.msg }
func (e *kubeError) Unwrap() error { return e.err }

// apiError rephrases a client-go error: verb is what was attempted ("get",
// "patch"), what names the object (`deployment "api" in namespace "x"`).
func apiError(err error, verb, what string) error {
	if err == nil {
		return nil
	}
	var msg string
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("cannot %s %s: %v", verb, what, err)
	case apierrors.IsNotFound(err):
		msg = what + " not found"
	case apierrors.IsForbidden(err):
		msg = fmt.Sprintf("runbookbot is not allowed to %s %s (check its RBAC): %s", verb, what, apiMessage(err))
	case apierrors.IsUnauthorized(err):
		msg = fmt.Sprintf("cannot %s %s: the cluster rejected runbookbot's credentials", verb, what)
	case apierrors.IsConflict(err):
		msg = fmt.Sprintf("cannot %s %s: it was changed concurrently, try again", verb, what)
	default:
		msg = fmt.Sprintf("cannot %s %s: %s", verb, what, apiMessage(err))
	}
	return &kubeError{msg: msg, err: err}
}

func apiMessage(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Message != "" {
		return st.Status().Message
	}
	return err.Error()
}

func deploymentRef(ns, name string) string {
	return fmt.Sprintf("deployment %q in namespace %q", name, ns)
}

func podRef(ns, name string) string {
	return fmt.Sprintf("pod %q in namespace %q", name, ns)
}

// lookupCtx bounds a resolver or filter lookup.
func (k *Integration) lookupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, k.deps.LookupTimeout, errLookupTimeout)
}

// ErrNoKubeconfig is returned (wrapped) by RESTConfig when there is no
// Kubernetes configuration at all.
var ErrNoKubeconfig = errors.New("no Kubernetes configuration: set KUBECONFIG, put a kubeconfig at ~/.kube/config, or run in a cluster (KUBERNETES_SERVICE_HOST)")

// RESTConfig loads the REST config for a kubeconfig context ("" = the
// current one). With kubeconfig "" it uses the in-cluster service account
// when running in a pod, else $KUBECONFIG or ~/.kube/config.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	var inCluster error
	if kubeconfig == "" && context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err == nil {
			return cfg, nil
		}
		inCluster = err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	} else if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "" {
		// clientcmd fixes ~/.kube/config when the program starts; read
		// HOME now, as the error message says.
		if home, err := os.UserHomeDir(); err == nil {
			rules.Precedence = []string{filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)}
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) && kubeconfig == "" {
			// client-go's message suggests KUBERNETES_MASTER, which is
			// not how runbookbot finds a cluster.
			if inCluster != nil {
				return nil, fmt.Errorf("%w (the in-cluster configuration failed: %v)", ErrNoKubeconfig, inCluster)
			}
			return nil, ErrNoKubeconfig
		}
		if context != "" {
			return nil, fmt.Errorf("kubeconfig context %q: %w", context, err)
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// NewCluster builds the clients for a kubeconfig context (see RESTConfig).
func NewCluster(kubeconfig, context string) (Cluster, error) {
	cfg, err := RESTConfig(kubeconfig, context)
	if err != nil {
		return Cluster{}, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Cluster{}, fmt.Errorf("kubernetes client: %w", err)
	}
	return Cluster{Client: cs, Config: cfg}, nil
}

// KubeconfigContexts returns a Deps.Contexts that builds each context's
// clients from kubeconfig once, on first use.
func KubeconfigContexts(kubeconfig string) func(name string) (Cluster, error) {
	var mu sync.Mutex
	built := map[string]Cluster{}
	return func(name string) (Cluster, error) {
		mu.Lock()
		defer mu.Unlock()
		if cl, ok := built[name]; ok {
			return cl, nil
		}
		cl, err := NewCluster(kubeconfig, name)
		if err != nil {
			return Cluster{}, err
		}
		built[name] = cl
		return cl, nil
	}
}
