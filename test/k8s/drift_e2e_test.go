package k8s_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sclient "k8s.io/client-go/kubernetes"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/integrations/drift"
	rbk8s "github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/test/k8s"
)

const driftRunbook = `apiVersion: runbooks/v1
kind: Runbook
metadata:
  name: restart-checkout
  version: "1.0.0"
parameters:
  - name: namespace
    type: string
    default: drift-shop
steps:
  - name: restart
    type: kubernetes
    action: rolloutRestart
    params:
      namespace: "{{ namespace }}"
      deployment: checkout
`

// On the real control plane: deleting the Deployment a runbook restarts is
// reported as drift at the runbook's file and line; recreating it clears
// the finding.
func TestDriftFollowsTheCluster(t *testing.T) {
	c := k8s.Start(t)
	cs := c.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.Namespace(t, "drift-shop")
	if _, err := cs.AppsV1().Deployments("drift-shop").Create(ctx, deployment("drift-shop", "checkout", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "restart-checkout.yaml")
	if err := os.WriteFile(file, []byte(driftRunbook), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	engine.RegisterBuiltins(reg, nil)
	rbk8s.Register(reg, rbk8s.Deps{Client: cs, Config: c.RESTConfig()})
	cat, diags := engine.LoadPaths(reg, dir)
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	checker := &drift.Checker{Cluster: &drift.KubeCluster{Client: func(string) (k8sclient.Interface, error) { return cs, nil }}}
	check := func() []drift.Finding { return checker.Check(ctx, cat).Findings }

	if f := check(); len(f) != 0 {
		t.Fatalf("drift while the deployment exists: %v", f)
	}
	if err := cs.AppsV1().Deployments("drift-shop").Delete(ctx, "checkout", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f := check()
	if len(f) != 1 || f[0].Kind != drift.KindDeployment || f[0].File != file || f[0].Line != 16 ||
		!strings.Contains(f[0].Message, `deployment "checkout" in namespace "drift-shop" does not exist`) {
		t.Fatalf("after the delete: %v, want the deployment at %s:16 (its deployment parameter)", f, file)
	}
	if _, err := cs.AppsV1().Deployments("drift-shop").Create(ctx, deployment("drift-shop", "checkout", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if f := check(); len(f) != 0 {
		t.Errorf("drift after recreating the deployment: %v", f)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, "drift-shop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A namespace being deleted still exists until it is gone: poll.
	deadline := time.Now().Add(90 * time.Second)
	for {
		f := check()
		if len(f) == 1 && f[0].Kind == drift.KindNamespace {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted namespace is not reported: %v", f)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
