package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/runbookbot/runbookbot/engine"
)

// kubeProvider reads Kubernetes Secrets through client-go.
type kubeProvider struct {
	client kubernetes.Interface
	// namespace is used for paths without one.
	namespace string
}

// ref splits a mapping's path into namespace and Secret name.
func (p *kubeProvider) ref(m *engine.SecretMapping) (ns, name string, err error) {
	path := strings.Trim(strings.TrimSpace(m.Path), "/")
	if path == "" {
		return "", "", errors.New("set path to the Secret, as namespace/name or name")
	}
	parts := strings.Split(path, "/")
	switch len(parts) {
	case 1:
		ns, name = p.namespace, parts[0]
		if ns == "" {
			return "", "", fmt.Errorf("path %q has no namespace: write namespace/name or set kubernetes.namespace", path)
		}
	case 2:
		ns, name = parts[0], parts[1]
	default:
		return "", "", fmt.Errorf("path %q: write namespace/name", path)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", "", fmt.Errorf("path %q: namespace %q is not valid: %s", path, ns, errs[0])
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", fmt.Errorf("path %q: Secret name %q is not valid: %s", path, name, errs[0])
	}
	return ns, name, nil
}

func (p *kubeProvider) check(m *engine.SecretMapping) error {
	_, _, err := p.ref(m)
	return err
}

func (p *kubeProvider) fetch(ctx context.Context, m *engine.SecretMapping) (any, error) {
	ns, name, err := p.ref(m)
	if err != nil {
		return nil, err
	}
	where := "Secret " + ns + "/" + name
	sec, err := p.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%s not found", where)
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("not allowed to read %s (grant the service account get on secrets)", where)
	case apierrors.IsUnauthorized(err):
		return nil, fmt.Errorf("reading %s: the cluster refused the credentials", where)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("reading %s: %w", where, context.Cause(ctx))
	default:
		return nil, fmt.Errorf("reading %s: %s", where, apiReason(err))
	}
	data := make(map[string]string, len(sec.Data)+len(sec.StringData))
	for k, v := range sec.StringData {
		data[k] = v
	}
	for k, v := range sec.Data {
		data[k] = string(v)
	}
	return pick(m, data, where)
}

// apiReason describes an API error by its status reason and code, or the
// transport error, keeping response bodies out.
func apiReason(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		if s.Reason != "" {
			return fmt.Sprintf("%s (%d)", s.Reason, s.Code)
		}
		return fmt.Sprintf("status %d", s.Code)
	}
	return err.Error()
}

// Key selection, shared by every provider whose secrets are sets of keys:
// Kubernetes Secret data, Vault KV data, structured files and JSON env
// values.

// pick takes a mapping's field or fields out of the keys found at where.
// Errors list the keys, never the values.
func pick(m *engine.SecretMapping, data map[string]string, where string) (any, error) {
	switch {
	case len(m.Fields) > 0:
		out := make(map[string]string, len(m.Fields))
		for _, f := range m.Fields {
			v, ok := data[f]
			if !ok {
				return nil, missingKey(f, data, where)
			}
			out[f] = v
		}
		return out, nil
	case m.Field != "":
		v, ok := data[m.Field]
		if !ok {
			return nil, missingKey(m.Field, data, where)
		}
		return v, nil
	case len(data) == 1:
		for _, v := range data {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%s has %s: set field or fields to choose", where, keyList(data))
}

func missingKey(k string, data map[string]string, where string) error {
	return fmt.Errorf("%s has no key %q (it has %s)", where, k, keyList(data))
}

func keyList(data map[string]string) string {
	if len(data) == 0 {
		return "no keys"
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "keys " + strings.Join(keys, ", ")
}

// decodeJSONObject decodes a JSON object, keeping numbers as written.
func decodeJSONObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if obj == nil || dec.More() {
		return nil, errors.New("not a single JSON object")
	}
	return obj, nil
}

// textValues turns an object's scalar values into text. Nested objects
// and lists are refused by key name.
func textValues(obj map[string]any, where string) (map[string]string, error) {
	out := make(map[string]string, len(obj))
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := obj[k].(type) {
		case map[string]any, []any:
			return nil, fmt.Errorf("%s: key %q is not a single value", where, k)
		case nil:
			out[k] = ""
		default:
			out[k] = engine.Stringify(v)
		}
	}
	return out, nil
}
