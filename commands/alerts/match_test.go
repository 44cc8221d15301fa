package alerts

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
)

var (
	catOnce sync.Once
	catalog *engine.Catalog
	catErr  error
)

// shipped loads the repository's runbooks and mappings as the bot does.
func shipped(t *testing.T) *engine.Catalog {
	t.Helper()
	catOnce.Do(func() {
		cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../../runbooks")
		catalog = cat
		if len(diags) > 0 {
			catErr = diags
		}
	})
	if catErr != nil {
		t.Fatalf("runbooks do not load: %v", catErr)
	}
	return catalog
}

func alert(name, value string, labels ...string) Alert {
	a := Alert{Name: name, Status: StatusFiring, Value: value, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		a.Labels[labels[i]] = labels[i+1]
	}
	a.finish(SourceWebhook)
	return a
}

func TestMatchShippedMappings(t *testing.T) {
	m := NewMatcher(nil, shipped(t))
	cases := []struct {
		name   string
		alert  Alert
		auto   bool
		skip   string // substring; "" means runnable
		params map[string]any
	}{
		{"memory staging", alert("PodMemoryHigh", "93.4", "namespace", "staging", "pod", "api-1"), true, "",
			map[string]any{"namespace": "staging", "podName": "api-1", "memoryThreshold": 93}},
		{"memory production-critical", alert("PodMemoryHigh", "97", "namespace", "production-critical", "pod", "db-0"), false,
			`condition namespace != production-critical not met (namespace is "production-critical")`,
			map[string]any{"namespace": "production-critical", "podName": "db-0", "memoryThreshold": 97}},
		{"memory payment-processing: runbook trigger", alert("PodMemoryHigh", "95", "namespace", "payment-processing", "pod", "pay-1"), false,
			"runbook high-memory-pod-remediation does not run here: namespace notIn production-critical,payment-processing", nil},
		{"memory without pod label", alert("PodMemoryHigh", "95", "namespace", "staging"), false,
			"parameter podName needs label pod, which the alert does not have", nil},
		{"memory without value uses the default", alert("PodMemoryHigh", "", "namespace", "staging", "pod", "api-1"), true, "",
			map[string]any{"namespace": "staging", "podName": "api-1"}},
		{"cpu label > 50", alert("PodCPUThrottling", "", "namespace", "web", "pod", "web-1", "throttle_percent", "72"), true, "", nil},
		{"cpu label <= 50", alert("PodCPUThrottling", "", "namespace", "web", "pod", "web-1", "throttle_percent", "50"), false,
			`condition throttle_percent > 50 not met (throttle_percent is "50")`, nil},
		{"cpu value stands for a missing label", alert("PodCPUThrottling", "72.5", "namespace", "web", "pod", "web-1"), true, "", nil},
		{"cpu neither label nor value", alert("PodCPUThrottling", "", "namespace", "web", "pod", "web-1"), false,
			"condition throttle_percent > 50 not met (throttle_percent is not set)", nil},
		{"cert < 14", alert("CertificateExpiringSoon", "", "namespace", "ingress", "secret", "api-tls", "days_until_expiry", "9"), true, "",
			map[string]any{"namespace": "ingress", "secretName": "api-tls"}},
		{"cert 20 days", alert("CertificateExpiringSoon", "", "namespace", "ingress", "secret", "api-tls", "days_until_expiry", "20"), false,
			"condition days_until_expiry < 14 not met", nil},
		{"disk is manual", alert("NodeDiskPressure", "", "node", "ip-10-0-3-7"), false, "", map[string]any{"nodeName": "ip-10-0-3-7"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := m.Match(c.alert)
			if d.Mapping == nil || d.Mapping.Alert != c.alert.Name {
				t.Fatalf("mapping = %+v", d.Mapping)
			}
			if d.AutoTrigger != c.auto {
				t.Errorf("auto = %v, want %v (skip %q)", d.AutoTrigger, c.auto, d.Skip)
			}
			if c.skip == "" && d.Skip != "" || c.skip != "" && !strings.Contains(d.Skip, c.skip) {
				t.Errorf("skip = %q, want %q", d.Skip, c.skip)
			}
			if c.params != nil && !reflect.DeepEqual(d.Params, c.params) {
				t.Errorf("params = %#v, want %#v", d.Params, c.params)
			}
			if d.Suggestions != nil {
				t.Errorf("suggestions for a mapped alert: %v", d.Suggestions)
			}
		})
	}
}

func TestResolvedAlertNeverRuns(t *testing.T) {
	a := alert("PodMemoryHigh", "93", "namespace", "staging", "pod", "api-1")
	a.Status = StatusResolved
	d := NewMatcher(nil, shipped(t)).Match(a)
	if d.AutoTrigger || d.Skip != "the alert is resolved" || d.Runbook != "high-memory-pod-remediation" {
		t.Errorf("decision = %+v", d)
	}
}

func TestDefaultSlackMessageLacksParameters(t *testing.T) {
	// Without a text template the message names no pod: the bot must say
	// so rather than run the runbook on nothing.
	a := parseOne(t, readSlack(t, "slack_default_firing"))
	d := NewMatcher(nil, shipped(t)).Match(a)
	if d.AutoTrigger || !strings.Contains(d.Skip, "needs label namespace") {
		t.Errorf("decision = %+v", d)
	}
	// The grouped custom template carries everything.
	got, _ := ParseSlackMessage(readSlack(t, "slack_grouped"))
	for _, a := range got {
		if d := NewMatcher(nil, shipped(t)).Match(a); !d.AutoTrigger || d.Params["podName"] != a.Labels["pod"] {
			t.Errorf("decision = %+v", d)
		}
	}
}

func TestUnmappedAlertsGetDefaultsAndSuggestions(t *testing.T) {
	m := NewMatcher(nil, shipped(t))
	cases := []struct {
		alert Alert
		first string
	}{
		{alert("NodeMemoryHigh", "91", "node", "ip-10-0-3-7"), "high-memory-pod-remediation"},
		{alert("KubeCertificateExpiration", "", "namespace", "ingress"), "certificate-renewal"},
		{alert("DiskSpaceLow", "", "instance", "db-1:9100"), "disk-cleanup-remediation"},
		{alert("ContainerCPUThrottled", ""), "cpu-throttling-remediation"},
		{alert("Watchdog", ""), ""},
	}
	for _, c := range cases {
		ds := m.MatchAll(c.alert)
		if len(ds) != 1 {
			t.Fatalf("%s: %d decisions", c.alert.Name, len(ds))
		}
		d := ds[0]
		if d.Mapping != nil || d.Runbook != "" || d.AutoTrigger || d.NotifyChannel != "#oncall-alerts" {
			t.Errorf("%s: decision = %+v", c.alert.Name, d)
		}
		if len(d.Suggestions) > 3 {
			t.Errorf("%s: %d suggestions", c.alert.Name, len(d.Suggestions))
		}
		if c.first == "" && len(d.Suggestions) != 0 || c.first != "" && (len(d.Suggestions) == 0 || d.Suggestions[0] != c.first) {
			t.Errorf("%s: suggestions = %v, want %q first", c.alert.Name, d.Suggestions, c.first)
		}
	}
	// A runbook whose trigger names the alert ranks first even if no
	// mapping does.
	rb := shipped(t).Runbooks["disk-cleanup-remediation"]
	if got := (&Matcher{cat: shipped(t)}).Suggest(alert(rb.Trigger.AlertName, ""), 1); !reflect.DeepEqual(got, []string{rb.Name()}) {
		t.Errorf("suggest = %v", got)
	}
}

func TestSuggestionsFollowTheSetting(t *testing.T) {
	cfg := &engine.MappingsConfig{Defaults: engine.MappingDefault{NotifyChannel: "#alerts"}}
	d := NewMatcher(cfg, shipped(t)).Match(alert("NodeMemoryHigh", ""))
	if d.Suggestions != nil || d.NotifyChannel != "#alerts" {
		t.Errorf("decision = %+v", d)
	}
}

func TestMatchAllReturnsEveryMapping(t *testing.T) {
	yes := true
	cfg := &engine.MappingsConfig{
		Defaults: engine.MappingDefault{NotifyChannel: "#alerts"},
		Mappings: []engine.Mapping{
			{Alert: "PodMemoryHigh", Runbook: "high-memory-pod-remediation", AutoTrigger: &yes,
				Conditions: []map[string]string{{"namespace": "!production-critical"}},
				Parameters: map[string]string{"namespace": "{{ $labels.namespace }}", "podName": "{{ $labels.pod }}"}},
			{Alert: "PodMemoryHigh", Runbook: "example-echo", Channel: "#sre",
				Parameters: map[string]string{"service": "{{ $alert | lower }}-{{ $labels.pod }}", "environment": "{{ $annotations.env }}"}},
			{Alert: "PodMemoryHigh", Runbook: "no-such-runbook"},
			{Alert: "PodMemoryHigh", Runbook: "example-echo", Conditions: []map[string]string{{"value": "> abc"}}},
		},
	}
	a := alert("PodMemoryHigh", "93", "namespace", "production-critical", "pod", "db-0")
	a.Annotations = map[string]string{"env": "production"}
	ds := NewMatcher(cfg, shipped(t)).MatchAll(a)
	if len(ds) != 4 {
		t.Fatalf("%d decisions", len(ds))
	}
	if !strings.Contains(ds[0].Skip, "namespace != production-critical") || ds[0].AutoTrigger {
		t.Errorf("first = %+v", ds[0])
	}
	want := map[string]any{"service": "podmemoryhigh-db-0", "environment": "production"}
	if ds[1].Skip != "" || ds[1].AutoTrigger || ds[1].NotifyChannel != "#sre" || !reflect.DeepEqual(ds[1].Params, want) {
		t.Errorf("second = %+v", ds[1])
	}
	if ds[2].Skip != "runbook no-such-runbook is not loaded" {
		t.Errorf("third = %+v", ds[2])
	}
	if !strings.Contains(ds[3].Skip, "does not compile") {
		t.Errorf("fourth = %+v", ds[3])
	}
	// Match prefers the first mapping that can run.
	if d := NewMatcher(cfg, shipped(t)).Match(a); d.Runbook != "example-echo" || d.Skip != "" {
		t.Errorf("match = %+v", d)
	}
}

func TestValueConditionAndEnv(t *testing.T) {
	cfg := &engine.MappingsConfig{Mappings: []engine.Mapping{{
		Alert: "PodCPUThrottling", Runbook: "cpu-throttling-remediation",
		Conditions: []map[string]string{{"value": ">= 80"}},
		Parameters: map[string]string{"namespace": "{{ $labels.namespace }}", "podName": "{{ $labels.pod }}", "maxReplicas": "{{ $value }}"},
	}}}
	m := NewMatcher(cfg, shipped(t))
	if d := m.Match(alert("PodCPUThrottling", "79.9", "namespace", "web", "pod", "web-1")); !strings.Contains(d.Skip, "value >= 80 not met") {
		t.Errorf("79.9: %+v", d)
	}
	d := m.Match(alert("PodCPUThrottling", "80.4%", "namespace", "web", "pod", "web-1"))
	if d.Skip != "" || d.Params["maxReplicas"] != 80 {
		t.Errorf("80.4%%: %+v", d)
	}
	env := Env(Alert{Name: "X", Value: "n/a"})
	if env["dollar_value"] != "n/a" || env["dollar_alert"] != "X" {
		t.Errorf("env = %v", env)
	}
}

func TestMatcherIsSafeForConcurrentUse(t *testing.T) {
	m := NewMatcher(nil, shipped(t))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := fmt.Sprintf("api-%d", i)
			d := m.Match(alert("PodMemoryHigh", "93", "namespace", "staging", "pod", pod))
			if !d.AutoTrigger || d.Params["podName"] != pod {
				t.Errorf("decision = %+v", d)
			}
			m.Match(alert("NodeMemoryHigh", ""))
		}()
	}
	wg.Wait()
}

func TestNilMatcherInputs(t *testing.T) {
	d := NewMatcher(nil, nil).Match(alert("PodMemoryHigh", "93"))
	if d.Mapping != nil || d.AutoTrigger || d.Suggestions != nil {
		t.Errorf("decision = %+v", d)
	}
}

func TestWordSet(t *testing.T) {
	got := sortedKeys(wordSet("HTTPErrorRateHigh kube-pod_crash.loopings 10.0.0.1 abc123"))
	if want := []string{"crash", "error", "http", "kube", "looping", "pod", "rate"}; !reflect.DeepEqual(got, want) {
		t.Errorf("words = %v", got)
	}
}
