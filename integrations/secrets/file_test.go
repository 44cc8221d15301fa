package secrets

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

// write creates dir/name with text and returns its path.
func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFileSingleValue(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, config("file",
		engine.SecretMapping{Name: "token", File: write(t, dir, "token", canary+"\n")},
		engine.SecretMapping{Name: "crlf", File: write(t, dir, "crlf", canary+"\r\n")},
		engine.SecretMapping{Name: "two", File: write(t, dir, "two", canary+"\n\n")},
		engine.SecretMapping{Name: "bare", Path: write(t, dir, "bare", canary)},
	), Deps{})
	for name, want := range map[string]string{"token": canary, "crlf": canary, "two": canary + "\n", "bare": canary} {
		if got := get(t, s, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestFileFieldsFromADirectory(t *testing.T) {
	// A Kubernetes Secret mounted as a volume: one file per key.
	dir := filepath.Join(t.TempDir(), "db")
	write(t, dir, "username", "app\n")
	write(t, dir, "password", canary+"\n")
	s := mustNew(t, config("file",
		engine.SecretMapping{Name: "db", File: dir, Fields: []string{"username", "password"}},
		engine.SecretMapping{Name: "password", File: dir, Field: "password"},
		engine.SecretMapping{Name: "missing", File: dir, Fields: []string{"username", "host"}},
		engine.SecretMapping{Name: "whole", File: dir},
		engine.SecretMapping{Name: "escape", File: dir, Field: "../db/password"},
	), Deps{})
	if got := get(t, s, "db"); !reflect.DeepEqual(got, map[string]string{"username": "app", "password": canary}) {
		t.Errorf("db = %v", got)
	}
	if got := get(t, s, "password"); got != canary {
		t.Errorf("password = %v", got)
	}
	for name, want := range map[string]string{
		"missing": "file " + filepath.Join(dir, "host") + " does not exist",
		"whole":   "is a directory: set field or fields",
		"escape":  "cannot name a file",
	} {
		_, err := s.Secret(context.Background(), name)
		msg := errText(t, err)
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error %q, want %q", name, msg, want)
		}
		assertNoLeak(t, canary, msg)
	}
}

func TestFileFieldsFromJSONAndYAML(t *testing.T) {
	dir := t.TempDir()
	js := write(t, dir, "db.json", `{"username": "app", "password": "`+canary+`", "port": 5432, "big": 12345678901234567890}`)
	ym := write(t, dir, "db.yaml", "username: app\npassword: "+canary+"\nport: 5432\n")
	s := mustNew(t, config("file",
		engine.SecretMapping{Name: "json", File: js, Fields: []string{"username", "password", "port", "big"}},
		engine.SecretMapping{Name: "yaml", File: ym, Fields: []string{"username", "password", "port"}},
		engine.SecretMapping{Name: "one", File: ym, Field: "password"},
	), Deps{})
	want := map[string]string{"username": "app", "password": canary, "port": "5432"}
	if got := get(t, s, "yaml"); !reflect.DeepEqual(got, want) {
		t.Errorf("yaml = %v", got)
	}
	want["big"] = "12345678901234567890"
	if got := get(t, s, "json"); !reflect.DeepEqual(got, want) {
		t.Errorf("json = %v", got)
	}
	if got := get(t, s, "one"); got != canary {
		t.Errorf("one = %v", got)
	}
}

func TestFileErrorsNeverShowValues(t *testing.T) {
	dir := t.TempDir()
	js := write(t, dir, "db.json", `{"username": "app", "password": "`+canary+`"}`)
	nested := write(t, dir, "nested.json", `{"db": {"password": "`+canary+`"}}`)
	plain := write(t, dir, "plain", canary+": [unbalanced\n")
	broken := write(t, dir, "broken.json", `{"password": "`+canary+`",`)
	unreadable := write(t, dir, "unreadable", canary)
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	s := mustNew(t, config("file",
		engine.SecretMapping{Name: "missingKey", File: js, Field: "token"},
		engine.SecretMapping{Name: "twoKeys", File: js, Fields: []string{"password", "host"}},
		engine.SecretMapping{Name: "nested", File: nested, Field: "db"},
		engine.SecretMapping{Name: "plain", File: plain, Field: "password"},
		engine.SecretMapping{Name: "broken", File: broken, Field: "password"},
		engine.SecretMapping{Name: "absent", File: filepath.Join(dir, "absent")},
		engine.SecretMapping{Name: "unreadable", File: unreadable},
	), Deps{})
	wants := map[string]string{
		"missingKey": `has no key "token" (it has keys password, username)`,
		"twoKeys":    `has no key "host"`,
		"nested":     `key "db" is not a single value`,
		"plain":      "must be a JSON or YAML mapping",
		"broken":     "must be a JSON or YAML mapping",
		"absent":     "does not exist",
		"unreadable": "permission denied",
	}
	if os.Geteuid() == 0 {
		delete(wants, "unreadable") // root reads anything
	}
	for name, want := range wants {
		_, err := s.Secret(context.Background(), name)
		msg := errText(t, err)
		if !strings.Contains(msg, want) {
			t.Errorf("%s: error %q, want %q", name, msg, want)
		}
		assertNoLeak(t, canary, msg)
	}
}

func TestEmptyFileIsAnError(t *testing.T) {
	p := write(t, t.TempDir(), "empty", "\n")
	s := mustNew(t, config("file", engine.SecretMapping{Name: "e", File: p}), Deps{})
	_, err := s.Secret(context.Background(), "e")
	if !strings.Contains(errText(t, err), "file "+p+" is empty") {
		t.Errorf("error = %v", err)
	}
}
