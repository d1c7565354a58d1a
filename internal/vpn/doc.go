// Package vpn is bagpipe-bgp's VPN layer: the manager that creates a VPN
// instance on the first attach naming an unknown external id and removes it
// after its last detach, and the instances themselves, which advertise
// routes for their local endpoints through the engine and turn the routes
// they receive into dataplane calls (vpn-and-api §3).
//
// Each instance runs one goroutine, started when the instance is created and
// stopped when it is removed. Attach and detach calls for the instance, and
// the route events the engine queues for it, are all executed there, so the
// instance's bookkeeping, its routes and its dataplane calls happen in one
// order and need no lock. The manager only keeps the map of instances and
// the process-wide allocators (labels, route distinguishers, instance ids);
// after a restart that kept the dataplane, it also keeps the labels the
// previous run gave its endpoints for them until the driver lets them go
// (AdoptDataplanes).
//
// Attach and detach are transactional: an attach that fails gives back
// every label and route distinguisher it took, withdraws nothing it did not
// advertise, and an instance whose first attach fails disappears with
// everything it allocated (vpn-and-api §8 #1–#3). Endpoints are keyed by the
// parsed MAC address and IP address, not by their text (§8 #6).
//
// The two instance types are the E-VPN instance (EVI, evi.go) and the
// IP-VPN instance (VRF, vrf.go). A VRF also readvertises routes (§3.8),
// attracts traffic with default and FlowSpec routes (§3.9), installs the
// traffic classifiers of the FlowSpec routes it imports, redirecting into
// "redirect-to-ipvpn-ASN_NN" instances the manager keeps while they are
// used, and can be stitched to an EVI (§3.7). An instance goroutine waits
// for another in two cases only: a VRF for an EVI (stitching; an EVI waits
// for nobody), and a VRF for the end of a redirect instance that is
// tearing down (teardown waits for no VRF). The users of redirect
// instances are the manager's bookkeeping, under its lock. So no two
// instances ever wait for each other.
package vpn
