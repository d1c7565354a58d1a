// Package linux is the E-VPN dataplane driver over the Linux bridge and the
// kernel VXLAN device (dataplanes spec §3), re-instated from the original's
// removed "linux" driver and programmed through netlink only: one persistent
// netlink.Handle for the namespace the driver manages, no ip/bridge/brctl
// processes.
//
// Per E-VPN instance (EVI) the driver owns a bridge "evpn---<EXT>" and a
// VXLAN device "vxlan--<EXT>" (EXT = external instance id, cut to fit the
// 15-character interface names), VNI = the instance label, learning off,
// ARP proxy on, destination port vxlan_dst_port, optional MTU. Local ports
// join the bridge with a static bridge FDB entry for their MAC; remote MACs
// are permanent FDB entries on the VXLAN device pointing at the remote VTEP;
// each remote VTEP of the flooding list is an all-zero MAC entry (head-end
// replication); each remote MAC/IP route adds a permanent neighbour on the
// VXLAN device, which answers ARP for it from the bridge.
//
// # Options ([DATAPLANE_DRIVER_EVPN], dataplane_driver = linux)
//
//   - vxlan_dst_port: UDP destination port, default 4789; empty leaves the
//     kernel's default.
//   - vxlan_mtu: MTU of the VXLAN devices, default unset (kernel default).
//   - preserve_dataplane: reconcile at start-up instead of wiping, default
//     true.
//   - reconcile_grace_period: seconds before stale entries and unadopted
//     devices are removed after a restart, default 120.
//
// VTEPs are IPv4 (the local address and every remote next hop); a route
// with an IPv6 next hop is refused with an error.
//
// # Changes from the original (dataplanes §11)
//
//   - Cleanup really deletes the VXLAN device, so re-creating an instance
//     with the same EXT works.
//   - The local MAC is a "master static" bridge FDB entry, not a "self"
//     entry in the tap's own address list.
//   - Names cannot collide: every device carries the alias
//     "bagpipe:<EXT>"; when the cut name is taken by another EXT the driver
//     uses "<prefix>~<7 hex digits of SHA-256(EXT)>", and later runs find the
//     device by its alias whatever its name.
//   - Bridge-port learning is off on the VXLAN port (the FDB comes from BGP).
//   - The VXLAN MTU is an option (vxlan_mtu).
//   - Removing a remote MAC whose neighbour is already gone still removes
//     the FDB entry; every "exists"/"not found" answer counts as success.
//   - Reset and reconcile match exact name prefixes and the link kind
//     (bridge, vxlan), and skip devices whose alias names another owner.
//
// # Remote VTEPs must suppress ARP
//
// A VXLAN device with "proxy" (the original's choice, kept) consumes every
// ARP frame the bridge sends out through it: it answers requests from its
// neighbours and drops everything else, replies included (the kernel's
// arp_reduce). A remote VTEP's ARP request, flooded here, reaches the local
// VM, but the VM's reply never leaves the host. Remote VTEPs must therefore
// answer their VMs' ARP requests themselves from our MAC/IP routes, as this
// driver does: FRR needs "neigh_suppress on" on its VXLAN bridge port and
// an SVI (see test/frr; with neigh_suppress off there, FRR's VM never
// resolves ours and the pings fail).
//
// # Restart: adopt, mark, sweep
//
// With preserve_dataplane (the default) a restarted daemon does not wipe
// what the previous run left: AdoptState (run by dataplane.Lazy instead of
// ResetState) notes the driver's devices, and NewInstance adopts the
// instance's bridge and VXLAN device when they exist with the expected
// configuration (same ifindex: no traffic loss), fixing in place what can be
// fixed (up state, master, MTU, port learning, bridge STP and forward delay)
// and re-creating a VXLAN device whose VNI, local address, destination port
// or learning/proxy flags differ. The FDB, neighbour and local entries and
// the bridge ports found on an adopted instance are marked stale, never
// removed at adoption. Each plug, route setup or BUM addition that covers
// a stale entry confirms it (re-programming it with a replace, which the
// kernel applies without removing the entry). When reconcile_grace_period
// has passed since the adoption, every entry still stale is removed (the
// sweep); devices noted by AdoptState that no instance adopted within the
// same period are deleted. SweepStale runs the sweep at once (for a caller
// that knows the VPN layer's initial sync is over, e.g. after End-of-RIB).
// ResetState, used by the cleanup tool and when preserve_dataplane is off,
// removes every device of the driver at once.
package linux
