package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the parsers' output")

// golden compares got, as indented JSON, with testdata/name.golden.json.
func golden(t *testing.T, name string, got any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(b) {
		t.Errorf("%s differs from %s:\n got: %s\nwant: %s", name, path, b, want)
	}
}

func readSlack(t *testing.T, name string) SlackMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m SlackMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGoldenSlack(t *testing.T) {
	files, _ := filepath.Glob("testdata/slack_*.json")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if strings.HasSuffix(name, ".golden") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParseSlackMessage(readSlack(t, name))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, got)
		})
	}
}

func parseOne(t *testing.T, m SlackMessage) Alert {
	t.Helper()
	got, err := ParseSlackMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d alerts, want 1: %+v", len(got), got)
	}
	return got[0]
}

func TestDefaultTemplateFiringAndResolvedShareFingerprint(t *testing.T) {
	firing := parseOne(t, readSlack(t, "slack_default_firing"))
	resolved := parseOne(t, readSlack(t, "slack_default_resolved"))
	if firing.Status != StatusFiring || resolved.Status != StatusResolved {
		t.Errorf("statuses = %s, %s", firing.Status, resolved.Status)
	}
	if firing.Fingerprint != resolved.Fingerprint {
		t.Errorf("fingerprints differ: %s vs %s", firing.Fingerprint, resolved.Fingerprint)
	}
	// slack.default.text is empty: the parenthesised values have no names.
	if want := []string{"staging", "api-server-abc123", "warning"}; !reflect.DeepEqual(firing.Unkeyed, want) {
		t.Errorf("unkeyed = %q, want %q", firing.Unkeyed, want)
	}
	if len(firing.Labels) != 1 || firing.Labels["alertname"] != "PodMemoryHigh" {
		t.Errorf("labels = %v", firing.Labels)
	}
	// The unnamed values still tell alerts apart.
	other := parseOne(t, SlackMessage{Attachments: []Attachment{{Title: "[FIRING:1] PodMemoryHigh (production db-0 critical)"}}})
	if other.Fingerprint == firing.Fingerprint {
		t.Error("alerts with different common values share a fingerprint")
	}
}

func TestCommonKeysNameTheDefaultTitle(t *testing.T) {
	r, err := CompileRules("", "", nil, []string{"namespace", "pod", "severity"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ParseSlackMessage(readSlack(t, "slack_default_firing"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alertname": "PodMemoryHigh", "namespace": "staging", "pod": "api-server-abc123", "severity": "warning"}
	if !reflect.DeepEqual(got[0].Labels, want) || len(got[0].Unkeyed) != 0 {
		t.Errorf("labels = %v unkeyed = %v", got[0].Labels, got[0].Unkeyed)
	}
	// A different number of common values cannot be named safely.
	got, _ = r.ParseSlackMessage(SlackMessage{Attachments: []Attachment{{Title: "[FIRING:2] PodMemoryHigh (staging warning)"}}})
	if _, ok := got[0].Labels["namespace"]; ok || len(got[0].Unkeyed) != 2 {
		t.Errorf("labels = %v unkeyed = %v", got[0].Labels, got[0].Unkeyed)
	}
}

func TestKeyOrderNamesGroupLabels(t *testing.T) {
	// group_by: [namespace, alertname] — Alertmanager shows alertname first.
	r := DefaultRules()
	r.KeyOrder = []string{"alertname", "namespace"}
	got, err := r.ParseSlackMessage(SlackMessage{Attachments: []Attachment{{Title: "[FIRING:2] PodMemoryHigh staging (warning)", Color: "danger"}}})
	if err != nil {
		t.Fatal(err)
	}
	a := got[0]
	if a.Name != "PodMemoryHigh" || a.Labels["namespace"] != "staging" || !reflect.DeepEqual(a.Unkeyed, []string{"warning"}) {
		t.Errorf("alert = %+v", a)
	}
}

func TestGroupedMessageGivesOneAlertPerBlock(t *testing.T) {
	got, err := ParseSlackMessage(readSlack(t, "slack_grouped"))
	if err != nil {
		t.Fatal(err)
	}
	var pods []string
	fps := map[string]bool{}
	for _, a := range got {
		pods = append(pods, a.Labels["pod"])
		fps[a.Fingerprint] = true
		if a.Name != "PodMemoryHigh" || a.Labels["severity"] != "warning" || a.Annotations["summary"] != "Pod memory above 90%" {
			t.Errorf("alert = %+v", a)
		}
		if !strings.Contains(a.Annotations["description"], "& keeps growing") {
			t.Errorf("entities not decoded: %q", a.Annotations["description"])
		}
	}
	if strings.Join(pods, ",") != "api-server-abc123,api-server-def456,worker-7d9f8" || len(fps) != 3 {
		t.Errorf("pods = %v, %d fingerprints", pods, len(fps))
	}
	// The same alert computes the same fingerprint whichever way it came.
	webhook := map[string]string{"alertname": "PodMemoryHigh", "container": "app", "namespace": "staging", "pod": "api-server-def456", "severity": "warning"}
	if got[1].Fingerprint != Fingerprint("PodMemoryHigh", webhook) {
		t.Errorf("fingerprint %s != %s", got[1].Fingerprint, Fingerprint("PodMemoryHigh", webhook))
	}
}

func TestAlertHeadersSplitWithoutBlankLines(t *testing.T) {
	text := "*Alert:* PodMemoryHigh - `critical`\n*Description:* one\n*Details:*\n • *namespace:* `a`\n • *pod:* `p1`\n" +
		"*Alert:* PodMemoryHigh - `critical`\n*Description:* two\n*Details:*\n • *namespace:* `a`\n • *pod:* `p2`\n*Value:* 97"
	got, err := ParseSlackMessage(SlackMessage{Attachments: []Attachment{{Title: "[FIRING:2] PodMemoryHigh (a critical)", Text: text}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Labels["pod"] != "p1" || got[1].Labels["pod"] != "p2" || got[1].Value != "97" || got[0].Value != "" {
		t.Fatalf("got %+v", got)
	}
	if got[0].Annotations["description"] != "one" || got[0].Labels["severity"] != "critical" {
		t.Errorf("first = %+v", got[0])
	}
}

func TestLabelsTemplateWithFiringAndResolvedSections(t *testing.T) {
	got, err := ParseSlackMessage(readSlack(t, "slack_labels_template"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Status != StatusFiring || got[1].Status != StatusResolved {
		t.Fatalf("got %+v", got)
	}
	a := got[0]
	if a.Labels["throttle_percent"] != "72" || a.Annotations["summary"] != "CPU throttling is high" || len(a.Unkeyed) != 0 {
		t.Errorf("alert = %+v", a)
	}
	if !strings.HasSuffix(a.GeneratorURL, "%29&g0.tab=1") {
		t.Errorf("generator URL = %q", a.GeneratorURL)
	}
}

func TestFieldsAreLabels(t *testing.T) {
	a := parseOne(t, readSlack(t, "slack_fields"))
	if a.Labels["days_until_expiry"] != "9" || a.Labels["secret"] != "api-tls" || a.Labels["namespace"] != "ingress" {
		t.Errorf("labels = %v", a.Labels)
	}
	if a.Annotations["runbook_url"] != "https://runbooks.example.com/certs" {
		t.Errorf("annotations = %v", a.Annotations)
	}
}

func TestStatusFromColourAndFallback(t *testing.T) {
	cases := []struct {
		at   Attachment
		want string
	}{
		{Attachment{Title: "PodMemoryHigh", Text: "alertname=PodMemoryHigh", Color: "good"}, StatusResolved},
		{Attachment{Title: "PodMemoryHigh", Text: "alertname=PodMemoryHigh", Color: "a30200"}, StatusFiring},
		{Attachment{Title: "PodMemoryHigh", Text: "alertname=PodMemoryHigh", Color: "#2eb886"}, StatusResolved},
		{Attachment{Fallback: "[RESOLVED] PodMemoryHigh (staging) | http://am/#/alerts", Color: "danger"}, StatusResolved},
	}
	for i, c := range cases {
		got, err := ParseSlackMessage(SlackMessage{Attachments: []Attachment{c.at}})
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if got[0].Status != c.want || got[0].Name != "PodMemoryHigh" {
			t.Errorf("%d: %+v, want status %s", i, got[0], c.want)
		}
	}
}

func TestTextOnlyMessages(t *testing.T) {
	got, err := ParseSlackMessage(readSlack(t, "slack_text_only"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Value != "91.5" || got[0].Labels["node"] != "ip-10-0-3-7" || got[1].Status != StatusResolved {
		t.Fatalf("got %+v", got)
	}
	if _, ok := got[0].Labels["value"]; ok {
		t.Error("value= is the alert's value, not a label")
	}
	// A bold title line and key=value details.
	got, err = ParseSlackMessage(SlackMessage{Text: "*[FIRING:1] CertificateExpiringSoon (ingress)*\nsecret=api-tls namespace=ingress days_until_expiry=9"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Name != "CertificateExpiringSoon" || got[0].Labels["days_until_expiry"] != "9" || len(got[0].Unkeyed) != 0 {
		t.Errorf("got %+v", got[0])
	}
}

func TestParseGeneric(t *testing.T) {
	got, err := ParseGeneric("ALERT PodMemoryHigh firing namespace=staging pod=api-1 value=93")
	if err != nil {
		t.Fatal(err)
	}
	a := got[0]
	want := map[string]string{"alertname": "PodMemoryHigh", "namespace": "staging", "pod": "api-1"}
	if a.Name != "PodMemoryHigh" || a.Status != StatusFiring || a.Value != "93" || !reflect.DeepEqual(a.Labels, want) || a.Source != SourceText {
		t.Errorf("got %+v", a)
	}
	// key: value lines under an Alert line, quoted values, a title with pairs.
	for _, text := range []string{
		"Alert: PodMemoryHigh\nnamespace: staging\npod: api-1\nValue: 93",
		`[FIRING:1] PodMemoryHigh namespace="staging" pod='api-1' value=93`,
		`PodMemoryHigh {alertname="PodMemoryHigh", namespace="staging", pod="api-1"} value=93`,
	} {
		got, err := ParseGeneric(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if got[0].Fingerprint != a.Fingerprint || got[0].Value != "93" {
			t.Errorf("%q: got %+v", text, got[0])
		}
	}
}

func TestChatterIsNotAnAlert(t *testing.T) {
	for _, text := range []string{
		"", "hey, is anyone looking at the memory alert?", "Alert: the site is down",
		"deploy done: namespace=staging version=1.2", "- Note: restart it later",
	} {
		if got, err := ParseSlackMessage(SlackMessage{Text: text}); !errors.Is(err, ErrNotAlert) {
			t.Errorf("%q: got %+v, %v", text, got, err)
		}
	}
	if _, err := ParseGeneric("ALERT"); !errors.Is(err, ErrNotAlert) {
		t.Errorf("bare ALERT: %v", err)
	}
}

func TestRepeatedLabelStartsANewAlert(t *testing.T) {
	text := "Details:\n• alertname: KubePodCrashLooping\n• pod: a\n• alertname: KubePodCrashLooping\n• pod: b"
	got, err := ParseGeneric(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Labels["pod"] != "a" || got[1].Labels["pod"] != "b" {
		t.Errorf("got %+v", got)
	}
}

func TestCompileRulesRejectsBadPatterns(t *testing.T) {
	if _, err := CompileRules("(", "", nil, nil); err == nil {
		t.Error("bad title regexp accepted")
	}
	if _, err := CompileRules("", `(?P<k>\w+)=(?P<v>\w+)`, nil, nil); err == nil {
		t.Error("label line without key/value groups accepted")
	}
	r, err := CompileRules(`^ALARM (?P<values>.*)$`, "", []string{"alertname", "env"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ParseText("ALARM DiskFull prod")
	if err != nil || got[0].Name != "DiskFull" || got[0].Labels["env"] != "prod" {
		t.Errorf("got %+v, %v", got, err)
	}
}

func TestSummary(t *testing.T) {
	a := Alert{Name: "PodMemoryHigh", Status: StatusResolved, Value: "93", Labels: map[string]string{"alertname": "PodMemoryHigh", "pod": "p", "namespace": "n"}}
	if got := a.Summary(); got != "PodMemoryHigh (resolved) value=93 namespace=n pod=p" {
		t.Errorf("summary = %q", got)
	}
}
