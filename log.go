package ipsec

import (
	"io"
	"log/slog"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/internal/daemon"
)

// NewLogger returns a logger for Server.Logger that follows daemon.log:
// text or JSON on w, and a level per subsystem (config.LogSubsystems),
// told apart by each record's "subsystem" attribute. A Server whose Logger
// comes from NewLogger applies the levels of every configuration it
// reloads; the format stays the one of c.
func NewLogger(w io.Writer, c config.Log) *slog.Logger {
	return slog.New(daemon.NewLogHandler(w, c))
}
