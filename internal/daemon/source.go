package daemon

import (
	"context"
	"errors"

	"github.com/goipsec/goipsec/config"
	"github.com/goipsec/goipsec/ctlapi"
)

// PolicySource supplies shared policy that is merged with the local
// configuration file (policy_sources; internal/policysource implements it
// for etcd). The daemon applies every configuration through it: at start,
// on each reload of the local file, and on each change of the source.
type PolicySource interface {
	// Apply merges local, the local file's configuration, with the
	// source's policy in force and calls apply with the result; merge
	// errors are config errors. Calls to apply never interleave.
	Apply(local *config.Config, apply func(*config.Config) error) error
	// Run follows the source until ctx ends, calling apply with each new
	// merged configuration and refused with the error of each one
	// refused (the policy in force then stays). The callbacks may run
	// under the source's lock: they must not call Status.
	Run(ctx context.Context, apply func(*config.Config) error, refused func(error))
	// Status reports the source's state for the control API.
	Status() ctlapi.PolicySource
}

// configure applies local, merged with Options.Source's policy if there
// is one, through apply (Daemon.apply or Reconfig).
func (d *Daemon) configure(local *config.Config, apply func(*config.Config) error) error {
	if d.opts.Source == nil {
		return apply(local)
	}
	return d.opts.Source.Apply(local, apply)
}

// runSource follows Options.Source until Close; each change goes through
// the same path as a reload (Reconfig), and each refusal is logged by the
// source and published as an event.
func (d *Daemon) runSource(ctx context.Context) {
	defer close(d.sourceDone)
	cfgLog := subsystemLog(d.opts.Logger, "config")
	// The callbacks run while the source holds its lock: no Status here.
	kind := d.opts.Source.Status().Kind
	event := func(result, errText string) {
		f := map[string]string{"source": kind, "result": result}
		if errText != "" {
			f["error"] = errText
		}
		d.events.publish(ctlapi.Event{Type: ctlapi.EventPolicySource, Time: d.opts.Now(), Fields: f})
	}
	d.opts.Source.Run(ctx, func(cfg *config.Config) error {
		err := d.Reconfig(cfg)
		switch {
		case err == nil, isOnlyPending(err):
			cfgLog.Info("policy from the shared source applied", "pending", d.Pending())
			event("applied", "")
			return nil
		case errors.Is(err, ErrNoChanges):
			return nil
		}
		return err
	}, func(err error) {
		event("refused", err.Error())
	})
}
