package fence

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"

	"stagehand/internal/errdefs"
)

// maxIfNameLen is the longest Linux interface name (IFNAMSIZ-1).
const maxIfNameLen = 15

// Interface names are derived, not stored: a fixed prefix that says what
// the link is, then the first hex digits of SHA-256 of a stable key,
// filling the name to 15 characters. The same key always gives the same
// name (so a restarted daemon finds its links again), the prefix keeps
// Stagehand's links recognisable in `ip link`, and 36 bits of hash make a
// collision between two keys on one host negligible.
//
//	BridgeName("lab-net")        sh-br-<9 hex>   bridge of a network
//	TapName("cfg/vm/0")          sh-tap-<8 hex>  tap of one VM NIC
//	outside veth of a fence      sh-fo-<9 hex>   key: fence ID + network
//	inside veth of a fence       sh-fi-<9 hex>   key: network (in the fence)
//	VXLAN of a spread fence      sh-vx-<9 hex>   key: fence ID + network
const (
	bridgePrefix     = "sh-br-"
	tapPrefix        = "sh-tap-"
	fenceOutPrefix   = "sh-fo-"
	fenceInnerPrefix = "sh-fi-"
	vxlanPrefix      = "sh-vx-"
)

// BridgeName is the name of the Linux bridge of the network called network.
// Inside a fence, the network's inside bridge has the same name, so a VM's
// tap goes to BridgeName(network) in whichever namespace it runs.
func BridgeName(network string) string { return shortName(bridgePrefix, network) }

// TapName is the name of a tap for the VM NIC identified by key (for
// example "config-id/vm-id/nic-index"). The key must be unique per NIC.
func TapName(key string) string { return shortName(tapPrefix, key) }

// shortName fills prefix up to 15 characters with the hex SHA-256 of key.
func shortName(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + hex.EncodeToString(sum[:])[:maxIfNameLen-len(prefix)]
}

// stableMAC derives a locally administered unicast MAC from key, so a
// bridge keeps one MAC for its whole life (Linux would otherwise adopt the
// lowest MAC among its ports, changing it as taps come and go, which
// breaks the neighbour caches of everyone on the segment).
func stableMAC(key string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("mac/" + key))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// checkIfName refuses names the kernel would refuse, with a clear message.
func checkIfName(kind, name string) error {
	switch {
	case name == "":
		return errdefs.Invalid("%s name is empty", kind)
	case len(name) > maxIfNameLen:
		return errdefs.Invalid("%s name %q is longer than %d characters", kind, name, maxIfNameLen)
	case strings.ContainsAny(name, "/ \t\n:") || name == "." || name == "..":
		return errdefs.Invalid("%s name %q has a character Linux does not allow", kind, name)
	}
	return nil
}
