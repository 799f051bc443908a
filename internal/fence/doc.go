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
// A fence, for each network N (the i-th) of subnet S and gateway G:
//
//	daemon ns:  BridgeName(N) (G/len) ── sh-fo-… ┐ veth
//	fence ns:   sh-fi-… (external IPs /32) ──────┘      main: S dev sh-fi-…, VM IP/32 dev bridge
//	            BridgeName(N) (G/32, proxy ARP) ── VM taps    table 1000+i: S and default out sh-fi-…
//	rules:      100 fwmark "SH"+i+1 → table 1000+i;  200 local;  32766 main
//	marks:      new connections in from sh-fi-… (ct mark), their replies,
//	            and the VMs' packets to G (not DHCP, not under block)
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
//
// The lab host holds G on the outside bridge too, so inside the fence a
// reply to the host, or a VM's packet to a service on the host, would be
// delivered locally. Such packets are marked in prerouting and routed by a
// rule consulted before the local table out through the network's own
// link; the outside port accepts G as a source (accept_local). Replies to
// every connection that came in through a network leave through it, so a
// fence on several networks answers each on the link it was asked on.
//
// A fence can be spread over hosts (FenceSpec.Span). Every host that runs
// VMs of the fence has its namespace with the inside bridges; a VXLAN per
// network (sh-vx-…, the network's VNI, UDP 4789, learning off, one
// all-zeros forwarding entry per peer host: broadcasts and unknown
// unicast are copied to each, head-end replication) joins the inside
// bridges of all of them into one segment. Exactly one host, the router,
// holds what is described above: outside veths, NAT, policy, return
// routing and the DHCP servers, which serve the VMs of every host across
// the VXLAN. A member host holds only the bridges (no address, a MAC of
// their own so that frames to the gateway pass on to the router) and the
// VXLANs: its VMs reach the outside, and are reached at their external
// addresses, through the router. The VXLAN is made in the daemon's
// namespace and then moved into the fence's: a VXLAN's UDP socket stays in
// the namespace it was made in, which is the one with the underlay
// address and routes, while the fence's namespace has neither (and a VM
// cannot reach the underlay from inside). The VXLANs, inside bridges and
// taps get the underlay link's MTU less the encapsulation (50 bytes over
// IPv4, 70 over IPv6), and the DHCP servers hand that MTU to the guests
// (option 26). Peers change on a running fence with SetPeers.
package fence
