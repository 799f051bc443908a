package fence

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

// EnsureBridge makes sure a Linux bridge called name exists in ns, carries
// exactly the IPv4 address gateway (for example 10.0.0.1/24; the zero
// Prefix means no address) and is up. It is idempotent: an existing bridge
// is kept with its ports. The bridge gets a fixed MAC derived from its name.
func EnsureBridge(ctx context.Context, ns netns.NsHandle, name string, gateway netip.Prefix) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkIfName("bridge", name); err != nil {
		return err
	}
	if gateway.IsValid() && !gateway.Addr().Is4() {
		return errdefs.Invalid("bridge %q: gateway %s is not IPv4", name, gateway)
	}
	h, err := netlinkAt(ns)
	if err != nil {
		return fmt.Errorf("bridge %q: %w", name, err)
	}
	defer h.Close()
	if err := ensureBridge(h, name, gateway); err != nil {
		return fmt.Errorf("bridge %q: %w", name, err)
	}
	return nil
}

func ensureBridge(h *netlink.Handle, name string, gateway netip.Prefix) error {
	return ensureBridgeMAC(h, name, gateway, stableMAC(name))
}

// ensureBridgeMAC is ensureBridge with the bridge's MAC given.
func ensureBridgeMAC(h *netlink.Handle, name string, gateway netip.Prefix, mac net.HardwareAddr) error {
	link, err := h.LinkByName(name)
	switch {
	case isLinkNotFound(err):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.HardwareAddr = mac
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add: %w", err)
		}
		if link, err = h.LinkByName(name); err != nil {
			return fmt.Errorf("find after add: %w", err)
		}
	case err != nil:
		return fmt.Errorf("find: %w", err)
	}
	if link.Type() != "bridge" {
		return errdefs.Conflict("%q exists and is a %s, not a bridge", name, link.Type())
	}
	if link.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set MAC: %w", err)
		}
	}
	if err := setOnlyIPv4(h, link, gateway); err != nil {
		return err
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// setOnlyIPv4 makes want (if valid) the only IPv4 address of link.
func setOnlyIPv4(h *netlink.Handle, link netlink.Link, want netip.Prefix) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if want.IsValid() && a.IPNet.String() == want.String() {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %s: %w", a.IPNet, err)
		}
	}
	if want.IsValid() {
		if err := h.AddrReplace(link, &netlink.Addr{IPNet: prefixToIPNet(want)}); err != nil {
			return fmt.Errorf("set address %s: %w", want, err)
		}
	}
	return nil
}

// DeleteBridge removes the bridge called name from ns. Its ports are
// detached, not deleted. A missing bridge is not an error.
func DeleteBridge(ctx context.Context, ns netns.NsHandle, name string) error {
	return deleteLink(ctx, ns, "bridge", name)
}

// CreateTap makes sure a persistent tap called name exists in ns, attached
// to bridge and up. Persistent means it outlives the daemon: QEMU opens it
// with -netdev tap,ifname=NAME,script=no,downscript=no. QEMU must open it
// from the same network namespace (a tap is found by name in the namespace
// of whoever opens /dev/net/tun), so a fenced VM's QEMU runs in the fence's
// namespace. Only root (uid 0) may attach to the tap. Idempotent.
func CreateTap(ctx context.Context, ns netns.NsHandle, name, bridge string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkIfName("tap", name); err != nil {
		return err
	}
	if err := checkIfName("bridge", bridge); err != nil {
		return err
	}
	if err := createTap(ns, name, bridge); err != nil {
		return fmt.Errorf("tap %q: %w", name, err)
	}
	return nil
}

func createTap(ns netns.NsHandle, name, bridge string) error {
	h, err := netlinkAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %q: %w", bridge, err)
	}
	if br.Type() != "bridge" {
		return errdefs.Conflict("%q is a %s, not a bridge", bridge, br.Type())
	}
	link, err := h.LinkByName(name)
	switch {
	case isLinkNotFound(err):
		// A tap is created through /dev/net/tun, which makes it in the
		// namespace of the calling thread, not of a netlink handle.
		err := inNamespace(ns, func() error {
			tap := &netlink.Tuntap{
				LinkAttrs: netlink.LinkAttrs{Name: name},
				Mode:      netlink.TUNTAP_MODE_TAP,
				Flags:     netlink.TUNTAP_NO_PI,
			}
			nh, err := netlink.NewHandle()
			if err != nil {
				return err
			}
			defer nh.Close()
			return nh.LinkAdd(tap)
		})
		if err != nil {
			return fmt.Errorf("add: %w", err)
		}
		if link, err = h.LinkByName(name); err != nil {
			return fmt.Errorf("find after add: %w", err)
		}
	case err != nil:
		return fmt.Errorf("find: %w", err)
	}
	tap, ok := link.(*netlink.Tuntap)
	if !ok || tap.Mode != netlink.TUNTAP_MODE_TAP {
		return errdefs.Conflict("%q exists and is a %s, not a tap", name, link.Type())
	}
	if link.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("attach to bridge %q: %w", bridge, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

// DeleteTap removes the tap called name from ns. A missing tap is not an
// error. A QEMU still holding the tap open loses its link.
func DeleteTap(ctx context.Context, ns netns.NsHandle, name string) error {
	return deleteLink(ctx, ns, "tap", name)
}

func deleteLink(ctx context.Context, ns netns.NsHandle, kind, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkIfName(kind, name); err != nil {
		return err
	}
	h, err := netlinkAt(ns)
	if err != nil {
		return fmt.Errorf("%s %q: %w", kind, name, err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %q: find: %w", kind, name, err)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%s %q: delete: %w", kind, name, err)
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && (errors.As(err, &nf) || errors.Is(err, unix.ENODEV))
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// OpenTap opens the existing tap called name in ns, from inside ns, and
// returns its queue file (flags IFF_TAP|IFF_NO_PI|IFF_VNET_HDR). A QEMU
// started in any namespace can then use the tap through the inherited
// file: exec.Cmd.ExtraFiles and -netdev tap,fd=N. The caller owns the file;
// the tap itself stays when it is closed.
func OpenTap(ctx context.Context, ns netns.NsHandle, name string) (*os.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkIfName("tap", name); err != nil {
		return nil, err
	}
	h, err := netlinkAt(ns)
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	defer h.Close()
	// TUNSETIFF would create a new, non-persistent tap for an unknown
	// name: make sure it is ours first.
	link, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil, errdefs.NotFound("tap %q not found", name)
	}
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	if tap, ok := link.(*netlink.Tuntap); !ok || tap.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, errdefs.Conflict("%q is a %s, not a tap", name, link.Type())
	}
	var file *os.File
	err = inNamespace(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		file = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tap %q: open: %w", name, err)
	}
	return file, nil
}
