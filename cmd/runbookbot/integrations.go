package main

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
	rbhttp "github.com/runbookbot/runbookbot/integrations/http"
	"github.com/runbookbot/runbookbot/integrations/kubernetes"
	"github.com/runbookbot/runbookbot/integrations/prometheus"
)

// registerIntegrations adds the step types that reach outside systems.
// Clusters are reached lazily (a lint needs no cluster): KUBECONFIG or the
// in-cluster config, per kubeContext. Metrics come from a query file
// (RUNBOOKBOT_METRICS_CONFIG) or PROMETHEUS_URL with the default queries.
func registerIntegrations(reg *engine.Registry, o registryOptions) {
	rbhttp.Register(reg, rbhttp.Deps{Logger: o.logger})
	// Kubernetes steps and live data need a cluster configuration; without
	// any, lint refuses them (naming what is missing) instead of accepting
	// steps that can only fail. Dry runs plan them all the same.
	if _, err := kubernetes.RESTConfig("", ""); errors.Is(err, kubernetes.ErrNoKubeconfig) && !o.plan {
		reg.UnavailableType(kubernetes.StepType, err.Error())
		for _, root := range []string{"deployment", "pod", "healthcheck"} {
			reg.Unavailable(root, err.Error())
		}
	} else {
		kubernetes.Register(reg, kubernetes.Deps{
			Contexts:        kubernetes.KubeconfigContexts(os.Getenv("KUBECONFIG")),
			DenyNamespaces:  splitList(os.Getenv("RUNBOOKBOT_DENY_NAMESPACES")),
			AllowNamespaces: splitList(os.Getenv("RUNBOOKBOT_ALLOW_NAMESPACES")),
			Logger:          o.logger,
		})
	}
	const noProm = "no Prometheus is configured: set PROMETHEUS_URL (default queries) or RUNBOOKBOT_METRICS_CONFIG=deploy/prometheus-queries.yaml"
	switch cfg, ok := o.metrics(); {
	case ok:
		prometheus.Register(reg, cfg)
	case o.plan:
		// A dry run reads no metrics: plan the runbook, and say at run
		// time what is missing.
		reg.Resolver("metrics", func(context.Context, []string, map[string]any) (any, error) {
			return nil, errors.New(noProm)
		})
	default:
		reg.Unavailable("metrics", noProm)
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// defaultQueries are the metrics the shipped runbooks read.
var defaultQueries = map[string]string{
	"podMemoryPercent":           `max(container_memory_working_set_bytes{namespace="{{ namespace }}",pod="{{ podName }}",container!=""} / on(namespace,pod,container) kube_pod_container_resource_limits{namespace="{{ namespace }}",pod="{{ podName }}",resource="memory"}) * 100`,
	"podCPUThrottlePercent":      `100 * sum(rate(container_cpu_cfs_throttled_periods_total{namespace="{{ namespace }}",pod="{{ podName }}"}[5m])) / sum(rate(container_cpu_cfs_periods_total{namespace="{{ namespace }}",pod="{{ podName }}"}[5m]))`,
	"nodeDiskFreePercent":        `100 * min(node_filesystem_avail_bytes{mountpoint="/",instance=~"{{ nodeName }}.*"} / node_filesystem_size_bytes{mountpoint="/",instance=~"{{ nodeName }}.*"})`,
	"certificateDaysUntilExpiry": `min(certmanager_certificate_expiration_timestamp_seconds{namespace="{{ namespace }}",name="{{ secretName }}"} - time()) / 86400`,
}

// metrics returns the Prometheus configuration, if any is given.
func (o registryOptions) metrics() (prometheus.Config, bool) {
	if path := os.Getenv("RUNBOOKBOT_METRICS_CONFIG"); path != "" {
		cfg, err := prometheus.LoadConfig(path)
		if err != nil {
			if o.logger != nil {
				o.logger.Error("metrics config not loaded; metrics.* conditions will fail", "file", path, "err", err)
			}
			return prometheus.Config{}, false
		}
		cfg.Logger = o.logger
		return cfg, true
	}
	if url := os.Getenv("PROMETHEUS_URL"); url != "" {
		return prometheus.Config{URL: url, Queries: defaultQueries, Logger: o.logger}, true
	}
	return prometheus.Config{}, false
}
