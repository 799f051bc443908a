package fence

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

func TestNames(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, key := range []string{"a", "lab-net", "a-very-long-network-name-that-cannot-fit", "cfg/vm/0", "cfg/vm/1"} {
		for _, name := range []string{BridgeName(key), TapName(key), shortName(fenceOutPrefix, key), shortName(fenceInnerPrefix, key)} {
			if len(name) != maxIfNameLen {
				t.Errorf("%q: name %q has length %d, want %d", key, name, len(name), maxIfNameLen)
			}
			if err := checkIfName("link", name); err != nil {
				t.Error(err)
			}
			if other, dup := seen[name]; dup {
				t.Errorf("name %q for %q and %q", name, key, other)
			}
			seen[name] = key
		}
		if BridgeName(key) != BridgeName(key) || !strings.HasPrefix(BridgeName(key), "sh-br-") {
			t.Errorf("BridgeName(%q) not deterministic or badly prefixed", key)
		}
	}
	if mac := stableMAC("x"); mac[0]&1 != 0 || mac[0]&2 == 0 {
		t.Errorf("stableMAC %s is not locally administered unicast", mac)
	}
}

func TestCheckIfName(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "sixteen-chars-xx", "a/b", "a b", "a:b", "."} {
		if err := checkIfName("bridge", bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("checkIfName(%q) = %v, want invalid", bad, err)
		}
	}
}

func TestBridgeAndTap(t *testing.T) {
	t.Parallel()
	ns, _ := newTestNS(t)
	ctx := context.Background()
	h := mustNetlink(t, ns)
	br := BridgeName("net-" + randHex(6))
	gw := netip.MustParsePrefix("10.77.0.1/24")

	for i := range 2 { // twice: idempotent
		if err := EnsureBridge(ctx, ns, br, gw); err != nil {
			t.Fatalf("EnsureBridge #%d: %v", i, err)
		}
	}
	link, err := h.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	if link.Type() != "bridge" || link.Attrs().Flags&(1<<0) == 0 {
		t.Fatalf("bridge: type %s flags %v, want an up bridge", link.Type(), link.Attrs().Flags)
	}
	if got := addrsOf(t, h, link); got != "10.77.0.1/24" {
		t.Errorf("bridge addresses = %q, want 10.77.0.1/24", got)
	}
	if got, want := link.Attrs().HardwareAddr.String(), stableMAC(br).String(); got != want {
		t.Errorf("bridge MAC = %s, want %s", got, want)
	}

	// A new gateway replaces the old one.
	gw2 := netip.MustParsePrefix("10.78.0.1/16")
	if err := EnsureBridge(ctx, ns, br, gw2); err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(t, h, link); got != "10.78.0.1/16" {
		t.Errorf("after change, bridge addresses = %q, want 10.78.0.1/16", got)
	}

	tap := TapName("cfg/vm/" + randHex(6))
	for i := range 2 {
		if err := CreateTap(ctx, ns, tap, br); err != nil {
			t.Fatalf("CreateTap #%d: %v", i, err)
		}
	}
	tl, err := h.LinkByName(tap)
	if err != nil {
		t.Fatal(err)
	}
	tt, ok := tl.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		t.Fatalf("tap is %T %+v, want a tap", tl, tl)
	}
	if tl.Attrs().MasterIndex != link.Attrs().Index {
		t.Errorf("tap master = %d, want bridge %d", tl.Attrs().MasterIndex, link.Attrs().Index)
	}
	if tl.Attrs().Flags&(1<<0) == 0 {
		t.Errorf("tap is not up")
	}
	// The tap survives: nothing holds it open, yet it is still there.
	if _, err := h.LinkByName(tap); err != nil {
		t.Errorf("persistent tap vanished: %v", err)
	}
	// The bridge's MAC stays fixed with a port attached.
	if l, _ := h.LinkByName(br); l.Attrs().HardwareAddr.String() != stableMAC(br).String() {
		t.Errorf("bridge MAC changed to %s after a port was added", l.Attrs().HardwareAddr)
	}

	// A name that is taken by something else is a conflict.
	if err := EnsureBridge(ctx, ns, tap, gw); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("EnsureBridge over a tap = %v, want conflict", err)
	}
	if err := CreateTap(ctx, ns, br, br); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("CreateTap over a bridge = %v, want conflict", err)
	}
	if err := CreateTap(ctx, ns, TapName("x"), "sh-br-missing"); err == nil {
		t.Errorf("CreateTap on a missing bridge succeeded")
	}

	// Opening the tap, as QEMU would through an inherited fd, gives it a
	// carrier; closing the file leaves the tap in place.
	tapFile, err := OpenTap(ctx, ns, tap)
	if err != nil {
		t.Fatalf("OpenTap: %v", err)
	}
	if l, _ := h.LinkByName(tap); l.Attrs().RawFlags&unix.IFF_LOWER_UP == 0 {
		t.Errorf("open tap has no carrier (flags %#x)", l.Attrs().RawFlags)
	}
	tapFile.Close()
	if l, err := h.LinkByName(tap); err != nil {
		t.Errorf("tap gone after its file was closed: %v", err)
	} else if l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
		t.Errorf("tap keeps its carrier after close (flags %#x)", l.Attrs().RawFlags)
	}
	if _, err := OpenTap(ctx, ns, TapName("missing")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("OpenTap of a missing tap = %v, want not found", err)
	}
	if _, err := OpenTap(ctx, ns, br); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("OpenTap of a bridge = %v, want conflict", err)
	}

	for i := range 2 {
		if err := DeleteTap(ctx, ns, tap); err != nil {
			t.Fatalf("DeleteTap #%d: %v", i, err)
		}
		if err := DeleteBridge(ctx, ns, br); err != nil {
			t.Fatalf("DeleteBridge #%d: %v", i, err)
		}
	}
	for _, name := range []string{tap, br} {
		if _, err := h.LinkByName(name); !isLinkNotFound(err) {
			t.Errorf("%s still exists after delete (err %v)", name, err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := EnsureBridge(ctx, 0, "sh-br-x", netip.Prefix{}); !errors.Is(err, context.Canceled) {
		t.Errorf("EnsureBridge with canceled ctx = %v", err)
	}
	if err := CreateTap(ctx, 0, "sh-tap-x", "sh-br-x"); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateTap with canceled ctx = %v", err)
	}
}

func addrsOf(t *testing.T, h *netlink.Handle, link netlink.Link) string {
	t.Helper()
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return strings.Join(out, ",")
}
