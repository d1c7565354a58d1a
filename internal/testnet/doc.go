// Package testnet builds small networks of Linux network namespaces for
// tests and the demo: "hosts" on one layer-2 fabric, and "VMs" behind a
// host, all configured through netlink and removed again by Close.
//
// A Net owns a fabric namespace holding one bridge, "fabric". Each host
// (AddHost) is a namespace whose "eth0" is one end of a veth pair; the other
// end, "f-<host>", is a port of the fabric bridge. The fabric lives in its
// own namespace, never in the caller's, so the machine's own interfaces and
// routes are never touched. A VM (Host.AddVM) is a namespace below a host:
// its "eth0" is one end of a veth pair whose other end, "tap-<vm>", stays in
// the host's namespace, up and unplugged, for a dataplane driver to enslave
// to its bridge the way Neutron would plug a tap.
//
// # Names and leftovers
//
// Every namespace name starts with Prefix, then the creating process's PID
// and a random tag: "bgptn-<pid>-<tag>" for the fabric, "<that>-<host>" for
// a host and "<host namespace>.<vm>" for a VM. Parallel test binaries and
// leftovers of earlier runs therefore never collide, and Sweep can tell a
// crashed run's namespaces (their PID no longer exists) from those of a run
// still going. Nothing here touches a namespace it did not name that way.
//
// # Running code inside a namespace
//
//   - Host.Do runs Go code on an OS thread switched into the namespace;
//     sockets opened there stay in the namespace (Host.Listen, Host.Dial).
//   - Host.Handle and Host.NewHandle give netlink handles bound to it.
//   - Host.Exec and Host.Start run programs in it through `ip netns exec`.
//     Every process is tracked and stopped by PID at Close, and any other
//     process still found in one of the Net's namespaces at Close is killed
//     by PID and reported as an error, since it escaped its owner.
//
// # Open vSwitch
//
// Host.StartOVS runs a private ovsdb-server and ovs-vswitchd inside a
// host's namespace (userspace datapath); OVS.PlugVM puts a VM's tap on one
// of its bridges and OVS.PlugUplink the host's eth0. ovs.go notes what
// userspace tunnels and veth checksum offload need on this kind of machine.
//
// Everything needs root and a kernel with network namespaces, veth and
// bridge support: tests call Require, which skips with the reason (or, when
// CI is set in the environment, fails, since CI machines must support it).
//
// Addresses given to hosts and VMs in this project's tests come from the
// TEST-NET ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).
package testnet
