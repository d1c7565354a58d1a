//go:build linux

package cptestbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
)

// API is a minimal client of bagpipe-server's Neutron API, plain JSON over
// HTTP: what the benchmark creates and what the convergence checks read.
// (The end-to-end tests drive the API with gophercloud; a command cannot
// depend on it.)
type API struct {
	base string // without /v2.0
	hc   *http.Client
}

// NewAPI is a client of the API at base (http://host:port) through hc.
func NewAPI(base string, hc *http.Client) *API {
	return &API{base: strings.TrimSuffix(base, "/"), hc: hc}
}

// StatusError is an answer other than the one expected.
type StatusError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// Network is a network as the API shows it.
type Network struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	NetworkType    string `json:"provider:network_type"`
	SegmentationID int    `json:"provider:segmentation_id"`
}

// Port is a port as the API shows it.
type Port struct {
	ID        string `json:"id"`
	NetworkID string `json:"network_id"`
	MAC       string `json:"mac_address"`
	FixedIPs  []struct {
		SubnetID  string `json:"subnet_id"`
		IPAddress string `json:"ip_address"`
	} `json:"fixed_ips"`
	HostID       string `json:"binding:host_id"`
	AdminStateUp bool   `json:"admin_state_up"`
	DeviceOwner  string `json:"device_owner"`
	Status       string `json:"status"`
}

// IPv4 is the port's first IPv4 address, the one its E-VPN attachment
// carries (control-plane §3.4); invalid when it has none.
func (p Port) IPv4() netip.Addr {
	for _, f := range p.FixedIPs {
		if a, err := netip.ParseAddr(f.IPAddress); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// do sends body (when not nil) as JSON and decodes the answer into out
// (when not nil); an answer other than want is a *StatusError.
func (a *API) do(ctx context.Context, method, path string, body, out any, want int) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return a.doRaw(ctx, method, path, raw, out, want)
}

// doRaw is do with the body already encoded (nil for none).
func (a *API) doRaw(ctx context.Context, method, path string, body []byte, out any, want int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	res, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if res.StatusCode != want {
		if len(data) > 512 {
			data = data[:512]
		}
		return &StatusError{Method: method, Path: path, Status: res.StatusCode, Body: string(bytes.TrimSpace(data))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}

// CreateNetwork creates a vxlan network with segmentation id vni.
func (a *API) CreateNetwork(ctx context.Context, name string, vni int) (Network, error) {
	var out struct {
		Network Network `json:"network"`
	}
	body := map[string]any{"network": map[string]any{
		"name": name, "provider:network_type": "vxlan", "provider:segmentation_id": vni,
	}}
	err := a.do(ctx, http.MethodPost, "/v2.0/networks", body, &out, http.StatusCreated)
	return out.Network, err
}

// CreateSubnet creates an IPv4 subnet of cidr on network and returns its
// id.
func (a *API) CreateSubnet(ctx context.Context, network, cidr string) (string, error) {
	var out struct {
		Subnet struct {
			ID string `json:"id"`
		} `json:"subnet"`
	}
	body := map[string]any{"subnet": map[string]any{"network_id": network, "cidr": cidr, "ip_version": 4}}
	err := a.do(ctx, http.MethodPost, "/v2.0/subnets", body, &out, http.StatusCreated)
	return out.Subnet.ID, err
}

// PortBody is the body of a create of a VM's port on network, as Nova
// asks for one (device_owner compute:nova), bound to host unless host is
// empty: the server allocates its MAC and IP.
func PortBody(network, host string) []byte {
	port := map[string]any{"network_id": network, "device_owner": "compute:nova"}
	if host != "" {
		port["binding:host_id"] = host
	}
	b, _ := json.Marshal(map[string]any{"port": port})
	return b
}

// BindPort binds a port to host (binding:host_id), as Nova does once it
// has chosen the VM's host.
func (a *API) BindPort(ctx context.Context, id, host string) (Port, error) {
	var out struct {
		Port Port `json:"port"`
	}
	body := map[string]any{"port": map[string]any{"binding:host_id": host}}
	err := a.do(ctx, http.MethodPut, "/v2.0/ports/"+id, body, &out, http.StatusOK)
	return out.Port, err
}

// CreatePort creates a port from a PortBody.
func (a *API) CreatePort(ctx context.Context, body []byte) (Port, error) {
	var out struct {
		Port Port `json:"port"`
	}
	err := a.doRaw(ctx, http.MethodPost, "/v2.0/ports", body, &out, http.StatusCreated)
	return out.Port, err
}

// DeletePort deletes a port.
func (a *API) DeletePort(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodDelete, "/v2.0/ports/"+id, nil, nil, http.StatusNoContent)
}

// Ports lists every port.
func (a *API) Ports(ctx context.Context) ([]Port, error) {
	var out struct {
		Ports []Port `json:"ports"`
	}
	err := a.do(ctx, http.MethodGet, "/v2.0/ports", nil, &out, http.StatusOK)
	return out.Ports, err
}

// Networks lists every network.
func (a *API) Networks(ctx context.Context) ([]Network, error) {
	var out struct {
		Networks []Network `json:"networks"`
	}
	err := a.do(ctx, http.MethodGet, "/v2.0/networks", nil, &out, http.StatusOK)
	return out.Networks, err
}
