package main

import (
	"fmt"
	"io"

	"github.com/runbookbot/runbookbot/engine/schema"
)

// cmdSchema prints the JSON Schema of the runbook format, the same as
// deploy/schema/runbook.schema.json.
func cmdSchema(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: runbookbot schema  (prints the runbook JSON Schema; redirect it to a file)")
		return exitUsage
	}
	b, err := schema.JSON()
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot schema: %v\n", err)
		return exitFailure
	}
	_, _ = stdout.Write(b)
	return exitOK
}
