package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfoStamped(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/goipsec/goipsec", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-12-03T12:00:00Z"},
		},
	}
	in := FromBuildInfo(bi)
	if got, want := in.String(), "v0.3.0 (rev 0123456789ab, modified) go1.26.8"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if in.Time != "2026-12-03T12:00:00Z" {
		t.Errorf("Time = %q", in.Time)
	}
}

func TestFromBuildInfoLinkTimeFallback(t *testing.T) {
	defer func(v, r, m string) { version, revision, modified = v, r, m }(version, revision, modified)
	version, revision, modified = "", "fedcba9876543210fedcba9876543210fedcba98", "false"
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	if got, want := FromBuildInfo(bi).String(), "devel (rev fedcba987654) go1.26.8"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// A stamped revision wins over the link-time one.
	bi.Settings = []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}
	if got := FromBuildInfo(bi).Revision; got != "abc" {
		t.Errorf("Revision = %q, want the stamped abc", got)
	}
}

func TestFromBuildInfoNothingKnown(t *testing.T) {
	defer func(v, r, m string) { version, revision, modified = v, r, m }(version, revision, modified)
	version, revision, modified = "", "", ""
	in := FromBuildInfo(nil)
	if in.Version != "devel" || in.Revision != "" || in.Go == "" {
		t.Errorf("FromBuildInfo(nil) = %+v", in)
	}
	if got := in.String(); got != "devel (rev unknown) "+in.Go {
		t.Errorf("String() = %q", got)
	}
}
