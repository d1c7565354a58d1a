// Package e2e holds end-to-end tests: our whole BGP speaker (engine, peers,
// listener, built by internal/speaker from a [BGP] configuration) against
// real third-party speakers started by the tests on loopback.
//
// The tests drive the speaker the way a VPN instance does, through local
// engine workers, and look at the other side through its own tools (the
// gobgp CLI for gobgpd). They skip when a tool is missing, except under CI
// (see internal/testpeer).
package e2e
