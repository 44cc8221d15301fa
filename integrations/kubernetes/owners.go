package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/runbookbot/runbookbot/engine"
)

// maxOwnerCache bounds the pod → deployment cache. Entries outlive their
// pods on purpose: rollback steps resolve the alerting pod's deployment
// after a restart has replaced the pod.
const maxOwnerCache = 4096

// ownerError is a definite answer from the cluster that a pod does not
// belong to a Deployment; callers must not guess from the name.
type ownerError struct{ msg string }

func (e *ownerError) Error() string { return e.msg }

// missingError is a definite answer from the cluster that the Deployment
// of a pod does not exist: the pod is gone and so is the Deployment its
// name suggests.
type missingError struct{ name, msg string }

func (e *missingError) Error() string { return e.msg }

func (k *Integration) cachedOwner(key string) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	name, ok := k.owners[key]
	return name, ok
}

func (k *Integration) cacheOwner(name string, keys ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.owners)+len(keys) > maxOwnerCache {
		k.owners = map[string]string{}
	}
	for _, key := range keys {
		k.owners[key] = name
	}
}

// deploymentOfPod follows controller ownerReferences: Pod → ReplicaSet →
// Deployment.
func deploymentOfPod(ctx context.Context, cl Cluster, p *corev1.Pod) (string, error) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return "", &ownerError{fmt.Sprintf("%s has no controller, so it belongs to no Deployment", podRef(p.Namespace, p.Name))}
	}
	if ref.Kind != "ReplicaSet" {
		return "", &ownerError{fmt.Sprintf("%s is managed by %s %q, not by a Deployment", podRef(p.Namespace, p.Name), ref.Kind, ref.Name)}
	}
	rs, err := cl.Client.AppsV1().ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return "", apiError(err, "get", fmt.Sprintf("replicaset %q in namespace %q (owner of pod %q)", ref.Name, p.Namespace, p.Name))
	}
	dref := metav1.GetControllerOf(rs)
	if dref == nil || dref.Kind != "Deployment" {
		return "", &ownerError{fmt.Sprintf("%s belongs to ReplicaSet %q, which no Deployment manages", podRef(p.Namespace, p.Name), rs.Name)}
	}
	return dref.Name, nil
}

// deploymentFor finds the Deployment of a pod in a namespace. When the pod
// is gone (restarted, evicted) it accepts the deployment its name suggests
// if that deployment exists.
func (k *Integration) deploymentFor(ctx context.Context, cl Cluster, kctx, ns, pod string) (string, error) {
	key := kctx + "/" + ns + "/" + pod
	if name, ok := k.cachedOwner(key); ok {
		return name, nil
	}
	p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		guess := engine.ExtractDeploymentName(pod)
		_, gerr := cl.Client.AppsV1().Deployments(ns).Get(ctx, guess, metav1.GetOptions{})
		switch {
		case gerr == nil:
			k.log.Debug("pod is gone; using the deployment its name suggests", "namespace", ns, "pod", pod, "deployment", guess)
			return guess, nil
		case apierrors.IsNotFound(gerr):
			return "", &missingError{guess, fmt.Sprintf("cannot find the deployment of pod %q: the pod is not in namespace %q and there is no deployment %q there; set params.deployment", pod, ns, guess)}
		default:
			return "", apiError(gerr, "get", deploymentRef(ns, guess))
		}
	}
	if err != nil {
		return "", apiError(err, "get", podRef(ns, pod))
	}
	name, err := deploymentOfPod(ctx, cl, p)
	if err != nil {
		return "", err
	}
	k.cacheOwner(name, key)
	return name, nil
}

// deploymentAnyNamespace finds a pod by name across the namespaces the
// integration may touch and returns its Deployment.
func (k *Integration) deploymentAnyNamespace(ctx context.Context, cl Cluster, pod string) (string, error) {
	key := "/*/" + pod
	if name, ok := k.cachedOwner(key); ok {
		return name, nil
	}
	list, err := cl.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pod).String(),
	})
	if err != nil {
		return "", apiError(err, "list", "pods in all namespaces")
	}
	var matches []*corev1.Pod
	var nss []string
	for i := range list.Items {
		p := &list.Items[i]
		if p.Name == pod && k.checkNamespace(p.Namespace) == nil {
			matches = append(matches, p)
			nss = append(nss, p.Namespace)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no pod named %q in any namespace runbookbot may act on", pod)
	case 1:
	default:
		sort.Strings(nss)
		return "", fmt.Errorf("pods named %q exist in namespaces %s; pass the namespace: extractDeployment(namespace)", pod, strings.Join(nss, ", "))
	}
	name, err := deploymentOfPod(ctx, cl, matches[0])
	if err != nil {
		return "", err
	}
	k.cacheOwner(name, key, "/"+matches[0].Namespace+"/"+pod)
	return name, nil
}

// ExtractDeployment is the cluster-aware extractDeployment filter:
// `{{ podName | extractDeployment }}` or `{{ podName |
// extractDeployment(namespace) }}`. When the cluster cannot answer it falls
// back to trimming the name (engine.ExtractDeploymentName); when it answers
// that the pod is not part of a Deployment, it fails.
func (k *Integration) ExtractDeployment(ctx context.Context, v any, args []any) (any, error) {
	pod := strings.TrimSpace(engine.Stringify(v))
	if pod == "" {
		return "", nil
	}
	if len(args) > 1 {
		return nil, errors.New("extractDeployment takes at most one argument, the namespace")
	}
	ns := ""
	if len(args) == 1 {
		ns = strings.TrimSpace(engine.Stringify(args[0]))
	}
	name, err := k.lookupDeployment(ctx, ns, pod)
	if err == nil {
		return name, nil
	}
	var oe *ownerError
	if errors.As(err, &oe) {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	guess := engine.ExtractDeploymentName(pod)
	k.log.Debug("extractDeployment: cluster lookup failed, trimming the pod name", "pod", pod, "deployment", guess, "err", err)
	return guess, nil
}

func (k *Integration) lookupDeployment(ctx context.Context, ns, pod string) (string, error) {
	ctx, cancel := k.lookupCtx(ctx)
	defer cancel()
	cl, err := k.cluster("")
	if err != nil {
		return "", err
	}
	if ns == "" {
		return k.deploymentAnyNamespace(ctx, cl, pod)
	}
	if err := k.checkNamespace(ns); err != nil {
		return "", err
	}
	name, err := k.deploymentFor(ctx, cl, "", ns, pod)
	if err == nil {
		k.cacheOwner(name, "/*/"+pod)
	}
	return name, err
}

// varString reads a scalar execution variable as text.
func varString(vars map[string]any, key string) string {
	switch v := vars[key].(type) {
	case nil, map[string]any, []any:
		return ""
	default:
		return strings.TrimSpace(engine.Stringify(v))
	}
}

// deploymentVar reads the deployment name from vars["deployment"], a name
// or a deployment object saved by an earlier step.
func deploymentVar(vars map[string]any) string {
	if m, ok := vars["deployment"].(map[string]any); ok {
		if md, ok := m["metadata"].(map[string]any); ok {
			return strings.TrimSpace(engine.Stringify(md["name"]))
		}
		return ""
	}
	return varString(vars, "deployment")
}

// ResolveDeployment supplies the live `deployment` root: the Deployment
// named by vars deployment, or owning vars podName, in vars namespace, as
// a settled view of its current revision (see the package doc).
func (k *Integration) ResolveDeployment(ctx context.Context, _ []string, vars map[string]any) (any, error) {
	ctx, cancel := k.lookupCtx(ctx)
	defer cancel()
	cl, ns, name, err := k.target(ctx, vars)
	if err != nil {
		return nil, err
	}
	_, view, err := k.settledDeployment(ctx, cl, ns, name)
	if err != nil {
		return nil, err
	}
	return deploymentMap(view)
}

// target finds the cluster, namespace and Deployment name the deployment
// and healthcheck roots read: vars deployment, else the owner of vars
// podName, in vars namespace, on the cluster of vars kubeContext.
func (k *Integration) target(ctx context.Context, vars map[string]any) (cl Cluster, ns, name string, err error) {
	kctx := varString(vars, "kubeContext")
	cl, err = k.cluster(kctx)
	if err != nil {
		return Cluster{}, "", "", err
	}
	ns = varString(vars, "namespace")
	if ns == "" {
		return Cluster{}, "", "", errors.New("no namespace: the execution needs a namespace parameter to read the deployment")
	}
	if err := k.checkNamespace(ns); err != nil {
		return Cluster{}, "", "", err
	}
	name = deploymentVar(vars)
	if name == "" {
		pod := varString(vars, "podName")
		if pod == "" {
			return Cluster{}, "", "", errors.New("no deployment or podName parameter to find the deployment from")
		}
		if name, err = k.deploymentFor(ctx, cl, kctx, ns, pod); err != nil {
			return Cluster{}, ns, "", err
		}
	}
	return cl, ns, name, nil
}

// ResolvePod supplies the live `pod` root: vars podName in vars namespace.
func (k *Integration) ResolvePod(ctx context.Context, _ []string, vars map[string]any) (any, error) {
	ctx, cancel := k.lookupCtx(ctx)
	defer cancel()
	cl, err := k.cluster(varString(vars, "kubeContext"))
	if err != nil {
		return nil, err
	}
	ns := varString(vars, "namespace")
	if ns == "" {
		return nil, errors.New("no namespace: the execution needs a namespace parameter to read the pod")
	}
	if err := k.checkNamespace(ns); err != nil {
		return nil, err
	}
	name := varString(vars, "podName")
	if name == "" {
		return nil, errors.New("no podName parameter to read the pod from")
	}
	p, err := cl.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, apiError(err, "get", podRef(ns, name))
	}
	return podMap(p)
}
