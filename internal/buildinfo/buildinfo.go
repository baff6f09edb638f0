// Package buildinfo says which build of goipsec is running: the main
// module's version, the VCS revision it was built from, whether the work
// tree had changes, and the Go version, as "ipsecd --version" and "ipsecctl
// version" print them.
//
// The go command stamps the revision into binaries built inside a git clone
// (runtime/debug.ReadBuildInfo: vcs.revision, vcs.modified, vcs.time). Where
// it cannot (a git worktree, -buildvcs=false, a source tarball), the
// Makefile passes the revision with -ldflags -X for the variables below.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time by the Makefile when the go command could not stamp the
// build (-X github.com/goipsec/goipsec/internal/buildinfo.revision=...).
// Empty means not set; the stamped build information takes precedence.
var (
	version  string // the module version, e.g. v1.2.0
	revision string // the full commit hash
	modified string // "true" when the work tree had uncommitted changes
)

// Info describes one build. The zero Info is a build with nothing known.
type Info struct {
	Version  string // the main module's version; "devel" when unknown
	Revision string // the VCS commit hash; empty when unknown
	Modified bool   // the work tree differed from Revision
	Time     string // the commit time (RFC 3339); empty when unknown
	Go       string // the Go version that built the binary
}

// Read returns the running binary's Info.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return FromBuildInfo(bi)
}

// FromBuildInfo returns the Info of bi (nil means none), completed by the
// values set at link time where bi has none.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Go: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			in.Go = bi.GoVersion
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			in.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			case "vcs.time":
				in.Time = s.Value
			}
		}
	}
	if in.Version == "" {
		in.Version = version
	}
	if in.Revision == "" && revision != "" {
		in.Revision = revision
		in.Modified = modified == "true"
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	return in
}

// ShortRevision is the first 12 hex digits of the revision, as git's
// abbreviated hashes show it; empty when the revision is unknown.
func (in Info) ShortRevision() string {
	if len(in.Revision) > 12 {
		return in.Revision[:12]
	}
	return in.Revision
}

// String is the one-line form the commands print after their name, e.g.
// "v0.0.0-20261203120000-abcdef123456 (rev abcdef123456, modified) go1.26.8".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString(in.Version)
	if r := in.ShortRevision(); r != "" {
		b.WriteString(" (rev ")
		b.WriteString(r)
		if in.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	} else {
		b.WriteString(" (rev unknown)")
	}
	if in.Go != "" {
		b.WriteString(" ")
		b.WriteString(in.Go)
	}
	return b.String()
}
