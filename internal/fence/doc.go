// Package fence owns the layer-2 plumbing of deployments: Linux bridges and
// persistent taps for VM NICs, a DHCP server per bridge that hands out
// addresses by MAC reservation, and fences: one network namespace per fenced
// deployment, with inside bridges, a veth to each outside bridge and a 1:1
// NAT router written as one nftables ruleset.
//
// Every function works in a network namespace given by the caller (the
// daemon's own, or a fence's), through netlink handles opened on that
// namespace; where a socket or a tap must be created from inside it, that is
// done on a dedicated OS thread that is never returned to the Go scheduler.
//
// A fence, for each network N of subnet S and gateway G:
//
//	daemon ns:  BridgeName(N) (G/len) ── sh-fo-… ┐ veth
//	fence ns:   sh-fi-… (external IPs /32) ──────┘      routes: S dev sh-fi-…,
//	            BridgeName(N) (G/32, proxy ARP) ── VM taps        VM IP/32 dev bridge
//
// The VMs keep their addresses and gateway G, which the fence's inside
// bridge answers for; the inside bridge answers ARP for every other address
// (proxy ARP), so a VM reaches an outside host of its own subnet through
// the router. The fence's outside port answers ARP only for its external
// addresses (arp_ignore=1, arp_announce=2), never for G. Traffic beyond the
// subnet goes to the outside bridge's MAC through a link-local stand-in
// next hop (169.254.0.1), since G is the fence's own address. nftables maps
// each internal address to its external one (DNAT in, SNAT out) and
// enforces the policy; a DHCP server on each inside bridge serves the VMs'
// reservations.
package fence
