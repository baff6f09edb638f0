package ipsec

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/internal/daemon"
	"github.com/goipsec/goipsec/internal/policysource"
)

// openPolicySource connects to the shared policy source that cfg names
// (policy_sources.etcd), if any, and reads its policy, or the cached one
// when the cluster does not answer, before anything is applied. It returns
// a nil source without one; closeClient closes the connection once the
// daemon stopped.
func openPolicySource(cfg *config.Config, log *slog.Logger) (src daemon.PolicySource, closeClient func() error, err error) {
	e := cfg.PolicySources.Etcd
	if e == nil {
		return nil, nil, nil
	}
	client, err := policysource.Dial(*e)
	if err != nil {
		return nil, nil, fmt.Errorf("ipsec: %w", err)
	}
	s := policysource.New(policysource.Options{Etcd: *e, Client: client, Logger: log.With("subsystem", "config")})
	// An error here is logged and shown by Status: the cached policy, or
	// the file alone, is in force until the cluster answers.
	_ = s.Load(context.Background(), cfg)
	return s, client.Close, nil
}
