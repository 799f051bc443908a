package lab

import (
	"context"
	"net/netip"

	"stagehand/internal/disk"
	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
)

// DiskTool is what the lab needs from qcow2 files. Every path is absolute.
// internal/disk.QemuImg is the real implementation.
type DiskTool interface {
	// ImportBase checks that src really is an image of format ("raw",
	// "qcow2", or "" to detect; a qcow2 with a backing file is refused) and
	// writes a standalone qcow2 base at dst. It returns the virtual size.
	// On failure nothing is left at dst.
	ImportBase(ctx context.Context, src, format, dst string) (int64, error)
	// CreateDelta writes an empty qcow2 at dst whose backing file is parent
	// (recorded relative to dst's directory when both share it).
	CreateDelta(ctx context.Context, parent, dst string) error
	// SetReadOnly makes the file read-only (0400) or writable (0600).
	SetReadOnly(path string, readOnly bool) error
	// HasData reports whether the layer itself (not its backing chain) holds
	// any written cluster, zeroes included.
	HasData(ctx context.Context, path string) (bool, error)
	// Consolidate reads the whole chain under top and writes one standalone,
	// sparse qcow2 at dst, reporting progress in bytes. On error or
	// cancellation dst is removed. Like ImportBase, it writes under
	// disk.TempPath(dst) until the file is complete: the journal names that
	// file (beginOp), so recovery removes it after a crash.
	Consolidate(ctx context.Context, top, dst string, progress func(done, total int64)) error
	// Info describes one layer file as qemu-img sees it.
	Info(ctx context.Context, path string) (disk.Info, error)
	// Chain returns the absolute paths of the backing chain, top first.
	Chain(ctx context.Context, path string) ([]string, error)
	// Check runs a consistency check of one layer file.
	Check(ctx context.Context, path string) error
}

// Hypervisor starts and re-adopts QEMU processes. hypervisor.Host is the
// real implementation.
type Hypervisor interface {
	Start(ctx context.Context, spec hypervisor.Spec) (*hypervisor.VM, error)
	Adopt(ctx context.Context, runDir, id string) (*hypervisor.VM, error)
}

// Plumbing is the layer 2 of unfenced deployments in the daemon's network
// namespace: a bridge and DHCP server per network, a tap per NIC.
// fence.Host is the real implementation.
type Plumbing interface {
	EnsureSegment(ctx context.Context, network string, gateway netip.Prefix, dns []netip.Addr, dynamic fence.AddrRange) error
	Reserve(network, mac string, ip netip.Addr) error
	Unreserve(network, mac string) error
	CreateTap(ctx context.Context, tap, network string) error
	DeleteTap(ctx context.Context, tap string) error

	// Fences: a namespace per fenced deployment (see fence.Setup). Setup
	// and Adopt return the namespace name QEMU must run in.
	SetupFence(ctx context.Context, spec fence.FenceSpec) (string, error)
	AdoptFence(ctx context.Context, spec fence.FenceSpec) (string, error)
	TeardownFence(ctx context.Context, spec fence.FenceSpec) error
	CreateFencedTap(ctx context.Context, fenceID, tap, network string) error
}
