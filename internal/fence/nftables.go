package fence

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// natTableName is the one nftables table a fence owns in its namespace.
// It is replaced whole in one transaction, so a ruleset is never seen half
// written, and writing it again is a no-op.
const natTableName = "stagehand_fence"

// ruleTag marks every rule Stagehand writes (nftables user data), so
// `nft list ruleset` shows whose rules they are.
func ruleTag(id string) []byte { return []byte("stagehand:fence=" + id) }

// natLink is one outside port of a fence and the 1:1 mappings behind it.
type natLink struct {
	ext      string     // inside end of the veth to the outside bridge
	bridge   string     // the network's inside bridge, the VMs' segment
	gateway  netip.Addr // the network's gateway: the inside bridge's address
	mark     uint32     // routes a packet out through ext (see returnRules)
	mappings []Mapping
}

// applyRuleset replaces the fence's table in ns with the NAT and filter
// rules for links under policy, atomically.
//
//	prerouting (dstnat):  iifname EXT ip daddr E dnat to I
//	postrouting (srcnat): oifname EXT ip saddr I snat to E
//	forward:  block   iifname EXT drop; oifname EXT drop
//	          out     iifname EXT ct state established,related accept; iifname EXT drop
//	                  oifname EXT ip saddr I accept; oifname EXT drop
//	          in-out  as out, plus iifname EXT ct status dnat accept
//	          with an allow-list (out, in-out), instead of accept:
//	                  oifname EXT ip saddr I jump egress (see addEgressChain)
//	input:    iifname EXT ct state established,related accept; iifname EXT drop
//	mark (prerouting, before NAT and routing):
//	          iifname EXT ct state new ct mark set M
//	          ct direction reply meta mark set ct mark
//	          out, in-out: iifname BR ip daddr G udp dport 67 accept
//	                       iifname BR ip daddr G ct direction original meta mark set M
//
// Only mapped internal addresses may leave: a VM whose address was changed
// by hand would otherwise appear on the outside with an internal address
// that its original may be using there.
//
// The marks carry the return routing (see ensureReturnRules): the gateway
// address G is the fence's own on every inside bridge, yet the lab host
// holds it outside too. A connection that came in through EXT (from G or
// anyone) has its replies marked M, and so does a VM's packet to G (except
// DHCP, which the fence itself serves, and replies to connections the
// fence opened from G itself): marked packets are routed out through EXT
// before the local table is consulted. Under block the gateway stays the
// fence's own: nothing is sent out, and the VMs' router still answers.
func applyRuleset(ns netns.NsHandle, id string, policy Policy, allow []AllowRule, links []natLink) error {
	// The refused count survives the rewrite (an Adopt's): it is read
	// here and the new counter starts from it.
	refused, _, err := readEgressRefused(ns)
	if err != nil {
		return err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tag := ruleTag(id)
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTableName}
	// add + delete + add: "add" is a no-op on an existing table, so the
	// delete never fails, and the batch rebuilds the table from nothing.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)

	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	input := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	mark := c.AddChain(&nftables.Chain{Name: "mark", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})

	add := func(chain *nftables.Chain, parts ...[]expr.Any) {
		var exprs []expr.Any
		for _, p := range parts {
			exprs = append(exprs, p...)
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs, UserData: tag})
	}
	established := matchCtBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	leave := verdict(expr.VerdictAccept)
	if len(allow) > 0 && policy != PolicyBlock {
		egress := addEgressChain(c, table, tag, allow, refused)
		leave = []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: egress.Name}}
	}
	add(mark, matchCtDir(ctDirReply), restoreMark())
	for _, l := range links {
		in, out := matchIf(expr.MetaKeyIIFNAME, l.ext), matchIf(expr.MetaKeyOIFNAME, l.ext)
		add(mark, in, matchCtBits(expr.CtKeySTATE, expr.CtStateBitNEW), setCtMark(l.mark))
		if policy != PolicyBlock {
			// Only the VMs' own connections: a reply to one the fence
			// opened from G itself must stay inside.
			fromInside, toGateway := matchIf(expr.MetaKeyIIFNAME, l.bridge), matchAddr(16, l.gateway)
			add(mark, fromInside, toGateway, matchUDPDstPort(dhcpServerPort), verdict(expr.VerdictAccept))
			add(mark, fromInside, toGateway, matchCtDir(ctDirOriginal), setMetaMark(l.mark))
		}
		for _, m := range l.mappings {
			add(pre, in, matchAddr(16, m.External), nat(expr.NATTypeDestNAT, m.Internal))
			add(post, out, matchAddr(12, m.Internal), nat(expr.NATTypeSourceNAT, m.External))
		}

		add(input, in, established, verdict(expr.VerdictAccept))
		add(input, in, verdict(expr.VerdictDrop))

		if policy != PolicyBlock {
			add(fwd, in, established, verdict(expr.VerdictAccept))
			if policy == PolicyInOut {
				add(fwd, in, matchCtBits(expr.CtKeySTATUS, ctStatusDstNAT), verdict(expr.VerdictAccept))
			}
			for _, m := range l.mappings {
				add(fwd, out, matchAddr(12, m.Internal), leave)
			}
		}
		add(fwd, in, verdict(expr.VerdictDrop))
		add(fwd, out, verdict(expr.VerdictDrop))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: write table %s: %w", natTableName, err)
	}
	return nil
}

// ctStatusDstNAT is IPS_DST_NAT: the connection was destination-NATed,
// that is, it was opened to one of the fence's external addresses.
const ctStatusDstNAT = 1 << 5

func matchIf(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(name)},
	}
}

// matchAddr compares the IPv4 header field at offset (12 source, 16
// destination) with a.
func matchAddr(offset uint32, a netip.Addr) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]},
	}
}

// nat rewrites the destination (DNAT) or source (SNAT) address to a.
func nat(typ expr.NATType, a netip.Addr) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: b[:]},
		&expr.NAT{Type: typ, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}

func matchCtBits(key expr.CtKey, bits uint32) []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, bits)
	return []expr.Any{
		&expr.Ct{Key: key, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// dhcpServerPort is where the fence's own DHCP server listens on G.
const dhcpServerPort = 67

// A packet goes in the direction of its connection's first packet
// (IP_CT_DIR_ORIGINAL) or against it (IP_CT_DIR_REPLY).
const (
	ctDirOriginal = 0
	ctDirReply    = 1
)

func matchCtDir(dir byte) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{dir}},
	}
}

// setCtMark stores m in the packet's connection: ct mark set m.
func setCtMark(m uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, m)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	}
}

// setMetaMark marks the packet itself, which routing sees: meta mark set m.
func setMetaMark(m uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, m)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// restoreMark copies the connection's mark onto the packet: meta mark set
// ct mark.
func restoreMark() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

func matchUDPDstPort(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// deleteRuleset removes the fence's table from ns, if there.
func deleteRuleset(ns netns.NsHandle) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTableName}
	c.AddTable(table)
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", natTableName, err)
	}
	return nil
}
