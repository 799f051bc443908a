package fence

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A fence's namespace is bind-mounted at /run/netns/NAME in the mount
// namespace of the daemon that made it. A daemon started in a mount
// namespace of its own (`ip netns exec`, as the e2e tests run it, or a
// service manager's private mounts) leaves, when it exits, only the empty
// mount point for its successor: the namespace lives on in the fenced
// QEMU processes, whose mount namespaces still hold the bind mount. So
// the successor finds the namespace through one of those processes and
// mounts it at its name again.

// nsfsMagic is the file system type of a namespace file (NSFS_MAGIC).
const nsfsMagic = 0x6e736673

// isNamespaceFile reports whether fd is a namespace (nsfs), not the empty
// file a bind mount's mount point is without its mount.
func isNamespaceFile(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && st.Type == nsfsMagic
}

// rebindFenceNamespace looks for a process in fence spec's namespace and
// bind-mounts that namespace at /run/netns/NAME again. The namespace is
// recognised by the fence's own link, whose MAC is the fence's alone:
// the outside port of its first network on the router host, the first
// inside bridge on a member host of a spread fence.
func rebindFenceNamespace(spec FenceSpec) error {
	if len(spec.Networks) == 0 {
		return fmt.Errorf("fence %q: no networks to recognise its namespace by", spec.ID)
	}
	n := spec.Networks[0]
	link, mac := insideLinkName(n.Name), stableMAC("fence/"+spec.ID+"/"+n.Name)
	if spec.Span != nil && !spec.Span.Router {
		link, mac = BridgeName(n.Name), stableMAC("fence-member/"+spec.ID+"/"+n.Name)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/ns/net")
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range procs {
		id, err := os.Readlink(p)
		if err != nil || seen[id] {
			continue // the process is gone, or its namespace was looked at
		}
		seen[id] = true
		h, err := netns.GetFromPath(p)
		if err != nil {
			continue
		}
		found := holdsLinkWithMAC(h, link, mac)
		h.Close()
		if !found {
			continue
		}
		target := filepath.Join(namedNSDir, NamespaceName(spec.ID))
		if err := unix.Mount(p, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("fence %q: mount its namespace (found at %s) on %s: %w", spec.ID, p, target, err)
		}
		return nil
	}
	return fmt.Errorf("fence %q: no process is in its namespace", spec.ID)
}

func holdsLinkWithMAC(ns netns.NsHandle, name string, mac []byte) bool {
	h, err := netlinkAt(ns)
	if err != nil {
		return false
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	return err == nil && bytes.Equal(l.Attrs().HardwareAddr, mac)
}

// openFenceNamespace opens fence spec's namespace by its name, mounting it
// there again first when only the empty mount point is left (see above).
func openFenceNamespace(spec FenceSpec) (netns.NsHandle, error) {
	name := NamespaceName(spec.ID)
	h, err := openNamedNamespace(name)
	if err != nil || isNamespaceFile(int(h)) {
		return h, err
	}
	h.Close()
	if err := rebindFenceNamespace(spec); err != nil {
		return netns.None(), fmt.Errorf("namespace %q is an empty mount point: %w", name, err)
	}
	return openNamedNamespace(name)
}
