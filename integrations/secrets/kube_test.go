package secrets

import (
	"context"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/runbookbot/runbookbot/engine"
)

func kubeSecret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func kubeConfig(namespace string, mappings ...engine.SecretMapping) *engine.SecretsConfig {
	cfg := config("kubernetes-secrets", mappings...)
	if namespace != "" {
		cfg.Secrets.Kubernetes = &engine.KubeSecretConfig{Namespace: namespace}
	}
	return cfg
}

func TestKubernetesSecrets(t *testing.T) {
	client := fake.NewClientset(
		kubeSecret("runbooks", "admin-token", map[string]string{"token": canary}),
		kubeSecret("data", "database", map[string]string{"username": "app", "password": canary, "host": "db"}),
	)
	s := mustNew(t, kubeConfig("runbooks",
		engine.SecretMapping{Name: "adminToken", Path: "admin-token", Field: "token"},
		engine.SecretMapping{Name: "onlyKey", Path: "runbooks/admin-token"},
		engine.SecretMapping{Name: "db", Path: "data/database", Fields: []string{"username", "password"}},
	), Deps{Kube: client})
	for _, name := range []string{"adminToken", "onlyKey"} {
		if got := get(t, s, name); got != canary {
			t.Errorf("%s = %v", name, got)
		}
	}
	if got := get(t, s, "db"); !reflect.DeepEqual(got, map[string]string{"username": "app", "password": canary}) {
		t.Errorf("db = %v", got)
	}
}

func TestKubernetesSecretErrors(t *testing.T) {
	client := fake.NewClientset(kubeSecret("data", "database", map[string]string{"username": "app", "password": canary}))
	s := mustNew(t, kubeConfig("",
		engine.SecretMapping{Name: "missing", Path: "data/nope"},
		engine.SecretMapping{Name: "noKey", Path: "data/database", Field: "token"},
		engine.SecretMapping{Name: "ambiguous", Path: "data/database"},
		engine.SecretMapping{Name: "forbidden", Path: "locked/creds"},
		engine.SecretMapping{Name: "broken", Path: "flaky/creds"},
	), Deps{Kube: client})
	client.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		gr := schema.GroupResource{Resource: "secrets"}
		switch a.GetNamespace() {
		case "locked":
			return true, nil, apierrors.NewForbidden(gr, "creds", nil)
		case "flaky":
			return true, nil, apierrors.NewServiceUnavailable("etcd is unhappy")
		}
		return false, nil, nil
	})
	for name, want := range map[string]string{
		"missing":   "kubernetes-secrets: Secret data/nope not found",
		"noKey":     `Secret data/database has no key "token" (it has keys password, username)`,
		"ambiguous": "Secret data/database has keys password, username: set field or fields",
		"forbidden": "not allowed to read Secret locked/creds",
		"broken":    "reading Secret flaky/creds: ServiceUnavailable (503)",
	} {
		_, err := s.Secret(context.Background(), name)
		msg := errText(t, err)
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error %q, want %q", name, msg, want)
		}
		assertNoLeak(t, canary, msg)
	}
}

func TestKubernetesSecretsAreCached(t *testing.T) {
	client := fake.NewClientset(kubeSecret("ops", "token", map[string]string{"token": "v1"}))
	s := mustNew(t, kubeConfig("ops", engine.SecretMapping{Name: "token", Path: "token"}), Deps{Kube: client})
	get(t, s, "token")
	get(t, s, "token")
	gets := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "secrets" {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d reads of the Secret, want 1", gets)
	}
}
