// Package request parses and validates the bodies of the REST API's
// attach_localport and detach_localport calls (vpn-and-api §2.4–§2.6) into
// typed values. It is pure: no HTTP, no VPN state. The VPN layer calls
// ParseAttach or ParseDetach on the raw body and works on the result.
//
// # Compatibility
//
// Every body the original (networking-bagpipe 17.0.0 with netaddr 0.8.0)
// accepts in practice is accepted, with the same defaults; the checks run in
// the original's order (first failure wins) so a bad body gets the same 400
// message. Errors are *InputError (answered 400 "API error: <Error()>") or,
// for an empty or non-JSON body, *BodyError (400 "No local port details
// received", no prefix).
//
// Order of the checks, attach (ParseAttach):
//
//  1. body: not UTF-8 / not JSON → BodyError; not an object → InputError
//  2. vpn_type: absent → "missing instance_type"; not "ipvpn"/"evpn" →
//     "unknown vpn_type: X"
//  3. presence of vpn_instance_id, mac_address, local_port, import_rt,
//     export_rt, then ip_address for ipvpn → "Missing parameter: 'K'"
//     (the original iterates a Python set for the last three: its order
//     varies between runs; ours is fixed)
//  4. import_rt, export_rt: string split on ",+ *", or a list
//  5. local_port: a string, or an object with linuxif or evpn
//  6. mac_address, 7. ip_address (when present), 8. advertise_subnet is a
//     boolean, 9. direction, 10. gateway_ip present (ipvpn)
//  11. RT syntax (import, then export), 12. readvertise, 13. attract_traffic
//  14. checks the original does not make: vpn_instance_id, local_port
//     members, gateway_ip, local_pref, lb_consistent_hash_order, vni,
//     linuxbr, fallback, evpn advertise_subnet.
//
// Detach (ParseDetach) runs steps 1–8 (with ip_address mandatory for ipvpn
// and no import_rt/export_rt requirement) and the vpn_instance_id and
// local_port checks of 14.
//
// Accepted spellings (found by running netaddr 0.8.0 and the original's
// validation code):
//
//   - MAC: six groups of 1–2 hex digits separated by ':' or '-'
//     ("00:11:22:33:44:5" is 00:11:22:33:44:05), three groups of 1–4 hex
//     digits separated by ':', '-' or '.' (Cisco "0011.2233.4455"), two
//     groups of 5–6 hex digits separated by ':' or '-' ("001122-334455"),
//     or 11–12 bare hex digits; one separator throughout; any case. The
//     text is kept verbatim (MACString); MAC is the parsed value.
//   - IP: an IPv4 dotted quad (leading zeros are decimal: "010.0.0.1" is
//     10.0.0.1) or an IPv6 address without zone, optionally followed by
//     "/" and a decimal length, a netmask or a hostmask of the same family
//     ("10.0.0.1/255.255.255.0" and "/0.0.0.255" are /24). A bare address
//     is /32 or /128.
//   - route target: "ASN:NN" with a 2-octet AS and a 32-bit number, each a
//     decimal integer that may be surrounded by whitespace, start with '+'
//     or have '_' between digits (Python int()). Empty strings are skipped.
//     Also taken, where the original answers 500 (control-plane D21): the
//     other two forms Neutron's BGPVPN API accepts, "A.B.C.D:NN" and a
//     4-octet AS above 65535 ("70000:NN"), each with a 16-bit number.
//     import_rt/export_rt lose duplicates (compared as values: " 1:2" and
//     "1:2" are the same RT; the original compares strings) and keep the
//     first-seen order (the original's order was arbitrary).
//   - direction: null, "", false, 0, [] and {} mean "both" (Python
//     truthiness), as do readvertise and attract_traffic for "not given".
//
// # Deliberate differences
//
// Where the original answered 500 to bad input, or accepted input it then
// mishandled, this package answers 400 with a message naming the field
// (vpn-and-api §8 #10, §9):
//
//	input                                      original                       here
//	body is a JSON array/number/string/null    500                            400 "the parameters must be a JSON object"
//	body not valid UTF-8                       400 No local port details      same (BodyError)
//	NaN / Infinity literals in the body        accepted                       400 No local port details (not JSON)
//	vpn_type a list or object                  500                            400 "unknown vpn_type: [...]"
//	import_rt/export_rt not list/string,       500 (or, for an object, its    400 "'import_rt' must be a list of route
//	  or a list holding lists/objects            keys were used as RTs)         targets or a comma-separated string"
//	malformed RT ("64512-1", 70000:65536, 5)    500 "Malformed route target"    400 "Malformed route target in 'import_rt': '64512-1'"
//	local_port null/number/bool                500                            400 "Mandatory key is missing in local_port ..."
//	local_port ["linuxif"] (array holding it)  accepted, fails later          400 same message
//	local_port without linuxif (evpn attach,   500 (KeyError)                 400 "Mandatory key is missing in local_port
//	  or ipvpn without evpn), or null/""                                        parameter (linuxif)"
//	local_port.evpn without id (ipvpn attach)  500                            400 "Missing parameter: 'local_port/evpn/id'"
//	evpn.ovs_port_name without pre-plugged ovs 500 (same text)                400 same text
//	local_port members of the wrong type       accepted, fail in the driver   400 "'local_port/ovs/vlan' must be ..."
//	mac_address null/list                      500                            400 "MAC address None is not valid"
//	mac_address a number/bool, a decimal       accepted (read as an integer:  400 "MAC address 123 is not valid"
//	  string ("123"), EUI-64, trailing "\n"      "1" is 00:00:00:00:00:01)
//	ip_address null or not a string            500                            400 "IP address None is not valid"
//	ip_address partial ("10.1"), hex/octal     accepted (10.1 → 10.1.0.0,     400 "IP address 10.1 is not valid"
//	  ("0x0a000001"), spaces, "/ 24", "/+24"     inconsistently read later)
//	vpn_instance_id not a string, or ""        accepted (500 for lists)       400 "'vpn_instance_id' must be a non-empty string"
//	local_pref/lb_consistent_hash_order/vni    accepted, fail later (500) or  400 "'vni' must be an integer between 0 and 16777215"
//	  not an integer in range                    misbehave                      (null means the default)
//	gateway_ip/linuxbr not a string or null    accepted                       400 "'gateway_ip' must be a string"
//	readvertise truthy but not an object,      500                            400 "'readvertise' must be an object ...",
//	  a key missing, a value not a list                                         "Missing parameter: 'readvertise/from_rt'",
//	                                                                            "'readvertise/to_rt' must be a list of route targets"
//	attract_traffic without redirect_rts       500                            400 "Missing parameter: 'attract_traffic/redirect_rts'"
//	attract_traffic.to_rt not a list, bad      500 at creation only           400 at every attach
//	  static prefixes, bad classifier values
//	  or unknown classifier keys
//	fallback not an object, bad MACs/port      accepted, driver fails         400 "'fallback/src_mac' must be a MAC address: x"
//	evpn, advertise_subnet, prefix < /32       500 (assertion), ids leaked    400 (§8 #25)
//
// The checks the original makes only when an attach creates its instance
// (readvertise/attract_traffic consistency, 400 in the original too) are
// Attach.CheckCreation, for the VPN layer to call at creation.
package request
