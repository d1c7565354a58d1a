package bus

import "time"

// Status is an agent's report on its host's status subject: a heartbeat,
// sent on every change and at a steady interval, from which the server
// learns agent liveness and which ports are programmed (control-plane §7.2,
// §7.3, §7.5).
type Status struct {
	// Host is the agent's host; the receiving side overwrites it with the
	// host of the subject, which permissions tie to the agent.
	Host string `json:"host"`
	// Generation is the generation of the desired state the agent works
	// on; 0 before it has received any.
	Generation uint64 `json:"generation"`
	// Reconciled says every attachment of Generation is applied to
	// bagpipe-bgp and nothing is left to detach.
	Reconciled bool `json:"reconciled"`
	// BagpipeBGPUp is the result of the last ping of bagpipe-bgp.
	BagpipeBGPUp bool `json:"bagpipe_bgp_up"`
	// Ping is the last value bagpipe-bgp answered to /ping, in decimal: it
	// is a 128-bit integer, which JSON numbers do not carry exactly
	// through every parser.
	Ping string `json:"ping,omitempty"`
	// Applied counts the attachments applied, Pending those desired and
	// not applied yet (or failing) plus the detaches still to do.
	Applied int `json:"applied"`
	Pending int `json:"pending"`
	// LastError is the last failure of a call to bagpipe-bgp, "" after a
	// fully successful pass.
	LastError string `json:"last_error,omitempty"`
	// ActivePorts are the ports all of whose desired attachments are
	// applied, sorted (the port status ACTIVE of §7.3).
	ActivePorts []string `json:"active_ports,omitempty"`
	// Flavour is how the agent plugs ports ("linuxbridge" or "ovs"),
	// which decides the host's desired state and binding:vif_type; ""
	// from an agent that does not say (the server's default applies).
	Flavour string `json:"flavour,omitempty"`
	// Time is when the agent sent the report.
	Time time.Time `json:"time"`
}
