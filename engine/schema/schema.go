// Package schema generates the JSON Schema (draft 2020-12) of the runbook
// format from the engine's Go model, so editors (yaml-language-server in VS
// Code, Neovim and others) check runbooks the way `runbookbot lint` decodes
// them, and the two cannot drift apart.
//
// The schema is built by reflection over engine.Runbook: every struct with
// yaml tags becomes an object under $defs whose properties are its tagged
// fields and which admits no other key (lint refuses unknown fields).
// Field types map onto what the engine's strict decoder accepts:
//
//   - string: any scalar, or null (the decoder takes a scalar's text, so
//     `version: 1.2` is the string "1.2");
//   - bool: true or false only; integers: whole numbers only; float64:
//     numbers;
//   - engine.Duration: a duration such as 30s, 5m, 1h30m or 7d (or 0);
//   - lists, mappings, structs and pointers to structs: their own shape, or
//     null (an empty key);
//   - any and step params: any value.
//
// Required keys and the fixed values of apiVersion and kind are rules of the
// validator rather than of the Go types; they are listed here (Required)
// and a test checks that lint requires each of them too.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// Draft is the JSON Schema dialect of the generated schema.
const Draft = "https://json-schema.org/draft/2020-12/schema"

// ID is the schema's $id: where the repository ships it.
const ID = "https://raw.githubusercontent.com/runbookbot/runbookbot/main/deploy/schema/runbook.schema.json"

// DurationPattern matches what engine.ParseDuration accepts: Go durations
// (units ns, us, µs, ms, s, m, h, combined as in 1h30m) and whole or
// fractional days (7d, 1.5d). Negative durations are refused.
const DurationPattern = `^\s*(\+?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+|\+?0|\d+(\.\d+)?d)\s*$`

// Required lists, per Go type name, the keys lint refuses to do without.
var Required = map[string][]string{
	"Runbook":  {"apiVersion", "kind", "metadata", "steps"},
	"Metadata": {"name", "version"},
}

// consts are the values lint accepts for a few keys.
var consts = map[string]map[string]string{
	"Runbook": {"apiVersion": "runbooks/v1", "kind": "Runbook"},
}

// Schema is one JSON Schema node. Only the keywords the generator uses are
// present.
type Schema struct {
	Schema               string             `json:"$schema,omitempty"`
	ID                   string             `json:"$id,omitempty"`
	Ref                  string             `json:"$ref,omitempty"`
	Title                string             `json:"title,omitempty"`
	Description          string             `json:"description,omitempty"`
	Type                 any                `json:"type,omitempty"` // a name or a list of names
	Const                any                `json:"const,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	MinLength            int                `json:"minLength,omitempty"`
	MinItems             int                `json:"minItems,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
	Defs                 map[string]*Schema `json:"$defs,omitempty"`

	// closed marks "additionalProperties": false, which a *Schema cannot
	// say.
	closed bool
}

// MarshalJSON writes false for a closed object's additionalProperties.
func (s *Schema) MarshalJSON() ([]byte, error) {
	type plain Schema
	if !s.closed {
		return json.Marshal((*plain)(s))
	}
	b, err := json.Marshal(struct {
		*plain
		AdditionalProperties bool `json:"additionalProperties"`
	}{(*plain)(s), false})
	return b, err
}

var (
	durationType = reflect.TypeOf(engine.Duration(0))
	paramsType   = reflect.TypeOf(engine.Params{})
)

// generator builds $defs for the struct types it meets.
type generator struct {
	defs map[string]*Schema
}

// Runbook returns the schema of a runbook file.
func Runbook() *Schema {
	g := &generator{defs: map[string]*Schema{}}
	root := g.of(reflect.TypeOf(engine.Runbook{}), false)
	return &Schema{
		Schema:      Draft,
		ID:          ID,
		Title:       "runbookbot runbook",
		Description: "A runbook for runbookbot (apiVersion runbooks/v1, kind Runbook). Generated from the Go model by `runbookbot schema`; `runbookbot lint` checks what a schema cannot (references, templates, conditions, step types).",
		Ref:         root.Ref,
		Defs:        g.defs,
	}
}

// JSON returns the runbook schema as indented JSON ending in a newline:
// what `runbookbot schema` prints and deploy/schema/runbook.schema.json
// holds.
func JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(Runbook()); err != nil {
		return nil, fmt.Errorf("encoding the runbook schema: %w", err)
	}
	return buf.Bytes(), nil
}

// nullable adds null to a schema's types.
func nullable(s *Schema) *Schema {
	switch t := s.Type.(type) {
	case string:
		s.Type = []string{t, "null"}
	case []string:
		s.Type = append(t, "null")
	default:
		return &Schema{AnyOf: []*Schema{s, {Type: "null"}}}
	}
	return s
}

// of returns the schema of a field of type t. In a list, null items are
// refused for structs (lint reports an empty item), so nullOK is false
// there.
func (g *generator) of(t reflect.Type, nullOK bool) *Schema {
	switch t {
	case durationType:
		return &Schema{AnyOf: []*Schema{
			{Type: "string", Pattern: DurationPattern},
			{Const: 0},
		}, Description: "a duration such as 30s, 5m, 1h30m or 7d"}
	case paramsType:
		return &Schema{Type: []string{"object", "null"}, Description: "the action's parameters; strings may hold {{ templates }}"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem(), nullOK)
	case reflect.Struct:
		ref := &Schema{Ref: "#/$defs/" + t.Name()}
		g.define(t)
		if nullOK {
			return &Schema{AnyOf: []*Schema{ref, {Type: "null"}}}
		}
		return ref
	case reflect.Slice:
		s := &Schema{Type: "array", Items: g.of(t.Elem(), false)}
		return nullable(s)
	case reflect.Map:
		s := &Schema{Type: "object", AdditionalProperties: g.of(t.Elem(), true)}
		return nullable(s)
	case reflect.Interface:
		return &Schema{}
	case reflect.String:
		return &Schema{Type: []string{"string", "number", "boolean", "null"}}
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &Schema{Type: "integer"}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: "number"}
	}
	panic(fmt.Sprintf("schema: no JSON Schema for %s", t))
}

// define adds t's object schema to $defs, once.
func (g *generator) define(t reflect.Type) {
	name := t.Name()
	if _, ok := g.defs[name]; ok {
		return
	}
	s := &Schema{Type: "object", Properties: map[string]*Schema{}, closed: true}
	g.defs[name] = s // before the fields: types may refer to themselves
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		key := strings.Split(tag, ",")[0]
		required := slices.Contains(Required[name], key)
		p := g.of(f.Type, !required)
		if required {
			mustHave(p)
		}
		if v, ok := consts[name][key]; ok {
			p = &Schema{Const: v}
		}
		s.Properties[key] = p
	}
	s.Required = Required[name]
}

// mustHave narrows the schema of a required key: lint refuses null, an
// empty string and an empty list there as it refuses a missing key.
func mustHave(s *Schema) {
	types, ok := s.Type.([]string)
	if !ok {
		return
	}
	types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "null" })
	s.Type = types
	if len(types) == 1 {
		s.Type = types[0]
	}
	if slices.Contains(types, "string") {
		s.MinLength = 1
	}
	if slices.Contains(types, "array") {
		s.MinItems = 1
	}
}
