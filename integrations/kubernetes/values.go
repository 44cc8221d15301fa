package kubernetes

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/runbookbot/runbookbot/engine"
)

const (
	// RevisionAnnotation is where the deployment controller records a
	// Deployment's and its ReplicaSets' revision numbers.
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// RestartedAtAnnotation is the pod template annotation `kubectl rollout
	// restart` sets to trigger a rollout.
	RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	// defaultContainerAnnotation names the container kubectl exec picks.
	defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"
)

// statusCounters are filled with 0 when absent so conditions can compare
// them (`deployment.status.readyReplicas == deployment.spec.replicas`).
var statusCounters = []string{"replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas", "observedGeneration"}

// objectMap converts an API object to the map templates and conditions read,
// without managedFields.
func objectMap(obj runtime.Object) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	return m, nil
}

// deploymentMap is objectMap for a Deployment, with kind and apiVersion set,
// spec.replicas defaulted, the status counters present and status.settled
// added.
func deploymentMap(d *appsv1.Deployment) (map[string]any, error) {
	c := d.DeepCopy()
	c.APIVersion, c.Kind = "apps/v1", "Deployment"
	m, err := objectMap(c)
	if err != nil {
		return nil, err
	}
	spec, _ := m["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
		m["spec"] = spec
	}
	if _, ok := spec["replicas"]; !ok {
		spec["replicas"] = int64(specReplicas(d))
	}
	status, _ := m["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
		m["status"] = status
	}
	for _, k := range statusCounters {
		if _, ok := status[k]; !ok {
			status[k] = int64(0)
		}
	}
	status["settled"] = settled(d)
	return m, nil
}

// podMap is objectMap for a Pod, with kind and apiVersion set.
func podMap(p *corev1.Pod) (map[string]any, error) {
	c := p.DeepCopy()
	c.APIVersion, c.Kind = "v1", "Pod"
	return objectMap(c)
}

// specReplicas is the desired replica count (the API default is 1).
func specReplicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// revision reads the revision annotation of an object.
func revision(annotations map[string]string) (int64, bool) {
	v, ok := annotations[RevisionAnnotation]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// podSummary is a listPods item.
func podSummary(p *corev1.Pod) map[string]any {
	var restarts int64
	for _, cs := range p.Status.ContainerStatuses {
		restarts += int64(cs.RestartCount)
	}
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	return map[string]any{
		"name":      p.Name,
		"namespace": p.Namespace,
		"phase":     string(p.Status.Phase),
		"ready":     ready,
		"node":      p.Spec.NodeName,
		"restarts":  restarts,
	}
}

// absent reports whether a param value means "not given".
func absent(v any) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && strings.TrimSpace(s) == ""
}

// toInt64 accepts the shapes a rendered param can take: Go integers,
// integral floats (YAML and JSON numbers), json.Number and numeric strings.
func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%d is too large", x)
		}
		return int64(x), nil
	case float32:
		return floatToInt(float64(x))
	case float64:
		return floatToInt(x)
	case json.Number:
		return parseIntString(string(x))
	case string:
		return parseIntString(x)
	}
	return 0, fmt.Errorf("want a whole number, got %s", describe(v))
}

func parseIntString(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("want a whole number, got %q", s)
	}
	return floatToInt(f)
}

func floatToInt(f float64) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("want a whole number, got %s", strconv.FormatFloat(f, 'f', -1, 64))
	}
	return int64(f), nil
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool:
		return fmt.Sprintf("%v", v)
	}
	return fmt.Sprintf("%q", engine.Stringify(v))
}

// intParam reads an optional whole-number param; ok is false when absent.
func intParam(c *engine.Call, key string) (n int64, ok bool, err error) {
	v := c.Params[key]
	if absent(v) {
		return 0, false, nil
	}
	n, err = toInt64(v)
	if err != nil {
		return 0, false, fmt.Errorf("param %s: %w", key, err)
	}
	return n, true, nil
}

// int32Param reads a non-negative param that must fit a replica count.
func int32Param(c *engine.Call, key string, def int32) (int32, error) {
	n, ok, err := intParam(c, key)
	if err != nil || !ok {
		return def, err
	}
	if n < 0 || n > math.MaxInt32 {
		return 0, fmt.Errorf("param %s: %d is out of range", key, n)
	}
	return int32(n), nil
}

// stringParam reads a trimmed string param.
func stringParam(c *engine.Call, key string) string {
	return strings.TrimSpace(c.String(key))
}

// requireString reads a string param that must not be empty.
func requireString(c *engine.Call, key string) (string, error) {
	s := stringParam(c, key)
	if s == "" {
		return "", fmt.Errorf("param %s is empty", key)
	}
	return s, nil
}

// commandParam reads a command: a list is the argv, a string runs under
// `sh -c`.
func commandParam(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		if strings.TrimSpace(x) == "" {
			return nil, fmt.Errorf("param command is empty")
		}
		return []string{"sh", "-c", x}, nil
	case []string:
		if len(x) == 0 {
			return nil, fmt.Errorf("param command is an empty list")
		}
		return x, nil
	case []any:
		if len(x) == 0 {
			return nil, fmt.Errorf("param command is an empty list")
		}
		out := make([]string, len(x))
		for i, e := range x {
			switch e.(type) {
			case map[string]any, []any, nil:
				return nil, fmt.Errorf("param command[%d] must be a string, got %s", i, describe(e))
			}
			out[i] = engine.Stringify(e)
		}
		return out, nil
	case nil:
		return nil, fmt.Errorf("param command is missing")
	}
	return nil, fmt.Errorf("param command must be a list of strings or a string, got %s", describe(v))
}

// staticParam returns a step's param value when it holds no template, for
// lint-time validation.
func staticParam(s *engine.Step, key string) (any, bool) {
	v, ok := s.Params.Values[key]
	if !ok {
		return nil, false
	}
	if str, isStr := v.(string); isStr && engine.HasTemplate(str) {
		return nil, false
	}
	return v, true
}
