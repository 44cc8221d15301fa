package prometheus

import "testing"

func TestShippedQueries(t *testing.T) {
	if _, err := LoadConfig("../../deploy/prometheus-queries.yaml"); err != nil {
		t.Fatal(err)
	}
}
