package linux

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Device name prefixes of the original; a device is the driver's only when
// its name starts with one and its kind matches (bridge, vxlan).
const (
	BridgePrefix = "evpn---"
	VXLANPrefix  = "vxlan--"
)

// maxIfName is the longest Linux interface name (IFNAMSIZ - 1).
const maxIfName = 15

// aliasPrefix starts the ifalias of every device the driver creates; the
// rest is the instance's external id.
const aliasPrefix = "bagpipe:"

// ownerAlias is the ifalias that marks a device as the one of instance ext.
func ownerAlias(ext string) string { return aliasPrefix + ext }

// shortName is the original's name: prefix + ext cut to 15 characters; ""
// when ext holds characters an interface name cannot.
func shortName(prefix, ext string) string {
	if ext == "" || strings.ContainsAny(ext, "/: \t\n\r\v\f") {
		return ""
	}
	n := prefix + ext
	if len(n) > maxIfName {
		n = n[:maxIfName]
	}
	if n == prefix+"." || n == prefix+".." {
		return ""
	}
	return n
}

// hashedName is the fallback when the short name is taken by another
// instance: "~" never appears in a UUID, so it cannot equal a short name.
func hashedName(prefix, ext string) string {
	sum := sha256.Sum256([]byte(ext))
	n := prefix + "~" + hex.EncodeToString(sum[:])
	return n[:maxIfName]
}

// candidateNames are the names instance ext may use, in order of
// preference.
func candidateNames(prefix, ext string) []string {
	var out []string
	if s := shortName(prefix, ext); s != "" {
		out = append(out, s)
	}
	return append(out, hashedName(prefix, ext))
}

// ownedAlias says whether a device with this alias may be treated as the
// driver's: marked as ours, or unmarked (left by the original or by a
// device created before the alias was set).
func ownedAlias(alias string) bool {
	return alias == "" || strings.HasPrefix(alias, aliasPrefix)
}
