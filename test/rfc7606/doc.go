// Package rfc7606 tests, end to end, how our BGP speaker handles malformed
// UPDATE messages (RFC 7606 revised error handling): a real exabgp (Debian's
// 4.2) connected to our speaker (internal/speaker, the daemon's engine, peer
// and listener) sends crafted UPDATEs over a live session, and the tests
// look at the result from both ends: the routes a local engine subscriber
// sees, our peer's state and counters, and the session state and any
// NOTIFICATION exabgp reports.
//
// Each case is the subtest TestExaBGP7606/<case>, named as the rows of
// docs/rfc7606.md, whose "observed (exabgp e2e)" column records what these
// tests see. The tests skip when exabgp is not installed, except under CI
// (see internal/testpeer).
package rfc7606
