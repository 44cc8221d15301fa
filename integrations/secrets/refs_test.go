package secrets

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/runbookbot/runbookbot/engine"
)

type refSource map[string]any

func (m refSource) Secret(_ context.Context, name string) (any, error) {
	if v, ok := m[name]; ok {
		return v, nil
	}
	return nil, errors.New("no such secret")
}

func TestExpandRefs(t *testing.T) {
	env := func(k string) (string, bool) { v, ok := map[string]string{"USER_NAME": "ops"}[k]; return v, ok }
	src := refSource{"token": "t0k3n-SECRET", "multi": map[string]any{"a": "b"}}
	out, produced, err := ExpandRefs(context.Background(), "Bearer ${secret:token} as ${env:USER_NAME}", src, env)
	if err != nil || out != "Bearer t0k3n-SECRET as ops" || len(produced) != 2 {
		t.Fatalf("ExpandRefs = %q %v %v", out, produced, err)
	}
	for _, c := range []struct{ in, want string }{
		{"${env:MISSING}", "environment variable MISSING is not set or empty"},
		{"${secret:nope}", `secret "nope": no such secret`},
		{"${secret:multi}", `secret "multi" is not a single non-empty value`},
	} {
		if _, _, err := ExpandRefs(context.Background(), c.in, src, env); err == nil || err.Error() != c.want {
			t.Errorf("%s: err = %v, want %q", c.in, err, c.want)
		}
	}
	var none engine.SecretSource
	if _, _, err := ExpandRefs(context.Background(), "${secret:token}", none, env); err == nil || !strings.Contains(err.Error(), "no secret source") {
		t.Errorf("without a source: %v", err)
	}
	if !HasRefs("x${env:A}") || HasRefs("plain") {
		t.Error("HasRefs")
	}
	if got := EmptyRefs("${env:} ${secret:x} ${secret: }"); len(got) != 2 || got[0] != "env" || got[1] != "secret" {
		t.Errorf("EmptyRefs = %v", got)
	}
}
