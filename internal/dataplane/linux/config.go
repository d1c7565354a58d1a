package linux

import (
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netns"
)

// Name is the driver's name in the looking glass, the original's class
// name.
const Name = "LinuxVXLANDataplaneDriver"

// Config builds a driver.
type Config struct {
	// LocalAddress is the dataplane's local (VTEP) address; required, IPv4.
	LocalAddress netip.Addr
	// Options are the driver's settings (DefaultOptions when zero is not
	// wanted: use ParseOptions).
	Options Options
	// Netns is the network namespace to program; nil means the one the
	// calling goroutine's thread is in when New runs (the daemon's).
	Netns *netns.NsHandle
	// ConfigLG is shown as the looking glass's "config" (the section as
	// configured).
	ConfigLG map[string]any
	// Logger receives state changes (Info) and per-entry detail (Debug);
	// nil discards them.
	Logger *slog.Logger
	// WaitForBGP starts the reconcile grace period when BGPSettled is
	// called (the daemon calls it once every peer has sent End-of-RIB)
	// instead of at adoption, so that what was inherited from the previous
	// run is kept while BGP is still down (dataplanes §9 #57).
	WaitForBGP bool
}
