package main

import (
	"runtime/debug"
)

// version is set by the linker (-X main.version=...), as `make build` does.
var version = "dev"

// buildVersion is the version lvsd reports: the linker's, else the module
// version that `go install github.com/lvsd/lvsd/cmd/lvsd@VERSION` records,
// else the VCS revision of a build from a checkout ("-dirty" when it had
// uncommitted changes).
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	return versionFrom(version, bi, ok)
}

func versionFrom(linked string, bi *debug.BuildInfo, ok bool) string {
	if linked != "dev" && linked != "" {
		return linked
	}
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "dev-" + rev + dirty
}
