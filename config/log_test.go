package config

import (
	"log/slog"
	"strings"
	"testing"
)

// TestDaemonLogSubsystems: daemon.log takes a level per subsystem; the
// others log at daemon.log.level.
func TestDaemonLogSubsystems(t *testing.T) {
	c, err := Parse("f.yaml", []byte("daemon:\n  log: {level: warn, format: json, subsystems: {ike: debug, dataplane: error, ctl: info}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Daemon.Log
	want := Log{Level: slog.LevelWarn, Format: "json"}
	want.Subsystems[0] = SubsystemLevel{true, slog.LevelDebug} // ike
	want.Subsystems[1] = SubsystemLevel{true, slog.LevelError} // dataplane
	want.Subsystems[5] = SubsystemLevel{true, slog.LevelInfo}  // ctl
	if l != want {
		t.Errorf("log %+v", l)
	}
	for name, lv := range map[string]slog.Level{"ike": slog.LevelDebug, "policy": slog.LevelWarn, "config": slog.LevelWarn} {
		if got := l.LevelOf(name); got != lv {
			t.Errorf("LevelOf(%s) = %v, want %v", name, got, lv)
		}
	}

	c, err = Parse("f.yaml", []byte("daemon:\n  log: {level: debug}\n"))
	if err != nil || c.Daemon.Log != (Log{Level: slog.LevelDebug, Format: "text"}) || c.Daemon.Log.LevelOf("ike") != slog.LevelDebug {
		t.Errorf("no subsystems: %+v, %v", c.Daemon.Log, err)
	}
}

// TestDaemonLogErrors: an unknown subsystem or level is an error at its
// file and line.
func TestDaemonLogErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"daemon:\n  log:\n    subsystems:\n      ikee: debug\n", "f.yaml:4: daemon.log.subsystems.ikee: unknown key (known keys: ike, dataplane, policy, config, daemon, ctl)"},
		{"daemon:\n  log:\n    subsystems: {ike: verbose}\n", "f.yaml:3: daemon.log.subsystems.ike: must be debug, info, warn or error, not \"verbose\""},
		{"daemon:\n  log:\n    subsystems: [ike]\n", "f.yaml:3: daemon.log.subsystems: must be a mapping"},
	} {
		_, err := Parse("f.yaml", []byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.in, err, tt.want)
		}
	}
}
