package alerts

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/runbookbot/runbookbot/engine"
)

// Decision is what to do about one alert under one mapping (or under the
// defaults, when no mapping names the alert).
type Decision struct {
	// Mapping is the entry of the mappings file that matched; nil when the
	// defaults apply.
	Mapping *engine.Mapping
	// Runbook is the runbook to run; empty under the defaults.
	Runbook string
	// AutoTrigger says to start the runbook without asking. It is false
	// whenever Skip is set, so callers may rely on it alone.
	AutoTrigger bool
	// Params are the mapping's parameters rendered for the alert; a
	// parameter whose template found nothing (a missing label) is left out
	// so the runbook's default applies.
	Params map[string]any
	// Skip says why the runbook must not run for this alert: a mapping
	// condition not met, the runbook's own trigger conditions, a parameter
	// the alert cannot fill, an unknown runbook, a resolved alert.
	Skip string
	// Suggestions are runbooks related to an unmapped alert, best first.
	Suggestions []string
	// NotifyChannel is where to report besides the alert's thread: the
	// mapping's channel, or the defaults' notifyChannel.
	NotifyChannel string
}

// Matcher maps alerts to runbooks with a mappings file and the runbooks it
// names. It is safe for concurrent use; build a new one when the catalog is
// reloaded.
type Matcher struct {
	defaults engine.MappingDefault
	cat      *engine.Catalog
	mappings []compiledMapping
	filters  map[string]engine.FilterFunc
}

type compiledMapping struct {
	m      *engine.Mapping
	conds  []engine.LabelCondition
	params map[string]*engine.Template
	err    error
}

// NewMatcher prepares cfg's mappings; cfg nil means cat.Mappings, and both
// nil match nothing. Mappings loaded by the engine come with conditions
// parsed and parameters compiled; hand-built ones are compiled here, and a
// mapping that does not compile yields decisions that Skip with the error.
// Parameters render with the engine's built-in filters only, so matching
// does no I/O.
func NewMatcher(cfg *engine.MappingsConfig, cat *engine.Catalog) *Matcher {
	if cfg == nil && cat != nil {
		cfg = cat.Mappings
	}
	m := &Matcher{cat: cat, filters: engine.BuiltinFilters()}
	if cfg == nil {
		return m
	}
	m.defaults = cfg.Defaults
	for i := range cfg.Mappings {
		mp := &cfg.Mappings[i]
		c := compiledMapping{m: mp, conds: mp.Conds, params: mp.Params}
		if len(c.conds) == 0 && len(mp.Conditions) > 0 {
			for _, cond := range mp.Conditions {
				for _, label := range sortedKeys(cond) {
					lc, err := engine.ParseLabelCondition(label, cond[label])
					if err != nil && c.err == nil {
						c.err = err
					}
					c.conds = append(c.conds, lc)
				}
			}
		}
		if c.params == nil && len(mp.Parameters) > 0 {
			c.params = map[string]*engine.Template{}
			for _, k := range sortedKeys(mp.Parameters) {
				t, err := engine.ParseTemplate(mp.Parameters[k], m.filters)
				if err != nil {
					if c.err == nil {
						c.err = fmt.Errorf("parameter %s: %w", k, err)
					}
					continue
				}
				c.params[k] = t
			}
		}
		m.mappings = append(m.mappings, c)
	}
	return m
}

// Match returns the decision for a: the first mapping for the alert that
// can run, else the first mapping for it (with its Skip), else the
// defaults.
func (m *Matcher) Match(a Alert) Decision {
	ds := m.MatchAll(a)
	for _, d := range ds {
		if d.Skip == "" {
			return d
		}
	}
	return ds[0]
}

// MatchAll returns one decision per mapping that names the alert, in file
// order, or the defaults' decision when none does. It never returns an
// empty slice.
func (m *Matcher) MatchAll(a Alert) []Decision {
	var out []Decision
	for i := range m.mappings {
		if m.mappings[i].m.Alert == a.Name {
			out = append(out, m.decide(&m.mappings[i], a))
		}
	}
	if len(out) == 0 {
		d := Decision{AutoTrigger: false, NotifyChannel: m.defaults.NotifyChannel}
		if m.defaults.SuggestRunbook {
			d.Suggestions = m.Suggest(a, 3)
		}
		out = append(out, d)
	}
	return out
}

// decide applies one mapping: its conditions, its parameters, then the
// runbook's parameters and trigger conditions. The first failure is the
// Skip; parameters are rendered regardless, for a "run anyway" offer.
func (m *Matcher) decide(c *compiledMapping, a Alert) Decision {
	mp := c.m
	d := Decision{Mapping: mp, Runbook: mp.Runbook, NotifyChannel: mp.Channel}
	auto := m.defaults.AutoTrigger
	if mp.AutoTrigger != nil {
		auto = *mp.AutoTrigger
	}
	skip := func(format string, args ...any) {
		if d.Skip == "" {
			d.Skip = fmt.Sprintf(format, args...)
		}
	}
	if c.err != nil {
		skip("mapping for %s does not compile: %v", mp.Alert, c.err)
	}
	if !a.Firing() {
		skip("the alert is resolved")
	}
	for _, cond := range c.conds {
		v, ok := conditionValue(a, cond.Label)
		if !cond.Match(v, ok) {
			was := fmt.Sprintf("%s is %q", cond.Label, v)
			if !ok {
				was = cond.Label + " is not set"
			}
			skip("condition %s not met (%s)", cond, was)
			break
		}
	}
	params, missing, err := m.render(c, a)
	if err != nil {
		skip("%v", err)
	}
	var rb *engine.Runbook
	if m.cat != nil {
		rb = m.cat.Runbooks[mp.Runbook]
	}
	if rb != nil {
		params = roundIntegers(rb, params)
	}
	d.Params = params
	if rb == nil {
		skip("runbook %s is not loaded", mp.Runbook)
	} else if d.Skip == "" {
		resolved, err := engine.ResolveParams(rb, params)
		if err != nil {
			if pe, ok := err.(*engine.ParamError); ok && missing[pe.Param] != "" {
				skip("parameter %s needs %s, which the alert does not have", pe.Param, missing[pe.Param])
			} else {
				skip("%v", err)
			}
		} else if err := engine.CheckTrigger(rb, resolved, a.Labels); err != nil {
			skip("%v", err)
		}
	}
	d.AutoTrigger = auto && d.Skip == ""
	return d
}

// conditionValue is what a mapping condition on label compares: the label,
// or the alert's value for the label "value" and for labels it lacks.
func conditionValue(a Alert, label string) (string, bool) {
	if v, ok := a.Labels[label]; ok && label != "value" {
		return v, true
	}
	if a.Value != "" {
		return a.Value, true
	}
	v, ok := a.Labels[label]
	return v, ok
}

// Env is the template environment of a mapping's parameters for a:
// $labels, $annotations, $value (a number when it reads as one) and
// $alert, under the names the engine rewrites them to.
func Env(a Alert) map[string]any {
	labels := make(map[string]any, len(a.Labels))
	for k, v := range a.Labels {
		labels[k] = v
	}
	ann := make(map[string]any, len(a.Annotations))
	for k, v := range a.Annotations {
		ann[k] = v
	}
	var value any
	if a.Value != "" {
		value = a.Value
		if f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(a.Value), "%"), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			value = f
		}
	}
	return map[string]any{"dollar_labels": labels, "dollar_annotations": ann, "dollar_value": value, "dollar_alert": a.Name}
}

// render fills the mapping's parameters. missing maps a parameter that
// rendered empty to what it read ("label pod"), for the Skip message.
func (m *Matcher) render(c *compiledMapping, a Alert) (map[string]any, map[string]string, error) {
	env := Env(a)
	out := map[string]any{}
	missing := map[string]string{}
	for _, k := range sortedKeys(c.params) {
		t := c.params[k]
		v, err := t.Render(context.Background(), env, m.filters)
		if err != nil {
			return out, missing, fmt.Errorf("parameter %s: %v", k, err)
		}
		if v == nil || v == "" {
			missing[k] = describeRefs(t, a)
			continue
		}
		out[k] = v
	}
	return out, missing, nil
}

// describeRefs names what a template read that the alert lacks.
func describeRefs(t *engine.Template, a Alert) string {
	var parts []string
	for _, r := range t.Refs() {
		switch r.Root {
		case "dollar_labels":
			if _, ok := a.Labels[r.Member]; !ok {
				parts = append(parts, "label "+r.Member)
			}
		case "dollar_annotations":
			if _, ok := a.Annotations[r.Member]; !ok {
				parts = append(parts, "annotation "+r.Member)
			}
		case "dollar_value":
			if a.Value == "" {
				parts = append(parts, "a value")
			}
		}
	}
	return strings.Join(parts, " and ")
}

// roundIntegers turns numbers given to integer parameters into ints,
// rounding fractions (an alert value of 93.4 for memoryThreshold), which
// the engine would otherwise reject.
func roundIntegers(rb *engine.Runbook, params map[string]any) map[string]any {
	out := make(map[string]any, len(params))
	for k, v := range params {
		if p := rb.Parameter(k); p != nil && p.Type == "integer" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(engine.Stringify(v)), 64); err == nil && math.Abs(f) < 1e15 {
				v = int(math.Round(f))
			}
		}
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Words too common in alert and runbook names to relate them.
var stopWords = map[string]bool{
	"a": true, "an": true, "and": true, "are": true, "as": true, "at": true, "be": true, "by": true,
	"for": true, "from": true, "in": true, "into": true, "is": true, "it": true, "its": true, "no": true,
	"not": true, "of": true, "on": true, "or": true, "out": true, "per": true, "than": true, "that": true,
	"the": true, "this": true, "to": true, "up": true, "via": true, "with": true, "whose": true,
	"alert": true, "alerts": true, "runbook": true, "remediation": true, "remediate": true,
	"automatically": true, "auto": true, "high": true, "low": true, "too": true, "many": true,
	"firing": true, "resolved": true, "warning": true, "critical": true, "info": true, "severity": true,
}

// Weights of where a runbook word comes from; words from the alert's
// labels count half.
const (
	weightAlertName = 100 // the runbook's trigger names this alert
	weightName      = 6
	weightTag       = 4
	weightTrigger   = 4
	weightDesc      = 2
)

// Suggest ranks the catalog's runbooks by the words they share with the
// alert's name (and, for less, its labels and title values): a runbook
// whose trigger.alertName is the alert comes first, then name words, tags
// and description. It returns at most n names, none that share nothing.
func (m *Matcher) Suggest(a Alert, n int) []string {
	if m.cat == nil || n <= 0 {
		return nil
	}
	nameWords := wordSet(a.Name)
	labelWords := map[string]bool{}
	for k, v := range a.Labels {
		if k == "alertname" {
			continue
		}
		for w := range wordSet(k) {
			labelWords[w] = true
		}
		for w := range wordSet(v) {
			labelWords[w] = true
		}
	}
	for _, v := range a.Unkeyed {
		for w := range wordSet(v) {
			labelWords[w] = true
		}
	}
	type scored struct {
		name  string
		score int
	}
	var ranked []scored
	for name, rb := range m.cat.Runbooks {
		s := scoreRunbook(rb, a.Name, nameWords, labelWords)
		if s > 0 {
			ranked = append(ranked, scored{name, s})
		}
	}
	sort.Slice(ranked, func(i, j int) bool {
		if ranked[i].score != ranked[j].score {
			return ranked[i].score > ranked[j].score
		}
		return ranked[i].name < ranked[j].name
	})
	var out []string
	for i := 0; i < len(ranked) && i < n; i++ {
		out = append(out, ranked[i].name)
	}
	return out
}

// scoreRunbook weighs each alert word by the best place it appears in the
// runbook; label words count half.
func scoreRunbook(rb *engine.Runbook, alertName string, nameWords, labelWords map[string]bool) int {
	score := 0
	if alertName != "" && rb.Trigger.AlertName == alertName {
		score += weightAlertName
	}
	where := map[string]int{}
	add := func(text string, w int) {
		for word := range wordSet(text) {
			if w > where[word] {
				where[word] = w
			}
		}
	}
	add(rb.Name(), weightName)
	for _, t := range rb.Metadata.Tags {
		add(t, weightTag)
	}
	add(rb.Trigger.AlertName, weightTrigger)
	add(rb.Metadata.Description, weightDesc)
	for w := range nameWords {
		score += where[w]
	}
	for w := range labelWords {
		if !nameWords[w] {
			score += where[w] / 2
		}
	}
	return score
}

// wordSet splits identifiers and prose into lower-case words: camelCase,
// snake_case, kebab-case and spaces all separate; plurals are folded;
// stop words and words with digits (hashes, addresses) are dropped.
func wordSet(s string) map[string]bool {
	out := map[string]bool{}
	var cur []rune
	flush := func() {
		w := strings.ToLower(string(cur))
		cur = cur[:0]
		if len(w) < 2 || stopWords[w] || strings.IndexFunc(w, unicode.IsDigit) >= 0 {
			return
		}
		if len(w) > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") {
			w = w[:len(w)-1]
		}
		out[w] = true
	}
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			// A capital starts a word after a lower-case letter, or ends an
			// acronym before a lower-case letter (HTTPError → http error).
			if unicode.IsUpper(r) && len(cur) > 0 {
				prev := rs[i-1]
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || unicode.IsUpper(prev) && nextLower {
					flush()
				}
			}
			cur = append(cur, r)
		default:
			flush()
		}
	}
	flush()
	return out
}
