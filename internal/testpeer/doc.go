// Package testpeer starts real BGP speakers (gobgpd, exabgp) as child
// processes for tests in other packages, on loopback and free ports.
//
// Every process is started with a configuration written into t.TempDir(),
// stopped by PID in t.Cleanup (SIGTERM, then SIGKILL after a bounded wait)
// and reaped, also when the test fails. Its output goes to a log file in the
// same directory; the tail of that log is printed when the test failed.
//
// When a tool is missing the helper skips the test with the reason, except
// under CI (CI set in the environment), where a missing tool is a failure:
// CI installs them (scripts/install-deps.sh), so a skip there would hide a
// broken install step.
//
// # gobgpd
//
// StartGoBGP runs Debian's gobgpd 3.x (GoBGPDebian) or GoBGP v4.8.0 from
// .tools/bin (GoBGPv4) with the matching gobgp CLI for CLI, AddRoute, RIB,
// NeighborState and WaitEstablished. Note that two RTC-capable peers follow
// RFC 4684: gobgpd sends a neighbour no VPN route until it asked for the
// route target. To flap a session from Debian's gobgpd, use "neighbor X
// disable" then "enable": after "reset" it stays idle 30 s whatever the
// configuration says.
//
// # Crafted UPDATEs with exabgp
//
// StartExaBGP runs Debian's exabgp 4.2.21, which connects to our listener
// (or, Passive, waits for us). Two ways to send what a test needs:
//
//   - Command with exabgp's own syntax and a generic attribute,
//     "neighbor 127.0.0.1 announce route 198.51.100.0/24 rd 64512:1 label 10
//     next-hop 192.0.2.1 extended-community target:64512:10
//     attribute [ 0xTYPE 0xFLAGS 0xVALUE ]": exabgp encodes any type code,
//     any flags (well-known, optional, transitive, partial) and any value,
//     so wrong flags, wrong value lengths for a known type (an ORIGIN of 2
//     bytes), bad values (ORIGIN 5) and unknown attributes are all
//     possible. The first attribute of a type wins, so a generic attribute
//     replaces the ORIGIN, AS_PATH or LOCAL_PREF exabgp would add itself.
//     exabgp always computes the attribute and message lengths correctly
//     and cannot repeat an attribute type.
//   - SendRawUpdate (an UPDATE body in hex, GoBGP's header added) and SendRaw
//     (a whole message) for everything else: attribute lengths that overrun,
//     duplicate attributes, truncated NLRI, bad total path attribute length,
//     bad marker, length or type. exabgp 4.2 has no API command for raw
//     bytes, so StartExaBGP runs it through exabgp_shim.py, which registers
//     "neighbor <ip> send-raw <hex>" and writes the bytes to the established
//     session's socket as they are.
//
// Facts worth knowing: exabgp 4.2 has no RT Constraint family (it never
// negotiates RTC); right after the session comes up it sends an End-of-RIB
// per family; with VPN routes it still sends a NEXT_HOP attribute.
// GoBGP's ParseBGPMessage accepts an unrecognised well-known attribute (as
// *PathAttributeUnknown): rejecting it (RFC 4271 §6.3) is up to the caller.
package testpeer
