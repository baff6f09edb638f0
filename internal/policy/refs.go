package policy

import (
	"fmt"
	"math"
)

// refManualBase and refChildBase keep manual SAs and connection children in
// separate Ref ranges, so that the Ref of a rule says which one it is.
const (
	refManualBase = 1
	refChildBase  = 1 << 16
)

// refs allocates the Refs of PROTECT rules by name: a manual SA's name, or
// "connection/child". A name keeps its Ref across reloads for as long as it
// exists, so that the SAs installed under it stay with their rule whatever
// is added, removed or reordered around it; a Ref is never given to another
// name in the process's lifetime (the counters only grow). Each Snapshot
// holds the table it was compiled with; Compile copies the previous one.
type refs struct {
	byName             map[string]uint32
	nextManual, nextCh uint64
}

func newRefs(prev *Snapshot) *refs {
	r := &refs{byName: map[string]uint32{}, nextManual: refManualBase, nextCh: refChildBase}
	if prev != nil && prev.refs != nil {
		r.nextManual, r.nextCh = prev.refs.nextManual, prev.refs.nextCh
	}
	return r
}

// manual returns the Ref of manual SA name, kept from prev if it had one.
func (r *refs) manual(prev *Snapshot, name string) (uint32, error) {
	return r.get(prev, "manual:"+name, &r.nextManual, refChildBase-1)
}

// child returns the Ref of child of connection conn.
func (r *refs) child(prev *Snapshot, conn, child string) (uint32, error) {
	return r.get(prev, "child:"+conn+"/"+child, &r.nextCh, math.MaxUint32)
}

func (r *refs) get(prev *Snapshot, key string, next *uint64, last uint64) (uint32, error) {
	if ref, ok := r.byName[key]; ok {
		return ref, nil
	}
	if prev != nil && prev.refs != nil {
		if ref, ok := prev.refs.byName[key]; ok {
			r.byName[key] = ref
			return ref, nil
		}
	}
	if *next > last {
		// Refuse rather than give a used Ref to another name.
		return 0, fmt.Errorf("policy: no Ref left for %s (restart the daemon)", key)
	}
	ref := uint32(*next)
	*next++
	r.byName[key] = ref
	return ref, nil
}
