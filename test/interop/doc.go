// Package interop holds wire-level interoperability tests between our BGP
// speaker and the Python original, Debian's python3-networking-bagpipe
// (bagpipe-bgp 17.0.0, whose BGP session is ExaBGP 4.2's code driven by
// bagpipe itself).
//
// The tests run our speaker in-process and the original's daemon as a child
// process on loopback, with the original's dummy dataplane drivers. The
// original only ever connects (it has no listener): it is configured with our
// address as its peer and our listening port as its bgp_port, and our side
// accepts it as a passive peer. Between the two sits a recording relay, so
// that a failure can show the BGP messages each side actually sent.
//
// Routes go both ways: ports attached through the original's REST API make it
// advertise E-VPN and IP-VPN routes, which a local engine worker on our side
// receives; routes that worker publishes must show up in the original's
// looking glass, imported by its VPN instances.
//
// Without the original installed (scripts/install-original.sh) the tests
// skip, except when BAGPIPE_INTEROP=1 is set: then they fail, so that a CI
// job that meant to run them cannot pass silently.
package interop
