package lab

import "time"

// The deployment part of the Service API (issue: real VMs). Implemented in
// deploy.go.

// DeployOptions are the options of Deploy.
type DeployOptions struct {
	Fenced      bool
	FencePolicy string // "block", "out" or "in-out" (default)
	// DeployLease is this deployment's lease, which becomes the
	// configuration's setting for later deploys: nil keeps its setting,
	// 0 means none.
	DeployLease *time.Duration
}

// VM actions of VMAction.
const (
	VMActionStop  = "stop"  // ACPI power-off request; the guest shuts down
	VMActionStart = "start" // start a stopped VM (or continue a paused one)
	VMActionReset = "reset" // hard reset
)

// VM states beyond the configuration states.
const (
	VMStateRunning = "running"
	VMStateStopped = "stopped" // powered off while its configuration is deployed
	VMStateSaved   = "saved"   // suspended to a state file; the next deploy resumes it
)
