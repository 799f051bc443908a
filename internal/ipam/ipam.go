// Package ipam holds the address rules of networks: parsing and checking a
// subnet, its gateway and its pool ranges, and choosing a free address. It
// is pure logic; the allocation itself happens inside a store transaction
// that reads the held addresses and writes the new allocation, so that two
// concurrent allocations can never pick the same address.
package ipam

import (
	"fmt"
	"net/netip"
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

// ParseNetwork checks a subnet, an optional gateway (default: the first host
// address), pool ranges ("FIRST-LAST" or a single address) and DNS servers.
// Only IPv4 is supported. Pools must lie inside the subnet, must not contain
// the gateway, the network or the broadcast address, and must not overlap.
func ParseNetwork(subnet, gateway string, pools, dns []string) (Network, error) {
	var n Network
	p, err := netip.ParsePrefix(strings.TrimSpace(subnet))
	if err != nil {
		return n, errdefs.Invalid("subnet %q is not a CIDR prefix (e.g. 10.0.0.0/24)", subnet)
	}
	if !p.Addr().Is4() {
		return n, errdefs.Invalid("subnet %q: only IPv4 subnets are supported", subnet)
	}
	if p.Bits() > 30 {
		return n, errdefs.Invalid("subnet %q is too small: at most /30", subnet)
	}
	if p.Masked() != p {
		return n, errdefs.Invalid("subnet %q has host bits set; did you mean %s?", subnet, p.Masked())
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
		return n, errdefs.Invalid("network needs at least one --pool range")
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
		for _, o := range n.Pools {
			if InRange(o, r.First) || InRange(o, r.Last) || InRange(r, o.First) {
				return n, errdefs.Invalid("pool %s-%s overlaps pool %s-%s", r.First, r.Last, o.First, o.Last)
			}
		}
		n.Pools = append(n.Pools, r)
	}
	for _, s := range dns {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || !a.Is4() {
			return n, errdefs.Invalid("DNS server %q is not an IPv4 address", s)
		}
		n.DNS = append(n.DNS, a)
	}
	return n, nil
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
	allocs, err := tx.ListAllocations(nw.ID)
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
	if err := tx.CreateAllocation(a); err != nil {
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
// when the pools leave no room.
func DynamicRange(nw *store.Network) (first, last netip.Addr, ok bool) {
	var bestLen, curLen int
	var cur netip.Addr
	end := Broadcast(nw.Subnet)
	for a := nw.Subnet.Masked().Addr().Next(); a.IsValid() && a != end; a = a.Next() {
		if a == nw.Gateway || InPools(nw.Pools, a) {
			curLen = 0
			continue
		}
		if curLen == 0 {
			cur = a
		}
		curLen++
		if curLen > bestLen {
			bestLen, first, last = curLen, cur, a
		}
	}
	return first, last, bestLen > 0
}
