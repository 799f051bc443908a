package fence

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"stagehand/internal/errdefs"
)

// UnderlayLink names the link, in the daemon's namespace, that holds
// address addr: the underlay of a spread fence (Span.Underlay), found from
// the address the host registered (`serve --underlay`).
func (h *Fences) UnderlayLink(addr netip.Addr) (string, error) { return UnderlayLink(h.ns, addr) }

// UnderlayLink names the link of namespace ns that holds addr.
func UnderlayLink(ns netns.NsHandle, addr netip.Addr) (string, error) {
	nh, err := netlinkAt(ns)
	if err != nil {
		return "", fmt.Errorf("underlay %s: %w", addr, err)
	}
	defer nh.Close()
	addrs, err := nh.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", fmt.Errorf("underlay %s: list addresses: %w", addr, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != addr.Unmap() {
			continue
		}
		l, err := nh.LinkByIndex(a.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("underlay %s: link %d: %w", addr, a.LinkIndex, err)
		}
		return l.Attrs().Name, nil
	}
	return "", errdefs.Unavailable("underlay %s: no link of this host holds the address (`serve --underlay` names it)", addr)
}
