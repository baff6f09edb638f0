package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/conn/conntest"
	"github.com/goipsec/goipsec/tun/tuntest"
)

func parseLog(t *testing.T, y string) config.Log {
	t.Helper()
	c, err := config.Parse("f.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c.Daemon.Log
}

// TestLogHandlerSubsystemLevels: each subsystem logs at its own level,
// the others and loggers without a subsystem at daemon.log.level, in JSON
// with the subsystem attribute.
func TestLogHandlerSubsystemLevels(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(&buf, parseLog(t, "daemon:\n  log: {level: info, format: json, subsystems: {ike: debug, dataplane: error}}\n")))
	ikeLog, dpLog, polLog := subsystemLog(log, "ike"), subsystemLog(log, "dataplane"), subsystemLog(log, "policy")
	ikeLog.Debug("ike debug")
	ikeLog.With("peer", "b").Debug("ike debug with peer")
	dpLog.Warn("dataplane warn")
	dpLog.Error("dataplane error")
	polLog.Debug("policy debug")
	polLog.Info("policy info")
	log.Debug("plain debug")
	log.Info("plain info")
	log.WithGroup("g").With("subsystem", "ike").Debug("grouped debug")

	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		got = append(got, rec["msg"].(string)+"/"+fmtAny(rec["subsystem"]))
	}
	want := []string{"ike debug/ike", "ike debug with peer/ike", "dataplane error/dataplane", "policy info/policy", "plain info/"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("logged %q\nwant   %q", got, want)
	}
}

func fmtAny(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// TestReloadChangesLogLevels: a reload applies new levels to the loggers
// already handed out, without a restart, and counts as a change.
func TestReloadChangesLogLevels(t *testing.T) {
	cfg := manualConfig(t, "a", "")
	h := NewLogHandler(io.Discard, cfg.Daemon.Log)
	next := cfg
	nw := conntest.NewNetwork(1024)
	d, err := New(cfg, Options{TUN: tuntest.New(1400, 16, 256), UDP: nw.UDP(netip.MustParseAddrPort("192.0.2.1:4500"), 16, 256),
		Logger: slog.New(h), Load: func(string) (*config.Config, error) { return next, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ikeLog := subsystemLog(slog.New(h), "ike")
	if ikeLog.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("ike debug enabled at level info")
	}
	next = manualConfig(t, "a", "daemon:\n  log: {level: warn, subsystems: {ike: debug}}\n")
	res, err := d.Reload(context.Background())
	if err != nil || !res.Changed {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	if !ikeLog.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("ike debug not enabled after the reload")
	}
	if d.log.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("daemon info still enabled at level warn")
	}
}

// BenchmarkLogHandlerFiltered is the cost of a debug record that a
// subsystem's level filters out.
func BenchmarkLogHandlerFiltered(b *testing.B) {
	log := subsystemLog(slog.New(NewLogHandler(io.Discard, config.Log{Level: slog.LevelInfo})), "dataplane")
	b.ReportAllocs()
	for b.Loop() {
		log.Debug("filtered", "n", 1)
	}
}

// BenchmarkLogHandlerText is the cost of a record written as text.
func BenchmarkLogHandlerText(b *testing.B) {
	log := subsystemLog(slog.New(NewLogHandler(io.Discard, config.Log{Level: slog.LevelInfo})), "dataplane")
	b.ReportAllocs()
	for b.Loop() {
		log.Info("written", "n", 1)
	}
}
