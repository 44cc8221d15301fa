package engine

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// MappingsConfig maps alerts to runbooks (the seed's runbook-mappings.yaml).
type MappingsConfig struct {
	Mappings []Mapping      `yaml:"mappings"`
	Defaults MappingDefault `yaml:"defaults"`
	File     string         `yaml:"-"`
	Pos      Pos            `yaml:"-"`
}

// Mapping sends one alert to one runbook.
type Mapping struct {
	Alert       string              `yaml:"alert"`
	Runbook     string              `yaml:"runbook"`
	AutoTrigger *bool               `yaml:"autoTrigger"`
	Conditions  []map[string]string `yaml:"conditions"`
	Parameters  map[string]string   `yaml:"parameters"`
	Channel     string              `yaml:"channel"`
	Pos         Pos                 `yaml:"-"`

	// Conds are the parsed conditions, in order.
	Conds []LabelCondition `yaml:"-"`
	// Params are the compiled parameter templates.
	Params map[string]*Template `yaml:"-"`
}

// MappingDefault is the behaviour for alerts no mapping names.
type MappingDefault struct {
	AutoTrigger    bool   `yaml:"autoTrigger"`
	NotifyChannel  string `yaml:"notifyChannel"`
	SuggestRunbook bool   `yaml:"suggestRunbook"`
	Pos            Pos    `yaml:"-"`
}

// LabelCondition is one mapping condition: a label (or "value") compared
// with `!x`, `> 50`, `< 14`, `>= n`, `<= n`, `== x`, `!= x`, `=~ regex`, or a
// bare value meaning equality.
type LabelCondition struct {
	Label string
	Op    string
	Value string
	num   float64
	re    *regexp.Regexp
}

var condOp = regexp.MustCompile(`^\s*(>=|<=|==|!=|=~|>|<|!)?\s*(.*?)\s*$`)

// ParseLabelCondition parses a mapping condition's right-hand side.
func ParseLabelCondition(label, rhs string) (LabelCondition, error) {
	m := condOp.FindStringSubmatch(rhs)
	c := LabelCondition{Label: label, Op: m[1], Value: m[2]}
	if c.Op == "" {
		c.Op = "=="
	}
	if c.Op == "!" {
		c.Op = "!="
	}
	switch c.Op {
	case ">", "<", ">=", "<=":
		f, err := strconv.ParseFloat(c.Value, 64)
		if err != nil {
			return c, fmt.Errorf("%s %s: %q is not a number", label, c.Op, c.Value)
		}
		c.num = f
	case "=~":
		re, err := regexp.Compile("^(?:" + c.Value + ")$")
		if err != nil {
			return c, fmt.Errorf("%s =~: bad regular expression: %v", label, err)
		}
		c.re = re
	}
	return c, nil
}

// Match reports whether the condition holds for the value (ok is false
// when the label is absent).
func (c LabelCondition) Match(v string, present bool) bool {
	switch c.Op {
	case "==":
		return present && v == c.Value
	case "!=":
		return !present || v != c.Value
	case "=~":
		return present && c.re.MatchString(v)
	}
	if !present {
		return false
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), "%"), 64)
	if err != nil {
		return false
	}
	switch c.Op {
	case ">":
		return f > c.num
	case "<":
		return f < c.num
	case ">=":
		return f >= c.num
	case "<=":
		return f <= c.num
	}
	return false
}

// String formats the condition as written.
func (c LabelCondition) String() string { return c.Label + " " + c.Op + " " + c.Value }

// MappingRoots are the names mapping parameter templates may use.
var MappingRoots = map[string]bool{"dollar_labels": true, "dollar_value": true, "dollar_annotations": true, "dollar_alert": true}

func (m *MappingsConfig) validate() Diagnostics {
	d := &decoder{file: m.File}
	seen := map[string]bool{}
	for i := range m.Mappings {
		mp := &m.Mappings[i]
		if mp.Alert == "" {
			d.at(mp.Pos, "name the alert, e.g. alert: PodMemoryHigh", "mappings[%d]: alert is required", i)
		}
		if mp.Runbook == "" {
			d.at(mp.Pos, "name the runbook to run", "mappings[%d]: runbook is required", i)
		}
		key := mp.Alert + "\x00" + mp.Runbook
		if seen[key] && mp.Alert != "" {
			d.at(mp.Pos.Of("alert"), "merge the two entries", "mappings[%d]: alert %q is mapped to %q twice", i, mp.Alert, mp.Runbook)
		}
		seen[key] = true
		for j, c := range mp.Conditions {
			for label, rhs := range c {
				lc, err := ParseLabelCondition(label, rhs)
				if err != nil {
					d.at(mp.Pos.Of(fmt.Sprintf("conditions[%d]", j)), `write e.g. namespace: "!production-critical" or value: "> 50"`, "mappings[%d].conditions[%d]: %v", i, j, err)
					continue
				}
				mp.Conds = append(mp.Conds, lc)
			}
		}
		mp.Params = map[string]*Template{}
		for k, v := range mp.Parameters {
			t, err := ParseTemplate(v, BuiltinFilters())
			if err != nil {
				d.at(mp.Pos.Of("parameters"), "use {{ $labels.name }} or {{ $value }}", "mappings[%d].parameters.%s: %v", i, k, err)
				continue
			}
			for _, r := range t.Refs() {
				if !MappingRoots[r.Root] {
					d.at(mp.Pos.Of("parameters"), "mapping templates can use $labels.<name>, $annotations.<name>, $value and $alert", "mappings[%d].parameters.%s: unknown name %q", i, k, strings.Replace(r.Root, "dollar_", "$", 1))
				}
			}
			mp.Params[k] = t
		}
	}
	return d.diags
}

func (m *MappingsConfig) crossCheck(cat *Catalog, runbooks []*Runbook) Diagnostics {
	if len(runbooks) == 0 {
		return nil
	}
	byName := map[string]*Runbook{}
	names := []string{}
	for _, rb := range runbooks {
		byName[rb.Name()] = rb
		names = append(names, rb.Name())
	}
	d := &decoder{file: m.File}
	for i, mp := range m.Mappings {
		rb, ok := byName[mp.Runbook]
		if !ok {
			if mp.Runbook != "" {
				hint := "known runbooks: " + strings.Join(names, ", ")
				if c := closest(mp.Runbook, names); c != "" {
					hint = fmt.Sprintf("did you mean %q?", c)
				}
				d.at(mp.Pos.Of("runbook"), hint, "mappings[%d]: runbook %q is not defined", i, mp.Runbook)
			}
			continue
		}
		for k := range mp.Parameters {
			if rb.Parameter(k) == nil {
				d.at(mp.Pos.Of("parameters"), "the runbook's parameters are: "+paramNames(rb), "mappings[%d].parameters: runbook %q has no parameter %q", i, rb.Name(), k)
			}
		}
	}
	return d.diags
}

func paramNames(rb *Runbook) string {
	var n []string
	for _, p := range rb.Parameters {
		n = append(n, p.Name)
	}
	return strings.Join(n, ", ")
}

// RBACConfig is the seed's rbac-config.yaml, plus groups that map group
// names to chat users and chat user groups.
type RBACConfig struct {
	Roles       []Role       `yaml:"roles"`
	Assignments []Assignment `yaml:"assignments"`
	Groups      []Group      `yaml:"groups"`
	File        string       `yaml:"-"`
	Pos         Pos          `yaml:"-"`
}

// Role is a named set of permissions, optionally inheriting another role.
type Role struct {
	Name        string   `yaml:"name"`
	Inherits    string   `yaml:"inherits"`
	Permissions []string `yaml:"permissions"`
	Pos         Pos      `yaml:"-"`
}

// Assignment gives a role to subjects.
type Assignment struct {
	Role     string    `yaml:"role"`
	Subjects []Subject `yaml:"subjects"`
	Pos      Pos       `yaml:"-"`
}

// Subject is a group or a user.
type Subject struct {
	Group string `yaml:"group"`
	User  string `yaml:"user"`
	Pos   Pos    `yaml:"-"`
}

// Group resolves a group name to chat identities.
type Group struct {
	Name            string   `yaml:"name"`
	Users           []string `yaml:"users"`
	SlackUserGroups []string `yaml:"slackUserGroups"`
	DiscordRoles    []string `yaml:"discordRoles"`
	Pos             Pos      `yaml:"-"`
}

// Permissions known to RBAC.
var knownPermissions = map[string]bool{
	"runbooks:list": true, "runbooks:read": true, "executions:list": true, "executions:read": true,
	"audit-logs:read": true, "runbooks:execute": true, "runbooks:dry-run": true, "approvals:respond": true,
	"runbooks:create": true, "runbooks:update": true, "runbooks:delete": true, "runbooks:publish": true,
	"runbooks:approve-publish": true, "secrets:manage": true, "rbac:manage": true, "audit-logs:export": true,
	"executions:cancel": true, "approvals:bypass": true, "schedules:manage": true, "*": true,
}

// crossCheck reports who runbooks name that the RBAC config does not
// define: an approver role, team or group, an override's role or group, an
// escalation target — nobody could approve or be notified. The problems are
// reported in the runbook's file.
func (r *RBACConfig) crossCheck(runbooks []*Runbook) Diagnostics {
	known := map[string]bool{}
	var names []string
	for _, g := range r.Groups {
		known[g.Name] = true
		names = append(names, g.Name)
	}
	for _, ro := range r.Roles {
		known[ro.Name] = true
		names = append(names, ro.Name)
	}
	sort.Strings(names)
	var diags Diagnostics
	for _, rb := range runbooks {
		d := &decoder{file: rb.File}
		check := func(pos Pos, what, name string) {
			if name == "" || known[name] {
				return
			}
			hint := fmt.Sprintf("define a group or role %q in %s (groups and roles: %s)", name, r.File, strings.Join(names, ", "))
			if c := closest(name, names); c != "" {
				hint = fmt.Sprintf("did you mean %q? (defined in %s)", c, r.File)
			}
			d.at(pos, hint, "%s: %q is not a group or role of the RBAC config", what, name)
		}
		for i, a := range rb.Approvals {
			what := fmt.Sprintf("approvals[%d] (%s)", i, a.Name)
			if w := a.Workflow; w != nil {
				for j, ap := range w.Approvers {
					if ap.Type != "user" {
						check(ap.Pos, fmt.Sprintf("%s.workflow.approvers[%d]", what, j), ap.Value)
					}
				}
				for j, e := range w.Escalation {
					for _, n := range e.Notify {
						check(e.Pos, fmt.Sprintf("%s.workflow.escalation[%d].notify", what, j), n)
					}
				}
			}
			for j, p := range a.Permissions {
				check(p.Pos, fmt.Sprintf("%s.permissions[%d].role", what, j), p.Role)
				check(p.Pos, fmt.Sprintf("%s.permissions[%d].group", what, j), p.Group)
			}
		}
		diags = append(diags, d.diags...)
	}
	return diags
}

func (r *RBACConfig) validate() Diagnostics {
	d := &decoder{file: r.File}
	roles := map[string]*Role{}
	var names []string
	for i := range r.Roles {
		ro := &r.Roles[i]
		if ro.Name == "" {
			d.at(ro.Pos, "give the role a name", "roles[%d]: name is required", i)
			continue
		}
		if roles[ro.Name] != nil {
			d.at(ro.Pos.Of("name"), "role names must be unique", "roles[%d]: role %q defined twice", i, ro.Name)
		}
		roles[ro.Name] = ro
		names = append(names, ro.Name)
		for _, p := range ro.Permissions {
			if !knownPermissions[p] {
				known := make([]string, 0, len(knownPermissions))
				for k := range knownPermissions {
					known = append(known, k)
				}
				hint := "permissions look like runbooks:execute"
				if c := closest(p, known); c != "" {
					hint = fmt.Sprintf("did you mean %q?", c)
				}
				d.at(ro.Pos.Of("permissions"), hint, "roles[%d]: unknown permission %q", i, p)
			}
		}
	}
	for i := range r.Roles {
		ro := &r.Roles[i]
		if ro.Inherits == "" {
			continue
		}
		if roles[ro.Inherits] == nil {
			d.at(ro.Pos.Of("inherits"), hintFor(ro.Inherits, names), "roles[%d]: inherits unknown role %q", i, ro.Inherits)
			continue
		}
		seen := map[string]bool{ro.Name: true}
		for p := roles[ro.Inherits]; p != nil; p = roles[p.Inherits] {
			if seen[p.Name] {
				d.at(ro.Pos.Of("inherits"), "break the cycle", "roles[%d]: role %q inherits itself through %q", i, ro.Name, p.Name)
				break
			}
			seen[p.Name] = true
		}
	}
	for i, a := range r.Assignments {
		if roles[a.Role] == nil {
			d.at(a.Pos.Of("role"), hintFor(a.Role, names), "assignments[%d]: unknown role %q", i, a.Role)
		}
		for j, s := range a.Subjects {
			if (s.Group == "") == (s.User == "") {
				d.at(s.Pos, "write either group: NAME or user: NAME", "assignments[%d].subjects[%d]: a subject needs exactly one of group or user", i, j)
			}
		}
	}
	for i, g := range r.Groups {
		if g.Name == "" {
			d.at(g.Pos, "give the group a name", "groups[%d]: name is required", i)
		}
	}
	return d.diags
}

func hintFor(s string, names []string) string {
	if c := closest(s, names); c != "" {
		return fmt.Sprintf("did you mean %q?", c)
	}
	return "defined: " + strings.Join(names, ", ")
}

// SecretsConfig is the seed's secrets-config.yaml.
type SecretsConfig struct {
	Secrets  SecretsSection `yaml:"secrets"`
	Rotation *Rotation      `yaml:"rotation"`
	File     string         `yaml:"-"`
	Pos      Pos            `yaml:"-"`
}

// SecretsSection names the provider and maps secret names to paths.
type SecretsSection struct {
	Provider   string            `yaml:"provider"`
	Vault      *VaultConfig      `yaml:"vault"`
	Kubernetes *KubeSecretConfig `yaml:"kubernetes"`
	AWS        map[string]string `yaml:"aws"`
	Mappings   []SecretMapping   `yaml:"mappings"`
	Pos        Pos               `yaml:"-"`
}

// VaultConfig reaches a Vault server.
type VaultConfig struct {
	Address    string `yaml:"address"`
	AuthMethod string `yaml:"authMethod"`
	Role       string `yaml:"role"`
	Namespace  string `yaml:"namespace"`
	Mount      string `yaml:"mount"`
	Pos        Pos    `yaml:"-"`
}

// KubeSecretConfig reads Kubernetes Secrets.
type KubeSecretConfig struct {
	Namespace string `yaml:"namespace"`
	Context   string `yaml:"context"`
	Pos       Pos    `yaml:"-"`
}

// SecretMapping maps a name used in runbooks (secrets.NAME) to where it is
// kept.
type SecretMapping struct {
	Name     string   `yaml:"name"`
	Path     string   `yaml:"path"`
	Field    string   `yaml:"field"`
	Fields   []string `yaml:"fields"`
	Provider string   `yaml:"provider"`
	Env      string   `yaml:"env"`
	File     string   `yaml:"file"`
	Pos      Pos      `yaml:"-"`
}

// Rotation is the secret rotation policy.
type Rotation struct {
	Enabled             bool     `yaml:"enabled"`
	CheckInterval       Duration `yaml:"checkInterval"`
	AlertOnExpiringSoon Duration `yaml:"alertOnExpiringSoon"`
	Pos                 Pos      `yaml:"-"`
}

var secretProviders = []string{"vault", "aws-secrets-manager", "kubernetes-secrets", "env", "file"}

func (s *SecretsConfig) validate() Diagnostics {
	d := &decoder{file: s.File}
	check := func(p string, pos Pos, what string) {
		for _, k := range secretProviders {
			if p == k {
				return
			}
		}
		d.at(pos, "providers: "+strings.Join(secretProviders, ", "), "%s: unknown secret provider %q", what, p)
	}
	if s.Secrets.Provider == "" {
		d.at(s.Secrets.Pos, "set provider: vault, kubernetes-secrets, env or file", "secrets.provider is required")
	} else {
		check(s.Secrets.Provider, s.Secrets.Pos.Of("provider"), "secrets.provider")
	}
	if s.Secrets.Provider == "vault" && (s.Secrets.Vault == nil || s.Secrets.Vault.Address == "") {
		d.at(s.Secrets.Pos, "add vault.address", "secrets.vault.address is required for the vault provider")
	}
	seen := map[string]bool{}
	for i, m := range s.Secrets.Mappings {
		if m.Name == "" {
			d.at(m.Pos, "name the secret as runbooks refer to it", "secrets.mappings[%d]: name is required", i)
		}
		if seen[m.Name] {
			d.at(m.Pos.Of("name"), "secret names must be unique", "secrets.mappings[%d]: %q defined twice", i, m.Name)
		}
		seen[m.Name] = true
		if m.Provider != "" {
			check(m.Provider, m.Pos.Of("provider"), fmt.Sprintf("secrets.mappings[%d]", i))
		}
		if m.Path == "" && m.Env == "" && m.File == "" {
			d.at(m.Pos, "give path (vault/kubernetes), env or file", "secrets.mappings[%d]: %q has no path, env or file", i, m.Name)
		}
		if m.Field != "" && len(m.Fields) > 0 {
			d.at(m.Pos.Of("fields"), "use field for one value, fields for several", "secrets.mappings[%d]: field and fields are exclusive", i)
		}
	}
	return d.diags
}

func (s *SecretsConfig) names() map[string]bool {
	out := map[string]bool{}
	for _, m := range s.Secrets.Mappings {
		out[m.Name] = true
	}
	return out
}
