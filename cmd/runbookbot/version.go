package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// version is the release name; -ldflags "-X main.version=v1.2.3" overrides
// what the build info says. "dev" means: ask the build info.
var version = "dev"

// buildVersion describes the binary: its module version and the VCS
// revision it was built from, as the go command stamped them.
type buildVersion struct {
	Version   string // v1.2.3, a pseudo-version, or "dev"
	Revision  string // the commit, "" when built outside a checkout
	Time      string // the commit's time (RFC 3339)
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

// readVersion reads the build info of this binary.
func readVersion() buildVersion {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return buildVersion{Version: version}
	}
	return versionOf(info, version)
}

// versionOf is readVersion for a given build info and -X override.
func versionOf(info *debug.BuildInfo, override string) buildVersion {
	v := buildVersion{Version: override, GoVersion: info.GoVersion}
	if v.Version == "" || v.Version == "dev" {
		v.Version = "dev"
		if mv := info.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		}
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the line `runbookbot version` prints.
func (v buildVersion) String() string {
	var parts []string
	if v.Revision != "" {
		r := "revision " + v.Revision
		if v.Modified {
			r += " (modified)"
		}
		parts = append(parts, r)
	} else {
		parts = append(parts, "revision unknown")
	}
	if v.Time != "" {
		parts = append(parts, "committed "+v.Time)
	}
	if v.GoVersion != "" {
		parts = append(parts, v.GoVersion)
	}
	return fmt.Sprintf("runbookbot %s (%s)", v.Version, strings.Join(parts, ", "))
}

func cmdVersion(stdout io.Writer) int {
	fmt.Fprintln(stdout, readVersion())
	return exitOK
}
