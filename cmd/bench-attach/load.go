package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bagpipe-go/bagpipe/client"
)

// workload is the request bodies of one cell, built before any clock
// starts: port i gets tap i, MAC 52:54:00 + i, IP 10/8 + i + 1, and
// belongs to instance i mod instances, whose route target is its own
// (64512:k+1), as the Neutron agent's networks have theirs.
type workload struct {
	typ       string // client.EVPN or client.IPVPN
	instances int
	attach    [][]byte
	detach    [][]byte
}

func buildWorkload(typ string, instances, n int) (*workload, error) {
	w := &workload{typ: typ, instances: instances, attach: make([][]byte, n), detach: make([][]byte, n)}
	for i := range n {
		k := i % instances
		rt := fmt.Sprintf("64512:%d", k+1)
		ip := fmt.Sprintf("10.%d.%d.%d", (i+1)>>16&255, (i+1)>>8&255, (i+1)&255)
		a := client.AttachRequest{
			VPNType:       typ,
			VPNInstanceID: fmt.Sprintf("bench-%s-%d", typ, k),
			MACAddress:    fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&255, i>>8&255, i&255),
			IPAddress:     ip,
			LocalPort:     client.LocalPort{LinuxIf: fmt.Sprintf("tap%06d", i)},
			ImportRT:      []string{rt},
			ExportRT:      []string{rt},
		}
		if typ == client.IPVPN {
			a.GatewayIP = "10.0.0.1"
		}
		d := client.DetachRequest{VPNType: typ, VPNInstanceID: a.VPNInstanceID, MACAddress: a.MACAddress, IPAddress: ip, LocalPort: a.LocalPort}
		var err error
		if w.attach[i], err = json.Marshal(a); err != nil {
			return nil, err
		}
		if w.detach[i], err = json.Marshal(d); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// routes is the number of routes the node advertises with every port
// attached: one per port, and an E-VPN instance's multicast route.
func (w *workload) routes() int {
	if w.typ == client.EVPN {
		return len(w.attach) + w.instances
	}
	return len(w.attach)
}

// summaryCounts reads the looking glass summary's instance and local route
// counts.
func summaryCounts(ctx context.Context, cl *client.Client) (instances, local int, err error) {
	raw, err := cl.LookingGlass(ctx, "summary")
	if err != nil {
		return 0, 0, err
	}
	var s struct {
		Instances int `json:"vpn_instances_count"`
		Routes    struct {
			Local int `json:"local_routes_count"`
		} `json:"route_counts"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, 0, fmt.Errorf("looking glass summary: %w", err)
	}
	return s.Instances, s.Routes.Local, nil
}

// waitCounts polls the summary until it shows the instances and routes
// wanted, and returns when it first did; errSettle after limit.
func waitCounts(ctx context.Context, cl *client.Client, instances, routes int, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		in, lr, err := summaryCounts(ctx, cl)
		if err != nil {
			return time.Time{}, err
		}
		if in == instances && lr == routes {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%w: after %v the looking glass shows %d instances and %d local routes, want %d and %d",
				errSettle, limit, in, lr, instances, routes)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var errSettle = errors.New("the node did not reach the expected state")
