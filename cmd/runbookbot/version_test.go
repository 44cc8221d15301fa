package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-11-27T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}
	cases := []struct {
		name     string
		main     string
		override string
		settings []debug.BuildSetting
		want     string
	}{
		{"go run", "(devel)", "dev", nil, "runbookbot dev (revision unknown, go1.26.8)"},
		{"a checkout", "v0.0.0-20261127100000-0123abcd+dirty", "dev", vcs, "runbookbot v0.0.0-20261127100000-0123abcd+dirty (revision 0123abcd (modified), committed 2026-11-27T10:00:00Z, go1.26.8)"},
		{"a tag", "v1.2.3", "dev", vcs[:2], "runbookbot v1.2.3 (revision 0123abcd, committed 2026-11-27T10:00:00Z, go1.26.8)"},
		{"-X main.version", "(devel)", "v9.9.9", nil, "runbookbot v9.9.9 (revision unknown, go1.26.8)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/runbookbot/runbookbot", Version: c.main}, Settings: c.settings}
			if got := versionOf(info, c.override).String(); got != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// The binary deploy/build.sh makes (as the image does) names the commit it
// was built from.
func TestBuiltBinaryNamesItsRevision(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	before, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "runbookbot")
	cmd := exec.Command("../../deploy/build.sh", bin)
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false") // build.sh must win over it
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/build.sh: %v\n%s", err, out)
	}
	after, _ := exec.Command("git", "rev-parse", "HEAD").Output()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	b, a := strings.TrimSpace(string(before)), strings.TrimSpace(string(after))
	if !strings.Contains(line, "revision "+b) && !strings.Contains(line, "revision "+a) {
		t.Errorf("version = %q, want revision %s", line, b)
	}
	if strings.HasPrefix(line, "runbookbot dev ") {
		t.Errorf("version = %q: a build from a checkout has a module version", line)
	}
}
