package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
)

// sqlStore is the Store of both databases.
type sqlStore struct {
	db *sql.DB
	d  *dialect
}

func (s *sqlStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Load reads every table in one transaction, so the snapshot is
// consistent even if another server writes meanwhile.
func (s *sqlStore) Load(ctx context.Context) (*model.Snapshot, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: s.d.loadIsolation})
	if err != nil {
		return nil, fmt.Errorf("store: load: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to undo
	snap := model.NewSnapshot()
	err = errors.Join(
		loadDocs(ctx, tx, "networks", snap.Networks, func(v *model.Network) string { return v.ID }),
		loadDocs(ctx, tx, "subnets", snap.Subnets, func(v *model.Subnet) string { return v.ID }),
		loadDocs(ctx, tx, "ports", snap.Ports, func(v *model.Port) string { return v.ID }),
		loadDocs(ctx, tx, "routers", snap.Routers, func(v *model.Router) string { return v.ID }),
		loadDocs(ctx, tx, "bgpvpns", snap.BGPVPNs, func(v *model.BGPVPN) string { return v.ID }),
		loadDocs(ctx, tx, "network_associations", snap.NetworkAssociations, func(v *model.NetworkAssociation) string { return v.ID }),
		loadDocs(ctx, tx, "router_associations", snap.RouterAssociations, func(v *model.RouterAssociation) string { return v.ID }),
		loadDocs(ctx, tx, "port_associations", snap.PortAssociations, func(v *model.PortAssociation) string { return v.ID }),
	)
	if err != nil {
		return nil, fmt.Errorf("store: load: %w", err)
	}
	return snap, nil
}

// loadDocs decodes every document of table into dst.
func loadDocs[T any](ctx context.Context, tx *sql.Tx, table string, dst map[string]*T, id func(*T) string) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, doc FROM "+table)
	if err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var rowID, doc string
		if err := rows.Scan(&rowID, &doc); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
		v := new(T)
		if err := json.Unmarshal([]byte(doc), v); err != nil {
			return fmt.Errorf("%s %s: decode document: %w", table, rowID, err)
		}
		if id(v) != rowID {
			return fmt.Errorf("%s %s: document has id %q", table, rowID, id(v))
		}
		dst[rowID] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	return nil
}

func (s *sqlStore) Apply(ctx context.Context, fn func(tx Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(&sqlTx{ctx: ctx, tx: tx, d: s.d}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		if s.d.isConstraint(err) {
			return fmt.Errorf("store: commit: %w: %w", ErrConflict, err)
		}
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// sqlTx implements Tx over one database transaction.
type sqlTx struct {
	ctx context.Context
	tx  *sql.Tx
	d   *dialect
}

func (t *sqlTx) exec(op, q string, args ...any) error {
	if _, err := t.tx.ExecContext(t.ctx, t.d.rebind(q), args...); err != nil {
		if t.d.isConstraint(err) {
			return fmt.Errorf("store: %s: %w: %w", op, ErrConflict, err)
		}
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

// upsert inserts or replaces the row whose first column is its id.
func (t *sqlTx) upsert(op, table string, cols []string, args ...any) error {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(table)
	b.WriteString(" (")
	b.WriteString(strings.Join(cols, ", "))
	b.WriteString(") VALUES (")
	b.WriteString(strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "))
	b.WriteString(") ON CONFLICT (")
	b.WriteString(cols[0])
	b.WriteString(") DO UPDATE SET ")
	for i, c := range cols[1:] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c + " = excluded." + c)
	}
	return t.exec(op, b.String(), args...)
}

func (t *sqlTx) delete(op, table, id string) error {
	return t.exec(op, "DELETE FROM "+table+" WHERE id = ?", id)
}

func doc(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("store: encode document: %w", err)
	}
	return string(b), nil
}

func (t *sqlTx) PutNetwork(n *model.Network) error {
	d, err := doc(n)
	if err != nil {
		return err
	}
	// A local network has no segment: NULL never collides. Every other
	// type keeps its id, 0 for flat, so the unique constraint covers one
	// flat network per physical network as well.
	var seg any = n.SegmentationID
	if n.NetworkType == model.NetworkLocal {
		seg = nil
	}
	return t.upsert("put network "+n.ID, "networks",
		[]string{"id", "project_id", "network_type", "physical_network", "segmentation_id", "doc"},
		n.ID, n.ProjectID, n.NetworkType, n.PhysicalNetwork, seg, d)
}

func (t *sqlTx) DeleteNetwork(id string) error {
	return t.delete("delete network "+id, "networks", id)
}

func (t *sqlTx) PutSubnet(s *model.Subnet) error {
	d, err := doc(s)
	if err != nil {
		return err
	}
	return t.upsert("put subnet "+s.ID, "subnets", []string{"id", "network_id", "project_id", "doc"},
		s.ID, s.NetworkID, s.ProjectID, d)
}

func (t *sqlTx) DeleteSubnet(id string) error {
	return t.delete("delete subnet "+id, "subnets", id)
}

func (t *sqlTx) PutPort(p *model.Port) error {
	d, err := doc(p)
	if err != nil {
		return err
	}
	op := "put port " + p.ID
	if err := t.upsert(op, "ports",
		[]string{"id", "network_id", "project_id", "mac_address", "host_id", "device_id", "doc"},
		p.ID, p.NetworkID, p.ProjectID, p.MAC, p.HostID, p.DeviceID, d); err != nil {
		return err
	}
	if err := t.exec(op, "DELETE FROM port_fixed_ips WHERE port_id = ?", p.ID); err != nil {
		return err
	}
	for _, f := range p.FixedIPs {
		if err := t.exec(op, "INSERT INTO port_fixed_ips (port_id, subnet_id, ip_address) VALUES (?, ?, ?)",
			p.ID, f.SubnetID, f.IP.String()); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqlTx) DeletePort(id string) error {
	return t.delete("delete port "+id, "ports", id)
}

func (t *sqlTx) PutRouter(r *model.Router) error {
	d, err := doc(r)
	if err != nil {
		return err
	}
	return t.upsert("put router "+r.ID, "routers", []string{"id", "project_id", "doc"}, r.ID, r.ProjectID, d)
}

func (t *sqlTx) DeleteRouter(id string) error {
	return t.delete("delete router "+id, "routers", id)
}

func (t *sqlTx) PutBGPVPN(b *model.BGPVPN) error {
	d, err := doc(b)
	if err != nil {
		return err
	}
	return t.upsert("put bgpvpn "+b.ID, "bgpvpns", []string{"id", "project_id", "type", "doc"},
		b.ID, b.ProjectID, b.Type, d)
}

func (t *sqlTx) DeleteBGPVPN(id string) error {
	return t.delete("delete bgpvpn "+id, "bgpvpns", id)
}

func (t *sqlTx) PutNetworkAssociation(a *model.NetworkAssociation) error {
	d, err := doc(a)
	if err != nil {
		return err
	}
	return t.upsert("put network association "+a.ID, "network_associations",
		[]string{"id", "bgpvpn_id", "network_id", "project_id", "doc"},
		a.ID, a.BGPVPNID, a.NetworkID, a.ProjectID, d)
}

func (t *sqlTx) DeleteNetworkAssociation(id string) error {
	return t.delete("delete network association "+id, "network_associations", id)
}

func (t *sqlTx) PutRouterAssociation(a *model.RouterAssociation) error {
	d, err := doc(a)
	if err != nil {
		return err
	}
	return t.upsert("put router association "+a.ID, "router_associations",
		[]string{"id", "bgpvpn_id", "router_id", "project_id", "doc"},
		a.ID, a.BGPVPNID, a.RouterID, a.ProjectID, d)
}

func (t *sqlTx) DeleteRouterAssociation(id string) error {
	return t.delete("delete router association "+id, "router_associations", id)
}

func (t *sqlTx) PutPortAssociation(a *model.PortAssociation) error {
	d, err := doc(a)
	if err != nil {
		return err
	}
	op := "put port association " + a.ID
	if err := t.upsert(op, "port_associations",
		[]string{"id", "bgpvpn_id", "port_id", "project_id", "doc"},
		a.ID, a.BGPVPNID, a.PortID, a.ProjectID, d); err != nil {
		return err
	}
	if err := t.exec(op, "DELETE FROM port_association_routes WHERE association_id = ?", a.ID); err != nil {
		return err
	}
	for _, r := range a.Routes {
		if r.Type != model.RouteBGPVPN {
			continue
		}
		if err := t.exec(op, "INSERT INTO port_association_routes (association_id, bgpvpn_id) VALUES (?, ?)",
			a.ID, r.BGPVPNID); err != nil {
			return err
		}
	}
	return nil
}

func (t *sqlTx) DeletePortAssociation(id string) error {
	return t.delete("delete port association "+id, "port_associations", id)
}
