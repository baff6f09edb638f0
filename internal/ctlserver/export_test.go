package ctlserver

import (
	"context"
	"log/slog"
	"net"
	"time"
)

// ServeQuick is Serve with every timeout set to d, so tests can show that an
// event stream outlives them.
func ServeQuick(ctx context.Context, l net.Listener, b Backend, log *slog.Logger, d time.Duration) error {
	return serve(ctx, l, b, log, options{
		readHeaderTimeout: d, readTimeout: d, writeTimeout: d, idleTimeout: d,
		opTimeout: d, shutdownTimeout: d, eventWriteTimeout: d,
	})
}
