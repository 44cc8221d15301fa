package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Catalog is a set of loaded files: runbooks by name, plus the mappings,
// RBAC and secrets configuration found beside them.
type Catalog struct {
	Runbooks map[string]*Runbook
	Mappings *MappingsConfig
	RBAC     *RBACConfig
	Secrets  *SecretsConfig
	// Files lists every file loaded, in order.
	Files []string
}

// Names returns the runbook names, sorted.
func (c *Catalog) Names() []string {
	out := make([]string, 0, len(c.Runbooks))
	for n := range c.Runbooks {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup finds a runbook by name, or returns an error naming the closest.
func (c *Catalog) Lookup(name string) (*Runbook, error) {
	if rb, ok := c.Runbooks[name]; ok {
		return rb, nil
	}
	names := c.Names()
	if s := closest(name, names); s != "" {
		return nil, fmt.Errorf("unknown runbook %q; did you mean %q?", name, s)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("unknown runbook %q: no runbooks are loaded", name)
	}
	return nil, fmt.Errorf("unknown runbook %q; known runbooks: %s", name, strings.Join(names, ", "))
}

// FileKind is what a YAML file holds.
type FileKind string

// File kinds, told apart by their top-level keys.
const (
	KindRunbook  FileKind = "runbook"
	KindMappings FileKind = "mappings"
	KindRBAC     FileKind = "rbac"
	KindSecrets  FileKind = "secrets"
)

func sniff(data []byte) FileKind {
	var top map[string]yaml.Node
	if yaml.Unmarshal(data, &top) != nil {
		return KindRunbook
	}
	switch {
	case has(top, "kind"), has(top, "steps"), has(top, "metadata"):
		return KindRunbook
	case has(top, "mappings"):
		return KindMappings
	case has(top, "roles"), has(top, "assignments"):
		return KindRBAC
	case has(top, "secrets"), has(top, "rotation"):
		return KindSecrets
	}
	return KindRunbook
}

func has(m map[string]yaml.Node, k string) bool { _, ok := m[k]; return ok }

// LoadPaths loads every .yaml/.yml file under the given files and
// directories (recursively) and validates them together. It returns the
// catalog of what loaded and every problem found, sorted by position.
func LoadPaths(reg *Registry, paths ...string) (*Catalog, Diagnostics) {
	var files []string
	var diags Diagnostics
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			diags = append(diags, Diagnostic{File: p, Line: 0, Col: 0, Message: fmt.Sprintf("cannot read: %v", unwrapPathErr(err)), Hint: "check the path"})
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		_ = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return nil
		})
	}
	sort.Strings(files)
	srcs := map[string][]byte{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.Size() > int64(MaxFileSize) {
			diags = append(diags, Diagnostic{File: f, Line: 1, Col: 1,
				Message: fmt.Sprintf("file is %s; a runbook file may be at most %s", byteSize(int(min(st.Size(), 1<<40))), byteSize(MaxFileSize)),
				Hint:    "split it, or move large data out of the runbook"})
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			diags = append(diags, Diagnostic{File: f, Message: fmt.Sprintf("cannot read: %v", unwrapPathErr(err))})
			continue
		}
		srcs[f] = data
	}
	cat, more := LoadSources(reg, files, srcs)
	diags = append(diags, more...)
	diags.Sort()
	return cat, diags
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// LoadSources loads files from memory; order gives the file order.
func LoadSources(reg *Registry, order []string, srcs map[string][]byte) (*Catalog, Diagnostics) {
	cat := &Catalog{Runbooks: map[string]*Runbook{}}
	var diags Diagnostics
	var runbooks []*Runbook
	for _, f := range order {
		data := srcs[f]
		cat.Files = append(cat.Files, f)
		if len(data) > MaxFileSize {
			diags = append(diags, Diagnostic{File: f, Line: 1, Col: 1,
				Message: fmt.Sprintf("file is %s; a runbook file may be at most %s", byteSize(len(data)), byteSize(MaxFileSize)),
				Hint:    "split it, or move large data out of the runbook"})
			continue
		}
		switch sniff(data) {
		case KindMappings:
			m := &MappingsConfig{}
			diags = append(diags, decodeFile(f, data, m)...)
			m.File = f
			diags = append(diags, m.validate()...)
			cat.Mappings = m
		case KindRBAC:
			r := &RBACConfig{}
			diags = append(diags, decodeFile(f, data, r)...)
			r.File = f
			diags = append(diags, r.validate()...)
			cat.RBAC = r
		case KindSecrets:
			s := &SecretsConfig{}
			diags = append(diags, decodeFile(f, data, s)...)
			s.File = f
			diags = append(diags, s.validate()...)
			cat.Secrets = s
		default:
			rb := &Runbook{}
			ds := decodeFile(f, data, rb)
			rb.File = f
			diags = append(diags, ds...)
			if len(ds) > 0 && rb.Metadata.Name == "" {
				continue
			}
			runbooks = append(runbooks, rb)
		}
	}
	var secretNames map[string]bool
	if cat.Secrets != nil {
		secretNames = cat.Secrets.names()
	}
	for _, rb := range runbooks {
		ds := validateRunbook(rb, reg, secretNames)
		diags = append(diags, ds...)
		if prev, ok := cat.Runbooks[rb.Name()]; ok && rb.Name() != "" {
			diags = append(diags, Diagnostic{File: rb.File, Line: rb.Metadata.Pos.Of("name").Line, Col: rb.Metadata.Pos.Of("name").Col,
				Message: fmt.Sprintf("runbook name %q is already used by %s", rb.Name(), prev.File), Hint: "runbook names must be unique"})
			continue
		}
		if len(ds) == 0 {
			cat.Runbooks[rb.Name()] = rb
		}
	}
	if cat.Mappings != nil {
		diags = append(diags, cat.Mappings.crossCheck(cat, runbooks)...)
	}
	if cat.RBAC != nil {
		diags = append(diags, cat.RBAC.crossCheck(runbooks)...)
	}
	diags.Sort()
	return cat, diags
}

// LoadRunbook parses and validates one runbook from memory.
func LoadRunbook(reg *Registry, file string, data []byte) (*Runbook, error) {
	cat, diags := LoadSources(reg, []string{file}, map[string][]byte{file: data})
	if len(diags) > 0 {
		return nil, diags
	}
	for _, rb := range cat.Runbooks {
		return rb, nil
	}
	return nil, Diagnostics{{File: file, Line: 1, Col: 1, Message: "not a runbook", Hint: "a runbook has apiVersion, kind: Runbook, metadata and steps"}}
}
