package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Template is a string with `{{ expression | filter | filter(arg) }}`
// placeholders. Expressions are expr-lang programs compiled once.
type Template struct {
	Source string
	parts  []tmplPart
}

type tmplPart struct {
	lit  string
	expr *Condition
	fs   []filterCall
}

type filterCall struct {
	name string
	args *Condition // an array expression, or nil
}

// FilterFunc transforms a template value. ctx carries the execution's
// deadline so filters that call out (extractDeployment against a cluster)
// stay bounded.
type FilterFunc func(ctx context.Context, v any, args []any) (any, error)

// HasTemplate reports whether s contains a placeholder.
func HasTemplate(s string) bool { return strings.Contains(s, "{{") }

// ParseTemplate compiles a template. Filters are checked against known.
func ParseTemplate(src string, known map[string]FilterFunc) (*Template, error) {
	t := &Template{Source: src}
	rest := src
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return nil, fmt.Errorf("unbalanced }} in %q", src)
			}
			if rest != "" {
				t.parts = append(t.parts, tmplPart{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i]})
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unclosed {{ in %q", src)
		}
		inner := strings.TrimSpace(rest[i+2 : i+2+j])
		if inner == "" {
			return nil, fmt.Errorf("empty {{ }} in %q", src)
		}
		p, err := parsePlaceholder(inner, known)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, p)
		rest = rest[i+2+j+2:]
	}
}

var filterSyntax = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\)|:\s*(.*)|\s+(.+))?$`)

func parsePlaceholder(inner string, known map[string]FilterFunc) (tmplPart, error) {
	segs := splitPipes(inner)
	head, err := compileExpr(segs[0], false)
	if err != nil {
		return tmplPart{}, fmt.Errorf("{{ %s }}: %v", inner, err)
	}
	p := tmplPart{expr: head}
	for _, s := range segs[1:] {
		s = strings.TrimSpace(s)
		m := filterSyntax.FindStringSubmatch(s)
		if m == nil {
			return tmplPart{}, fmt.Errorf("{{ %s }}: bad filter %q", inner, s)
		}
		name := m[1]
		if _, ok := known[name]; !ok {
			names := make([]string, 0, len(known))
			for k := range known {
				names = append(names, k)
			}
			hint := ""
			if c := closest(name, names); c != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", c)
			}
			return tmplPart{}, fmt.Errorf("{{ %s }}: unknown filter %q%s", inner, name, hint)
		}
		fc := filterCall{name: name}
		argSrc := m[2] + m[3] + m[4]
		if strings.TrimSpace(argSrc) != "" {
			a, err := compileExpr("["+argSrc+"]", false)
			if err != nil {
				return tmplPart{}, fmt.Errorf("{{ %s }}: filter %s: %v", inner, name, err)
			}
			fc.args = a
		}
		p.fs = append(p.fs, fc)
	}
	return p, nil
}

// splitPipes splits on `|` outside quotes and parentheses, leaving `||`.
func splitPipes(s string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case c == '|' && depth == 0:
			if i+1 < len(s) && s[i+1] == '|' {
				i++
				continue
			}
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// Refs lists the names the template reads, filters' arguments included.
func (t *Template) Refs() []Ref {
	var out []Ref
	for _, p := range t.parts {
		if p.expr == nil {
			continue
		}
		out = append(out, p.expr.Refs()...)
		for _, f := range p.fs {
			if f.args != nil {
				out = append(out, f.args.Refs()...)
			}
		}
	}
	return out
}

// Static reports whether the template has no placeholders.
func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.expr != nil {
			return false
		}
	}
	return true
}

// Render evaluates the template. A template that is exactly one placeholder
// keeps the value's type (so `replicas: "{{ state.n }}"` stays a number);
// otherwise the parts are joined as text.
func (t *Template) Render(ctx context.Context, env map[string]any, filters map[string]FilterFunc) (any, error) {
	if len(t.parts) == 1 && t.parts[0].expr != nil {
		return t.parts[0].eval(ctx, env, filters)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.eval(ctx, env, filters)
		if err != nil {
			return nil, err
		}
		b.WriteString(Stringify(v))
	}
	return b.String(), nil
}

func (p tmplPart) eval(ctx context.Context, env map[string]any, filters map[string]FilterFunc) (any, error) {
	v, err := p.expr.ValueContext(ctx, env)
	if err != nil {
		return nil, err
	}
	for _, f := range p.fs {
		var args []any
		if f.args != nil {
			a, err := f.args.ValueContext(ctx, env)
			if err != nil {
				return nil, err
			}
			args, _ = a.([]any)
		}
		fn := filters[f.name]
		if fn == nil {
			return nil, fmt.Errorf("unknown filter %q", f.name)
		}
		if v, err = fn(ctx, v, args); err != nil {
			return nil, fmt.Errorf("filter %s: %w", f.name, err)
		}
	}
	return v, nil
}

// Stringify formats a template value as text: numbers without exponent,
// nil as empty, maps and lists as JSON.
func Stringify(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// BuiltinFilters are the filters every template can use.
func BuiltinFilters() map[string]FilterFunc {
	return map[string]FilterFunc{
		"extractDeployment": func(_ context.Context, v any, _ []any) (any, error) {
			return ExtractDeploymentName(Stringify(v)), nil
		},
		"lower": func(_ context.Context, v any, _ []any) (any, error) { return strings.ToLower(Stringify(v)), nil },
		"upper": func(_ context.Context, v any, _ []any) (any, error) { return strings.ToUpper(Stringify(v)), nil },
		"default": func(_ context.Context, v any, args []any) (any, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("default takes one argument")
			}
			if v == nil || v == "" {
				return args[0], nil
			}
			return v, nil
		},
		"quote": func(_ context.Context, v any, _ []any) (any, error) { return strconv.Quote(Stringify(v)), nil },
		"json": func(_ context.Context, v any, _ []any) (any, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"trunc": func(_ context.Context, v any, args []any) (any, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("trunc takes one argument")
			}
			n, ok := toInt(args[0])
			if !ok || n < 0 {
				return nil, fmt.Errorf("trunc needs a non-negative length")
			}
			r := []rune(Stringify(v))
			if len(r) > n {
				r = r[:n]
			}
			return string(r), nil
		},
	}
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case string:
		n, err := strconv.Atoi(x)
		return n, err == nil
	}
	return 0, false
}

var podHash = regexp.MustCompile(`^[a-z0-9]{5}$`)
var rsHash = regexp.MustCompile(`^[a-z0-9]{6,10}$`)

// ExtractDeploymentName guesses a Deployment's name from a pod's name by
// trimming the ReplicaSet hash and pod suffix (`api-7d4b9c6f8-x2x7q` →
// `api`). The Kubernetes integration replaces this with an ownerReferences
// lookup when a cluster is reachable.
func ExtractDeploymentName(pod string) string {
	segs := strings.Split(pod, "-")
	if len(segs) >= 3 && podHash.MatchString(segs[len(segs)-1]) && rsHash.MatchString(segs[len(segs)-2]) {
		return strings.Join(segs[:len(segs)-2], "-")
	}
	if len(segs) >= 2 {
		return strings.Join(segs[:len(segs)-1], "-")
	}
	return pod
}
