package drift

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// kubeActions lists the kubernetes actions whose deployment param names a
// Deployment that must exist.
var kubeActions = map[string]bool{"rolloutRestart": true, "rolloutUndo": true, "scale": true, "getDeployment": true,
	"waitForRollout": true, "checkDeploymentReady": true}

// secretParams are kubernetes params that name a Secret.
var secretParams = []string{"secret", "secretName"}

// step checks what one step names, with one binding.
func (r *run) step(ctx context.Context, st *engine.Step, b binding) {
	params := st.Pos.Of("params")
	// at is the line of the parameter a finding is about.
	at := func(key string) engine.Pos { return st.Params.Pos(key, params) }
	switch st.Type {
	case "kubernetes":
		kctx, _ := r.value(st, "kubeContext", b)
		ns, nsOK := r.value(st, "namespace", b)
		if !nsOK {
			if _, present := st.Params.Values["namespace"]; present {
				r.unchecked(at("namespace"), KindNamespace, "namespace needs values known only when the runbook runs")
			}
			return
		}
		if !r.exists(ctx, at("namespace"), kctx, KindNamespace, "", ns, b, fmt.Sprintf("namespace %q", ns)) {
			return // nothing in it can exist
		}
		if kubeActions[st.Action] {
			if dep, ok := r.value(st, "deployment", b); ok {
				r.exists(ctx, at("deployment"), kctx, KindDeployment, ns, dep, b, fmt.Sprintf("deployment %q in namespace %q", dep, ns))
			} else if _, present := st.Params.Values["deployment"]; present {
				r.unchecked(at("deployment"), KindDeployment, "deployment needs values known only when the runbook runs")
			}
		}
		for _, k := range secretParams {
			if name, ok := r.value(st, k, b); ok {
				r.exists(ctx, at(k), kctx, KindSecret, ns, name, b, fmt.Sprintf("secret %q in namespace %q", name, ns))
			}
		}
	case "http":
		if st.Action != "get" {
			break // only health checks are probed: nothing that changes anything
		}
		u, ok := r.value(st, "url", b)
		if !ok {
			r.unchecked(at("url"), KindHTTP, "url needs values known only when the runbook runs")
			break
		}
		r.probe(ctx, at("url"), u, b)
	}
	r.secretRefs(ctx, st, at)
}

// exists checks one object and reports it when missing; it returns whether
// the object exists (true when it could not be checked).
func (r *run) exists(ctx context.Context, pos engine.Pos, kctx string, kind Kind, ns, name string, b binding, what string) bool {
	if r.c.Cluster == nil {
		r.unchecked(pos, kind, "no Kubernetes cluster is configured")
		return true
	}
	ok, err := r.c.Cluster.Exists(ctx, kctx, kind, ns, name)
	if err != nil {
		r.unchecked(pos, kind, fmt.Sprintf("%s could not be checked: %v", what, err))
		return true
	}
	if !ok {
		target := name
		if ns != "" {
			target = ns + "/" + name
		}
		r.find(pos, kind, target, "%s does not exist%s", what, b.suffix())
	}
	return ok
}

// probe GETs a health endpoint: no answer, or an answer that says the
// endpoint is not there or broken (404, 410, 5xx), is drift.
func (r *run) probe(ctx context.Context, pos engine.Pos, raw string, b binding) {
	shown := shownURL(raw)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		r.find(pos, KindHTTP, shown, "health endpoint %s is not a valid URL", shown)
		return
	}
	resp, err := r.c.HTTP.Do(req)
	if err != nil {
		r.find(pos, KindHTTP, shown, "health endpoint %s does not answer%s", shown, b.suffix())
		return
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone || resp.StatusCode >= 500 {
		r.find(pos, KindHTTP, shown, "health endpoint %s answers %d%s", shown, resp.StatusCode, b.suffix())
	}
}

// shownURL keeps scheme, host and path (query values may be credentials).
func shownURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if at := strings.Index(raw, "@"); at >= 0 {
		if s := strings.Index(raw, "://"); s >= 0 && s < at {
			raw = raw[:s+3] + raw[at+1:]
		}
	}
	return raw
}

var (
	metricRef = regexp.MustCompile(`\bmetrics\.([A-Za-z_][A-Za-z0-9_]*)`)
	secretRef = regexp.MustCompile(`\bsecrets\.([A-Za-z_][A-Za-z0-9_-]*)`)
)

// conditions checks the metrics that conditions and params read.
func (r *run) conditions(ctx context.Context, b binding) {
	type use struct {
		pos  engine.Pos
		text string
	}
	var uses []use
	for _, ps := range r.rb.AllSteps() {
		st := ps.Step
		if st.Condition != "" {
			uses = append(uses, use{st.Pos.Of("condition"), st.Condition})
		}
		if st.RequiresApproval != nil {
			for _, c := range st.RequiresApproval.Conditions {
				uses = append(uses, use{st.RequiresApproval.Pos, c})
			}
		}
		for k, v := range st.Params.Values {
			if s, ok := v.(string); ok {
				uses = append(uses, use{st.Params.Pos(k, st.Pos.Of("params")), s})
			}
		}
	}
	if rb := r.rb.Rollback; rb != nil {
		for _, t := range rb.Triggers {
			uses = append(uses, use{t.Pos.Of("condition"), t.Condition})
		}
	}
	for _, u := range uses {
		for _, m := range metricRef.FindAllStringSubmatch(u.text, -1) {
			name := m[1]
			if r.c.Metrics == nil {
				r.unchecked(u.pos, KindMetric, "no Prometheus is configured")
				continue
			}
			ok, err := r.c.Metrics.HasSeries(ctx, name, b.vars)
			if err != nil {
				r.unchecked(u.pos, KindMetric, fmt.Sprintf("metric %s could not be checked: %v", name, err))
				continue
			}
			if !ok {
				r.find(u.pos, KindMetric, name, "metric %s: its query returns no series%s", name, b.suffix())
			}
		}
	}
}

// secretRefs checks the Kubernetes Secrets behind secrets.NAME references;
// at gives the line of a parameter.
func (r *run) secretRefs(ctx context.Context, st *engine.Step, at func(key string) engine.Pos) {
	sc := r.cat.Secrets
	if sc == nil {
		return
	}
	for key, v := range st.Params.Values {
		pos := at(key)
		s := engine.Stringify(v)
		for _, m := range secretRef.FindAllStringSubmatch(s, -1) {
			for _, sm := range sc.Secrets.Mappings {
				if sm.Name != m[1] {
					continue
				}
				provider := sm.Provider
				if provider == "" {
					provider = sc.Secrets.Provider
				}
				if provider != "kubernetes-secrets" {
					continue
				}
				ns, name, ok := strings.Cut(strings.Trim(sm.Path, "/"), "/")
				if !ok {
					name = ns
					if sc.Secrets.Kubernetes != nil {
						ns = sc.Secrets.Kubernetes.Namespace
					}
				}
				kctx := ""
				if sc.Secrets.Kubernetes != nil {
					kctx = sc.Secrets.Kubernetes.Context
				}
				if ns == "" || name == "" {
					continue
				}
				r.exists(ctx, pos, kctx, KindSecret, ns, name, binding{}, fmt.Sprintf("secret %q in namespace %q (secrets.%s)", name, ns, sm.Name))
			}
		}
	}
}

// approvers checks that every approver role or team, and every override
// role, is a group the RBAC configuration defines.
func (r *run) approvers() {
	if r.cat.RBAC == nil {
		return
	}
	groups := map[string]bool{}
	for _, g := range r.cat.RBAC.Groups {
		groups[g.Name] = true
	}
	for _, a := range r.rb.Approvals {
		if a.Workflow != nil {
			for _, ref := range a.Workflow.Approvers {
				if (ref.Type == "role" || ref.Type == "team" || ref.Type == "group") && !groups[ref.Value] {
					r.find(ref.Pos, KindApprover, ref.Value, "approver %s %q: no group in %s defines it, so nobody can approve", ref.Type, ref.Value, r.cat.RBAC.File)
				}
			}
		}
		for _, p := range a.Permissions {
			if p.Role != "" && !groups[p.Role] {
				r.find(p.Pos, KindApprover, p.Role, "override role %q: no group in %s defines it", p.Role, r.cat.RBAC.File)
			}
		}
	}
}
