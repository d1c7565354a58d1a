// Package controlplane holds the scenarios of control-plane §5 as tests
// of the whole control plane in one process, from REST calls to the
// attach and detach calls each compute node's bagpipe-bgp receives:
// bagpipe-server as serverd.Run assembles it (Neutron API over HTTP,
// SQLite store, embedded NATS with JetStream), one real agent
// (internal/agent) per compute host on its own NATS connection, and per
// host a fake bagpipe-bgp that records every call in order. Every
// scenario gets its own server and hosts (a server starts in about
// 0.1 s with the race detector), so the spec's fixture values (VNI 101,
// project p1, hosts h1 and h2) are used as written and no scenario sees
// another's calls.
//
// The package has tests only.
package controlplane
