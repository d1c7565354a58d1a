package neutronapi

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"time"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
)

// txn is one write in progress: a working copy of the snapshot (each map
// copied on its first change, objects replaced, never modified) and the
// store writes that make the same change.
type txn struct {
	s       *model.Snapshot
	owned   uint8
	changes []func(store.Tx) error
	now     time.Time
}

// Bits of txn.owned: which maps of s are already private copies.
const (
	ownNetworks uint8 = 1 << iota
	ownSubnets
	ownPorts
	ownRouters
	ownBGPVPNs
	ownNetAssocs
	ownRouterAssocs
	ownPortAssocs
)

func newTxn(cur *model.Snapshot, now time.Time) *txn {
	s := *cur
	return &txn{s: &s, now: now}
}

// own makes *m the working copy's private map.
func own[T any](w *txn, bit uint8, m *map[string]*T) {
	if w.owned&bit == 0 {
		c := maps.Clone(*m)
		if c == nil {
			c = map[string]*T{}
		}
		*m = c
		w.owned |= bit
	}
}

func (w *txn) record(f func(store.Tx) error) { w.changes = append(w.changes, f) }

func (w *txn) putNetwork(v *model.Network) {
	own(w, ownNetworks, &w.s.Networks)
	w.s.Networks[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutNetwork(v) })
}

func (w *txn) deleteNetwork(id string) {
	own(w, ownNetworks, &w.s.Networks)
	delete(w.s.Networks, id)
	w.record(func(tx store.Tx) error { return tx.DeleteNetwork(id) })
}

func (w *txn) putSubnet(v *model.Subnet) {
	own(w, ownSubnets, &w.s.Subnets)
	w.s.Subnets[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutSubnet(v) })
}

func (w *txn) deleteSubnet(id string) {
	own(w, ownSubnets, &w.s.Subnets)
	delete(w.s.Subnets, id)
	w.record(func(tx store.Tx) error { return tx.DeleteSubnet(id) })
}

func (w *txn) putPort(v *model.Port) {
	own(w, ownPorts, &w.s.Ports)
	w.s.Ports[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutPort(v) })
}

func (w *txn) deletePort(id string) {
	own(w, ownPorts, &w.s.Ports)
	delete(w.s.Ports, id)
	w.record(func(tx store.Tx) error { return tx.DeletePort(id) })
}

func (w *txn) putRouter(v *model.Router) {
	own(w, ownRouters, &w.s.Routers)
	w.s.Routers[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutRouter(v) })
}

func (w *txn) deleteRouter(id string) {
	own(w, ownRouters, &w.s.Routers)
	delete(w.s.Routers, id)
	w.record(func(tx store.Tx) error { return tx.DeleteRouter(id) })
}

func (w *txn) putBGPVPN(v *model.BGPVPN) {
	own(w, ownBGPVPNs, &w.s.BGPVPNs)
	w.s.BGPVPNs[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutBGPVPN(v) })
}

func (w *txn) deleteBGPVPN(id string) {
	own(w, ownBGPVPNs, &w.s.BGPVPNs)
	delete(w.s.BGPVPNs, id)
	w.record(func(tx store.Tx) error { return tx.DeleteBGPVPN(id) })
}

func (w *txn) putNetAssoc(v *model.NetworkAssociation) {
	own(w, ownNetAssocs, &w.s.NetworkAssociations)
	w.s.NetworkAssociations[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutNetworkAssociation(v) })
}

func (w *txn) deleteNetAssoc(id string) {
	own(w, ownNetAssocs, &w.s.NetworkAssociations)
	delete(w.s.NetworkAssociations, id)
	w.record(func(tx store.Tx) error { return tx.DeleteNetworkAssociation(id) })
}

func (w *txn) putRouterAssoc(v *model.RouterAssociation) {
	own(w, ownRouterAssocs, &w.s.RouterAssociations)
	w.s.RouterAssociations[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutRouterAssociation(v) })
}

func (w *txn) deleteRouterAssoc(id string) {
	own(w, ownRouterAssocs, &w.s.RouterAssociations)
	delete(w.s.RouterAssociations, id)
	w.record(func(tx store.Tx) error { return tx.DeleteRouterAssociation(id) })
}

func (w *txn) putPortAssoc(v *model.PortAssociation) {
	own(w, ownPortAssocs, &w.s.PortAssociations)
	w.s.PortAssociations[v.ID] = v
	w.record(func(tx store.Tx) error { return tx.PutPortAssociation(v) })
}

func (w *txn) deletePortAssoc(id string) {
	own(w, ownPortAssocs, &w.s.PortAssociations)
	delete(w.s.PortAssociations, id)
	w.record(func(tx store.Tx) error { return tx.DeletePortAssociation(id) })
}

// touched returns r with updated_at now and the revision incremented,
// for an update.
func touched(r model.Resource, now time.Time) model.Resource {
	r.UpdatedAt = now
	r.Revision++
	return r
}

// write runs op on a working copy under the write lock, commits its
// changes in one store transaction, publishes the new snapshot, and calls
// OnChange (after the lock is released). op's error, or the store's,
// leaves everything as it was.
func (a *API) write(ctx context.Context, op func(w *txn) error) error {
	committed, err := a.commit(ctx, op)
	if committed && a.hooks.OnChange != nil {
		a.hooks.OnChange()
	}
	return err
}

// commit is write's locked part; the deferred unlock keeps the API
// usable even if op panics (the handler turns that into a 500).
func (a *API) commit(ctx context.Context, op func(w *txn) error) (bool, error) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	w := newTxn(a.snap.Load(), a.now())
	if err := op(w); err != nil || len(w.changes) == 0 {
		return false, err
	}
	err := a.st.Apply(ctx, func(tx store.Tx) error {
		for _, c := range w.changes {
			if err := c(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		// The API's own checks should have caught it: either a bug, or
		// another server writing the same database.
		a.log.Warn("store refused a write the API accepted", "err", err)
		return false, newError(http.StatusConflict, "Conflict", "the request conflicts with the stored state; retry")
	}
	if err != nil {
		return false, err
	}
	a.snap.Store(w.s)
	return true, nil
}
