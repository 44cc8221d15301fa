package schema_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/runbookbot/runbookbot/engine"
	"github.com/runbookbot/runbookbot/engine/enginetest"
	"github.com/runbookbot/runbookbot/engine/schema"
)

var update = flag.Bool("update", false, "rewrite deploy/schema/runbook.schema.json")

const shipped = "../../deploy/schema/runbook.schema.json"

// The schema in the repository is the one the code generates: editors that
// point at it check what lint checks.
func TestShippedSchemaIsUpToDate(t *testing.T) {
	got, err := schema.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(shipped), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shipped, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatalf("reading %s (go test ./engine/schema -update writes it): %v", shipped, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date with the engine's types; run go test ./engine/schema -update", shipped)
	}
}

// compile compiles the shipped schema with a draft 2020-12 validator.
func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := schema.JSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schema.ID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(schema.ID)
	if err != nil {
		t.Fatalf("the generated schema does not compile: %v", err)
	}
	return s
}

// validate checks YAML text against the schema the way yaml-language-server
// does: the YAML is read as data, then validated.
func validate(t *testing.T, s *jsonschema.Schema, src []byte) error {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatalf("test input is not YAML: %v", err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(doc)
}

func TestShippedRunbooksValidate(t *testing.T) {
	s := compile(t)
	cat, diags := engine.LoadPaths(enginetest.NewCluster().Registry(), "../../runbooks")
	if len(diags) > 0 {
		t.Fatalf("shipped runbooks do not lint:\n%v", diags)
	}
	var files []string
	for _, rb := range cat.Runbooks {
		files = append(files, rb.File)
	}
	sort.Strings(files)
	if len(files) < 5 {
		t.Fatalf("found %d shipped runbooks, want at least 5: %v", len(files), files)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, s, src); err != nil {
			t.Errorf("%s does not validate against the schema:\n%v", f, err)
		}
	}
}

// base is a runbook lint accepts; each case below changes one thing.
const base = `apiVersion: runbooks/v1
kind: Runbook
metadata:
  name: schema-probe
  version: "1.0.0"
  tags: [demo]
parameters:
  - name: service
    type: string
    required: true
steps:
  - name: hello
    type: log
    action: print
    params:
      message: "hello {{ service }}"
    timeout: 30s
    continueOnFailure: false
  - name: pause
    type: wait
    action: sleep
    params:
      duration: 1s
approvals:
  - name: gate
    trigger:
      step: pause
    workflow:
      type: sequential
      timeout: 15m
      approvers:
        - type: role
          value: sre
          minApprovals: 1
      escalation:
        - after: 5m
          notify: [oncall]
`

// Structure lint refuses is refused by the schema too, and what lint
// accepts the schema accepts: unknown fields, wrong types, bad durations,
// missing required keys.
func TestSchemaAgreesWithLint(t *testing.T) {
	s := compile(t)
	reg := enginetest.NewCluster().Registry()
	cases := []struct {
		name      string
		old, new  string
		wantValid bool
	}{
		{"the base runbook", "", "", true},
		{"unquoted version is text", `version: "1.0.0"`, `version: 1.2`, true},
		{"duration in days", `timeout: 30s`, `timeout: 7d`, true},
		{"combined duration", `timeout: 30s`, `timeout: 1h30m`, true},
		{"empty optional list", `tags: [demo]`, `tags:`, true},

		{"unknown top-level field", `kind: Runbook`, "kind: Runbook\nowners: [me]", false},
		{"misspelt step field", `continueOnFailure: false`, `continueOnFailur: false`, false},
		{"unknown metadata field", `tags: [demo]`, `tag: [demo]`, false},
		{"unknown approver field", `minApprovals: 1`, `minApproval: 1`, false},
		{"bool as text", `continueOnFailure: false`, `continueOnFailure: "no"`, false},
		{"bool as number", `required: true`, `required: 1`, false},
		{"integer as text", `minApprovals: 1`, `minApprovals: "1"`, false},
		{"integer as fraction", `minApprovals: 1`, `minApprovals: 1.5`, false},
		{"list as a mapping", `tags: [demo]`, `tags: {demo: true}`, false},
		{"parameters as a mapping", "  - name: service\n    type: string\n    required: true", "  service: {type: string}", false},
		{"object as text", "    trigger:\n      step: pause\n", "    trigger: pause\n", false},
		{"string as a mapping", `type: string`, `type: {string: true}`, false},
		{"name as a list", `name: hello`, `name: [hello]`, false},
		{"params as a list", "params:\n      duration: 1s", "params:\n      - duration", false},
		{"duration without unit", `timeout: 30s`, `timeout: 30`, false},
		{"duration in words", `timeout: 30s`, `timeout: 5 minutes`, false},
		{"negative duration", `timeout: 15m`, `timeout: -15m`, false},
		{"duration as a list", `after: 5m`, `after: [5m]`, false},
		{"empty duration", `timeout: 30s`, `timeout:`, false},
		{"wrong apiVersion", `apiVersion: runbooks/v1`, `apiVersion: runbooks/v2`, false},
		{"wrong kind", `kind: Runbook`, `kind: Playbook`, false},
		{"no metadata.name", "  name: schema-probe\n", "", false},
		{"no metadata.version", "  version: \"1.0.0\"\n", "", false},
		{"no steps", "steps:\n", "unused:\n", false},
		{"empty steps", "steps:\n  - name: hello", "steps: []\nx:\n  - name: hello", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := base
			if c.old != "" || c.new != "" {
				if !strings.Contains(base, c.old) {
					t.Fatalf("base runbook has no %q", c.old)
				}
				src = strings.Replace(base, c.old, c.new, 1)
			}
			_, lintErr := engine.LoadRunbook(reg, "probe.yaml", []byte(src))
			schemaErr := validate(t, s, []byte(src))
			if c.wantValid {
				if lintErr != nil {
					t.Fatalf("lint refuses it, the case is wrong:\n%v", lintErr)
				}
				if schemaErr != nil {
					t.Errorf("lint accepts it but the schema refuses it:\n%v\n%s", schemaErr, src)
				}
				return
			}
			if lintErr == nil {
				t.Fatalf("lint accepts it, the case is wrong:\n%s", src)
			}
			if schemaErr == nil {
				t.Errorf("lint refuses it (%v) but the schema accepts it:\n%s", lintErr, src)
			}
		})
	}
}

// Every key the schema requires, lint requires too, so the hand-kept list
// cannot claim more than lint enforces.
func TestRequiredKeysAreRequiredByLint(t *testing.T) {
	reg := enginetest.NewCluster().Registry()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(base), &doc); err != nil {
		t.Fatal(err)
	}
	paths := map[string]func(m map[string]any) map[string]any{
		"Runbook":  func(m map[string]any) map[string]any { return m },
		"Metadata": func(m map[string]any) map[string]any { return m["metadata"].(map[string]any) },
	}
	for typ, keys := range schema.Required {
		at, ok := paths[typ]
		if !ok {
			t.Errorf("no test path to %s; add one", typ)
			continue
		}
		for _, key := range keys {
			t.Run(typ+"."+key, func(t *testing.T) {
				var m map[string]any
				if err := yaml.Unmarshal([]byte(base), &m); err != nil {
					t.Fatal(err)
				}
				delete(at(m), key)
				src, err := yaml.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := engine.LoadRunbook(reg, "probe.yaml", src); err == nil {
					t.Errorf("lint accepts a runbook without %s.%s, which the schema requires", typ, key)
				}
			})
		}
	}
}
