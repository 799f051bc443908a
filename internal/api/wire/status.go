package wire

import "time"

// Accelerator states in Status.
const (
	AccelProbing = "probing" // the daemon still probes whether KVM works
	AccelReady   = "ready"
)

// Status is the body of GET /status: the daemon at a glance.
type Status struct {
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Accel         Accel     `json:"accel"`
	Store         Store     `json:"store"`
	DataDir       string    `json:"data_dir"`
	Counts        Counts    `json:"counts"`
	// Recovered is false while the daemon finishes or rolls back the
	// operations a previous run left half done; writes wait until then.
	Recovered     bool   `json:"recovered"`
	RecoveryError string `json:"recovery_error,omitempty"`
}

// Accel is the accelerator VMs run with, or that it is being probed.
type Accel struct {
	State string `json:"state"`           // AccelProbing or AccelReady
	Accel string `json:"accel,omitempty"` // "kvm" or "tcg" once ready
	// Reason says why it was chosen, or what is probed.
	Reason string `json:"reason"`
	// ProbingSeconds is how long the probe has run (while probing).
	ProbingSeconds float64 `json:"probing_seconds,omitempty"`
	// ProbeSeconds is how long the probe took (once ready, when probed now).
	ProbeSeconds float64 `json:"probe_seconds,omitempty"`
	Cached       bool    `json:"cached,omitempty"` // read from the probe cache
}

// Store is where the daemon keeps its state.
type Store struct {
	Kind string `json:"kind"` // "sqlite"
	Path string `json:"path"`
}

// Counts are how many of each thing the lab holds.
type Counts struct {
	Templates      int `json:"templates"`
	Networks       int `json:"networks"`
	Configs        int `json:"configs"`
	LibraryEntries int `json:"library_entries"`
	Deployed       int `json:"deployed_configs"`
	RunningVMs     int `json:"running_vms"`
}

// Ready is the body of GET /readyz once the daemon accepts writes.
type Ready struct {
	Status string `json:"status"` // "ready"
}
