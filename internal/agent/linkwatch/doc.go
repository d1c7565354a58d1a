// Package linkwatch is bagpipe-agent's port watcher of the Linux bridge
// flavour (agent.PortWatcher): it follows the kernel's link notifications
// (rtnetlink) in the agent's network namespace and tells the agent when a
// link it may be waiting for appears, so that an attach bagpipe-bgp
// refused because the VM's tap did not exist yet is retried at once.
//
// Only a link new to the watcher counts: the other notifications of a
// link (up, down, put in a bridge by bagpipe-bgp itself) would wake the
// agent after each of its own attaches. When the subscription fails (the
// socket's buffer overflowed and notifications were lost), the watcher
// subscribes again, listing the existing links, which all count as new:
// what appeared meanwhile is reported. On systems other than Linux, Run
// does nothing until its context ends.
package linkwatch
