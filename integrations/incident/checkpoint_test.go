package incident_test

import (
	"path/filepath"
	"testing"

	"github.com/runbookbot/runbookbot/integrations/incident"
	"github.com/runbookbot/runbookbot/integrations/incident/incidenttest"
)

func TestMemoryCheckpoints(t *testing.T) {
	incidenttest.RunCheckpointSuite(t, func(*testing.T) func() incident.Checkpoints {
		cp := &incident.MemoryCheckpoints{}
		return func() incident.Checkpoints { return cp }
	})
}

func TestFileCheckpoints(t *testing.T) {
	incidenttest.RunCheckpointSuite(t, func(t *testing.T) func() incident.Checkpoints {
		path := filepath.Join(t.TempDir(), "incident-checkpoint.json")
		return func() incident.Checkpoints { return incident.NewFileCheckpoints(path) }
	})
}
