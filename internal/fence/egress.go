package fence

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

// An egress allow-list restricts which destinations the VMs of a fence may
// open connections to. It applies to what leaves through the fence's
// outside ports only: replies to connections opened from outside (in-out)
// are part of those connections and pass, and traffic between the fence's
// own networks never leaves. DNS is not special: a DNS server outside the
// fence is reached only when it is listed.

// MaxAllow is the most entries one allow-list may have: each is a rule on
// every outgoing packet's path, checked in order.
const MaxAllow = 64

// Protocols of an allow-list entry with a port.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// AllowRule is one allowed destination: a network, and optionally a port
// with its protocol. Without a port every protocol to Prefix is allowed;
// a port without a protocol allows that port over TCP and UDP.
type AllowRule struct {
	Prefix netip.Prefix // IPv4; a single address is a /32
	Port   uint16       // 0: any port, any protocol
	Proto  string       // ProtoTCP, ProtoUDP, or "" (both, with a port)
}

// String is the entry in the form ParseAllow reads: CIDR[:PORT[/PROTO]].
func (r AllowRule) String() string {
	s := r.Prefix.String()
	if r.Port == 0 {
		return s
	}
	s += ":" + strconv.Itoa(int(r.Port))
	if r.Proto != "" {
		s += "/" + r.Proto
	}
	return s
}

// ParseAllow reads one allow-list entry, CIDR[:PORT[/tcp|udp]], where CIDR
// is an IPv4 network without host bits or a single IPv4 address.
func ParseAllow(s string) (AllowRule, error) {
	bad := func(format string, args ...any) error {
		return errdefs.Invalid("allow %q: %s", s, fmt.Sprintf(format, args...))
	}
	dest, port, hasPort := strings.Cut(strings.TrimSpace(s), ":")
	var r AllowRule
	if strings.Contains(dest, "/") {
		p, err := netip.ParsePrefix(dest)
		if err != nil {
			return r, bad("%q is not a network in CIDR form (like 192.0.2.0/24)", dest)
		}
		if p != p.Masked() {
			return r, bad("%s has host bits set; the network is %s", p, p.Masked())
		}
		r.Prefix = p
	} else {
		a, err := netip.ParseAddr(dest)
		if err != nil {
			return r, bad("%q is not an IPv4 address or network", dest)
		}
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if !r.Prefix.Addr().Is4() {
		return r, bad("only IPv4 destinations can be allowed (fences route IPv4)")
	}
	if !hasPort {
		return r, nil
	}
	num, proto, hasProto := strings.Cut(port, "/")
	n, err := strconv.Atoi(num)
	if err != nil {
		return r, bad("port %q is not a number", num)
	}
	if n < 1 || n > 65535 {
		return r, bad("port %d is out of range 1-65535", n)
	}
	r.Port = uint16(n)
	if hasProto {
		switch proto {
		case ProtoTCP, ProtoUDP:
			r.Proto = proto
		default:
			return r, bad("protocol %q: want tcp or udp", proto)
		}
	}
	return r, nil
}

// ParseAllowList reads every entry (see ParseAllow) and checks the list as
// a whole: at most MaxAllow entries, none repeated.
func ParseAllowList(entries []string) ([]AllowRule, error) {
	if len(entries) > MaxAllow {
		return nil, errdefs.Invalid("allow: %d entries; at most %d are allowed", len(entries), MaxAllow)
	}
	out := make([]AllowRule, 0, len(entries))
	seen := map[AllowRule]bool{}
	for _, e := range entries {
		r, err := ParseAllow(e)
		if err != nil {
			return nil, err
		}
		if seen[r] {
			return nil, errdefs.Invalid("allow %q: listed twice", e)
		}
		seen[r] = true
		out = append(out, r)
	}
	return out, nil
}

// CheckAllow checks an allow-list against the policy it is to go with: an
// allow-list opens a way out, which block has none of.
func CheckAllow(policy Policy, allow []AllowRule) error {
	if len(allow) == 0 {
		return nil
	}
	if policy == PolicyBlock {
		return errdefs.Invalid("allow: fence policy block lets nothing out, so an allow-list conflicts with it; use --fence-policy out (or in-out)")
	}
	if len(allow) > MaxAllow {
		return errdefs.Invalid("allow: %d entries; at most %d are allowed", len(allow), MaxAllow)
	}
	for _, r := range allow {
		if _, err := ParseAllow(r.String()); err != nil || (r.Proto != "" && r.Port == 0) {
			return errdefs.Invalid("allow %v: not a valid entry", r)
		}
	}
	return nil
}

// FormatAllowList is the list as text, one entry after another separated
// by commas, as ParseAllowList reads it back after a split on ",".
func FormatAllowList(allow []AllowRule) string {
	s := make([]string, len(allow))
	for i, r := range allow {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// The egress chain and its counter, in the fence's table (see
// applyRuleset): every packet a VM sends out through an outside port goes
// there when the fence has an allow-list.
const (
	egressChainName   = "egress"
	egressCounterName = "egress_refused"
)

// addEgressChain adds the chain that the VMs' outgoing packets jump to when
// the fence has an allow-list:
//
//	ct state established,related accept
//	ip daddr NET [meta l4proto P th dport PORT] accept   (each entry)
//	counter name egress_refused
//	meta l4proto tcp reject with tcp reset
//	reject with icmp admin-prohibited
//
// A refused TCP connection is answered with a reset, so the guest sees
// "connection refused" at once and the counter counts one packet per
// attempt rather than every retransmitted SYN. The counter starts at
// refused, so rewriting the table (Adopt) keeps its count.
func addEgressChain(c *nftables.Conn, table *nftables.Table, tag []byte, allow []AllowRule, refused uint64) *nftables.Chain {
	c.AddObj(&nftables.CounterObj{Table: table, Name: egressCounterName, Packets: refused})
	ch := c.AddChain(&nftables.Chain{Name: egressChainName, Table: table})
	add := func(parts ...[]expr.Any) {
		var exprs []expr.Any
		for _, p := range parts {
			exprs = append(exprs, p...)
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs, UserData: tag})
	}
	add(matchCtBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	for _, r := range allow {
		dst := matchPrefix(16, r.Prefix)
		switch {
		case r.Port == 0:
			add(dst, verdict(expr.VerdictAccept))
		case r.Proto != "":
			add(dst, matchDstPort(r.Proto, r.Port), verdict(expr.VerdictAccept))
		default:
			add(dst, matchDstPort(ProtoTCP, r.Port), verdict(expr.VerdictAccept))
			add(dst, matchDstPort(ProtoUDP, r.Port), verdict(expr.VerdictAccept))
		}
	}
	add([]expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: egressCounterName}})
	add(matchL4(unix.IPPROTO_TCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})
	add([]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpAdminProhibited}})
	return ch
}

// icmpAdminProhibited is ICMP destination unreachable code 13,
// "communication administratively prohibited".
const icmpAdminProhibited = 13

// matchPrefix compares the IPv4 header field at offset (12 source, 16
// destination) with the network p; a /0 matches everything.
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	if p.Bits() == 32 {
		return matchAddr(offset, p.Addr())
	}
	if p.Bits() == 0 {
		return nil
	}
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	net := p.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net[:]},
	}
}

func matchL4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// matchDstPort matches proto ("tcp" or "udp") packets to port; both keep
// the destination port at offset 2 of their header.
func matchDstPort(proto string, port uint16) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if proto == ProtoUDP {
		p = unix.IPPROTO_UDP
	}
	return append(matchL4(p),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	)
}

// readEgressRefused reads the refused-packet counter of the fence's table
// in ns; a table or counter that is not there reads 0 and false.
func readEgressRefused(ns netns.NsHandle) (uint64, bool, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return 0, false, fmt.Errorf("nftables: %w", err)
	}
	// The library's errors do not wrap the kernel's ENOENT: look for the
	// table first, then dump its objects (a dump of none is no error).
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return 0, false, fmt.Errorf("nftables: list tables: %w", err)
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == natTableName {
			table = t
		}
	}
	if table == nil {
		return 0, false, nil
	}
	objs, err := c.GetObjects(table)
	if err != nil {
		return 0, false, fmt.Errorf("nftables: read counter %s: %w", egressCounterName, err)
	}
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok && co.Name == egressCounterName {
			return co.Packets, true, nil
		}
	}
	return 0, false, nil
}

// EgressRefused is how many packets the fence's allow-list refused since
// the fence was set up (a TCP connection attempt is one). A fence without
// an allow-list, or a member host's part of a spread fence (the router
// host filters), reads 0.
func (f *Fence) EgressRefused() (uint64, error) {
	n, _, err := readEgressRefused(f.ns)
	if err != nil {
		return 0, fmt.Errorf("fence %q: %w", f.spec.ID, err)
	}
	return n, nil
}

// EgressRefused reads the refused-packet count of fence id (see
// Fence.EgressRefused); a fence this value does not hold is not found.
func (h *Fences) EgressRefused(id string) (uint64, error) {
	f, err := h.fence(id)
	if err != nil {
		return 0, errdefs.NotFound("%v", err)
	}
	return f.EgressRefused()
}
