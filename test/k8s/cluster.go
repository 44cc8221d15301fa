// Package k8s starts a real Kubernetes control plane on loopback for tests:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from
// source, plus kwok, which plays one fake node (pods go Running/Ready without
// containers, and pods/exec runs the command on this host in a temp dir).
//
// The binaries come from test/k8s/build.sh, which caches them in
// $RUNBOOKBOT_K8S_BIN or $HOME/.cache/runbookbot/k8s/v1.37.2. Without them
// Start skips the test, unless RUNBOOKBOT_REQUIRE_K8S=1, when it fails it.
//
//	c := k8s.Start(t)
//	cs := c.Clientset()
//	c.Namespace(t, "staging")
package k8s

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// Version is the Kubernetes version build.sh builds and Start runs.
	Version = "v1.37.2"
	// NodeName is the kwok fake node every pod is scheduled onto.
	NodeName = "kwok-node-0"

	envBin     = "RUNBOOKBOT_K8S_BIN"
	envRequire = "RUNBOOKBOT_REQUIRE_K8S"
)

// Binaries lists the executables Start needs in BinDir.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// BinDir is where build.sh puts the binaries: $RUNBOOKBOT_K8S_BIN, or
// $HOME/.cache/runbookbot/k8s/<Version>.
func BinDir() string {
	if d := os.Getenv(envBin); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "runbookbot", "k8s", Version)
}

// missing reports what of the build is absent from dir, or "" if complete.
func missing(dir string) string {
	var miss []string
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			miss = append(miss, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kwok-stages.yaml")); err != nil {
		miss = append(miss, "kwok-stages.yaml")
	}
	return strings.Join(miss, ", ")
}

// Cluster is a running control plane. Everything is stopped, by PID, when the
// test that started it ends.
type Cluster struct {
	dir        string
	execDir    string
	kubeconfig string
	cfg        *rest.Config
	cs         kubernetes.Interface
	procs      []*process
	startup    time.Duration
	dumped     bool
}

// RESTConfig returns a copy of the admin (system:masters) client config.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.cfg) }

// Kubeconfig is the path of an admin kubeconfig file with embedded
// credentials, usable by kubectl or clientcmd.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Clientset is an admin clientset.
func (c *Cluster) Clientset() kubernetes.Interface { return c.cs }

// ExecDir is the working directory in which kwok runs the commands of
// pods/exec (on this host: keep them harmless).
func (c *Cluster) ExecDir() string { return c.execDir }

// Dir is the temp dir holding the PKI, etcd's data and the components' logs.
func (c *Cluster) Dir() string { return c.dir }

// StartupTime is how long Start took to get the cluster ready.
func (c *Cluster) StartupTime() time.Duration { return c.startup }

// Start starts a cluster for t and waits until it can run pods: /readyz
// answers, the fake node is Ready and untainted, and the default
// ServiceAccount exists. It skips t when the binaries are missing (see
// build.sh), or fails it when RUNBOOKBOT_REQUIRE_K8S=1.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := BinDir()
	if m := missing(bin); m != "" {
		msg := fmt.Sprintf("k8s: missing %s in %s; build them with test/k8s/build.sh (~16 min cold, cached after)", m, bin)
		if os.Getenv(envRequire) == "1" {
			t.Fatal(msg + " [" + envRequire + "=1]")
		}
		t.Skip(msg)
	}
	began := time.Now()
	dir := t.TempDir()
	c := &Cluster{dir: dir, execDir: filepath.Join(dir, "exec")}
	// Registered after TempDir, so it runs before the dir is removed.
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
		stopAll(c.procs, 3*time.Second)
	})
	fail := func(format string, args ...any) {
		t.Helper()
		c.dumpLogs(t)
		t.Fatalf("k8s: "+format, args...)
	}

	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		fail("pki: %v", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		fail("free ports: %v", err)
	}
	etcdPort, etcdPeer, apiPort, kubeletPort := ports[0], ports[1], ports[2], ports[3]
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)

	c.cfg = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: p.caPEM, CertData: p.adminCertPEM, KeyData: p.adminKey,
		},
		QPS: 200, Burst: 400,
	}
	c.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, host, p); err != nil {
		fail("kubeconfig: %v", err)
	}
	for _, d := range []string{"logs", "etcd", "exec", "home", "apiserver-certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			fail("%v", err)
		}
	}
	kwokConfig := filepath.Join(dir, "kwok.yaml")
	if err := os.WriteFile(kwokConfig, []byte(fmt.Sprintf(kwokExecConfig, c.execDir)), 0o600); err != nil {
		fail("%v", err)
	}

	logs := filepath.Join(dir, "logs")
	// HOME in the temp dir: kwok would otherwise merge ~/.kwok/kwok.yaml.
	env := append(os.Environ(), "HOME="+filepath.Join(dir, "home"))
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	type spec struct {
		name string
		args []string
	}
	specs := []spec{
		{"etcd", []string{
			"--name=default",
			"--data-dir=" + filepath.Join(dir, "etcd"),
			"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			"--unsafe-no-fsync", "--log-level=warn",
		}},
		{"kube-apiserver", []string{
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(apiPort),
			"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
			"--etcd-servers=" + etcdURL,
			"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
			"--tls-cert-file=" + p.ServingCert, "--tls-private-key-file=" + p.ServingKey,
			"--client-ca-file=" + p.CACert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p.SAPub,
			"--service-account-signing-key-file=" + p.SAKey,
			"--service-cluster-ip-range=10.0.0.0/24",
			"--authorization-mode=Node,RBAC",
			"--kubelet-client-certificate=" + p.AdminCert, "--kubelet-client-key=" + p.AdminKey,
			"--kubelet-preferred-address-types=InternalIP",
			"--allow-privileged=true",
			"--profiling=false",
		}},
		{"kube-controller-manager", []string{
			"--kubeconfig=" + c.kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
			"--service-account-private-key-file=" + p.SAKey,
			"--root-ca-file=" + p.CACert,
			"--cluster-signing-cert-file=" + p.CACert, "--cluster-signing-key-file=" + p.CAKey,
			"--profiling=false",
		}},
		{"kube-scheduler", []string{
			"--kubeconfig=" + c.kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
			"--profiling=false",
		}},
		{"kwok", []string{
			"--kubeconfig=" + c.kubeconfig,
			"--config=" + filepath.Join(bin, "kwok-stages.yaml"), "--config=" + kwokConfig,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--node-ip=127.0.0.1", "--node-name=" + NodeName,
			"--node-port=" + strconv.Itoa(kubeletPort),
			"--server-address=127.0.0.1:" + strconv.Itoa(kubeletPort),
			"--tls-cert-file=" + p.KubeletCert, "--tls-private-key-file=" + p.KubeletKey,
			"--cidr=10.0.1.0/24",
		}},
	}
	c.cs, err = kubernetes.NewForConfig(c.cfg)
	if err != nil {
		fail("clientset: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout())
	defer cancel()
	start := func(s spec) {
		t.Helper()
		pr, err := startProcess(s.name, filepath.Join(bin, s.name), logs, env, s.args...)
		if err != nil {
			fail("%v", err)
		}
		c.procs = append(c.procs, pr)
	}
	// etcd and the apiserver together (the apiserver retries etcd), the rest
	// once the apiserver is ready: kube-controller-manager gives up if
	// /healthz fails for 10 s, which a loaded machine can exceed.
	start(specs[0])
	start(specs[1])
	if err := c.waitFor(ctx, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		body, err := c.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && strings.TrimSpace(string(body)) == "ok", nil
	}); err != nil {
		fail("%v", err)
	}

	for _, s := range specs[2:] {
		start(s)
	}

	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: NodeName,
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			Labels: map[string]string{
				"kubernetes.io/hostname": NodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods:   resource.MustParse("250"),
			},
		},
	}
	node.Status.Allocatable = node.Status.Capacity
	if err := c.waitFor(ctx, "creating node "+NodeName, func(ctx context.Context) (bool, error) {
		_, err := c.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), nil
	}); err != nil {
		fail("%v", err)
	}
	if err := c.waitFor(ctx, "node "+NodeName+" Ready and schedulable", func(ctx context.Context) (bool, error) {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, taint := range n.Spec.Taints {
			if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
				return false, nil
			}
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}); err != nil {
		fail("%v", err)
	}
	if err := c.waitServiceAccount(ctx, metav1.NamespaceDefault); err != nil {
		fail("%v", err)
	}
	c.startup = time.Since(began)
	t.Logf("k8s: cluster %s ready in %s at %s (logs in %s)", Version, c.startup.Round(time.Millisecond), host, logs)
	return c
}

// Namespace creates namespace name (if absent) and waits for its default
// ServiceAccount, without which pods cannot be created in it.
func (c *Cluster) Namespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("k8s: create namespace %s: %v", name, err)
	}
	if err := c.waitServiceAccount(ctx, name); err != nil {
		t.Fatalf("k8s: %v", err)
	}
}

func (c *Cluster) waitServiceAccount(ctx context.Context, ns string) error {
	return c.waitFor(ctx, "ServiceAccount "+ns+"/default", func(ctx context.Context) (bool, error) {
		_, err := c.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// waitFor polls cond every 100 ms until it holds, ctx ends, or a component
// exits.
func (c *Cluster) waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, p := range c.procs {
			if p.exited() {
				return fmt.Errorf("waiting for %s: %s exited: %v", what, p.name, p.err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := cond(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// dumpLogs prints the tail of each component's log.
func (c *Cluster) dumpLogs(t testing.TB) {
	t.Helper()
	if c.dumped {
		return
	}
	c.dumped = true
	for _, p := range c.procs {
		state := "running"
		if p.exited() {
			state = fmt.Sprintf("exited: %v", p.err)
		}
		t.Logf("k8s: ---- %s (pid %d, %s) ----\n%s", p.name, p.cmd.Process.Pid, state, p.tail(60))
	}
}

func startTimeout() time.Duration {
	if s := os.Getenv("RUNBOOKBOT_K8S_START_TIMEOUT"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return 90 * time.Second
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, holding each
// listener until all are picked so none repeats.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeKubeconfig(path, host string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["runbookbot-test"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKey}
	cfg.Contexts["runbookbot-test"] = &clientcmdapi.Context{Cluster: "runbookbot-test", AuthInfo: "admin", Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "runbookbot-test"
	return clientcmd.WriteToFile(*cfg, path)
}

// kwokExecConfig makes kwok answer pods/exec for every pod by running the
// command on this host in the given dir.
const kwokExecConfig = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: runbookbot-local-exec
spec:
  execs:
  - local:
      workDir: %q
`
