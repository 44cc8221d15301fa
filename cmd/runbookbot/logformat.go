package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// logFormat is the --log-format flag: text (the default) or json.
type logFormat string

// registerLogFormat adds --log-format (RUNBOOKBOT_LOG_FORMAT) to fs.
func registerLogFormat(fs *flag.FlagSet) *logFormat {
	f := logFormat(envOr("RUNBOOKBOT_LOG_FORMAT", "text"))
	fs.Var(&f, "log-format", "log `FORMAT`: text or json"+env("RUNBOOKBOT_LOG_FORMAT"))
	return &f
}

func (f *logFormat) String() string { return string(*f) }

// Set accepts text or json.
func (f *logFormat) Set(s string) error {
	switch s {
	case "text", "json":
		*f = logFormat(s)
		return nil
	}
	return fmt.Errorf("want text or json, got %q", s)
}

// logger returns a logger writing to w in the chosen format at level.
func (f *logFormat) logger(w io.Writer, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch *f {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	// Only an environment value can get here: flags go through Set.
	return nil, fmt.Errorf("RUNBOOKBOT_LOG_FORMAT=%q: want text or json", string(*f))
}

// apply sets o.logger from the flag, or prints why it cannot and returns
// false.
func (f *logFormat) apply(o *botOptions, stderr io.Writer, level slog.Level, cmd string) bool {
	l, err := f.logger(stderr, level)
	if err != nil {
		fmt.Fprintf(stderr, "runbookbot %s: %v\n", cmd, err)
		return false
	}
	o.logger = l
	return true
}

var _ flag.Value = (*logFormat)(nil)
