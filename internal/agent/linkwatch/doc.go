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
// what appeared meanwhile is reported. Without CAP_NET_ADMIN, the
// socket's receive buffer is asked for without being forced past the
// system's limit; a subscription refused for want of a privilege is not
// retried: Run returns why. On systems other than Linux, Run does nothing
// until its context ends.
package linkwatch
