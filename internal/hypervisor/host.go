package hypervisor

import "context"

// Host starts and adopts QEMU processes on this machine. It is the value
// the lab is given; its methods are Start and Adopt.
type Host struct{}

// Start launches a VM; see the package function Start.
func (Host) Start(ctx context.Context, spec Spec) (*VM, error) { return Start(ctx, spec) }

// Adopt takes over a running VM; see the package function Adopt.
func (Host) Adopt(ctx context.Context, runDir, id string) (*VM, error) {
	return Adopt(ctx, runDir, id)
}
