package engine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The dependency direction of DESIGN.md: engine and commands import no chat
// SDK, no Redis, no client-go; bot imports no chat SDK outside its
// platform sub-packages.
func TestDependenciesPointInward(t *testing.T) {
	forbidden := []string{"github.com/slack-go/", "github.com/bwmarrin/discordgo", "k8s.io/", "github.com/redis/go-redis", "github.com/prometheus/client_golang"}
	for _, pkg := range []string{"github.com/runbookbot/runbookbot/engine", "github.com/runbookbot/runbookbot/commands/...", "github.com/runbookbot/runbookbot/bot"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
