package secrets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/runbookbot/runbookbot/engine"
)

// EnvPrefix starts the default variable name of env secrets.
const EnvPrefix = "RUNBOOKBOT_SECRET_"

// envProvider reads environment variables.
type envProvider struct {
	lookup func(string) (string, bool)
}

// envName upper-cases s and turns what is not a letter or digit into _.
func envName(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// envVar is a mapping's variable: env, or RUNBOOKBOT_SECRET_<NAME>.
func envVar(m *engine.SecretMapping) string {
	if m.Env != "" {
		return m.Env
	}
	return EnvPrefix + envName(m.Name)
}

func (p *envProvider) fetch(_ context.Context, m *engine.SecretMapping) (any, error) {
	name := envVar(m)
	v, ok := p.lookup(name)
	if len(m.Fields) == 0 {
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	}
	if ok {
		// One variable holding a JSON object of the fields.
		obj, err := decodeJSONObject([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("environment variable %s is not a JSON object (with fields, set it to one, or set %s_<FIELD> per field)", name, name)
		}
		data, err := textValues(obj, "environment variable "+name)
		if err != nil {
			return nil, err
		}
		return pick(m, data, "environment variable "+name)
	}
	out := make(map[string]string, len(m.Fields))
	for _, f := range m.Fields {
		fv := name + "_" + envName(f)
		x, ok := p.lookup(fv)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set (nor %s as a JSON object)", fv, name)
		}
		out[f] = x
	}
	return out, nil
}

// fileProvider reads mounted files.
type fileProvider struct{}

// filePath is a mapping's file: file, or path.
func filePath(m *engine.SecretMapping) string {
	if m.File != "" {
		return m.File
	}
	return m.Path
}

func (fileProvider) check(m *engine.SecretMapping) error {
	if filePath(m) == "" {
		return errors.New("set file (or path) to the secret's file")
	}
	return nil
}

func (fileProvider) fetch(_ context.Context, m *engine.SecretMapping) (any, error) {
	path := filePath(m)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	if st.IsDir() {
		keys := m.Fields
		if m.Field != "" {
			keys = []string{m.Field}
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("%s is a directory: set field or fields to the files to read", path)
		}
		data := make(map[string]string, len(keys))
		for _, k := range keys {
			if k != filepath.Base(k) || k == "." || k == ".." {
				return nil, fmt.Errorf("field %q cannot name a file in %s", k, path)
			}
			v, err := readTrimmed(filepath.Join(path, k))
			if err != nil {
				return nil, err
			}
			data[k] = v
		}
		return pick(m, data, "directory "+path)
	}
	text, err := readTrimmed(path)
	if err != nil {
		return nil, err
	}
	if m.Field == "" && len(m.Fields) == 0 {
		return text, nil
	}
	obj, err := parseMapping([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", path, err)
	}
	data, err := textValues(obj, "file "+path)
	if err != nil {
		return nil, err
	}
	return pick(m, data, "file "+path)
}

// readTrimmed reads a file and trims one trailing newline.
func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fileError(path, err)
	}
	s := string(b)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else if strings.HasSuffix(s, "\n") {
		s = s[:len(s)-1]
	}
	return s, nil
}

// fileError describes a failed read by its path and cause only.
func fileError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("file %s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("file %s is not readable (permission denied)", path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("file %s: %v", path, pe.Err)
	}
	return fmt.Errorf("file %s: %v", path, err)
}

// parseMapping reads a JSON or YAML object. Parser messages are left out:
// they can quote the text, which is secret.
func parseMapping(b []byte) (map[string]any, error) {
	if obj, err := decodeJSONObject(b); err == nil {
		return obj, nil
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err == nil && obj != nil {
		return obj, nil
	}
	return nil, errors.New("with field or fields the file must be a JSON or YAML mapping, or a directory of files")
}
