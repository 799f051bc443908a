// Package ipam holds the address rules of networks: parsing and checking a
// subnet, its gateway and its pool ranges, and choosing a free address. It
// is pure logic; the allocation itself happens inside a store transaction
// that reads the held addresses and writes the new allocation, so that two
// concurrent allocations can never pick the same address.
package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Network is a checked network definition.
type Network struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
	Pools   []store.IPRange
	DNS     []netip.Addr
}

// Limits of a network definition. MinPrefixBits keeps a subnet from
// swallowing a large part of IPv4 (a bridge holding 0.0.0.1/1 would take
// over half the host's routing); MaxPools and MaxDNS bound the work a
// single request can ask for.
const (
	MinPrefixBits = 8
	MaxPrefixBits = 30
	MaxPools      = 256
	MaxDNS        = 8
)

// reserved are the IPv4 blocks a lab network must not use: "this network",
// loopback, link-local, multicast and the reserved block with the limited
// broadcast address. Putting one of them on a bridge in the daemon's
// namespace would break the host's own networking.
var reserved = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4, with broadcast 255.255.255.255)"},
}

// reservedBlock names the reserved block p overlaps, or "".
func reservedBlock(p netip.Prefix) string {
	for _, r := range reserved {
		if r.prefix.Overlaps(p) {
			return r.what
		}
	}
	return ""
}

// ParseNetwork checks a subnet, an optional gateway (default: the first host
// address), pool ranges ("FIRST-LAST" or a single address) and DNS servers.
// Only IPv4 is supported: a subnet from /8 to /30 outside the reserved
// blocks (loopback, link-local, multicast, 0/8, 240/4). Pools (at most
// MaxPools) must lie inside the subnet, must not contain the gateway, the
// network or the broadcast address, and must not overlap. DNS servers (at
// most MaxDNS) must be unicast addresses outside the reserved blocks.
// Overlap with other networks is the lab's check (it needs the store).
func ParseNetwork(subnet, gateway string, pools, dns []string) (Network, error) {
	var n Network
	p, err := netip.ParsePrefix(strings.TrimSpace(subnet))
	if err != nil {
		return n, errdefs.Invalid("subnet %q is not a CIDR prefix (e.g. 10.0.0.0/24)", subnet)
	}
	if !p.Addr().Is4() {
		return n, errdefs.Invalid("subnet %q: only IPv4 subnets are supported", subnet)
	}
	if p.Bits() > MaxPrefixBits {
		return n, errdefs.Invalid("subnet %q is too small: at most /%d", subnet, MaxPrefixBits)
	}
	if p.Bits() < MinPrefixBits {
		return n, errdefs.Invalid("subnet %q is too large: at least /%d", subnet, MinPrefixBits)
	}
	if p.Masked() != p {
		return n, errdefs.Invalid("subnet %q has host bits set; did you mean %s?", subnet, p.Masked())
	}
	if what := reservedBlock(p); what != "" {
		return n, errdefs.Invalid("subnet %s overlaps %s, which a lab network cannot use", p, what)
	}
	n.Subnet = p
	if gateway == "" {
		n.Gateway = p.Addr().Next()
	} else {
		gw, err := netip.ParseAddr(strings.TrimSpace(gateway))
		if err != nil {
			return n, errdefs.Invalid("gateway %q is not an IPv4 address", gateway)
		}
		if !IsHost(p, gw) {
			return n, errdefs.Invalid("gateway %s is not a host address of subnet %s", gw, p)
		}
		n.Gateway = gw
	}
	if len(pools) == 0 {
		return n, errdefs.Invalid("network needs at least one pool range")
	}
	if len(pools) > MaxPools {
		return n, errdefs.Invalid("network has %d pool ranges, at most %d are allowed", len(pools), MaxPools)
	}
	for _, s := range pools {
		r, err := ParseRange(s)
		if err != nil {
			return n, err
		}
		if !IsHost(p, r.First) || !IsHost(p, r.Last) {
			return n, errdefs.Invalid("pool %s-%s leaves subnet %s or contains its network or broadcast address", r.First, r.Last, p)
		}
		if InRange(r, n.Gateway) {
			return n, errdefs.Invalid("pool %s-%s contains the gateway %s", r.First, r.Last, n.Gateway)
		}
		n.Pools = append(n.Pools, r)
	}
	// Sort a copy and sweep: O(n log n), where comparing every pair was
	// quadratic in a count the request chooses.
	sorted := sortedRanges(n.Pools)
	for i := 1; i < len(sorted); i++ {
		if a, b := sorted[i-1], sorted[i]; !a.Last.Less(b.First) {
			return n, errdefs.Invalid("pool %s-%s overlaps pool %s-%s", b.First, b.Last, a.First, a.Last)
		}
	}
	if len(dns) > MaxDNS {
		return n, errdefs.Invalid("network has %d DNS servers, at most %d are allowed", len(dns), MaxDNS)
	}
	for _, s := range dns {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || !a.Is4() {
			return n, errdefs.Invalid("DNS server %q is not an IPv4 address", s)
		}
		if what := reservedBlock(netip.PrefixFrom(a, 32)); what != "" {
			return n, errdefs.Invalid("DNS server %s is in %s, which a guest cannot use as its DNS server", a, what)
		}
		n.DNS = append(n.DNS, a)
	}
	return n, nil
}

// sortedRanges returns a copy of rs sorted by first address.
func sortedRanges(rs []store.IPRange) []store.IPRange {
	out := append([]store.IPRange(nil), rs...)
	slices.SortFunc(out, func(a, b store.IPRange) int { return a.First.Compare(b.First) })
	return out
}

// ParseRange parses "FIRST-LAST" or a single address.
func ParseRange(s string) (store.IPRange, error) {
	first, last, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		last = first
	}
	a, err1 := netip.ParseAddr(strings.TrimSpace(first))
	b, err2 := netip.ParseAddr(strings.TrimSpace(last))
	if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() {
		return store.IPRange{}, errdefs.Invalid("pool %q is not a range of IPv4 addresses (FIRST-LAST)", s)
	}
	if b.Less(a) {
		return store.IPRange{}, errdefs.Invalid("pool %q ends before it starts", s)
	}
	return store.IPRange{First: a, Last: b}, nil
}

// IsHost reports whether a is inside p and is neither its network nor its
// broadcast address.
func IsHost(p netip.Prefix, a netip.Addr) bool {
	if !a.Is4() || !p.Contains(a) {
		return false
	}
	return a != p.Masked().Addr() && a != Broadcast(p)
}

// Broadcast returns the last address of an IPv4 prefix.
func Broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << host) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// InRange reports whether a lies in r.
func InRange(r store.IPRange, a netip.Addr) bool {
	return !a.Less(r.First) && !r.Last.Less(a)
}

// InPools reports whether a lies in any of the ranges.
func InPools(pools []store.IPRange, a netip.Addr) bool {
	for _, r := range pools {
		if InRange(r, a) {
			return true
		}
	}
	return false
}

// PoolSize is the number of addresses in the ranges.
func PoolSize(pools []store.IPRange) int {
	n := 0
	for _, r := range pools {
		n += int(u32(r.Last)-u32(r.First)) + 1
	}
	return n
}

// CheckManual checks an address a user gives for a NIC: inside the subnet,
// a host address, not the gateway.
func CheckManual(nw *store.Network, a netip.Addr) error {
	switch {
	case !nw.Subnet.Contains(a):
		return errdefs.Invalid("address %s is outside subnet %s of network %q", a, nw.Subnet, nw.Name)
	case a == nw.Gateway:
		return errdefs.Invalid("address %s is the gateway of network %q", a, nw.Name)
	case !IsHost(nw.Subnet, a):
		return errdefs.Invalid("address %s is the network or broadcast address of %s", a, nw.Subnet)
	}
	return nil
}

// PickFree returns the lowest address of the pools that is not in held.
func PickFree(nw *store.Network, held map[netip.Addr]bool) (netip.Addr, error) {
	return PickFreeAfter(nw, held, netip.Addr{})
}

// PickFreeAfter returns the first address of the pools, in pool order,
// that comes after `after` and is not in held, wrapping around to the
// start; with the zero `after` it is PickFree. Handing out addresses in
// rotation keeps a just-released address (still in the neighbours' ARP
// caches) from going straight to another MAC.
func PickFreeAfter(nw *store.Network, held map[netip.Addr]bool, after netip.Addr) (netip.Addr, error) {
	if after.IsValid() {
		for _, r := range nw.Pools {
			if r.Last.Less(after) || r.Last == after {
				continue
			}
			a := r.First
			if !after.Less(r.First) {
				a = after.Next()
			}
			for ; ; a = a.Next() {
				if !held[a] && a != nw.Gateway {
					return a, nil
				}
				if a == r.Last {
					break
				}
			}
		}
	}
	for _, r := range nw.Pools {
		for a := r.First; ; a = a.Next() {
			if !held[a] && a != nw.Gateway {
				return a, nil
			}
			if a == r.Last {
				break
			}
		}
	}
	return netip.Addr{}, errdefs.Conflict("IP pool of network %q is exhausted (%d addresses, all held)", nw.Name, PoolSize(nw.Pools))
}

// Allocate takes a free pool address of nw inside tx for kind and holder.
// It must run in a store.Update so the read and the write are atomic.
func Allocate(tx store.Tx, nw *store.Network, kind, holder string) (*store.Allocation, error) {
	return AllocateAfter(tx, nw, kind, holder, netip.Addr{})
}

// AllocateAfter is Allocate with PickFreeAfter's rotation.
func AllocateAfter(tx store.Tx, nw *store.Network, kind, holder string, after netip.Addr) (*store.Allocation, error) {
	allocs, err := tx.Allocations().List(nw.ID)
	if err != nil {
		return nil, err
	}
	held := make(map[netip.Addr]bool, len(allocs))
	for _, a := range allocs {
		held[a.IP] = true
	}
	ip, err := PickFreeAfter(nw, held, after)
	if err != nil {
		return nil, err
	}
	a := &store.Allocation{NetworkID: nw.ID, IP: ip, Kind: kind, Holder: holder}
	if err := tx.Allocations().Create(a); err != nil {
		return nil, fmt.Errorf("allocate %s on network %q: %w", ip, nw.Name, err)
	}
	return a, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// DynamicRange returns the longest run of host addresses of nw that lie in
// no pool and are not the gateway: the range DHCP serves to NICs in dhcp
// mode, so that a dynamic lease never takes a pool address. ok is false
// when the pools leave no room. Ties go to the lowest run. It works on the
// sorted pools, never on the subnet's addresses: O(p log p) for p pools
// whatever the subnet's size, since it runs inside deploy transactions.
func DynamicRange(nw *store.Network) (first, last netip.Addr, ok bool) {
	if !nw.Subnet.Addr().Is4() || nw.Subnet.Bits() > 30 {
		return first, last, false
	}
	lo := uint64(u32(nw.Subnet.Masked().Addr())) + 1 // first host
	hi := uint64(u32(Broadcast(nw.Subnet))) - 1      // last host
	blocked := append(sortedRanges(nw.Pools), store.IPRange{First: nw.Gateway, Last: nw.Gateway})
	slices.SortFunc(blocked, func(a, b store.IPRange) int { return a.First.Compare(b.First) })
	var bestFirst, bestLen uint64
	consider := func(from, to uint64) { // a free run [from, to], clipped to the hosts
		from, to = max(from, lo), min(to, hi)
		if from <= to && to-from+1 > bestLen {
			bestFirst, bestLen = from, to-from+1
		}
	}
	next := lo // lowest address not yet known to be blocked
	for _, b := range blocked {
		if !b.First.Is4() || !b.Last.Is4() {
			continue
		}
		f, l := uint64(u32(b.First)), uint64(u32(b.Last))
		if f > next {
			consider(next, f-1)
		}
		next = max(next, l+1)
	}
	consider(next, hi)
	if bestLen == 0 {
		return first, last, false
	}
	return addrOf(uint32(bestFirst)), addrOf(uint32(bestFirst + bestLen - 1)), true
}

func addrOf(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
