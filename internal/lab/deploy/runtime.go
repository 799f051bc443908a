package deploy

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"stagehand/internal/fence"
	"stagehand/internal/hypervisor"
)

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
// on the deployments' side: hypervisor cannot name deploy.VM.)
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
	// UnderlayLink names the link, in the daemon's namespace, that holds
	// the underlay address addr: a spread fence's VXLANs go over it.
	UnderlayLink(addr netip.Addr) (string, error)
}
