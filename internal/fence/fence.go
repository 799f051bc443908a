package fence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
	"stagehand/internal/revert"
)

// Policy says what may cross a fence.
type Policy string

// The policies of DOMAIN.md "Fenced deploy".
const (
	PolicyBlock Policy = "block"  // nothing crosses
	PolicyOut   Policy = "out"    // VMs open connections out; nothing opens in
	PolicyInOut Policy = "in-out" // both ways, through the external addresses
)

// ParsePolicy accepts the policy names of the CLI; "" means in-out.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return PolicyInOut, nil
	case PolicyBlock, PolicyOut, PolicyInOut:
		return p, nil
	}
	return "", errdefs.Invalid("fence policy %q: want block, out or in-out", s)
}

// Mapping joins one VM NIC's address inside the fence to its address on
// the outside network, 1:1.
type Mapping struct {
	Internal netip.Addr // the VM's own address, the same as when unfenced
	External netip.Addr // from the outside network's pool, for this deployment
	MAC      string     // the NIC's MAC: its DHCP reservation inside ("" for none)
}

// FenceNetwork is one network a fenced configuration uses.
type FenceNetwork struct {
	Name          string       // the network's name; the inside bridge is BridgeName(Name)
	OutsideBridge string       // the network's bridge in the daemon's namespace
	Subnet        netip.Prefix // shared by the VMs inside and the hosts outside
	Gateway       netip.Addr   // the VMs' gateway; the fence's inside port takes it
	DNS           []netip.Addr // handed out by the inside DHCP server
	Mappings      []Mapping
}

// FenceSpec describes a whole fence. Setup and Adopt take the same spec.
type FenceSpec struct {
	ID     string // names the namespace; letters, digits, '.', '_', '-'
	Policy Policy // "" means in-out
	// Allow, when not empty, is the egress allow-list: the VMs may open
	// connections out only to these destinations (see egress.go). Not
	// with PolicyBlock.
	Allow    []AllowRule
	Networks []FenceNetwork
	// Span, when set, spreads the fence over hosts with a VXLAN per
	// network; nil keeps it on this host alone.
	Span *Span
}

// linkLocalNextHop stands in for the outside gateway as the fence's next
// hop: the gateway's own address is the inside port's, so the fence cannot
// route to it. A permanent neighbour entry maps this address to the MAC of
// the outside bridge, which holds the gateway address.
var linkLocalNextHop = netip.MustParseAddr("169.254.0.1")

// NamespaceName is the name of fence id's namespace, bind-mounted at
// /run/netns/NAME: `ip netns exec NAME` enters it.
func NamespaceName(id string) string { return "stagehand-fence-" + id }

// Fence is a fenced deployment's namespace with its bridges, router and
// DHCP servers.
type Fence struct {
	spec     FenceSpec
	daemonNS netns.NsHandle // our own duplicate of the caller's handle
	ns       netns.NsHandle
	log      *slog.Logger
	mtu      int // of the inside segments of a spread fence; 0 otherwise

	mu       sync.Mutex
	dhcp     map[string]*DHCPServer // by network name
	tornDown bool
}

// ID is the fence's identifier.
func (f *Fence) ID() string { return f.spec.ID }

// Namespace is the fence's network namespace. It stays open until
// Teardown. Taps for the fenced VMs are created here (CreateTap), and their
// QEMU must run here too, since a tap is opened by name in the namespace
// of the opener.
func (f *Fence) Namespace() netns.NsHandle { return f.ns }

// NamespacePath is where the fence's namespace is bind-mounted.
func (f *Fence) NamespacePath() string { return filepath.Join(namedNSDir, NamespaceName(f.spec.ID)) }

// InsideBridge is the bridge, in Namespace, for the VM taps of network.
func (f *Fence) InsideBridge(network string) (string, error) {
	for _, n := range f.spec.Networks {
		if n.Name == network {
			return BridgeName(n.Name), nil
		}
	}
	return "", errdefs.NotFound("fence %q has no network %q", f.spec.ID, network)
}

// DHCP is the DHCP server on network's inside bridge, to change its
// reservations while the fence runs.
func (f *Fence) DHCP(network string) (*DHCPServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.dhcp[network]; ok {
		return s, nil
	}
	return nil, errdefs.NotFound("fence %q has no network %q", f.spec.ID, network)
}

// setupHooks lets tests fail Setup at a named step.
type setupHooks struct {
	failAt func(step string) error
}

func (h *setupHooks) step(name string) error {
	if h == nil || h.failAt == nil {
		return nil
	}
	return h.failAt(name)
}

// Setup builds a new fence from spec: a namespace with, for each network,
// an inside bridge carrying the gateway, a veth to the outside bridge in
// daemonNS whose fence end owns the external addresses, the routes and
// ARP settings that let the VMs share their subnet with the outside, the
// return routing that lets them reach (and be reached from) the lab host
// at the gateway address, the NAT ruleset, and a DHCP server with the VMs'
// reservations. A spread fence (spec.Span) gets a VXLAN per network, and
// on a member host only the inside bridges and VXLANs (see the package
// comment). On any failure everything done is undone. A fence with the same ID already
// there is a conflict (use Adopt or Teardown). The fence and its DHCP
// servers log to log (the daemon's; nil is slog.Default()).
func Setup(ctx context.Context, daemonNS netns.NsHandle, spec FenceSpec, log *slog.Logger) (*Fence, error) {
	return setup(ctx, daemonNS, spec, log, nil)
}

func setup(ctx context.Context, daemonNS netns.NsHandle, spec FenceSpec, log *slog.Logger, hooks *setupHooks) (_ *Fence, err error) {
	if spec, err = checkSpec(spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := NamespaceName(spec.ID)
	if _, err := os.Lstat(filepath.Join(namedNSDir, name)); err == nil {
		return nil, errdefs.Conflict("fence %q already exists (namespace %s)", spec.ID, name)
	}
	f, err := newFence(daemonNS, spec, log)
	if err != nil {
		return nil, err
	}
	undo := revert.New(f.log)
	defer undo.Fail()
	undo.Add("daemon namespace handle", f.daemonNS.Close)

	if err := hooks.step("namespace"); err != nil {
		return nil, fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	ns, err := createNamedNamespace(name)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, errdefs.Conflict("fence %q already exists (namespace %s)", spec.ID, name)
		}
		return nil, fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	f.ns = ns
	undo.Add("namespace "+name, func() error {
		// Deleting the outside veth ends deletes the pairs at once;
		// the namespace itself goes when its last handle closes.
		err := f.deleteOutsideLinks()
		if f.spec.Span != nil {
			err = errors.Join(err, deleteVXLANs(f.daemonNS, f.ns, f.spec))
		}
		f.ns.Close()
		return errors.Join(err, deleteNamedNamespace(name))
	})

	if err := f.ensure(ctx, hooks); err != nil {
		return nil, err
	}
	undo.Add("DHCP servers", func() error { f.stopDHCP(); return nil })
	if err := hooks.step("done"); err != nil {
		return nil, fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	undo.Success()
	if spec.Span != nil {
		f.log.Info("fence set up", "policy", spec.Policy, "networks", len(spec.Networks),
			"router", spec.Span.Router, "local", spec.Span.Local, "peers", spec.Span.Peers, "mtu", f.mtu)
	} else {
		f.log.Info("fence set up", "policy", spec.Policy, "networks", len(spec.Networks))
	}
	return f, nil
}

// Adopt takes over the fence spec.ID that an earlier daemon set up: it
// checks the namespace is there (not found otherwise), brings links,
// addresses, routes and the ruleset back to spec without disturbing the
// VMs' taps, and starts the DHCP servers again. A spread fence's VXLANs
// are kept when they match the spec (their flood entries made the
// spec's peers) and made again when not. On failure the fence is
// left as it was, to be retried or torn down.
func Adopt(ctx context.Context, daemonNS netns.NsHandle, spec FenceSpec, log *slog.Logger) (*Fence, error) {
	spec, err := checkSpec(spec)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := openFenceNamespace(spec)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("fence %q: no namespace %s", spec.ID, NamespaceName(spec.ID))
		}
		return nil, fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	f, err := newFence(daemonNS, spec, log)
	if err != nil {
		ns.Close()
		return nil, err
	}
	f.ns = ns
	if err := f.ensure(ctx, nil); err != nil {
		f.stopDHCP()
		f.ns.Close()
		f.daemonNS.Close()
		return nil, err
	}
	f.log.Info("fence adopted")
	return f, nil
}

// Teardown stops the DHCP servers, deletes the veths to the outside
// bridges, a spread fence's VXLANs and the fence's namespace. It is idempotent. QEMU processes
// still running in the namespace keep it alive, unnamed, until they exit.
func (f *Fence) Teardown(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tornDown {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.stopDHCPLocked()
	var errs []error
	if err := f.deleteOutsideLinks(); err != nil {
		errs = append(errs, err)
	}
	if f.spec.Span != nil {
		if err := deleteVXLANs(f.daemonNS, f.ns, f.spec); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteRuleset(f.ns); err != nil {
		f.log.Debug("fence teardown: ruleset", "err", err)
	}
	if err := deleteNamedNamespace(NamespaceName(f.spec.ID)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fence %q: teardown: %w", f.spec.ID, err)
	}
	f.ns.Close()
	f.daemonNS.Close()
	f.tornDown = true
	f.log.Info("fence torn down")
	return nil
}

// Remove tears down the fence spec.ID without a *Fence, for one a daemon
// could not adopt: it deletes the outside veth ends in daemonNS, a spread
// fence's VXLANs and the namespace. Missing parts are not an error.
func Remove(ctx context.Context, daemonNS netns.NsHandle, spec FenceSpec, log *slog.Logger) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validID.MatchString(spec.ID) {
		return errdefs.Invalid("fence id %q: want letters, digits, '.', '_' or '-'", spec.ID)
	}
	f := &Fence{spec: spec, daemonNS: daemonNS, log: orDefault(log).With("fence", spec.ID)}
	var errs []error
	if err := f.deleteOutsideLinks(); err != nil {
		errs = append(errs, err)
	}
	if spec.Span != nil {
		if err := removeVXLANs(daemonNS, spec); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteNamedNamespace(NamespaceName(spec.ID)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fence %q: remove: %w", spec.ID, err)
	}
	return nil
}

func newFence(daemonNS netns.NsHandle, spec FenceSpec, log *slog.Logger) (*Fence, error) {
	// Keep our own handle: the caller may close theirs.
	fd, err := unix.FcntlInt(uintptr(daemonNS), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fence %q: daemon namespace handle: %w", spec.ID, err)
	}
	return &Fence{
		spec:     spec,
		daemonNS: netns.NsHandle(fd),
		ns:       netns.None(),
		log:      orDefault(log).With("fence", spec.ID),
		dhcp:     map[string]*DHCPServer{},
	}, nil
}

func (f *Fence) outsideLinkName(network string) string {
	return shortName(fenceOutPrefix, f.spec.ID+"/"+network)
}

func insideLinkName(network string) string { return shortName(fenceInnerPrefix, network) }

// ensure brings the fence's namespace to spec. Every step is idempotent;
// the DHCP servers are (re)started last. A spread fence's networks get
// their VXLANs too; on a member host they are all there is.
func (f *Fence) ensure(ctx context.Context, hooks *setupHooks) error {
	wrap := func(err error) error { return fmt.Errorf("fence %q: %w", f.spec.ID, err) }
	dh, err := netlinkAt(f.daemonNS)
	if err != nil {
		return wrap(err)
	}
	defer dh.Close()
	fh, err := netlinkAt(f.ns)
	if err != nil {
		return wrap(err)
	}
	defer fh.Close()

	if err := hooks.step("sysctl"); err != nil {
		return wrap(err)
	}
	if err := setSysctls(f.ns, globalSysctls); err != nil {
		return wrap(err)
	}
	if lo, err := fh.LinkByName("lo"); err == nil {
		if err := fh.LinkSetUp(lo); err != nil {
			return wrap(fmt.Errorf("loopback up: %w", err))
		}
	}
	span := f.spec.Span
	if span != nil {
		if f.mtu, err = spanMTU(dh, span); err != nil {
			return wrap(err)
		}
	}
	// A member host of a spread fence has only the inside bridges, with
	// no address, joined to the router host's by the VXLANs.
	member := span != nil && !span.Router
	var nat []natLink
	defaultRoute := false
	for i, n := range f.spec.Networks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := hooks.step("network " + n.Name); err != nil {
			return wrap(err)
		}
		if member {
			// Not the router's MAC, which the member's bridge would
			// otherwise share (both named for the network): frames its
			// VMs send to the gateway would stop at it.
			mac := stableMAC("fence-member/" + f.spec.ID + "/" + n.Name)
			if err := ensureBridgeMAC(fh, BridgeName(n.Name), netip.Prefix{}, mac); err != nil {
				return wrap(fmt.Errorf("network %q: inside bridge: %w", n.Name, err))
			}
		} else {
			hasGW, err := f.ensureNetwork(dh, fh, i, n, !defaultRoute)
			if err != nil {
				return wrap(fmt.Errorf("network %q: %w", n.Name, err))
			}
			defaultRoute = defaultRoute || hasGW
			nat = append(nat, natLink{ext: insideLinkName(n.Name), bridge: BridgeName(n.Name), gateway: n.Gateway,
				mark: returnMark(i), mappings: n.Mappings})
		}
		if span != nil {
			if err := f.ensureVXLAN(dh, fh, n, hooks); err != nil {
				return wrap(fmt.Errorf("network %q: %w", n.Name, err))
			}
		}
	}
	if member {
		return nil
	}
	if err := hooks.step("return rules"); err != nil {
		return wrap(err)
	}
	if err := ensureReturnRules(fh, len(f.spec.Networks)); err != nil {
		return wrap(err)
	}
	if err := hooks.step("nftables"); err != nil {
		return wrap(err)
	}
	if err := applyRuleset(f.ns, f.spec.ID, f.spec.Policy, f.spec.Allow, nat); err != nil {
		return wrap(err)
	}
	if err := hooks.step("dhcp"); err != nil {
		return wrap(err)
	}
	return f.startDHCP(ctx)
}

// ensureNetwork builds network number i's part of the fence. With
// wantDefault and an outside bridge that holds the gateway, it also routes
// everything beyond the subnet to that gateway; it reports whether it did.
// Its return table (returnTable(i)) routes the subnet, and beyond it when
// the outside holds the gateway, out through this network's veth.
func (f *Fence) ensureNetwork(dh, fh *netlink.Handle, i int, n FenceNetwork, wantDefault bool) (bool, error) {
	br := BridgeName(n.Name)
	ext := insideLinkName(n.Name)
	out := f.outsideLinkName(n.Name)

	outsideBr, err := dh.LinkByName(n.OutsideBridge)
	if err != nil {
		if isLinkNotFound(err) {
			return false, errdefs.NotFound("outside bridge %q not found", n.OutsideBridge)
		}
		return false, fmt.Errorf("outside bridge %q: %w", n.OutsideBridge, err)
	}

	// Inside bridge: the gateway as a /32, so the subnet's route goes out
	// to the outside and only the VMs' own addresses are routed inside.
	if err := ensureBridge(fh, br, netip.PrefixFrom(n.Gateway, 32)); err != nil {
		return false, fmt.Errorf("inside bridge %q: %w", br, err)
	}
	brLink, err := fh.LinkByName(br)
	if err != nil {
		return false, err
	}

	// The veth: the outside end on the outside bridge, the fence end (ext)
	// with a MAC of its own that stays the same across re-creation.
	outLink, outErr := dh.LinkByName(out)
	extLink, extErr := fh.LinkByName(ext)
	if outErr != nil || extErr != nil {
		if outErr == nil {
			_ = dh.LinkDel(outLink)
		}
		if extErr == nil {
			_ = fh.LinkDel(extLink)
		}
		veth := &netlink.Veth{
			LinkAttrs:        netlink.LinkAttrs{Name: out, MasterIndex: outsideBr.Attrs().Index},
			PeerName:         ext,
			PeerHardwareAddr: stableMAC("fence/" + f.spec.ID + "/" + n.Name),
			PeerNamespace:    netlink.NsFd(int(f.ns)),
		}
		if err := dh.LinkAdd(veth); err != nil {
			return false, fmt.Errorf("add veth %s/%s: %w", out, ext, err)
		}
		if outLink, err = dh.LinkByName(out); err != nil {
			return false, err
		}
		if extLink, err = fh.LinkByName(ext); err != nil {
			return false, err
		}
	}
	if outLink.Attrs().MasterIndex != outsideBr.Attrs().Index {
		if err := dh.LinkSetMaster(outLink, outsideBr); err != nil {
			return false, fmt.Errorf("attach %s to %s: %w", out, n.OutsideBridge, err)
		}
	}

	// ARP: ext answers only for its own (external) addresses and never
	// speaks with an inside address, so the fence cannot steal the
	// gateway's address on the outside segment; the inside bridge answers
	// for every address that is not in the fence (proxy ARP, at once).
	// accept_local: packets from the lab host come from the gateway
	// address, which is also the fence's own (on the inside bridge); the
	// kernel would drop them as martians.
	if err := setSysctls(f.ns, [][2]string{
		{"net/ipv4/conf/" + ext + "/arp_ignore", "1"},
		{"net/ipv4/conf/" + ext + "/arp_announce", "2"},
		{"net/ipv4/conf/" + ext + "/rp_filter", "0"},
		{"net/ipv4/conf/" + ext + "/accept_local", "1"},
		{"net/ipv4/conf/" + br + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + br + "/proxy_delay", "0"},
		{"net/ipv4/conf/" + br + "/arp_ignore", "1"},
		{"net/ipv4/conf/" + br + "/arp_announce", "2"},
		{"net/ipv4/conf/" + br + "/rp_filter", "0"},
	}); err != nil {
		return false, err
	}

	externals := make([]netip.Prefix, 0, len(n.Mappings))
	for _, m := range n.Mappings {
		externals = append(externals, netip.PrefixFrom(m.External, 32))
	}
	if err := setIPv4s(fh, extLink, externals); err != nil {
		return false, fmt.Errorf("%s: %w", ext, err)
	}
	for _, l := range []struct {
		h    *netlink.Handle
		link netlink.Link
	}{{fh, extLink}, {dh, outLink}, {fh, brLink}} {
		if err := l.h.LinkSetUp(l.link); err != nil {
			return false, fmt.Errorf("set %s up: %w", l.link.Attrs().Name, err)
		}
	}

	// Routes: each VM's address to the inside bridge; the rest of the
	// subnet to the outside, spoken from the first external address.
	for _, m := range n.Mappings {
		r := &netlink.Route{LinkIndex: brLink.Attrs().Index, Dst: prefixToIPNet(netip.PrefixFrom(m.Internal, 32)),
			Scope: netlink.SCOPE_LINK, Src: n.Gateway.AsSlice()}
		if err := fh.RouteReplace(r); err != nil {
			return false, fmt.Errorf("route %s via %s: %w", m.Internal, br, err)
		}
	}
	var src net.IP
	if len(n.Mappings) > 0 {
		src = n.Mappings[0].External.AsSlice()
	}
	subnet := func(table int) *netlink.Route {
		return &netlink.Route{Table: table, LinkIndex: extLink.Attrs().Index, Dst: prefixToIPNet(n.Subnet),
			Scope: netlink.SCOPE_LINK, Src: src}
	}
	if err := fh.RouteReplace(subnet(unix.RT_TABLE_MAIN)); err != nil {
		return false, fmt.Errorf("route %s via %s: %w", n.Subnet, ext, err)
	}

	// Beyond the subnet: through the outside bridge, when it holds the
	// gateway, reached at the link-local stand-in for the gateway.
	returns := []*netlink.Route{subnet(returnTable(i))}
	holds := false
	if len(n.Mappings) > 0 {
		if holds, err = holdsAddr(dh, outsideBr, n.Gateway); err != nil {
			return false, err
		}
	}
	var beyond func(table int) *netlink.Route
	if holds {
		neigh := &netlink.Neigh{LinkIndex: extLink.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: linkLocalNextHop.AsSlice(), HardwareAddr: outsideBr.Attrs().HardwareAddr}
		if err := fh.NeighSet(neigh); err != nil {
			return false, fmt.Errorf("neighbour for the outside gateway: %w", err)
		}
		beyond = func(table int) *netlink.Route {
			return &netlink.Route{Table: table, LinkIndex: extLink.Attrs().Index, Gw: linkLocalNextHop.AsSlice(),
				Flags: int(netlink.FLAG_ONLINK), Src: src}
		}
		returns = append(returns, beyond(returnTable(i)))
	}
	if err := setTableRoutes(fh, returnTable(i), returns); err != nil {
		return false, fmt.Errorf("return table %d: %w", returnTable(i), err)
	}
	if !wantDefault || !holds {
		return false, nil
	}
	if err := fh.RouteReplace(beyond(unix.RT_TABLE_MAIN)); err != nil {
		return false, fmt.Errorf("default route: %w", err)
	}
	return true, nil
}

// Return routing. Each network i of a fence has a routing table,
// returnTable(i), that sends everything out through the network's veth,
// and a packet mark, returnMark(i), that the ruleset puts on the packets
// that must take it (see applyRuleset). The rules that select those tables
// come before the local table's, since the gateway address they must
// reach outside is local inside the fence:
//
//	pref 100: fwmark returnMark(i) lookup returnTable(i), one per network
//	pref 200: lookup local (moved from 0)
//	pref 32766: lookup main; 32767: lookup default
const (
	returnRulePref = 100
	localRulePref  = 200
)

// returnMark is network i's packet and connection mark ("SH" and i+1).
func returnMark(i int) uint32 { return 0x53480000 + uint32(i) + 1 }

// returnTable is network i's return routing table.
func returnTable(i int) int { return 1000 + i }

// ensureReturnRules makes the fence namespace's IPv4 rules exactly those
// above for networks networks. New rules are added before old ones go, so
// the local table is never out of reach.
func ensureReturnRules(h *netlink.Handle, networks int) error {
	want := []*netlink.Rule{}
	for i := range networks {
		r := netlink.NewRule()
		r.Priority, r.Mark, r.Table = returnRulePref, returnMark(i), returnTable(i)
		want = append(want, r)
	}
	local := netlink.NewRule()
	local.Priority, local.Table = localRulePref, unix.RT_TABLE_LOCAL
	want = append(want, local)
	main := netlink.NewRule()
	main.Priority, main.Table = 32766, unix.RT_TABLE_MAIN
	dflt := netlink.NewRule()
	dflt.Priority, dflt.Table = 32767, unix.RT_TABLE_DEFAULT
	keep := append(slices.Clone(want), main, dflt)

	have, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list rules: %w", err)
	}
	sameRule := func(a, b *netlink.Rule) bool {
		return a.Priority == b.Priority && a.Table == b.Table && a.Mark == b.Mark
	}
	for _, w := range want {
		if !slices.ContainsFunc(have, func(r netlink.Rule) bool { return sameRule(&r, w) }) {
			w.Family = netlink.FAMILY_V4
			if err := h.RuleAdd(w); err != nil {
				return fmt.Errorf("add rule %s: %w", w, err)
			}
		}
	}
	for _, r := range have {
		if slices.ContainsFunc(keep, func(k *netlink.Rule) bool { return sameRule(&r, k) }) {
			continue
		}
		del := netlink.NewRule()
		del.Family, del.Priority, del.Table, del.Mark = netlink.FAMILY_V4, r.Priority, r.Table, r.Mark
		if r.Mask != nil {
			del.Mask = r.Mask
		}
		if err := h.RuleDel(del); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete rule %s: %w", r, err)
		}
	}
	return nil
}

// setTableRoutes makes want exactly the IPv4 routes of table.
func setTableRoutes(h *netlink.Handle, table int, want []*netlink.Route) error {
	for _, r := range want {
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s: %w", r, err)
		}
	}
	have, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range have {
		if !slices.ContainsFunc(want, func(w *netlink.Route) bool { return sameDst(w.Dst, r.Dst) }) {
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("delete route %s: %w", r, err)
			}
		}
	}
	return nil
}

// sameDst compares route destinations; nil and 0.0.0.0/0 are both the
// default.
func sameDst(a, b *net.IPNet) bool {
	norm := func(n *net.IPNet) string {
		if n == nil {
			return "0.0.0.0/0"
		}
		return n.String()
	}
	return norm(a) == norm(b)
}

// globalSysctls make the namespace a router that filters only with its own
// table: bridged frames inside must not go through IP hooks.
var globalSysctls = [][2]string{
	{"net/ipv4/ip_forward", "1"},
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	{"net/bridge/bridge-nf-call-iptables?", "0"},
	{"net/bridge/bridge-nf-call-arptables?", "0"},
}

// setSysctls writes /proc/sys keys as seen from inside ns. A key ending in
// '?' is optional: skipped when absent (bridge keys exist only while
// br_netfilter is loaded).
func setSysctls(ns netns.NsHandle, kv [][2]string) error {
	return inNamespace(ns, func() error {
		for _, e := range kv {
			key, optional := e[0], false
			if k, ok := cutSuffix(key, "?"); ok {
				key, optional = k, true
			}
			err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(e[1]), 0o644)
			if err != nil && !(optional && errors.Is(err, os.ErrNotExist)) {
				return fmt.Errorf("sysctl %s=%s: %w", key, e[1], err)
			}
		}
		return nil
	})
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// setIPv4s makes want exactly the IPv4 addresses of link.
func setIPv4s(h *netlink.Handle, link netlink.Link, want []netip.Prefix) error {
	keep := map[string]bool{}
	for _, p := range want {
		keep[p.String()] = true
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if !keep[a.IPNet.String()] {
			if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("remove address %s: %w", a.IPNet, err)
			}
		}
	}
	for _, p := range want {
		if err := h.AddrReplace(link, &netlink.Addr{IPNet: prefixToIPNet(p)}); err != nil {
			return fmt.Errorf("set address %s: %w", p, err)
		}
	}
	return nil
}

func holdsAddr(h *netlink.Handle, link netlink.Link, a netip.Addr) (bool, error) {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, x := range addrs {
		if x.IP.Equal(net.IP(a.AsSlice())) {
			return true, nil
		}
	}
	return false, nil
}

func (f *Fence) startDHCP(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopDHCPLocked()
	for _, n := range f.spec.Networks {
		res := map[string]netip.Addr{}
		for _, m := range n.Mappings {
			if m.MAC != "" {
				res[m.MAC] = m.Internal
			}
		}
		s, err := StartDHCP(ctx, f.ns, DHCPConfig{
			Interface: BridgeName(n.Name),
			ServerIP:  n.Gateway,
			Subnet:    n.Subnet,
			Router:    n.Gateway,
			DNS:       n.DNS,
			MTU:       f.mtu,
			Logger:    f.log.With("network", n.Name),
		}, res)
		if err != nil {
			f.stopDHCPLocked()
			return fmt.Errorf("fence %q: network %q: %w", f.spec.ID, n.Name, err)
		}
		f.dhcp[n.Name] = s
	}
	return nil
}

func (f *Fence) stopDHCP() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopDHCPLocked()
}

func (f *Fence) stopDHCPLocked() {
	for name, s := range f.dhcp {
		_ = s.Stop()
		delete(f.dhcp, name)
	}
}

// deleteOutsideLinks deletes the daemon-side veth ends, which deletes
// their fence-side peers too.
func (f *Fence) deleteOutsideLinks() error {
	h, err := netlinkAt(f.daemonNS)
	if err != nil {
		return err
	}
	defer h.Close()
	var errs []error
	for _, n := range f.spec.Networks {
		name := f.outsideLinkName(n.Name)
		l, err := h.LinkByName(name)
		if isLinkNotFound(err) {
			continue
		}
		if err == nil {
			err = h.LinkDel(l)
		}
		if err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// checkSpec validates spec and fills defaults.
func checkSpec(spec FenceSpec) (FenceSpec, error) {
	if !validID.MatchString(spec.ID) {
		return spec, errdefs.Invalid("fence id %q: want up to 63 letters, digits, '.', '_' or '-'", spec.ID)
	}
	p, err := ParsePolicy(string(spec.Policy))
	if err != nil {
		return spec, err
	}
	spec.Policy = p
	if err := CheckAllow(p, spec.Allow); err != nil {
		return spec, fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	if len(spec.Networks) == 0 {
		return spec, errdefs.Invalid("fence %q: no networks", spec.ID)
	}
	names := map[string]bool{}
	externals := map[netip.Addr]string{}
	macs := map[string]string{}
	for i, n := range spec.Networks {
		bad := func(format string, args ...any) error {
			return errdefs.Invalid("fence %q: network %q: %s", spec.ID, n.Name, fmt.Sprintf(format, args...))
		}
		if n.Name == "" || names[n.Name] {
			return spec, bad("empty or repeated network name")
		}
		names[n.Name] = true
		if err := checkIfName("outside bridge", n.OutsideBridge); err != nil {
			return spec, bad("%v", err)
		}
		if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
			return spec, bad("subnet %v is not an IPv4 prefix", n.Subnet)
		}
		n.Subnet = n.Subnet.Masked()
		if !n.Subnet.Contains(n.Gateway) {
			return spec, bad("gateway %v is not in %s", n.Gateway, n.Subnet)
		}
		for _, o := range spec.Networks[:i] {
			if o.Subnet.Overlaps(n.Subnet) {
				return spec, bad("subnet %s overlaps network %q's", n.Subnet, o.Name)
			}
		}
		internals := map[netip.Addr]bool{}
		for _, m := range n.Mappings {
			if !n.Subnet.Contains(m.Internal) || m.Internal == n.Gateway {
				return spec, bad("internal address %v is not a host address of %s other than the gateway", m.Internal, n.Subnet)
			}
			if !n.Subnet.Contains(m.External) || m.External == n.Gateway {
				return spec, bad("external address %v is not a host address of %s other than the gateway", m.External, n.Subnet)
			}
			if internals[m.Internal] {
				return spec, bad("internal address %s mapped twice", m.Internal)
			}
			internals[m.Internal] = true
			if other, dup := externals[m.External]; dup {
				return spec, bad("external address %s mapped twice (also in %q)", m.External, other)
			}
			externals[m.External] = n.Name
			if m.MAC != "" {
				k, err := parseMAC(m.MAC)
				if err != nil {
					return spec, bad("%v", err)
				}
				if other, dup := macs[k.String()]; dup {
					return spec, bad("MAC %s used twice (also in %q)", k, other)
				}
				macs[k.String()] = n.Name
			}
		}
		for _, m := range n.Mappings {
			if internals[m.External] {
				return spec, bad("external address %s is also an internal one", m.External)
			}
		}
		spec.Networks[i] = n
	}
	if spec.Span != nil {
		span, err := checkSpan(spec)
		if err != nil {
			return spec, err
		}
		spec.Span = span
	}
	return spec, nil
}

// orDefault is log, or slog.Default() when log is nil.
func orDefault(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}
