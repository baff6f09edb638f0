package ike

import (
	"log/slog"
	"runtime"
	"testing"
)

// sessions returns the sessions of m.
func (m *Manager) sessions() []*session {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ss []*session
	for a := range m.actors {
		ss = append(ss, a.s)
	}
	return ss
}

// TestEstablishedSessionDropsHandshake checks that an established IKE SA
// keeps none of the handshake's state (the IKE_SA_INIT messages, nonces,
// key exchange data), in both roles, and still rekeys and deletes.
func TestEstablishedSessionDropsHandshake(t *testing.T) {
	for _, suite := range []string{"aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-x25519-ke1_mlkem768"} {
		t.Run(suite, func(t *testing.T) {
			pa, pb := peerPair(t, suite, "aes256gcm16")
			p := newStepPair(t, pa, pb, nil)
			if err := p.a.m.Initiate("b", "net", nil); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			for _, nd := range []*node{p.a, p.b} {
				ss := nd.m.sessions()
				if len(ss) != 1 || ss[0].state != StateEstablished {
					t.Fatalf("%v: %d sessions, want 1 established", nd.addr, len(ss))
				}
				if ss[0].handshake != nil {
					t.Errorf("%v: the established IKE SA keeps its handshake state", nd.addr)
				}
			}
			if err := p.a.m.Rekey("b", ""); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			if err := p.b.m.Rekey("a", "net"); err != nil {
				t.Fatal(err)
			}
			p.net.run(20)
			checkKeys(t, p.a.inst, p.b.inst, 1)
		})
	}
}

// BenchmarkEstablishedIKESAMemory reports the heap that one established
// IKE SA pair (both ends, one CHILD SA, two Managers) holds.
func BenchmarkEstablishedIKESAMemory(b *testing.B) {
	const n = 200
	quiet := slog.New(slog.DiscardHandler)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		pairs := make([]*stepPair, n)
		for i := range pairs {
			pa, pb := peerPair(b, "aes256gcm16-prfsha384-x25519-ke1_mlkem768", "aes256gcm16")
			pairs[i] = newStepPair(b, pa, pb, func(a, b *Config) { a.Logger, b.Logger = quiet, quiet })
			if err := pairs[i].a.m.Initiate("b", "net", nil); err != nil {
				b.Fatal(err)
			}
			pairs[i].net.run(20)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/pair")
		runtime.KeepAlive(pairs)
	}
}
