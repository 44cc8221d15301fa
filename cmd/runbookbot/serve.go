package main

import (
	"context"
	"fmt"
	"io"
)

func cmdServe(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "runbookbot serve: the Slack bot is not built yet (issue #3)")
	return exitFailure
}

func cmdDev(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "runbookbot dev: the local Slack playground is not built yet (issue #3)")
	return exitFailure
}
