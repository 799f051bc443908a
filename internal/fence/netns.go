package fence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// namedNSDir is where named namespaces are bind-mounted, as `ip netns` does,
// so that `ip netns exec` and a restarted daemon can find them.
const namedNSDir = "/run/netns"

// inNamespace runs fn on a fresh OS thread switched into ns and waits for it.
// The thread stays locked and is destroyed when its goroutine ends, so no
// other goroutine can ever be scheduled onto a thread left in the wrong
// namespace, whatever fn does.
func inNamespace(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread exits with this goroutine.
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// netlinkAt opens a netlink handle bound to ns. The caller must Close it.
func netlinkAt(ns netns.NsHandle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink in namespace: %w", err)
	}
	return h, nil
}

// createNamedNamespace makes a new network namespace bind-mounted at
// /run/netns/name and returns an open handle to it. It fails if the name is
// taken. The calling goroutine's namespace is untouched.
func createNamedNamespace(name string) (netns.NsHandle, error) {
	if err := os.MkdirAll(namedNSDir, 0o755); err != nil {
		return netns.None(), fmt.Errorf("namespace %q: %w", name, err)
	}
	var h netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// NewNamed unshares this thread into the new namespace; the thread
		// is discarded afterwards, as in inNamespace.
		nh, err := netns.NewNamed(name)
		if err != nil {
			if !errors.Is(err, fs.ErrExist) {
				// NewNamed leaves its mount point behind when the bind
				// mount fails; the name was free, so the file is ours.
				_ = os.Remove(filepath.Join(namedNSDir, name))
			}
			errc <- fmt.Errorf("namespace %q: create: %w", name, err)
			return
		}
		h = nh
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return netns.None(), err
	}
	return h, nil
}

// openNamedNamespace opens /run/netns/name.
func openNamedNamespace(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(filepath.Join(namedNSDir, name))
	if err != nil {
		return netns.None(), fmt.Errorf("namespace %q: open: %w", name, err)
	}
	return h, nil
}

// deleteNamedNamespace unmounts and removes /run/netns/name. The namespace
// itself goes away when the last process and handle in it are gone. A
// missing name is not an error.
func deleteNamedNamespace(name string) error {
	p := filepath.Join(namedNSDir, name)
	if _, err := os.Lstat(p); os.IsNotExist(err) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil && !os.IsNotExist(err) {
		// A file left unmounted (a crash between create and mount) still
		// has to go.
		if rmErr := os.Remove(p); rmErr != nil && !os.IsNotExist(rmErr) {
			return fmt.Errorf("namespace %q: delete: %w", name, err)
		}
	}
	return nil
}
