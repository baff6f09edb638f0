package daemon

import (
	"context"
	"io"
	"log/slog"

	"github.com/goipsec/goipsec/config"
)

// LogHandler is the daemon's slog.Handler (daemon.log): it writes text or
// JSON and filters each record by the level of its subsystem, the value
// of the "subsystem" attribute its logger was given with Logger.With
// (config.LogSubsystems). Records of a logger without one are filtered by
// daemon.log.level. The daemon gives each engine a logger with its
// subsystem, so "daemon.log.subsystems: {ike: debug}" shows the IKE
// engine's debug records and no other's.
//
// SetLevels changes the levels of every logger derived from the handler;
// the daemon calls it on each reload, so levels change without a restart.
// A LogHandler is safe for concurrent use.
type LogHandler struct {
	out     slog.Handler
	levels  *logLevels
	level   *slog.LevelVar // the level of this handler's subsystem
	grouped bool           // attributes now go into a group: not a subsystem
}

// logLevels are the levels shared by a LogHandler and those derived from
// it: daemon.log.level, then one per config.LogSubsystems.
type logLevels struct {
	base slog.LevelVar
	subs [len(config.LogSubsystems)]slog.LevelVar
}

// NewLogHandler returns a handler writing to w in c.Format ("json", or
// text otherwise) at the levels of c.
func NewLogHandler(w io.Writer, c config.Log) *LogHandler {
	// The inner handler lets everything through: the levels are ours.
	opts := &slog.HandlerOptions{Level: slog.Level(-100)}
	h := &LogHandler{out: slog.NewTextHandler(w, opts), levels: new(logLevels)}
	if c.Format == "json" {
		h.out = slog.NewJSONHandler(w, opts)
	}
	h.level = &h.levels.base
	h.SetLevels(c)
	return h
}

// SetLevels sets the level of every subsystem from c; c.Format is ignored
// (the output format is chosen at start only).
func (h *LogHandler) SetLevels(c config.Log) {
	h.levels.base.Set(c.Level)
	for i, name := range config.LogSubsystems {
		h.levels.subs[i].Set(c.LevelOf(name))
	}
}

// Enabled reports whether the subsystem's level lets l through.
func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle writes r.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error { return h.out.Handle(ctx, r) }

// WithAttrs returns a handler with attrs; a "subsystem" attribute naming
// one of config.LogSubsystems selects that subsystem's level.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.out = h.out.WithAttrs(attrs)
	if !h.grouped {
		for _, a := range attrs {
			if a.Key != "subsystem" {
				continue
			}
			for i, name := range config.LogSubsystems {
				if a.Value.String() == name {
					n.level = &h.levels.subs[i]
				}
			}
		}
	}
	return &n
}

// WithGroup returns a handler that puts later attributes in group name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.out, n.grouped = h.out.WithGroup(name), true
	return &n
}

// subsystemLog returns log for subsystem name (config.LogSubsystems).
func subsystemLog(log *slog.Logger, name string) *slog.Logger { return log.With("subsystem", name) }

// setLogLevels applies c to log's handler if it is a LogHandler; a
// handler of the embedding program's own keeps its levels.
func setLogLevels(log *slog.Logger, c config.Log) {
	if h, ok := log.Handler().(*LogHandler); ok {
		h.SetLevels(c)
	}
}
