package ident

import (
	"fmt"
	"math"
	"net/netip"
	"sync"

	gb "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/bagpipe-go/bagpipe/internal/bgp"
)

// Label range: 0..15 are reserved MPLS labels (RFC 3032), and a label is
// 20 bits wide. The same pool serves as VXLAN VNIs for E-VPN.
const (
	MinLabel = 16
	MaxLabel = 1<<20 - 1
)

// NewLabelAllocator returns the allocator for MPLS labels and VNIs.
func NewLabelAllocator() *Allocator { return newAllocator(MinLabel, MaxLabel) }

// RDAllocator hands out type-1 route distinguishers "<local address>:<index>"
// with index in 0..65535, for VPN instances and for endpoints.
type RDAllocator struct {
	local netip.Addr
	ids   *Allocator
}

// NewRDAllocator returns an RD allocator for the BGP local address local,
// which must be IPv4: a type-1 RD has room for four address bytes only.
func NewRDAllocator(local netip.Addr) (*RDAllocator, error) {
	if !local.Is4() {
		return nil, fmt.Errorf("RD allocator: local address %v is not IPv4", local)
	}
	return &RDAllocator{local: local, ids: newAllocator(0, math.MaxUint16)}, nil
}

// Allocate returns a new RD, recording description for it.
func (r *RDAllocator) Allocate(description string) (bgp.RD, error) {
	idx, err := r.ids.Allocate(description)
	if err != nil {
		return nil, fmt.Errorf("route distinguisher: %w", err)
	}
	rd, err := bgp.NewRDIP(r.local, uint16(idx))
	if err != nil {
		// Cannot happen with an IPv4 local address; give the index back anyway.
		_ = r.ids.Release(idx)
		return nil, err
	}
	return rd, nil
}

// Release frees an RD returned by Allocate. RDs of another type or another
// address were not allocated here and are refused.
func (r *RDAllocator) Release(rd bgp.RD) error {
	idx, err := r.index(rd)
	if err != nil {
		return err
	}
	if err := r.ids.Release(uint32(idx)); err != nil {
		return fmt.Errorf("route distinguisher %s: %w", rd, err)
	}
	return nil
}

func (r *RDAllocator) index(rd bgp.RD) (uint16, error) {
	t, ok := rd.(*gb.RouteDistinguisherIPAddressAS)
	if !ok || t == nil {
		return 0, fmt.Errorf("release route distinguisher %v: not a type-1 RD: %w", rd, ErrNotAllocated)
	}
	if t.Admin != r.local {
		return 0, fmt.Errorf("release route distinguisher %s: address is not %s: %w", rd, r.local, ErrNotAllocated)
	}
	return t.Assigned, nil
}

// LocalAddress returns the address the RDs are built from.
func (r *RDAllocator) LocalAddress() netip.Addr { return r.local }

// InUse returns how many RDs are currently allocated.
func (r *RDAllocator) InUse() int { return r.ids.InUse() }

// Snapshot returns the allocated RDs as text ("192.0.2.1:5") with their
// descriptions.
func (r *RDAllocator) Snapshot() map[string]string {
	snap := r.ids.Snapshot()
	out := make(map[string]string, len(snap))
	for idx, d := range snap {
		out[fmt.Sprintf("%s:%d", r.local, idx)] = d
	}
	return out
}

// Counter issues increasing ids that are never reused, for VPN instance ids:
// instance names (VRF-3, EVI-4) and worker names derive from them, and a
// reused name could be confused with the instance that had it before.
type Counter struct {
	first, max uint32

	mu   sync.Mutex
	next uint64 // one past max once exhausted
}

// NewInstanceIDCounter returns the instance id counter: 1 .. 2^32-1.
func NewInstanceIDCounter() *Counter { return &Counter{first: 1, max: math.MaxUint32, next: 1} }

// NewCounter returns a counter issuing first, first+1, ... up to max (tests
// use it to start near the end of the range).
func NewCounter(first, max uint32) (*Counter, error) {
	if first > max {
		return nil, fmt.Errorf("counter: first %d above maximum %d", first, max)
	}
	return &Counter{first: first, max: max, next: uint64(first)}, nil
}

// Next issues the next id.
func (c *Counter) Next() (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next > uint64(c.max) {
		return 0, fmt.Errorf("%w: max instance id was reached", ErrExhausted)
	}
	id := uint32(c.next)
	c.next++
	return id, nil
}

// Unissue takes back id if it is the last one issued, so that a creation
// that failed before anything saw the id does not burn it. It reports
// whether the id was taken back; when another id was issued since, it is
// not, and the id simply stays unused.
func (c *Counter) Unissue(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id < c.first || uint64(id)+1 != c.next {
		return false
	}
	c.next--
	return true
}

// Issued returns how many ids the counter handed out (net of Unissue) since
// it was created, for metrics.
func (c *Counter) Issued() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next - uint64(c.first)
}
