package engine

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is a position in a YAML file, plus the positions of the values of the
// mapping it was decoded from.
type Pos struct {
	Line, Col int
	fields    map[string]Pos
}

// Has reports whether key was written.
func (p Pos) Has(key string) bool { _, ok := p.fields[key]; return ok }

// Of returns the position of the value of key, or p itself when unknown.
func (p Pos) Of(key string) Pos {
	if q, ok := p.fields[key]; ok {
		return q
	}
	return Pos{Line: p.Line, Col: p.Col}
}

// Diagnostic is one problem found in a file, with its position and a hint.
type Diagnostic struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// String formats the diagnostic as file:line:col: message (hint).
func (d Diagnostic) String() string {
	s := fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Message)
	if d.Hint != "" {
		s += " (hint: " + d.Hint + ")"
	}
	return s
}

// Diagnostics is every problem of one or more files. It is an error.
type Diagnostics []Diagnostic

func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders diagnostics by file and position.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// nodeUnmarshaler is implemented by types that decode themselves from a node.
type nodeUnmarshaler interface {
	decodeNode(d *decoder, n *yaml.Node)
}

// decoder turns yaml nodes into structs strictly, collecting every error
// with its position instead of stopping at the first.
type decoder struct {
	file    string
	diags   Diagnostics
	aliases int
}

// maxAliases bounds alias expansion so a "billion laughs" file is an error,
// not a hang.
const maxAliases = 1000

func (d *decoder) errorf(n *yaml.Node, hint, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	d.at(Pos{Line: line, Col: col}, hint, format, args...)
}

func (d *decoder) at(p Pos, hint, format string, args ...any) {
	d.diags = append(d.diags, Diagnostic{File: d.file, Line: p.Line, Col: p.Col, Message: fmt.Sprintf(format, args...), Hint: hint})
}

var (
	posType         = reflect.TypeOf(Pos{})
	unmarshalerType = reflect.TypeOf((*nodeUnmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(Duration(0))
)

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "an unknown node"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, what string) {
	for n.Kind == yaml.AliasNode {
		d.aliases++
		if d.aliases > maxAliases {
			if d.aliases == maxAliases+1 {
				d.errorf(n, "write the values out instead of repeating aliases", "%s: too many aliases", what)
			}
			return
		}
		n = n.Alias
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		v.Addr().Interface().(nodeUnmarshaler).decodeNode(d, n)
		return
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errorf(n, "write a duration such as 30s, 5m or 1h", "%s: expected a duration, got %s", what, kindName(n))
			return
		}
		dur, err := ParseDuration(n.Value)
		if err != nil {
			d.errorf(n, "write a duration such as 30s, 5m, 1h30m or 7d", "%s: %v", what, err)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), what)
		v.Set(nv)
	case reflect.Struct:
		d.decodeStruct(n, v, what)
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "use a YAML list (- item)", "%s: expected a list, got %s", what, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", what, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, "use key: value pairs", "%s: expected a mapping, got %s", what, kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, what+"."+k.Value)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, "", "%s: %v", what, err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "quote the value if it is meant as text", "%s: expected a string, got %s", what, kindName(n))
			return
		}
		if n.Tag == "!!null" {
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errorf(n, "write true or false", "%s: expected a boolean, got %s", what, kindName(n))
			return
		}
		b, _ := strconv.ParseBool(n.Value)
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.errorf(n, "write a whole number without quotes", "%s: expected an integer, got %s", what, kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			d.errorf(n, "write a whole number without quotes", "%s: bad integer %q", what, n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			d.errorf(n, "write a number without quotes", "%s: expected a number, got %s", what, kindName(n))
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			d.errorf(n, "write a number without quotes", "%s: bad number %q", what, n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.errorf(n, "", "%s: cannot decode into %s", what, v.Type())
	}
}

type structField struct {
	index int
	name  string
}

func yamlFields(t reflect.Type) []structField {
	var out []structField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		out = append(out, structField{i, strings.Split(tag, ",")[0]})
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, what string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "use key: value pairs", "%s: expected a mapping, got %s", what, kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	pos := Pos{Line: n.Line, Col: n.Column, fields: map[string]Pos{}}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			d.errorf(k, "write the keys out; merge keys are not supported", "%s: merge key << is not supported", what)
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "remove one of the two", "%s: key %q appears twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		var fi = -1
		for _, f := range fields {
			if f.name == k.Value {
				fi = f.index
				break
			}
		}
		if fi < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			hint := "valid fields: " + strings.Join(names, ", ")
			if s := closest(k.Value, names); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			d.errorf(k, hint, "%s: unknown field %q", what, k.Value)
			continue
		}
		pos.fields[k.Value] = Pos{Line: val.Line, Col: val.Column}
		if val.Kind == yaml.SequenceNode {
			for j, item := range val.Content {
				pos.fields[fmt.Sprintf("%s[%d]", k.Value, j)] = Pos{Line: item.Line, Col: item.Column}
			}
		}
		d.decode(val, v.Field(fi), what+"."+k.Value)
	}
	if f := v.FieldByName("Pos"); f.IsValid() && f.Type() == posType {
		f.Set(reflect.ValueOf(pos))
	}
}

// closest returns the candidate nearest to s by edit distance, if it is near
// enough to be a likely typo.
func closest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		dd := editDistance(strings.ToLower(s), strings.ToLower(c))
		if dd < bestD {
			best, bestD = c, dd
		}
	}
	if bestD <= max(2, len(s)/3) {
		return best
	}
	return ""
}

// Closest returns the candidate nearest to s, or "" when none is close.
func Closest(s string, candidates []string) string { return closest(s, candidates) }

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Params are a step's free-form parameters. Strings may hold templates.
type Params struct {
	Values map[string]any
	node   *yaml.Node
}

func (p *Params) decodeNode(d *decoder, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "use key: value pairs", "params: expected a mapping, got %s", kindName(n))
		return
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		d.errorf(n, "", "params: %v", err)
		return
	}
	p.Values, p.node = m, n
}

// pos returns the position of a top-level param's value.
func (p Params) pos(key string, def Pos) Pos {
	if p.node == nil {
		return def
	}
	for i := 0; i+1 < len(p.node.Content); i += 2 {
		if p.node.Content[i].Value == key {
			v := p.node.Content[i+1]
			return Pos{Line: v.Line, Col: v.Column}
		}
	}
	return def
}

// Pos returns where a top-level param's value is written, or def when the
// param is not there (drift and other reports point at the exact line).
func (p Params) Pos(key string, def Pos) Pos { return p.pos(key, def) }

// Get returns one parameter's raw value.
func (p Params) Get(key string) (any, bool) {
	v, ok := p.Values[key]
	return v, ok
}

// strings calls f for every string in the params with its position.
func (p Params) strings(f func(path, s string, pos Pos)) {
	if p.node == nil {
		return
	}
	budget := 100 * maxAliases
	walkStrings(p.node, "params", f, &budget)
}

func walkStrings(n *yaml.Node, path string, f func(path, s string, pos Pos), budget *int) {
	*budget--
	if *budget < 0 {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			f(path, n.Value, Pos{Line: n.Line, Col: n.Column})
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkStrings(n.Content[i+1], path+"."+n.Content[i].Value, f, budget)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walkStrings(c, fmt.Sprintf("%s[%d]", path, i), f, budget)
		}
	case yaml.AliasNode:
		walkStrings(n.Alias, path, f, budget)
	}
}

// decodeFile parses YAML bytes into v strictly, returning every problem.
// MaxFileSize is the largest runbook or config file loaded.
var MaxFileSize = 1 << 20

func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// docStart returns the line of the "---" marker that starts the n-th YAML
// document (from 1) of data.
func docStart(data []byte, n int) int {
	docs := 0
	for i, l := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimRight(l, " \t\r")
		switch {
		case bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")):
			docs++
			if docs == n {
				return i + 1
			}
		case docs == 0 && len(t) > 0 && t[0] != '#':
			docs = 1 // content before any marker opens the first document
		}
	}
	return 1
}

func decodeFile(file string, data []byte, v any) Diagnostics {
	d := &decoder{file: file}
	if len(data) > MaxFileSize {
		d.at(Pos{Line: 1, Col: 1}, "split it, or move large data out of the runbook", "file is %s; a runbook file may be at most %s", byteSize(len(data)), byteSize(MaxFileSize))
		return d.diags
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&root)
	if err == io.EOF {
		d.at(Pos{Line: 1, Col: 1}, "the file must hold one YAML document", "empty document")
		return d.diags
	}
	if err == nil {
		// A second document would be ignored silently: refuse it where it
		// starts, whether or not it parses.
		var next yaml.Node
		if nerr := dec.Decode(&next); nerr != io.EOF {
			line := docStart(data, 2)
			d.at(Pos{Line: line, Col: 1}, "put each runbook (or config) in a file of its own", "a second YAML document starts here; a file holds exactly one document")
			return d.diags
		}
	}
	if err != nil {
		line := 0
		msg := err.Error()
		// yaml.v3 reports "yaml: line N: message".
		if _, scanErr := fmt.Sscanf(msg, "yaml: line %d:", &line); scanErr == nil {
			if i := strings.Index(msg, ": "); i >= 0 {
				if j := strings.Index(msg[i+2:], ": "); j >= 0 {
					msg = msg[i+2+j+2:]
				}
			}
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		d.at(Pos{Line: max(line, 1), Col: 1}, "check indentation and quoting", "invalid YAML: %s", msg)
		return d.diags
	}
	if len(root.Content) == 0 {
		d.at(Pos{Line: 1, Col: 1}, "the file must hold one YAML document", "empty document")
		return d.diags
	}
	d.decode(root.Content[0], reflect.ValueOf(v).Elem(), "")
	for i := range d.diags {
		d.diags[i].Message = strings.TrimPrefix(d.diags[i].Message, ".")
		d.diags[i].Message = strings.TrimPrefix(d.diags[i].Message, ": ")
	}
	return d.diags
}
