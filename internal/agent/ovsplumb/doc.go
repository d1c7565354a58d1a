// Package ovsplumb prepares a compute node's Open vSwitch for bagpipe-agent's
// OVS flavour (control-plane §4.2, dataplanes §5.5): it links br-tun and
// br-int to bagpipe-bgp's br-mpls with patch ports, gives each network with
// attachments on the host its local VLAN (allocating and tagging them
// itself, or reading the Neutron OVS agent's), and keeps br-tun's gateway
// redirection flows, which send a network's traffic for its gateway to
// br-mpls, in line with the host's desired state. It provides the facts the
// agent puts in the attach bodies: the network's VLAN and br-mpls's patch
// port numbers.
//
// What the original's OVS agent extension does, and what this package does
// differently:
//
//   - Flows carry one fixed cookie (Cookie), so that a restarted agent
//     finds its own flows. Every Prepare compares the flows wanted with a
//     dump of the flows carrying the cookie and changes only the
//     difference, in one OpenFlow bundle: a repeated Prepare costs one
//     OVSDB read and one dump, and a redirect whose network left is deleted
//     (the original's strict delete without dl_dst matched nothing and left
//     them behind). Flows lost to an ovs-vswitchd restart, or deleted by
//     someone, come back at the next Prepare, which the agent runs at
//     once: the Watcher's OpenFlow monitor of br-tun wakes it when it
//     connects again to a restarted ovs-vswitchd and when a flow with the
//     cookie is deleted (control-plane §6 D25); and periodically.
//   - The router MAC redirect follows the desired state: a router
//     interface that appears after the association replaces the ARP
//     responder at the next Prepare (the original changed it only on
//     association events).
//   - In own mode (ModeOwn, no Neutron OVS agent on the host), the VLAN map
//     lives in OVSDB only, in the Neutron agent's format (Port.tag and
//     Port.other_config net_uuid, network_type, physical_network,
//     segmentation_id, tag), and on br-int's Bridge row
//     (external_ids:bagpipe-vlan-<network>), so that a restart restores
//     it, also for a network whose VM ports left while the agent was
//     down (bagpipe-bgp may still use its VLAN); the VLANs br-tun's
//     bagpipe flows name for no restored network are quarantined. Own
//     mode refuses to run (Prepare fails) while br-tun has another
//     agent's flows in the Neutron tables: it would replace them. A network's
//     VLAN is released only when nothing of the network is desired or
//     applied any more (Release): bagpipe-bgp's flows still name it until
//     the last detach, and reusing it earlier would let traffic cross
//     between networks. A released VLAN is reused last.
//   - A missing bridge is an error of Prepare (the attachments stay
//     pending and Prepare is retried), not the end of the process.
//   - A VM plugged after its port's binding is tagged when it appears,
//     not at the next periodic pass: the Watcher follows OVSDB's
//     interfaces (ovsdb-client monitor) and wakes the agent, which
//     prepares OVS again.
//
// OVS is reached with ovs-vsctl, ovs-ofctl and ovsdb-client as child
// processes, with the process environment (OVS_RUNDIR and the like), as
// bagpipe-bgp's OVS drivers reach it. br-tun is spoken to in OpenFlow 1.3,
// which the Neutron agent leaves enabled on it.
package ovsplumb
