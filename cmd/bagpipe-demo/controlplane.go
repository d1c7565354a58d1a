//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bagpipe-go/bagpipe/internal/controlplane/bus"
	"github.com/bagpipe-go/bagpipe/internal/controlplane/model"
	"github.com/bagpipe-go/bagpipe/internal/testnet"
)

// serverArgs are bagpipe-server's arguments: its defaults (SQLite file and
// embedded NATS store in its working directory, no authentication) but
// for the listeners, on the controller's fabric address, which the
// agents reach over the fabric.
func serverArgs(ctl netip.Addr) []string {
	return []string{
		"-listen", netip.AddrPortFrom(ctl, neutronPort).String(),
		"-nats-listen", netip.AddrPortFrom(ctl, natsPort).String(),
	}
}

// agentArgs are a node's bagpipe-agent arguments: its host id (the name
// ports are bound to), the bus, the Linux bridge flavour (taps in
// per-network bridges, as the Linux bridge agent plugs them) and a ping
// of bagpipe-bgp, which is also its status report, every second. Its
// bagpipe-bgp is at the default URL, http://127.0.0.1:8082.
func agentArgs(host string, ctl netip.Addr) []string {
	return []string{"-host", host, "-nats-url", "nats://" + netip.AddrPortFrom(ctl, natsPort).String(),
		"-flavour", "linuxbridge", "-ping-interval", "1s"}
}

// neutronURL is the server's API as the demo and the agents see it.
func neutronURL(ctl netip.Addr) string {
	return "http://" + netip.AddrPortFrom(ctl, neutronPort).String()
}

// neutron is a client of bagpipe-server's Neutron API, plain JSON over
// HTTP, that prints each call as the curl command that would make it.
type neutron struct {
	base string // http://203.0.113.9:9696
	hc   *http.Client
	say  func(format string, args ...any)
}

// call sends body (when not nil) as JSON to path with method, prints the
// call, and decodes the answer into out (when not nil). An answer other
// than 2xx is an error with the server's message.
func (c *neutron) call(ctx context.Context, method, path string, body, out any) error {
	line := "$ curl -s"
	if method != http.MethodGet {
		line += " -X " + method
	}
	line += " $API" + path
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		line += " -d '" + string(b) + "'"
		rd = bytes.NewReader(b)
	}
	c.say("%s", line)
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, res.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}

// apiNetwork, apiSubnet and apiPort are what the demo reads of the API's
// resources.
type apiNetwork struct {
	ID             string `json:"id"`
	NetworkType    string `json:"provider:network_type"`
	SegmentationID int    `json:"provider:segmentation_id"`
}

type apiSubnet struct {
	ID        string `json:"id"`
	CIDR      string `json:"cidr"`
	GatewayIP string `json:"gateway_ip"`
}

type apiPort struct {
	ID       string `json:"id"`
	MAC      string `json:"mac_address"`
	FixedIPs []struct {
		IPAddress string `json:"ip_address"`
	} `json:"fixed_ips"`
	HostID  string `json:"binding:host_id"`
	VIFType string `json:"binding:vif_type"`
	Status  string `json:"status"`
}

// createNetwork creates a vxlan network with its segmentation id (the
// VNI) and its IPv4 subnet.
func (c *neutron) createNetwork(ctx context.Context, s netSpec) (apiNetwork, apiSubnet, error) {
	var n struct {
		Network apiNetwork `json:"network"`
	}
	err := c.call(ctx, http.MethodPost, "/v2.0/networks", map[string]any{"network": map[string]any{
		"name": s.name, "provider:network_type": "vxlan", "provider:segmentation_id": s.vni}}, &n)
	if err != nil {
		return apiNetwork{}, apiSubnet{}, err
	}
	c.say("  → network %s %s, %s with VNI %d", s.name, n.Network.ID, n.Network.NetworkType, n.Network.SegmentationID)
	var sn struct {
		Subnet apiSubnet `json:"subnet"`
	}
	err = c.call(ctx, http.MethodPost, "/v2.0/subnets", map[string]any{"subnet": map[string]any{
		"network_id": n.Network.ID, "cidr": s.cidr, "ip_version": 4}}, &sn)
	if err != nil {
		return apiNetwork{}, apiSubnet{}, err
	}
	c.say("  → subnet %s %s, gateway %s", sn.Subnet.ID, sn.Subnet.CIDR, sn.Subnet.GatewayIP)
	return n.Network, sn.Subnet, nil
}

// createPort creates a VM's port on network bound to host, as Nova asks
// for one: the server allocates its MAC and IP.
func (c *neutron) createPort(ctx context.Context, network, host string) (apiPort, error) {
	var p struct {
		Port apiPort `json:"port"`
	}
	err := c.call(ctx, http.MethodPost, "/v2.0/ports", map[string]any{"port": map[string]any{
		"network_id": network, "binding:host_id": host, "device_owner": "compute:nova"}}, &p)
	if err != nil {
		return apiPort{}, err
	}
	if len(p.Port.FixedIPs) == 0 {
		return apiPort{}, fmt.Errorf("port %s has no IP address", p.Port.ID)
	}
	return p.Port, nil
}

// ports lists the ports.
func (c *neutron) ports(ctx context.Context) ([]apiPort, error) {
	var out struct {
		Ports []apiPort `json:"ports"`
	}
	err := c.call(ctx, http.MethodGet, "/v2.0/ports", nil, &out)
	return out.Ports, err
}

// nsDialer dials from inside a namespace (a nats.CustomDialer): the bus
// listens on the controller's fabric address, which only namespaces on
// the fabric reach.
type nsDialer struct{ host *testnet.Host }

func (d nsDialer) Dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return d.host.Dial(ctx, network, address)
}

// busWatch is the demo's view of the bus: each node's desired states as
// the server publishes them on the node's own subject (what its agent
// receives) and the agent's status reports.
type busWatch struct {
	nc   *nats.Conn
	subj map[string]bus.Subjects // by host

	mu      sync.Mutex
	desired map[string][]seenState
	status  map[string]bus.Status
}

// seenState is a desired state and when the demo received it.
type seenState struct {
	st model.HostState
	at time.Time
}

// watchBus connects to the bus at url from inside host's namespace and
// follows the subjects of hosts.
func watchBus(url string, host *testnet.Host, hosts []string) (*busWatch, error) {
	nc, err := nats.Connect(url, nats.Name("bagpipe-demo"), nats.SetCustomDialer(nsDialer{host}),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("bus at %s: %w", url, err)
	}
	w := &busWatch{nc: nc, subj: map[string]bus.Subjects{}, desired: map[string][]seenState{}, status: map[string]bus.Status{}}
	for _, h := range hosts {
		s, err := bus.HostSubjects(h)
		if err != nil {
			nc.Close()
			return nil, err
		}
		w.subj[h] = s
		if _, err := nc.Subscribe(s.Desired, func(m *nats.Msg) {
			var st model.HostState
			if json.Unmarshal(m.Data, &st) == nil {
				w.mu.Lock()
				w.desired[h] = append(w.desired[h], seenState{st: st, at: time.Now()})
				w.mu.Unlock()
			}
		}); err != nil {
			nc.Close()
			return nil, fmt.Errorf("bus: subscribe %s: %w", s.Desired, err)
		}
		if _, err := nc.Subscribe(s.Status, func(m *nats.Msg) {
			var st bus.Status
			if json.Unmarshal(m.Data, &st) == nil {
				w.mu.Lock()
				w.status[h] = st
				w.mu.Unlock()
			}
		}); err != nil {
			nc.Close()
			return nil, fmt.Errorf("bus: subscribe %s: %w", s.Status, err)
		}
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: %w", err)
	}
	return w, nil
}

// close ends the connection.
func (w *busWatch) close() { w.nc.Close() }

// lastState is host's last desired state seen, and when.
func (w *busWatch) lastState(host string) (seenState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.desired[host]
	if len(s) == 0 {
		return seenState{}, false
	}
	return s[len(s)-1], true
}

// statusOf is the last status report of host's agent.
func (w *busWatch) statusOf(host string) (bus.Status, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, ok := w.status[host]
	return st, ok
}

// firstStateWith is the first desired state of host seen at or after
// since whose attachments satisfy ok, and when it came.
func (w *busWatch) firstStateWith(host string, since time.Time, ok func([]model.Attachment) bool) (seenState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.desired[host] {
		if !s.at.Before(since) && ok(s.st.Attachments) {
			return s, true
		}
	}
	return seenState{}, false
}

// attachmentLine describes an attachment as the agent receives it.
func attachmentLine(a model.Attachment) string {
	s := fmt.Sprintf("%s %s: port %s, MAC %s, IP %s", a.VPNType, shortID(a.VPNInstanceID), short(a.PortID), a.MACAddress, a.IPAddress)
	if a.VNI != 0 {
		s += ", VNI " + strconv.Itoa(a.VNI)
	}
	if a.GatewayIP != "" {
		s += ", gateway " + a.GatewayIP
	}
	s += fmt.Sprintf(", import %v export %v", a.ImportRT, a.ExportRT)
	if a.StitchEVPN != "" {
		s += ", plugged through " + shortID(a.StitchEVPN)
	}
	return s
}

// short is the start of a UUID, enough to tell resources apart.
func short(id string) string { return id[:min(8, len(id))] }

// shortID is a VPN instance id ("evpn_<network id>") with the start of
// the network id only.
func shortID(id string) string {
	kind, uuid, ok := strings.Cut(id, "_")
	if !ok || len(uuid) <= 8 {
		return id
	}
	return kind + "_" + short(uuid) + "…"
}

// shortIDs joins shortID of each id.
func shortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = shortID(id)
	}
	return strings.Join(out, ", ")
}
