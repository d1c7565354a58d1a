package store_test

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	neturl "net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/store/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backends runs fn once per database: SQLite always, PostgreSQL with a
// real server (skipped, with the reason, where it is not installed).
// newURL gives each call an empty database.
func backends(t *testing.T, fn func(t *testing.T, newURL func(t *testing.T) string)) {
	t.Run("sqlite", func(t *testing.T) {
		// '#', '?' and '%' in the name: any file name works.
		fn(t, func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "bag#pipe?%41.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t)
		fn(t, func(t *testing.T) string { return srv.NewDatabase(t) })
	})
}

func open(t *testing.T, url string) store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

func res(id, project string) model.Resource {
	return model.Resource{ID: id, ProjectID: project, Name: "n-" + id, Description: "d", Tags: []string{"a", "b"},
		CreatedAt: t0, UpdatedAt: t0.Add(time.Minute), Revision: 3}
}

func u32(v uint32) *uint32 { return &v }
func intp(v int) *int      { return &v }

// fullSnapshot has one of every resource with every field set.
func fullSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Networks["n1"] = &model.Network{Resource: res("n1", "p1"), AdminStateUp: true, Shared: true, MTU: 1450,
		NetworkType: model.NetworkVXLAN, SegmentationID: 101, PortSecurityEnabled: true}
	s.Networks["n2"] = &model.Network{Resource: res("n2", "p1"), External: true, MTU: 1500,
		NetworkType: model.NetworkVLAN, PhysicalNetwork: "physnet1", SegmentationID: 101}
	s.Subnets["s1"] = &model.Subnet{Resource: res("s1", "p1"), NetworkID: "n1", IPVersion: 4,
		CIDR: netip.MustParsePrefix("10.0.0.0/24"), GatewayIP: netip.MustParseAddr("10.0.0.1"), EnableDHCP: true,
		AllocationPools: []model.IPRange{{Start: netip.MustParseAddr("10.0.0.2"), End: netip.MustParseAddr("10.0.0.254")}},
		DNSNameservers:  []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		HostRoutes:      []model.HostRoute{{Destination: netip.MustParsePrefix("198.51.100.0/24"), NextHop: netip.MustParseAddr("10.0.0.9")}}}
	s.Subnets["s6"] = &model.Subnet{Resource: res("s6", "p1"), NetworkID: "n1", IPVersion: 6,
		CIDR: netip.MustParsePrefix("2001:db8::/64"), IPv6RAMode: "slaac", IPv6AddressMode: "slaac"}
	s.Ports["pt1"] = &model.Port{Resource: res("pt1", "p1"), NetworkID: "n1", MAC: "fa:16:3e:00:00:01",
		AdminStateUp: true, Status: model.StatusActive, DeviceID: "vm1", DeviceOwner: "compute:nova",
		FixedIPs: []model.FixedIP{{SubnetID: "s1", IP: netip.MustParseAddr("10.0.0.5")},
			{SubnetID: "s6", IP: netip.MustParseAddr("2001:db8::f816:3eff:fe00:1")}},
		HostID: "h1", VIFType: "ovs", VNICType: model.VNICNormal,
		VIFDetails: map[string]any{"port_filter": true}, Profile: map[string]any{"k": "v"},
		SecurityGroups: []string{"sg1"}, AllowedAddressPairs: []map[string]string{{"ip_address": "10.0.0.99"}},
		PortSecurityEnabled: true}
	s.Routers["r1"] = &model.Router{Resource: res("r1", "p1"), AdminStateUp: true, Status: model.StatusActive,
		Gateway: &model.GatewayInfo{NetworkID: "n2", EnableSNAT: true},
		Routes:  []model.ExtraRoute{{Destination: netip.MustParsePrefix("203.0.113.0/24"), NextHop: netip.MustParseAddr("10.0.0.7")}}}
	s.BGPVPNs["b1"] = &model.BGPVPN{Resource: res("b1", "p1"), Type: model.BGPVPNL3,
		RouteTargets: []string{"64512:1"}, ImportTargets: []string{"64512:2"}, ExportTargets: []string{"64512:3"},
		RouteDistinguishers: []string{}, VNI: intp(4242), LocalPref: u32(100)}
	s.BGPVPNs["b2"] = &model.BGPVPN{Resource: res("b2", "p1"), Type: model.BGPVPNL3, RouteTargets: []string{"64512:9"}}
	s.NetworkAssociations["na1"] = &model.NetworkAssociation{ID: "na1", BGPVPNID: "b1", NetworkID: "n1", ProjectID: "p1"}
	s.RouterAssociations["ra1"] = &model.RouterAssociation{ID: "ra1", BGPVPNID: "b1", RouterID: "r1", ProjectID: "p1", AdvertiseExtraRoutes: true}
	s.PortAssociations["pa1"] = &model.PortAssociation{ID: "pa1", BGPVPNID: "b1", PortID: "pt1", ProjectID: "p1",
		AdvertiseFixedIPs: true, Routes: []model.PortRoute{
			{Type: model.RoutePrefix, Prefix: netip.MustParsePrefix("40.0.0.0/24"), LocalPref: u32(0)},
			{Type: model.RouteBGPVPN, BGPVPNID: "b2"}}}
	return s
}

// putAll writes a snapshot parents first.
func putAll(tx store.Tx, s *model.Snapshot) error {
	for _, v := range s.Networks {
		if err := tx.PutNetwork(v); err != nil {
			return err
		}
	}
	for _, v := range s.Subnets {
		if err := tx.PutSubnet(v); err != nil {
			return err
		}
	}
	for _, v := range s.Ports {
		if err := tx.PutPort(v); err != nil {
			return err
		}
	}
	for _, v := range s.Routers {
		if err := tx.PutRouter(v); err != nil {
			return err
		}
	}
	for _, v := range s.BGPVPNs {
		if err := tx.PutBGPVPN(v); err != nil {
			return err
		}
	}
	for _, v := range s.NetworkAssociations {
		if err := tx.PutNetworkAssociation(v); err != nil {
			return err
		}
	}
	for _, v := range s.RouterAssociations {
		if err := tx.PutRouterAssociation(v); err != nil {
			return err
		}
	}
	for _, v := range s.PortAssociations {
		if err := tx.PutPortAssociation(v); err != nil {
			return err
		}
	}
	return nil
}

func load(t *testing.T, st store.Store) *model.Snapshot {
	t.Helper()
	s, err := st.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func TestStoreRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		url := newURL(t)
		st := open(t, url)
		if got := load(t, st); !reflect.DeepEqual(got, model.NewSnapshot()) {
			t.Fatalf("new database: Load = %+v, want empty", got)
		}
		want := fullSnapshot()
		if err := st.Apply(t.Context(), func(tx store.Tx) error { return putAll(tx, want) }); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if got := load(t, st); !reflect.DeepEqual(got, want) {
			t.Fatalf("Load after Apply differs:\n got %#v\nwant %#v", got, want)
		}

		// A second server process (a new Open of the same database, which
		// runs the migrations again: they must be idempotent) sees it all.
		st2 := open(t, url)
		if got := load(t, st2); !reflect.DeepEqual(got, want) {
			t.Fatalf("Load after reopen differs:\n got %#v\nwant %#v", got, want)
		}

		// Replace and delete.
		upd := *want.Ports["pt1"]
		upd.HostID = "h2"
		upd.FixedIPs = []model.FixedIP{{SubnetID: "s1", IP: netip.MustParseAddr("10.0.0.6")}}
		upd.Revision++
		err := st.Apply(t.Context(), func(tx store.Tx) error {
			return errors.Join(tx.PutPort(&upd), tx.DeletePortAssociation("pa1"), tx.DeleteRouterAssociation("ra1"),
				tx.DeleteNetworkAssociation("na1"), tx.DeleteBGPVPN("b2"), tx.DeleteNetworkAssociation("missing"))
		})
		if err != nil {
			t.Fatalf("Apply update: %v", err)
		}
		want.Ports["pt1"] = &upd
		delete(want.PortAssociations, "pa1")
		delete(want.RouterAssociations, "ra1")
		delete(want.NetworkAssociations, "na1")
		delete(want.BGPVPNs, "b2")
		if got := load(t, st2); !reflect.DeepEqual(got, want) {
			t.Fatalf("Load after update differs:\n got %#v\nwant %#v", got, want)
		}
		// The old address is free again: another port can take it.
		err = st.Apply(t.Context(), func(tx store.Tx) error {
			return tx.PutPort(&model.Port{Resource: res("pt2", "p1"), NetworkID: "n1", MAC: "fa:16:3e:00:00:02",
				FixedIPs: []model.FixedIP{{SubnetID: "s1", IP: netip.MustParseAddr("10.0.0.5")}}})
		})
		if err != nil {
			t.Fatalf("reusing a released address: %v", err)
		}
	})
}

// TestStoreConstraints checks that the database itself refuses what the
// API must never let through: the second line of defence.
func TestStoreConstraints(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		st := open(t, newURL(t))
		base := fullSnapshot()
		if err := st.Apply(t.Context(), func(tx store.Tx) error { return putAll(tx, base) }); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		net := func(id, typ, physnet string, seg int) *model.Network {
			return &model.Network{Resource: res(id, "p1"), NetworkType: typ, PhysicalNetwork: physnet, SegmentationID: seg}
		}
		port := func(id, network, mac string, ips ...model.FixedIP) *model.Port {
			return &model.Port{Resource: res(id, "p1"), NetworkID: network, MAC: mac, FixedIPs: ips}
		}
		ip := func(subnet, a string) model.FixedIP {
			return model.FixedIP{SubnetID: subnet, IP: netip.MustParseAddr(a)}
		}
		cases := []struct {
			name     string
			fn       func(tx store.Tx) error
			conflict bool
		}{
			{"same VNI twice", func(tx store.Tx) error { return tx.PutNetwork(net("n3", "vxlan", "", 101)) }, true},
			{"another VNI", func(tx store.Tx) error { return tx.PutNetwork(net("n3", "vxlan", "", 102)) }, false},
			{"same VLAN other physnet", func(tx store.Tx) error { return tx.PutNetwork(net("n3", "vlan", "physnet2", 101)) }, false},
			{"same VLAN same physnet", func(tx store.Tx) error { return tx.PutNetwork(net("n3", "vlan", "physnet1", 101)) }, true},
			{"two flat on one physnet", func(tx store.Tx) error {
				return errors.Join(tx.PutNetwork(net("f1", "flat", "physnet1", 0)), tx.PutNetwork(net("f2", "flat", "physnet1", 0)))
			}, true},
			{"two local networks", func(tx store.Tx) error {
				return errors.Join(tx.PutNetwork(net("l1", "local", "", 0)), tx.PutNetwork(net("l2", "local", "", 0)))
			}, false},
			{"MAC twice on a network", func(tx store.Tx) error { return tx.PutPort(port("pt2", "n1", "fa:16:3e:00:00:01")) }, true},
			{"MAC on another network", func(tx store.Tx) error { return tx.PutPort(port("pt2", "n2", "fa:16:3e:00:00:01")) }, false},
			{"IP twice on a subnet", func(tx store.Tx) error {
				return tx.PutPort(port("pt2", "n1", "fa:16:3e:00:00:02", ip("s1", "10.0.0.5")))
			}, true},
			{"port on a missing network", func(tx store.Tx) error { return tx.PutPort(port("pt2", "nx", "fa:16:3e:00:00:02")) }, true},
			{"IP on a missing subnet", func(tx store.Tx) error {
				return tx.PutPort(port("pt2", "n1", "fa:16:3e:00:00:02", ip("sx", "10.0.0.8")))
			}, true},
			{"network association twice", func(tx store.Tx) error {
				return tx.PutNetworkAssociation(&model.NetworkAssociation{ID: "na2", BGPVPNID: "b1", NetworkID: "n1", ProjectID: "p1"})
			}, true},
			{"router association twice", func(tx store.Tx) error {
				return tx.PutRouterAssociation(&model.RouterAssociation{ID: "ra2", BGPVPNID: "b1", RouterID: "r1", ProjectID: "p1"})
			}, true},
			{"port association twice", func(tx store.Tx) error {
				return tx.PutPortAssociation(&model.PortAssociation{ID: "pa2", BGPVPNID: "b1", PortID: "pt1", ProjectID: "p1"})
			}, true},
			{"association to a missing BGPVPN", func(tx store.Tx) error {
				return tx.PutNetworkAssociation(&model.NetworkAssociation{ID: "na2", BGPVPNID: "bx", NetworkID: "n1", ProjectID: "p1"})
			}, true},
			{"delete a network with subnets", func(tx store.Tx) error { return tx.DeleteNetwork("n1") }, true},
			{"delete a subnet with addresses", func(tx store.Tx) error { return tx.DeleteSubnet("s1") }, true},
			{"delete a BGPVPN a route leaks from", func(tx store.Tx) error {
				return errors.Join(tx.DeleteNetworkAssociation("na1"), tx.DeleteRouterAssociation("ra1"), tx.DeleteBGPVPN("b2"))
			}, true},
			{"delete a port with an association", func(tx store.Tx) error { return tx.DeletePort("pt1") }, true},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				errStop := errors.New("roll back")
				var inner error
				err := st.Apply(t.Context(), func(tx store.Tx) error {
					inner = c.fn(tx)
					if inner != nil {
						return inner
					}
					return errStop // keep the base state for the next case
				})
				if c.conflict {
					if !errors.Is(err, store.ErrConflict) {
						t.Fatalf("got %v, want ErrConflict", err)
					}
				} else if !errors.Is(err, errStop) {
					t.Fatalf("got %v, want success", err)
				}
				if got := load(t, st); !reflect.DeepEqual(got, base) {
					t.Fatalf("state changed by a rolled back transaction")
				}
			})
		}
	})
}

// TestStoreRollback: a failed transaction leaves nothing behind, even
// its writes that succeeded before the failure.
func TestStoreRollback(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		st := open(t, newURL(t))
		n := &model.Network{Resource: res("n1", "p1"), NetworkType: "vxlan", SegmentationID: 7}
		boom := errors.New("boom")
		err := st.Apply(t.Context(), func(tx store.Tx) error {
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Apply = %v, want the function's error", err)
		}
		err = st.Apply(t.Context(), func(tx store.Tx) error {
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
			return tx.PutSubnet(&model.Subnet{Resource: res("s1", "p1"), NetworkID: "missing"})
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Apply = %v, want ErrConflict", err)
		}
		if got := load(t, st); len(got.Networks) != 0 {
			t.Fatalf("rolled back network persisted: %v", got.Networks)
		}
	})
}

// TestStoreMigrations: the schema is recorded, and a database written by
// a newer server is refused rather than misread.
func TestStoreMigrations(t *testing.T) {
	backends(t, func(t *testing.T, newURL func(t *testing.T) string) {
		url := newURL(t)
		st := open(t, url)
		st.Close()
		driver, dsn := "sqlite", "file:"+(&neturl.URL{Path: strings.TrimPrefix(url, "sqlite://")}).EscapedPath()
		if strings.HasPrefix(url, "postgres") {
			driver, dsn = "pgx", url
		}
		db, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n, v int
		if err := db.QueryRowContext(t.Context(), "SELECT count(*), max(version) FROM schema_version").Scan(&n, &v); err != nil {
			t.Fatalf("schema_version: %v", err)
		}
		if n != 1 || v != 1 {
			t.Fatalf("schema_version has %d rows, max %d; want 1 row, version 1", n, v)
		}
		if driver == "sqlite" {
			// The server left the file in WAL mode (a persistent setting).
			var mode string
			if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Fatalf("journal_mode = %q (%v), want wal", mode, err)
			}
		}
		if _, err := db.ExecContext(t.Context(), "INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'future', 'x')"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err = store.Open(t.Context(), url)
		if err == nil || !strings.Contains(err.Error(), "newer") {
			t.Fatalf("Open of a newer schema = %v, want a refusal", err)
		}
	})
}

func TestOpenBadURL(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{"", "mysql://x", "sqlite://", "sqlite:///nonexistent-dir/x.db"} {
		if st, err := store.Open(ctx, url); err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded", url)
		}
	}
	_, err := store.Open(ctx, "mysql://user:secret@host/db")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v: want a refusal that hides the password", err)
	}
}
