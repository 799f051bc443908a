package fence

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
	"stagehand/internal/revert"
)

// Span spreads a fence over several hosts (see the package comment). Each
// host sets the fence up with the same networks and mappings and its own
// Span: its own underlay address as Local, the other hosts as Peers, and
// Router on exactly one of them.
type Span struct {
	// Local is this host's underlay address: the VXLAN's source address.
	Local netip.Addr
	// Underlay is the link, in the daemon's namespace, that carries the
	// VXLAN packets; its MTU less the encapsulation is the fence's MTU.
	Underlay string
	// Peers are the underlay addresses of the fence's other hosts.
	// Broadcasts and frames to unknown MACs are copied to each of them.
	Peers []netip.Addr
	// Router says this host holds the outside links, the NAT, the policy
	// and the DHCP servers. A member host (false) holds only the inside
	// bridges and VXLANs: its VMs reach everything through the router.
	Router bool
	// VNIs is the VXLAN network identifier of each network, by name: the
	// same on every host of the fence, unique among the fences sharing an
	// underlay.
	VNIs map[string]uint32
}

// VXLANPort is the UDP port of every fence VXLAN (IANA's).
const VXLANPort = 4789

// maxVNI is the largest 24-bit VXLAN network identifier.
const maxVNI = 1<<24 - 1

// minMTU is the smallest MTU IPv4 allows.
const minMTU = 68

// vxlanOverhead is what VXLAN encapsulation adds to an inner frame's IP
// packet: outer IP (20, or 40 for IPv6), UDP (8), VXLAN (8) and the inner
// Ethernet header (14).
func vxlanOverhead(underlay netip.Addr) int {
	if underlay.Is6() {
		return 70
	}
	return 50
}

// vxlanName is the name of the VXLAN of fence id's network. It is created
// in the daemon's namespace and must not clash there with another fence's.
func vxlanName(id, network string) string { return shortName(vxlanPrefix, id+"/"+network) }

// checkSpan validates spec.Span against spec's networks and returns a copy
// the caller cannot change behind the fence's back.
func checkSpan(spec FenceSpec) (*Span, error) {
	s := spec.Span
	bad := func(format string, args ...any) error {
		return errdefs.Invalid("fence %q: span: %s", spec.ID, fmt.Sprintf(format, args...))
	}
	c := &Span{Local: s.Local.Unmap(), Underlay: s.Underlay, Router: s.Router, VNIs: maps.Clone(s.VNIs)}
	if !c.Local.IsValid() || c.Local.IsUnspecified() || c.Local.IsMulticast() {
		return nil, bad("local underlay address %v is not a unicast address", s.Local)
	}
	if err := checkIfName("underlay link", c.Underlay); err != nil {
		return nil, bad("%v", err)
	}
	peers, err := checkPeers(c.Local, s.Peers)
	if err != nil {
		return nil, bad("%v", err)
	}
	c.Peers = peers
	owner := map[uint32]string{}
	for _, n := range spec.Networks {
		vni, ok := c.VNIs[n.Name]
		if !ok {
			return nil, bad("no VNI for network %q", n.Name)
		}
		if vni < 1 || vni > maxVNI {
			return nil, bad("network %q: VNI %d is not between 1 and %d", n.Name, vni, maxVNI)
		}
		if other, dup := owner[vni]; dup {
			return nil, bad("VNI %d given to both %q and %q", vni, other, n.Name)
		}
		owner[vni] = n.Name
	}
	if len(owner) != len(c.VNIs) {
		for name := range c.VNIs {
			if !slices.ContainsFunc(spec.Networks, func(n FenceNetwork) bool { return n.Name == name }) {
				return nil, bad("VNI for %q, which is not a network of the fence", name)
			}
		}
	}
	return c, nil
}

// checkPeers validates peer addresses for a host at local: unicast, of
// local's family, not local, each once. It returns them sorted.
func checkPeers(local netip.Addr, peers []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(peers))
	for _, p := range peers {
		p = p.Unmap()
		switch {
		case !p.IsValid() || p.IsUnspecified() || p.IsMulticast():
			return nil, errdefs.Invalid("peer %v is not a unicast address", p)
		case p.Is4() != local.Is4():
			return nil, errdefs.Invalid("peer %s is not of the local address %s's family", p, local)
		case p == local:
			return nil, errdefs.Invalid("peer %s is this host's own address", p)
		case slices.Contains(out, p):
			return nil, errdefs.Invalid("peer %s given twice", p)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// spanMTU is the MTU of the spread fence's inside segments: the underlay
// link's less the encapsulation.
func spanMTU(dh *netlink.Handle, s *Span) (int, error) {
	l, err := dh.LinkByName(s.Underlay)
	if err != nil {
		if isLinkNotFound(err) {
			return 0, errdefs.NotFound("underlay link %q not found", s.Underlay)
		}
		return 0, fmt.Errorf("underlay link %q: %w", s.Underlay, err)
	}
	mtu := l.Attrs().MTU - vxlanOverhead(s.Local)
	if mtu < minMTU {
		return 0, errdefs.Invalid("underlay link %q: MTU %d leaves no room for VXLAN", s.Underlay, l.Attrs().MTU)
	}
	return mtu, nil
}

// ensureVXLAN joins network n's inside bridge to the other hosts of the
// fence: a VXLAN with the network's VNI, made in the daemon's namespace
// (so its UDP socket stays there, on the underlay) and then moved into the
// fence's, enslaved to the inside bridge, with a flood entry per peer. The
// VXLAN and the bridge get the fence's MTU. Idempotent: a VXLAN that
// differs from the spec is made again; a stray one left in the daemon's
// namespace by a crash between making and moving it is deleted.
func (f *Fence) ensureVXLAN(dh, fh *netlink.Handle, n FenceNetwork, hooks *setupHooks) error {
	span := f.spec.Span
	name := vxlanName(f.spec.ID, n.Name)
	vni := span.VNIs[n.Name]
	if err := deleteLinkIn(dh, name); err != nil {
		return fmt.Errorf("stray VXLAN %s in the daemon namespace: %w", name, err)
	}
	br, err := fh.LinkByName(BridgeName(n.Name))
	if err != nil {
		return fmt.Errorf("inside bridge: %w", err)
	}
	link, err := fh.LinkByName(name)
	switch {
	case err == nil && !vxlanMatches(link, vni, span.Local):
		f.log.Info("fence VXLAN differs from the spec; making it again", "network", n.Name, "vxlan", name, "vni", vni)
		if err := fh.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete VXLAN %s: %w", name, err)
		}
		link = nil
	case isLinkNotFound(err):
		link = nil
	case err != nil:
		return fmt.Errorf("VXLAN %s: %w", name, err)
	}
	if link == nil {
		if err := hooks.step("vxlan " + n.Name); err != nil {
			return err
		}
		if link, err = f.addVXLAN(dh, fh, name, vni, hooks.step, "vxlan "+n.Name+" move"); err != nil {
			return err
		}
	}
	for _, l := range []netlink.Link{link, br} {
		if l.Attrs().MTU != f.mtu {
			if err := fh.LinkSetMTU(l, f.mtu); err != nil {
				return fmt.Errorf("set MTU %d on %s: %w", f.mtu, l.Attrs().Name, err)
			}
		}
	}
	if link.Attrs().MasterIndex != br.Attrs().Index {
		if err := fh.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", name, br.Attrs().Name, err)
		}
	}
	if err := setFloodList(fh, link, span.Peers); err != nil {
		return fmt.Errorf("VXLAN %s: %w", name, err)
	}
	if err := fh.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// addVXLAN makes the VXLAN in the daemon's namespace and moves it into the
// fence's. A failure before the move deletes it again: a VXLAN left in the
// daemon's namespace would hold its VNI on the underlay's socket.
// beforeMove (a test hook) runs between the two.
func (f *Fence) addVXLAN(dh, fh *netlink.Handle, name string, vni uint32, beforeMove func(string) error, step string) (netlink.Link, error) {
	span := f.spec.Span
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: f.mtu},
		VxlanId:   int(vni),
		SrcAddr:   span.Local.AsSlice(),
		Port:      VXLANPort,
		Learning:  false,
	}
	if err := dh.LinkAdd(vx); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, errdefs.Conflict("VXLAN %s: VNI %d is already used on this host's underlay", name, vni)
		}
		return nil, fmt.Errorf("add VXLAN %s (VNI %d): %w", name, vni, err)
	}
	undo := revert.New(f.log)
	defer undo.Fail()
	undo.Add("VXLAN "+name+" in the daemon namespace", func() error { return deleteLinkIn(dh, name) })
	if err := beforeMove(step); err != nil {
		return nil, err
	}
	created, err := dh.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("VXLAN %s: find after add: %w", name, err)
	}
	if err := dh.LinkSetNsFd(created, int(f.ns)); err != nil {
		return nil, fmt.Errorf("move VXLAN %s into the fence namespace: %w", name, err)
	}
	undo.Success()
	link, err := fh.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("VXLAN %s: find after move: %w", name, err)
	}
	return link, nil
}

// vxlanMatches says whether link is the VXLAN the spec asks for.
func vxlanMatches(link netlink.Link, vni uint32, local netip.Addr) bool {
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return false
	}
	src, _ := netip.AddrFromSlice(vx.SrcAddr)
	return vx.VxlanId == int(vni) && src.Unmap() == local && vx.Port == VXLANPort && !vx.Learning
}

// floodEntry is the VXLAN forwarding entry that copies broadcasts and
// frames to unknown MACs to peer (head-end replication): `bridge fdb
// append 00:00:00:00:00:00 dev VXLAN dst PEER`.
func floodEntry(link netlink.Link, peer netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		HardwareAddr: make(net.HardwareAddr, 6),
		IP:           peer.AsSlice(),
	}
}

// floodPeers lists the peers of link's flood entries.
func floodPeers(h *netlink.Handle, link netlink.Link) ([]netip.Addr, error) {
	entries, err := h.NeighList(link.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list forwarding entries: %w", err)
	}
	var peers []netip.Addr
	for _, e := range entries {
		if e.LinkIndex != link.Attrs().Index || e.Flags&netlink.NTF_SELF == 0 || e.IP == nil ||
			!slices.Equal(e.HardwareAddr, make(net.HardwareAddr, 6)) {
			continue
		}
		if a, ok := netip.AddrFromSlice(e.IP); ok {
			peers = append(peers, a.Unmap())
		}
	}
	slices.SortFunc(peers, netip.Addr.Compare)
	return slices.Compact(peers), nil
}

// setFloodList makes peers exactly the flood entries of link. New entries
// are added before old ones go, so a peer that stays is never cut off.
func setFloodList(h *netlink.Handle, link netlink.Link, peers []netip.Addr) error {
	have, err := floodPeers(h, link)
	if err != nil {
		return err
	}
	for _, p := range peers {
		if !slices.Contains(have, p) {
			if err := h.NeighAppend(floodEntry(link, p)); err != nil {
				return fmt.Errorf("add flood entry for peer %s: %w", p, err)
			}
		}
	}
	for _, p := range have {
		if !slices.Contains(peers, p) {
			if err := h.NeighDel(floodEntry(link, p)); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete flood entry for peer %s: %w", p, err)
			}
		}
	}
	return nil
}

// SetPeers changes the hosts a spread fence floods to, for a VM placed on
// a host the fence did not reach yet or the last one leaving a host. It
// works on a running fence without disturbing the other peers.
func (f *Fence) SetPeers(ctx context.Context, peers []netip.Addr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spec.Span == nil {
		return errdefs.Invalid("fence %q is not spread over hosts", f.spec.ID)
	}
	if f.tornDown {
		return errdefs.NotFound("fence %q is torn down", f.spec.ID)
	}
	checked, err := checkPeers(f.spec.Span.Local, peers)
	if err != nil {
		return fmt.Errorf("fence %q: %w", f.spec.ID, err)
	}
	fh, err := netlinkAt(f.ns)
	if err != nil {
		return fmt.Errorf("fence %q: %w", f.spec.ID, err)
	}
	defer fh.Close()
	for _, n := range f.spec.Networks {
		name := vxlanName(f.spec.ID, n.Name)
		link, err := fh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("fence %q: network %q: VXLAN %s: %w", f.spec.ID, n.Name, name, err)
		}
		if err := setFloodList(fh, link, checked); err != nil {
			return fmt.Errorf("fence %q: network %q: VXLAN %s: %w", f.spec.ID, n.Name, name, err)
		}
	}
	f.spec.Span.Peers = checked
	f.log.Info("fence peers set", "peers", checked)
	return nil
}

// Peers are the hosts a spread fence floods to (nil for a fence on one
// host).
func (f *Fence) Peers() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spec.Span == nil {
		return nil
	}
	return slices.Clone(f.spec.Span.Peers)
}

// MTU is the MTU of the fence's inside segments: 0 for a fence on one host
// (the links' default), the underlay's less the VXLAN encapsulation for a
// spread one.
func (f *Fence) MTU() int { return f.mtu }

// CreateTap creates a VM NIC's tap on network's inside bridge, with the
// fence's MTU when it is spread.
func (f *Fence) CreateTap(ctx context.Context, tap, network string) error {
	bridge, err := f.InsideBridge(network)
	if err != nil {
		return err
	}
	if err := CreateTap(ctx, f.ns, tap, bridge); err != nil {
		return err
	}
	if f.mtu == 0 {
		return nil
	}
	h, err := netlinkAt(f.ns)
	if err != nil {
		return fmt.Errorf("tap %q: %w", tap, err)
	}
	defer h.Close()
	l, err := h.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("tap %q: %w", tap, err)
	}
	if l.Attrs().MTU != f.mtu {
		if err := h.LinkSetMTU(l, f.mtu); err != nil {
			return fmt.Errorf("tap %q: set MTU %d: %w", tap, f.mtu, err)
		}
	}
	return nil
}

// deleteVXLANs deletes the fence's VXLANs wherever they are: in its
// namespace ns (if open) and in the daemon's. Deleting them, rather than
// leaving them to the namespace's end, frees their VNIs on the underlay at
// once, even while a QEMU keeps the namespace alive.
func deleteVXLANs(daemonNS, ns netns.NsHandle, spec FenceSpec) error {
	var errs []error
	for _, where := range []netns.NsHandle{ns, daemonNS} {
		if !where.IsOpen() {
			continue
		}
		h, err := netlinkAt(where)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range spec.Networks {
			if err := deleteLinkIn(h, vxlanName(spec.ID, n.Name)); err != nil {
				errs = append(errs, err)
			}
		}
		h.Close()
	}
	return errors.Join(errs...)
}

// deleteLinkIn deletes the link called name through h; a missing link is
// not an error.
func deleteLinkIn(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil
	}
	if err == nil {
		err = h.LinkDel(l)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// removeVXLANs deletes spec's VXLANs for Remove, which has no open handle
// on the fence's namespace: it opens it by name when it is still there.
func removeVXLANs(daemonNS netns.NsHandle, spec FenceSpec) error {
	ns, err := openNamedNamespace(NamespaceName(spec.ID))
	if err != nil {
		ns = netns.None() // gone: its links went with it
	} else {
		defer ns.Close()
	}
	return deleteVXLANs(daemonNS, ns, spec)
}
