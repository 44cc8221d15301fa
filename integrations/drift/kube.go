package drift

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeCluster answers Cluster from the Kubernetes API: a GET of the
// Namespace, Deployment or Secret (a Secret's data is fetched by the API
// but never read or kept here).
type KubeCluster struct {
	// Client returns the clientset of a kubeconfig context ("" = default).
	Client func(kubeContext string) (kubernetes.Interface, error)

	mu      sync.Mutex
	clients map[string]kubernetes.Interface
}

var _ Cluster = (*KubeCluster)(nil)

func (k *KubeCluster) client(kctx string) (kubernetes.Interface, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.clients[kctx]; ok {
		return c, nil
	}
	c, err := k.Client(kctx)
	if err != nil {
		return nil, err
	}
	if k.clients == nil {
		k.clients = map[string]kubernetes.Interface{}
	}
	k.clients[kctx] = c
	return c, nil
}

// Exists GETs the object; not found is false, other errors are errors.
func (k *KubeCluster) Exists(ctx context.Context, kctx string, kind Kind, ns, name string) (bool, error) {
	c, err := k.client(kctx)
	if err != nil {
		return false, err
	}
	switch kind {
	case KindNamespace:
		_, err = c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	case KindDeployment:
		_, err = c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	case KindSecret:
		_, err = c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	default:
		return false, fmt.Errorf("unknown kind %s", kind)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		if apierrors.IsForbidden(err) {
			return false, fmt.Errorf("forbidden: the bot may not read %ss", kind)
		}
		if r := apierrors.ReasonForError(err); r != "" {
			return false, fmt.Errorf("kubernetes API: %s", r)
		}
		return false, fmt.Errorf("kubernetes API unreachable")
	}
	return true, nil
}
