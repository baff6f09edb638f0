package daemon

import (
	"math/rand/v2"
	"testing"

	"github.com/goipsec/goipsec/ike"
	"github.com/goipsec/goipsec/sa"
)

// TestInstallerOwnsMatchesWalk checks the index of CHILD SAs by outbound
// SPI that owns reads (issue 9: an expiry event must not walk every CHILD
// SA): after random adds, replacements and drops, with outbound SPIs that
// peers share, owns answers what a walk over the children answers.
func TestInstallerOwnsMatchesWalk(t *testing.T) {
	i := &installer{children: make(map[uint32]*ikeChild)}
	r := rand.New(rand.NewPCG(9, 10))
	protos := []sa.Protocol{sa.ESP, sa.AH}
	walk := func(proto sa.Protocol, spi uint32) bool {
		for _, ch := range i.children {
			if ch.c.Protocol == proto && (ch.c.SPIIn == spi || ch.c.SPIOut == spi) {
				return true
			}
		}
		return false
	}
	for step := range 5000 {
		spiIn := 256 + uint32(r.IntN(64))
		if r.IntN(3) == 0 {
			i.dropLocked(i.children[spiIn])
		} else {
			i.addLocked(&ikeChild{c: ike.ChildSA{Protocol: protos[r.IntN(2)], SPIIn: spiIn, SPIOut: 256 + uint32(r.IntN(96))}})
		}
		for spi := uint32(250); spi < 360; spi++ {
			for _, p := range protos {
				if got, want := i.owns(p, spi), walk(p, spi); got != want {
					t.Fatalf("step %d: owns(%v, %d) is %v, the walk finds %v", step, p, spi, got, want)
				}
			}
		}
	}
}
