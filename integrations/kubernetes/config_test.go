package kubernetes_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/integrations/kubernetes"
)

// noKubeEnv leaves no way to find a cluster: an empty HOME, no KUBECONFIG,
// not in a pod.
func noKubeEnv(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_MASTER", "")
	return home
}

func TestNoKubeconfigSaysWhereToPutOne(t *testing.T) {
	noKubeEnv(t)
	_, err := kubernetes.NewCluster("", "")
	if !errors.Is(err, kubernetes.ErrNoKubeconfig) {
		t.Fatalf("err = %v, want ErrNoKubeconfig", err)
	}
	wantErr(t, err, "KUBECONFIG", "~/.kube/config", "in a cluster", "KUBERNETES_SERVICE_HOST")
	if strings.Contains(err.Error(), "KUBERNETES_MASTER") {
		t.Errorf("error %q points at KUBERNETES_MASTER", err)
	}
}

func TestNoKubeconfigInAPodWithoutServiceAccount(t *testing.T) {
	noKubeEnv(t)
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	_, err := kubernetes.RESTConfig("", "")
	if !errors.Is(err, kubernetes.ErrNoKubeconfig) {
		t.Fatalf("err = %v, want ErrNoKubeconfig", err)
	}
	wantErr(t, err, "in-cluster configuration failed")
}

func TestKubeconfigFromHome(t *testing.T) {
	home := noKubeEnv(t)
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://10.9.8.7:6443"}}]
users: [{name: u, user: {token: t0k3n}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := kubernetes.RESTConfig("", "")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://10.9.8.7:6443" {
		t.Errorf("host = %q, want the one in $HOME/.kube/config", rc.Host)
	}
	_, err = kubernetes.RESTConfig(filepath.Join(home, "nope"), "")
	if err == nil || errors.Is(err, kubernetes.ErrNoKubeconfig) {
		t.Errorf("an explicit missing kubeconfig: err = %v", err)
	}
}
