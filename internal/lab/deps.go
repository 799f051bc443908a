package lab

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

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

// Hypervisor starts and re-adopts QEMU processes. QEMU is the real
// implementation.
type Hypervisor interface {
	// Start launches a VM; it is running when Start returns.
	Start(ctx context.Context, spec hypervisor.Spec) (VM, error)
	// Adopt takes over the VM id that an earlier daemon started in runDir,
	// without touching the guest. It fails when that process is gone.
	Adopt(ctx context.Context, runDir, id string) (VM, error)
}

// VM is one running QEMU process as the lab drives it. *hypervisor.VM is
// the real one.
type VM interface {
	// Wait blocks until the process has exited or ctx ends.
	Wait(ctx context.Context) error
	// Kill ends the process at once and waits until it is gone.
	Kill(ctx context.Context) error
	// Close releases the handle; the process keeps running.
	Close() error
	// Shutdown powers the guest off (ACPI, forced after timeout) and
	// returns once the process is gone.
	Shutdown(ctx context.Context, timeout time.Duration) error
	// PowerDown presses the ACPI power button and returns at once.
	PowerDown(ctx context.Context) error
	// SaveState suspends the guest to file and ends the process; on
	// failure the guest runs on and no file is left.
	SaveState(ctx context.Context, file string) error
	// Continue resumes a paused guest.
	Continue(ctx context.Context) error
	// Reset is a hard reset of the guest.
	Reset(ctx context.Context) error
	// PID is the process's ID on this host.
	PID() int
	// ConsoleSocketPath is the unix socket of the serial console.
	ConsoleSocketPath() string
}

var _ VM = (*hypervisor.VM)(nil)

// QEMU is the real Hypervisor: QEMU processes on this machine, through the
// hypervisor package. (Go has no covariant results, so this adapter lives
// on the lab's side: hypervisor cannot name lab.VM.)
type QEMU struct {
	// Log is where the VMs log (the daemon's logger).
	Log *slog.Logger
}

// Start launches a VM; see hypervisor.Start.
func (q QEMU) Start(ctx context.Context, spec hypervisor.Spec) (VM, error) {
	v, err := hypervisor.Start(ctx, spec, q.Log)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return v, nil
}

// Adopt takes over a running VM; see hypervisor.Adopt.
func (q QEMU) Adopt(ctx context.Context, runDir, id string) (VM, error) {
	v, err := hypervisor.Adopt(ctx, runDir, id, q.Log)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Segments is the layer 2 of unfenced deployments in the daemon's network
// namespace: a bridge and DHCP server per network, a tap per NIC.
// *fence.Segments is the real implementation.
type Segments interface {
	// EnsureSegment makes sure the network's bridge and DHCP server run.
	// Idempotent.
	EnsureSegment(ctx context.Context, network string, gateway netip.Prefix, dns []netip.Addr, dynamic fence.AddrRange) error
	// Reserve makes the network's DHCP server answer mac with ip.
	Reserve(network, mac string, ip netip.Addr) error
	// Unreserve forgets mac's reservation on the network.
	Unreserve(network, mac string) error
	// CreateTap creates a NIC's tap on the network's bridge. Idempotent.
	CreateTap(ctx context.Context, tap, network string) error
	// DeleteTap removes a NIC's tap; a missing one is fine.
	DeleteTap(ctx context.Context, tap string) error
}

// Fences are the namespaces of fenced deployments (see fence.Setup).
// *fence.Fences is the real implementation.
type Fences interface {
	// Setup builds a fence; a fence with the same ID is a conflict. It
	// returns the namespace name QEMU must run in.
	Setup(ctx context.Context, spec fence.FenceSpec) (string, error)
	// Adopt takes over a fence an earlier daemon set up.
	Adopt(ctx context.Context, spec fence.FenceSpec) (string, error)
	// Teardown removes a fence with its taps; missing parts are fine.
	Teardown(ctx context.Context, spec fence.FenceSpec) error
	// CreateTap creates a NIC's tap on the network's bridge inside a
	// fence that is set up or adopted.
	CreateTap(ctx context.Context, fenceID, tap, network string) error
}
