package daemon

import (
	"testing"

	"github.com/goipsec/goipsec/ike"
)

// TestCountRekeys: the rekey events of the engine count, IKE and CHILD
// apart, and a rekeyed IKE SA that ends later is no failed handshake.
func TestCountRekeys(t *testing.T) {
	d := &Daemon{stats: newStats()}
	d.countIKEEvent(ike.Event{Kind: ike.EventIKEUp, SPIi: 1})
	d.countIKEEvent(ike.Event{Kind: ike.EventChildRekeyed, SPIi: 1})
	d.countIKEEvent(ike.Event{Kind: ike.EventChildRekeyed, SPIi: 1})
	d.countIKEEvent(ike.Event{Kind: ike.EventIKERekeyed, SPIi: 2})
	d.countIKEEvent(ike.Event{Kind: ike.EventIKEDown, SPIi: 2, Err: errTest})
	s := d.stats
	if s.childRekeys.Load() != 2 || s.ikeRekeys.Load() != 1 || s.failed.Load() != 0 || s.completed.Load() != 1 {
		t.Errorf("rekeys: child %d, ike %d; failed %d, completed %d; want 2, 1, 0, 1",
			s.childRekeys.Load(), s.ikeRekeys.Load(), s.failed.Load(), s.completed.Load())
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("daemon: test")
