//go:build linux

package linux

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// TestConcurrentInstances drives several EVIs from their own goroutines,
// as the VPN layer does, over the driver's one netlink handle.
func TestConcurrentInstances(t *testing.T) {
	n := newNS(t)
	d := newDriver(t, n, DefaultOptions())
	const evis, macs = 4, 50
	insts := make([]dataplane.EVPNInstance, evis)
	for k := range evis {
		insts[k] = newEVIConfig(t, d, dataplane.InstanceConfig{ID: uint32(k + 1), ExternalID: fmt.Sprintf("net%d", k), Label: uint32(100 + k), PrefixLen: -1})
	}
	var wg sync.WaitGroup
	errs := make(chan error, evis)
	for k, e := range insts {
		wg.Go(func() {
			for m := range macs {
				mac := net.HardwareAddr{2, 0, 0, 0, byte(k), byte(m)}
				r := dataplane.RemoteMAC{MAC: mac, IP: netip.AddrFrom4([4]byte{10, 0, byte(k), byte(m + 1)}), NextHop: pe2, Label: uint32(100 + k)}
				if err := e.SetupRemoteMAC(t.Context(), r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := range evis {
		if got := len(n.fdb(t, fmt.Sprintf("vxlan--net%d", k))); got != macs {
			t.Errorf("vxlan--net%d has %d FDB entries, want %d", k, got, macs)
		}
		if got := len(n.neighs(t, fmt.Sprintf("vxlan--net%d", k))); got != macs {
			t.Errorf("vxlan--net%d has %d neighbours, want %d", k, got, macs)
		}
	}
	for _, e := range insts {
		if err := e.Cleanup(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	links, err := d.ourDevices()
	if err != nil || len(links) != 0 {
		t.Errorf("left after cleanup: %d devices, %v", len(links), err)
	}
}

// BenchmarkFDB compares remote MAC programming through the driver with a
// raw netlink loop writing the same entries on the same kind of device
// (the target: driver/raw ≥ 0.8). Compare the entries/s metrics.
func BenchmarkFDB(b *testing.B) {
	const distinct = 4096
	macOf := func(k int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, byte(k >> 8), byte(k)} }
	b.Run("driver", func(b *testing.B) {
		n := newNS(b)
		d := newDriver(b, n, DefaultOptions())
		e := newEVIConfig(b, d, dataplane.InstanceConfig{ID: 1, ExternalID: "net1", Label: 100, PrefixLen: -1})
		k := 0
		for b.Loop() {
			if err := e.SetupRemoteMAC(b.Context(), dataplane.RemoteMAC{MAC: macOf(k % distinct), NextHop: pe2, Label: 100}); err != nil {
				b.Fatal(err)
			}
			k++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("raw", func(b *testing.B) {
		n := newNS(b)
		d := newDriver(b, n, DefaultOptions())
		newEVIConfig(b, d, dataplane.InstanceConfig{ID: 1, ExternalID: "net1", Label: 100, PrefixLen: -1})
		vx := n.link(b, "vxlan--net1").Attrs().Index
		k := 0
		for b.Loop() {
			if err := n.h.NeighSet(remoteFDB(vx, macOf(k%distinct), pe2, 100)); err != nil {
				b.Fatal(err)
			}
			k++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}
