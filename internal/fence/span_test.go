package fence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"stagehand/internal/errdefs"
)

// The spread-fence tests build, in throwaway namespaces only, hosts joined
// by an underlay:
//
//	underlay ns:  bridge ul0 (10.200.0.0/24, MTU 1400 on the hosts' ends)
//	host A ns:    a fenceBed's daemon namespace: outside bridge, outside host
//	host B, C ns: daemon namespaces with the same outside bridge, unused
//	fence ns:     one per host, made by Setup; fake VMs on its inside bridge

const (
	underlayMTU = 1400
	spreadMTU   = underlayMTU - 50
	testVNI     = 4242
)

type spanHost struct {
	ns       netns.NsHandle
	addr     netip.Addr // on the underlay
	underlay string     // the underlay link's name in ns
}

type spanBed struct {
	*fenceBed
	underlayNS netns.NsHandle
	hosts      []*spanHost // hosts[0] is the fenceBed's daemon namespace
}

func newSpanBed(t *testing.T, hosts int) *spanBed {
	t.Helper()
	ctx := context.Background()
	b := &spanBed{fenceBed: newFenceBed(t)}
	b.underlayNS, _ = newTestNS(t)
	if err := EnsureBridge(ctx, b.underlayNS, "ul0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	for i := range hosts {
		h := &spanHost{ns: b.daemonNS, addr: netip.AddrFrom4([4]byte{10, 200, 0, byte(i + 1)})}
		if i > 0 {
			h.ns, _ = newTestNS(t)
			if err := EnsureBridge(ctx, h.ns, b.outsideBr, netip.PrefixFrom(bedGateway, 24)); err != nil {
				t.Fatal(err)
			}
		}
		h.underlay = addVeth(t, b.underlayNS, "ul0", h.ns, randomMAC())
		nl := mustNetlink(t, h.ns)
		l, err := nl.LinkByName(h.underlay)
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkSetMTU(l, underlayMTU); err != nil {
			t.Fatal(err)
		}
		if err := nl.AddrAdd(l, &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(h.addr, 24))}); err != nil {
			t.Fatal(err)
		}
		b.hosts = append(b.hosts, h)
	}
	return b
}

// spanSpec is the fence of vms as host i sees it: its own ID (fences are
// named per host), the same networks, host 0 the router, the listed
// hosts as peers.
func (b *spanBed) spanSpec(base FenceSpec, i int, peers ...int) FenceSpec {
	s := base
	s.ID = "t" + randHex(10)
	h := b.hosts[i]
	s.Span = &Span{Local: h.addr, Underlay: h.underlay, Router: i == 0, VNIs: map[string]uint32{b.network: testVNI}}
	for _, p := range peers {
		s.Span.Peers = append(s.Span.Peers, b.hosts[p].addr)
	}
	return s
}

// setupOn sets spec up on host i, torn down when the test ends.
func (b *spanBed) setupOn(t *testing.T, i int, spec FenceSpec) *Fence {
	t.Helper()
	ctx := context.Background()
	f, err := Setup(ctx, b.hosts[i].ns, spec, nil)
	if err != nil {
		t.Fatalf("Setup on host %d: %v", i, err)
	}
	t.Cleanup(func() {
		_ = f.Teardown(ctx)
		_ = Remove(ctx, b.hosts[i].ns, spec, nil)
	})
	return f
}

// plug gives vm a namespace and a veth on the fence's inside bridge.
func plug(t *testing.T, f *Fence, network string, vm *fakeVM) {
	t.Helper()
	br, err := f.InsideBridge(network)
	if err != nil {
		t.Fatal(err)
	}
	vm.ns, vm.nsName = newTestNS(t)
	vm.ifname = addVeth(t, f.Namespace(), br, vm.ns, vm.mac)
}

// leaseAndConfigure runs DHCP in vm's namespace, checks the reservation
// and the MTU it is handed, and configures the VM as its guest would.
func leaseAndConfigure(t *testing.T, vm *fakeVM) {
	t.Helper()
	lease, err := runUDHCPC(t, vm.nsName, vm.ifname, "-O", "mtu")
	if err != nil {
		t.Fatalf("VM %s: DHCP across the fence: %v", vm.name, err)
	}
	if lease["ip"] != vm.internal.String() || lease["router"] != bedGateway.String() || lease["mtu"] != fmt.Sprint(spreadMTU) {
		t.Errorf("VM %s: lease %v, want %s via %s with MTU %d", vm.name, lease, vm.internal, bedGateway, spreadMTU)
	}
	nl := mustNetlink(t, vm.ns)
	l, err := nl.LinkByName(vm.ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetMTU(l, spreadMTU); err != nil {
		t.Fatal(err)
	}
	vm.configure(t)
}

// vxlanOf returns the fence's VXLAN for network, from its namespace.
func vxlanOf(t *testing.T, f *Fence, network string) *netlink.Vxlan {
	t.Helper()
	l, err := mustNetlink(t, f.Namespace()).LinkByName(vxlanName(f.ID(), network))
	if err != nil {
		t.Fatalf("fence %s: VXLAN: %v", f.ID(), err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("fence %s: %s is a %s", f.ID(), l.Attrs().Name, l.Type())
	}
	return vx
}

func peersOf(t *testing.T, f *Fence, network string) string {
	t.Helper()
	vx := vxlanOf(t, f, network)
	peers, err := floodPeers(mustNetlink(t, f.Namespace()), vx)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(peers)
}

// A fence spread over two hosts: the router on A, a member on B, a VM on
// each.
func TestSpreadFence(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	requireBusybox(t)
	ctx := context.Background()
	b := newSpanBed(t, 2)
	vmA := &fakeVM{name: "A", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.11"), external: netip.MustParseAddr("10.99.0.51")}
	vmB := &fakeVM{name: "B", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.12"), external: netip.MustParseAddr("10.99.0.52")}
	base := b.spec(PolicyInOut, vmA, vmB)
	specA, specB := b.spanSpec(base, 0, 1), b.spanSpec(base, 1, 0)
	fA := b.setupOn(t, 0, specA)
	fB := b.setupOn(t, 1, specB)
	plug(t, fA, b.network, vmA)
	plug(t, fB, b.network, vmB)

	// (d) The VXLANs, inside bridges and taps take the underlay's MTU
	// less the encapsulation; each VXLAN is as specified.
	for i, f := range []*Fence{fA, fB} {
		if f.MTU() != spreadMTU {
			t.Errorf("host %d: fence MTU %d, want %d", i, f.MTU(), spreadMTU)
		}
		vx := vxlanOf(t, f, b.network)
		fh := mustNetlink(t, f.Namespace())
		br, err := fh.LinkByName(BridgeName(b.network))
		if err != nil {
			t.Fatal(err)
		}
		src, _ := netip.AddrFromSlice(vx.SrcAddr)
		if vx.MTU != spreadMTU || br.Attrs().MTU != spreadMTU || vx.VxlanId != testVNI || vx.Port != VXLANPort ||
			vx.Learning || src != b.hosts[i].addr || vx.MasterIndex != br.Attrs().Index || vx.OperState != netlink.OperUp && vx.OperState != netlink.OperUnknown {
			t.Errorf("host %d: VXLAN mtu=%d vni=%d port=%d learning=%v local=%s master=%d state=%s, bridge mtu=%d",
				i, vx.MTU, vx.VxlanId, vx.Port, vx.Learning, src, vx.MasterIndex, vx.OperState, br.Attrs().MTU)
		}
		tap := TapName("spread/" + randHex(8))
		if err := f.CreateTap(ctx, tap, b.network); err != nil {
			t.Fatal(err)
		}
		if l, err := fh.LinkByName(tap); err != nil || l.Attrs().MTU != spreadMTU {
			t.Errorf("host %d: tap: %v, MTU want %d", i, err, spreadMTU)
		}
	}
	if got, want := peersOf(t, fA, b.network), "[10.200.0.2]"; got != want {
		t.Errorf("A floods to %s, want %s", got, want)
	}
	if got, want := peersOf(t, fB, b.network), "[10.200.0.1]"; got != want {
		t.Errorf("B floods to %s, want %s", got, want)
	}
	// The member has no outside link, and no VXLAN stays in a daemon
	// namespace: each lives in its fence's.
	if links := linkNames(t, b.hosts[1].ns); strings.Contains(links, fenceOutPrefix) || strings.Contains(links, vxlanPrefix) {
		t.Errorf("B's daemon namespace: %s", links)
	}
	if links := linkNames(t, b.hosts[0].ns); strings.Contains(links, vxlanPrefix) {
		t.Errorf("A's daemon namespace holds a VXLAN: %s", links)
	}

	// (b) Each VM gets its reservation and the MTU from A's server; B's
	// DHCP crosses the VXLAN.
	leaseAndConfigure(t, vmA)
	leaseAndConfigure(t, vmB)

	// (a) B reaches A by its internal address, and full-size frames
	// cross the underlay.
	serveIdentity(t, vmA.ns, "A", vmA.internal)
	serveIdentity(t, vmB.ns, "B", vmB.internal)
	if got, err := dialFrom(vmB.ns, vmA.internal); err != nil || got != "A saw 10.99.0.12" {
		t.Errorf("B -> A's internal address: %q, %v", got, err)
	}
	const bulk = 256 << 10
	serveBulk(t, vmA.ns, vmA.internal, bulk)
	if n, err := readBulk(vmB.ns, vmA.internal); err != nil || n != bulk {
		t.Errorf("bulk A -> B across the VXLAN: %d bytes, %v; want %d", n, err, bulk)
	}

	// (c) From A's outside bridge, B's external address answers (NAT on
	// A, the packet crosses the VXLAN), and B goes out as its external
	// address.
	serveIdentity(t, b.hostNS, "host", bedHost)
	if got, err := dialFrom(b.hostNS, vmB.external); err != nil || got != "B saw 10.99.0.20" {
		t.Errorf("outside host -> B's external address: %q, %v", got, err)
	}
	if got, err := dialFrom(vmB.ns, bedHost); err != nil || got != "host saw 10.99.0.52" {
		t.Errorf("B -> outside host: %q, %v", got, err)
	}
	if got, err := dialFrom(b.daemonNS, vmB.external); err != nil || got != "B saw 10.99.0.1" {
		t.Errorf("lab host A -> B's external address: %q, %v", got, err)
	}
	assertGatewayNotStolen(t, b.fenceBed, fA)

	// (e) Teardown leaves no link of the fence in any namespace, and the
	// VNI is free again on both hosts.
	for i, f := range []*Fence{fA, fB} {
		if err := f.Teardown(ctx); err != nil {
			t.Fatalf("Teardown on host %d: %v", i, err)
		}
		if got, want := fmt.Sprint(f.Peers()), "["+b.hosts[1-i].addr.String()+"]"; got != want {
			t.Errorf("host %d: Peers after Teardown = %s, want %s", i, got, want)
		}
		if err := f.SetPeers(ctx, nil); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("host %d: SetPeers after Teardown = %v, want not found", i, err)
		}
	}
	assertNoSpread(t, b, specA, specB)
	again := b.setupOn(t, 1, b.spanSpec(base, 1, 0))
	if err := again.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
}

// assertNoSpread checks that no namespace of specs is left, and no fence
// link in any host's daemon namespace.
func assertNoSpread(t *testing.T, b *spanBed, specs ...FenceSpec) {
	t.Helper()
	for _, spec := range specs {
		if _, err := os.Lstat(filepath.Join(namedNSDir, NamespaceName(spec.ID))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("fence namespace %s still there (%v)", NamespaceName(spec.ID), err)
		}
	}
	for i, h := range b.hosts {
		links := linkNames(t, h.ns)
		for _, p := range []string{fenceOutPrefix, fenceInnerPrefix, vxlanPrefix} {
			if strings.Contains(links, p) {
				t.Errorf("host %d: %s link left in the daemon namespace: %s", i, p, links)
			}
		}
	}
}

// serveBulk listens on addr:8081 in ns and writes n bytes to each
// connection.
func serveBulk(t *testing.T, ns netns.NsHandle, addr netip.Addr, n int) {
	t.Helper()
	var ln net.Listener
	err := inNamespace(ns, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(addr, 8081).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write(make([]byte, n))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

func readBulk(ns netns.NsHandle, addr netip.Addr) (int, error) {
	var n int64
	err := inNamespace(ns, func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, 8081).String(), 1500*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		n, err = io.Copy(io.Discard, c)
		return err
	})
	return int(n), err
}

// (f) After a daemon restart, Adopt finds a spread fence (its VXLAN, kept,
// and its flood entries, repaired), and SetPeers brings in a third host.
func TestSpreadFenceAdoptAndSetPeers(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	requireBusybox(t)
	ctx := context.Background()
	b := newSpanBed(t, 3)
	vmA := &fakeVM{name: "A", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.11"), external: netip.MustParseAddr("10.99.0.51")}
	vmB := &fakeVM{name: "B", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.12"), external: netip.MustParseAddr("10.99.0.52")}
	vmC := &fakeVM{name: "C", mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.13"), external: netip.MustParseAddr("10.99.0.53")}
	base := b.spec(PolicyInOut, vmA, vmB, vmC)
	specA, specB := b.spanSpec(base, 0, 1), b.spanSpec(base, 1, 0)
	oldA := b.setupOn(t, 0, specA)
	oldB := b.setupOn(t, 1, specB)
	plug(t, oldA, b.network, vmA)
	plug(t, oldB, b.network, vmB)
	leaseAndConfigure(t, vmA)
	leaseAndConfigure(t, vmB)
	serveIdentity(t, vmA.ns, "A", vmA.internal)

	// The daemons die; meanwhile A's flood entry for B is lost, and B's
	// VXLAN is as a crash between making and moving it would leave it: in
	// the daemon's namespace, holding the VNI.
	oldA.stopDHCP()
	oldB.stopDHCP()
	vxBefore := vxlanOf(t, oldA, b.network)
	if err := setFloodList(mustNetlink(t, oldA.Namespace()), vxBefore, nil); err != nil {
		t.Fatal(err)
	}
	if err := deleteLinkIn(mustNetlink(t, oldB.Namespace()), vxlanName(specB.ID, b.network)); err != nil {
		t.Fatal(err)
	}
	stray := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: vxlanName(specB.ID, b.network)}, VxlanId: testVNI,
		SrcAddr: b.hosts[1].addr.AsSlice(), Port: VXLANPort}
	if err := mustNetlink(t, b.hosts[1].ns).LinkAdd(stray); err != nil {
		t.Fatal(err)
	}
	if got, err := dialFrom(vmB.ns, vmA.internal); err == nil {
		t.Fatalf("B reached A with A's flood entry gone: %q", got)
	}

	fA, err := Adopt(ctx, b.hosts[0].ns, specA, nil)
	if err != nil {
		t.Fatalf("Adopt on A: %v", err)
	}
	fB, err := Adopt(ctx, b.hosts[1].ns, specB, nil)
	if err != nil {
		t.Fatalf("Adopt on B: %v", err)
	}
	if vx := vxlanOf(t, fA, b.network); vx.Index != vxBefore.Index {
		t.Errorf("Adopt made A's VXLAN again (index %d, was %d)", vx.Index, vxBefore.Index)
	}
	if got, want := peersOf(t, fA, b.network), "[10.200.0.2]"; got != want {
		t.Errorf("after Adopt, A floods to %s, want %s", got, want)
	}
	if got, want := peersOf(t, fB, b.network), "[10.200.0.1]"; got != want {
		t.Errorf("after Adopt, B floods to %s, want %s", got, want)
	}
	if links := linkNames(t, b.hosts[1].ns); strings.Contains(links, vxlanPrefix) {
		t.Errorf("after Adopt, B's daemon namespace still holds a VXLAN: %s", links)
	}
	if fA.MTU() != spreadMTU || fB.MTU() != spreadMTU {
		t.Errorf("after Adopt, MTU %d and %d, want %d", fA.MTU(), fB.MTU(), spreadMTU)
	}
	if got, err := dialFrom(vmB.ns, vmA.internal); err != nil || got != "A saw 10.99.0.12" {
		t.Errorf("after Adopt, B -> A: %q, %v", got, err)
	}

	// A VM is placed on a third host: C joins with A and B as peers, and
	// A and B add C.
	specC := b.spanSpec(base, 2, 0, 1)
	fC := b.setupOn(t, 2, specC)
	for _, f := range []*Fence{fA, fB} {
		peers := append(f.Peers(), b.hosts[2].addr)
		if err := f.SetPeers(ctx, peers); err != nil {
			t.Fatalf("SetPeers: %v", err)
		}
	}
	if got, want := peersOf(t, fA, b.network), "[10.200.0.2 10.200.0.3]"; got != want {
		t.Errorf("A floods to %s, want %s", got, want)
	}
	plug(t, fC, b.network, vmC)
	leaseAndConfigure(t, vmC)
	for _, vm := range []*fakeVM{vmB, vmC} {
		want := vmA.name + " saw " + vm.internal.String()
		if got, err := dialFrom(vm.ns, vmA.internal); err != nil || got != want {
			t.Errorf("%s -> A: %q, %v", vm.name, got, err)
		}
	}
	serveIdentity(t, b.hostNS, "host", bedHost)
	if got, err := dialFrom(vmC.ns, bedHost); err != nil || got != "host saw 10.99.0.53" {
		t.Errorf("C -> outside host: %q, %v", got, err)
	}

	// C leaves A's flood list: A's replies no longer reach it, B's do.
	if err := fA.SetPeers(ctx, []netip.Addr{b.hosts[1].addr}); err != nil {
		t.Fatal(err)
	}
	if got, err := dialFrom(vmC.ns, vmA.internal); err == nil {
		t.Errorf("C reached A after A dropped C: %q", got)
	}
	if got, err := dialFrom(vmB.ns, vmA.internal); err != nil || got != "A saw 10.99.0.12" {
		t.Errorf("B -> A after A dropped C: %q, %v", got, err)
	}
	for _, bad := range [][]netip.Addr{
		{b.hosts[0].addr},                          // itself
		{b.hosts[1].addr, b.hosts[1].addr},         // twice
		{netip.MustParseAddr("fd00::1")},           // another family
		{netip.MustParseAddr("239.1.1.1")},         // multicast
		{netip.MustParseAddr("10.200.0.2"), {}},    // invalid
		{b.hosts[1].addr, netip.IPv4Unspecified()}, // unspecified
	} {
		if err := fA.SetPeers(ctx, bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("SetPeers(%v) = %v, want invalid", bad, err)
		}
	}
	if got, want := peersOf(t, fA, b.network), "[10.200.0.2]"; got != want {
		t.Errorf("after refused SetPeers, A floods to %s, want %s", got, want)
	}

	for _, f := range []*Fence{fA, fB, fC} {
		if err := f.Teardown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	assertNoSpread(t, b, specA, specB, specC)
}

// Every step of a spread fence's Setup can fail, on the router and on a
// member; each failure leaves nothing behind, in particular no VXLAN in
// the daemon's namespace holding the VNI (the next attempt, with the same
// VNI, would then be refused).
func TestSpreadFenceSetupRollsBack(t *testing.T) {
	t.Parallel()
	requireNetAdmin(t)
	ctx := context.Background()
	b := newSpanBed(t, 2)
	vm := &fakeVM{mac: randomMAC(), internal: netip.MustParseAddr("10.99.0.10"), external: netip.MustParseAddr("10.99.0.50")}
	base := b.spec(PolicyInOut, vm)
	common := []string{"namespace", "sysctl", "network " + b.network, "vxlan " + b.network, "vxlan " + b.network + " move"}
	for host, steps := range [][]string{
		append(slices.Clone(common), "return rules", "nftables", "dhcp", "done"),
		append(slices.Clone(common), "done"),
	} {
		for _, step := range steps {
			spec := b.spanSpec(base, host, 1-host)
			t.Cleanup(func() { _ = Remove(ctx, b.hosts[host].ns, spec, nil) })
			injected := errors.New("injected at " + step)
			_, err := setup(ctx, b.hosts[host].ns, spec, nil, &setupHooks{failAt: func(s string) error {
				if s == step {
					return injected
				}
				return nil
			}})
			if !errors.Is(err, injected) {
				t.Errorf("host %d, step %q: Setup = %v, want the injected error", host, step, err)
			}
			assertNoSpread(t, b, spec)
		}
	}
	// Real failures: no underlay link; a VNI another fence holds.
	spec := b.spanSpec(base, 0, 1)
	spec.Span.Underlay = "sht-missing"
	if _, err := Setup(ctx, b.hosts[0].ns, spec, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Setup without the underlay link = %v, want not found", err)
	}
	assertNoSpread(t, b, spec)
	first := b.setupOn(t, 1, b.spanSpec(base, 1, 0))
	second := b.spanSpec(base, 1, 0)
	t.Cleanup(func() { _ = Remove(ctx, b.hosts[1].ns, second, nil) })
	if _, err := Setup(ctx, b.hosts[1].ns, second, nil); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Setup with a VNI in use = %v, want conflict", err)
	}
	if _, err := os.Lstat(filepath.Join(namedNSDir, NamespaceName(second.ID))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused fence's namespace still there (%v)", err)
	}
	if err := first.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoSpread(t, b, second)
}

func TestCheckSpan(t *testing.T) {
	t.Parallel()
	good := func() FenceSpec {
		return FenceSpec{ID: "cfg-1", Networks: []FenceNetwork{
			{Name: "lab", OutsideBridge: "sh-br-lab", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Gateway: netip.MustParseAddr("10.1.0.1")},
			{Name: "dmz", OutsideBridge: "sh-br-dmz", Subnet: netip.MustParsePrefix("10.2.0.0/24"), Gateway: netip.MustParseAddr("10.2.0.1")},
		}, Span: &Span{Local: netip.MustParseAddr("192.0.2.1"), Underlay: "eth0", Router: true,
			Peers: []netip.Addr{netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.2")},
			VNIs:  map[string]uint32{"lab": 1, "dmz": maxVNI}}}
	}
	in := good()
	spec, err := checkSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(spec.Span.Peers); got != "[192.0.2.2 192.0.2.3]" {
		t.Errorf("peers %s, want sorted", got)
	}
	spec.Span.Peers[0] = netip.Addr{}
	spec.Span.VNIs["lab"] = 9
	if !in.Span.Peers[1].IsValid() || in.Span.VNIs["lab"] != 1 {
		t.Error("the checked span shares the caller's slices or maps")
	}
	for name, mutate := range map[string]func(*Span){
		"no local":          func(s *Span) { s.Local = netip.Addr{} },
		"multicast local":   func(s *Span) { s.Local = netip.MustParseAddr("239.0.0.1") },
		"no underlay":       func(s *Span) { s.Underlay = "" },
		"long underlay":     func(s *Span) { s.Underlay = "a-very-long-link-name" },
		"peer is local":     func(s *Span) { s.Peers = append(s.Peers, s.Local) },
		"peer twice":        func(s *Span) { s.Peers = append(s.Peers, s.Peers[0]) },
		"peer family":       func(s *Span) { s.Peers = append(s.Peers, netip.MustParseAddr("2001:db8::1")) },
		"VNI 0":             func(s *Span) { s.VNIs["lab"] = 0 },
		"VNI too big":       func(s *Span) { s.VNIs["lab"] = maxVNI + 1 },
		"VNI missing":       func(s *Span) { delete(s.VNIs, "dmz") },
		"VNI twice":         func(s *Span) { s.VNIs["dmz"] = 1 },
		"VNI of a stranger": func(s *Span) { s.VNIs["other"] = 7 },
	} {
		s := good()
		mutate(s.Span)
		if _, err := checkSpec(s); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: checkSpec = %v, want invalid", name, err)
		}
	}
	// A fence on one host has no span and keeps none.
	plain := good()
	plain.Span = nil
	if spec, err := checkSpec(plain); err != nil || spec.Span != nil {
		t.Errorf("checkSpec without a span = %+v, %v", spec.Span, err)
	}
}

func TestRespondMTU(t *testing.T) {
	t.Parallel()
	for _, mtu := range []int{0, spreadMTU} {
		cfg := testDHCPConfig("sh-br-test")
		cfg.MTU = mtu
		s, err := newDHCPServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetReservations(map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.66.0.5")}); err != nil {
			t.Fatal(err)
		}
		resp := s.respond(packet(t, dhcpv4.MessageTypeDiscover, "02:00:00:00:00:01"), time.Now())
		if resp == nil {
			t.Fatal("no offer")
		}
		got := resp.Options.Get(dhcpv4.OptionInterfaceMTU)
		switch {
		case mtu == 0 && got != nil:
			t.Errorf("MTU option %x handed out without an MTU", got)
		case mtu != 0 && (len(got) != 2 || int(got[0])<<8|int(got[1]) != mtu):
			t.Errorf("MTU option %x, want %d", got, mtu)
		}
	}
	cfg := testDHCPConfig("sh-br-test")
	cfg.MTU = 20
	if _, err := newDHCPServer(cfg); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("MTU 20: %v, want invalid", err)
	}
}
