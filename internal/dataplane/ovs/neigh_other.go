//go:build !linux

package ovs

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/vishvananda/netns"
)

type noNeighbours struct{}

func newNeighbours(*netns.NsHandle, string) (neighbours, error) { return noNeighbours{}, nil }

var errNotLinux = errors.New("only available on Linux")

func (noNeighbours) resolve(context.Context, netip.Addr) (net.HardwareAddr, error) {
	return nil, errNotLinux
}
func (noNeighbours) setMTU(string, int) error { return errNotLinux }
func (noNeighbours) close()                   {}
