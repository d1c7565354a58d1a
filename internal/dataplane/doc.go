// Package dataplane is the contract between the VPN layer and the drivers
// that program a host's forwarding state (dataplanes spec §1, vpn-and-api
// §3.11). It holds interfaces and plain values only: a driver imports this
// package and nothing of the VPN layer or the REST API, and sees only the
// arguments of each call.
//
// There are two levels. A Driver serves one VPN type (E-VPN or IP-VPN) for
// the whole daemon; it hands out one Instance per VPN instance (an EVI or a
// VRF), which receives the per-port and per-route calls. Instance is the part
// both kinds share; EVPNInstance and IPVPNInstance add what only one kind
// needs, so a driver implements just what its VPN type uses.
//
// # Call order
//
//  1. The daemon builds one Driver per VPN type at start-up. Building must not
//     change the host: state belongs in Initialize.
//  2. Just before the first instance of a type is created, ResetState then
//     Initialize run once (Lazy does this). A ResetState error is logged and
//     ignored; an Initialize error fails that creation, and the next creation
//     tries both again. The cleanup tool calls ResetState alone.
//  3. Per instance: NewInstance; UpdateFallback (VRF, when the instance has a
//     fallback); then, per attach, ValidateDirection on the driver and
//     VifPlugged. Route calls (SetupRemoteMAC, AddBUMEndpoint,
//     SetupRemotePrefix, AddTrafficClassifier and their removals) come only
//     after the instance's first successful VifPlugged.
//  4. Per detach: VifUnplugged, with every direction (the original skipped
//     from-port detaches, leaking their state).
//  5. When the instance has no port left: if NeedsCleanupAssist, one removal
//     per installed route, then Cleanup, the last call. Nothing follows
//     Cleanup except LookingGlass and further Cleanup calls, which are no-ops.
//
// The VPN layer serialises all calls of one instance (one goroutine per
// instance), but different instances call concurrently: a driver protects
// what its instances share (tunnel ports, group allocators) itself. The
// driver-level methods may be called from any goroutine.
//
// # Idempotency
//
// Every call must be safe to repeat, because the VPN layer re-plugs on
// re-attach, BGP re-announces routes, and a restarted daemon meets state left
// by the previous run: a repeated setup or plug is a no-op (or a replace), a
// removal of something absent succeeds, a second Cleanup succeeds. Real
// drivers should reconcile rather than wipe where they can: Initialize may
// find its global objects already present and adopt them, and ResetState
// removes only objects marked as ours (exact name prefixes, cookies, owner
// markers), never foreign ones.
//
// # Errors
//
// Methods return errors rather than logging them; the VPN layer decides
// whether a failure reaches the API caller (plug, unplug, instance creation)
// or is logged and counted (route calls). An error implementing
// BadRequest() bool, such as *UnsupportedDirectionError, is the client's
// fault and becomes an HTTP 400.
//
// # Encapsulations
//
// Encapsulations are GoBGP tunnel types (bgp.EncapVXLAN, bgp.EncapMPLS,
// ...) plus EncapDefault, which stands for a route that advertises none. The
// VPN layer uses a route only when UsableEncaps of its advertised set and the
// driver's SupportedEncaps is not empty, passes that intersection to the
// driver, and advertises AdvertisedEncaps of the driver's set.
package dataplane
