package secrets

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/runbookbot/runbookbot/engine"
)

// refPattern matches ${env:NAME} and ${secret:NAME} references, the way
// configuration files (notifications, incidents) name credentials without
// holding them.
var refPattern = regexp.MustCompile(`\$\{(env|secret):([^}]*)\}`)

// HasRefs reports whether s holds ${env:…} or ${secret:…} references.
func HasRefs(s string) bool { return refPattern.MatchString(s) }

// EmptyRefs returns the kinds ("env", "secret") of references in s that
// name nothing (${env:}).
func EmptyRefs(s string) []string {
	var out []string
	for _, m := range refPattern.FindAllStringSubmatch(s, -1) {
		if strings.TrimSpace(m[2]) == "" {
			out = append(out, m[1])
		}
	}
	return out
}

// ExpandRefs replaces the references in s: ${env:NAME} from lookupEnv
// (os.LookupEnv when nil), ${secret:NAME} from src, which must give a
// single non-empty string. It returns every value it produced, so callers
// can scrub them from error text. Errors name the variable or secret,
// never a value.
func ExpandRefs(ctx context.Context, s string, src engine.SecretSource, lookupEnv func(string) (string, bool)) (string, []string, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	var produced []string
	var firstErr error
	out := refPattern.ReplaceAllStringFunc(s, func(m string) string {
		if firstErr != nil {
			return ""
		}
		sub := refPattern.FindStringSubmatch(m)
		kind, name := sub[1], strings.TrimSpace(sub[2])
		var v string
		switch kind {
		case "env":
			val, ok := lookupEnv(name)
			if !ok || val == "" {
				firstErr = fmt.Errorf("environment variable %s is not set or empty", name)
				return ""
			}
			v = val
		case "secret":
			if src == nil {
				firstErr = fmt.Errorf("secret %q: no secret source is configured", name)
				return ""
			}
			val, err := src.Secret(ctx, name)
			if err != nil {
				firstErr = fmt.Errorf("secret %q: %w", name, err)
				return ""
			}
			str, ok := val.(string)
			if !ok || str == "" {
				firstErr = fmt.Errorf("secret %q is not a single non-empty value", name)
				return ""
			}
			v = str
		}
		produced = append(produced, v)
		return v
	})
	if firstErr != nil {
		return "", produced, firstErr
	}
	return out, produced, nil
}
