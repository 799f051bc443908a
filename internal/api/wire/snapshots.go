package wire

import "time"

// SnapshotRequest is the body of POST /configs/{name}/snapshots.
type SnapshotRequest struct {
	Name string `json:"name"`
	// WithState also saves each deployed guest's memory and device state,
	// so that a revert resumes the guests instead of booting them.
	WithState bool `json:"with_state,omitempty"`
}

// Snapshot is one snapshot of a configuration; a list comes in tree order
// (depth first, children by creation).
type Snapshot struct {
	Name      string    `json:"name"`
	Parent    string    `json:"parent,omitempty"` // "" for a root
	Depth     int       `json:"depth"`            // in the tree, roots 0
	CreatedAt time.Time `json:"created_at"`
	WithState bool      `json:"with_state"`
	// Current: the configuration continues from this snapshot.
	Current bool `json:"current"`
	// ExclusiveBytes are what deleting it frees: the bytes of its frozen
	// layers nothing else uses.
	ExclusiveBytes int64           `json:"exclusive_bytes"`
	Layers         []SnapshotLayer `json:"layers"`
	// Pauses are how long each guest was paused to take it: in the answer
	// of a create of a deployed configuration only.
	Pauses []GuestPause `json:"pauses,omitempty"`
}

// SnapshotLayer is the frozen layer of one VM disk in a snapshot.
type SnapshotLayer struct {
	VM    string `json:"vm"`
	Disk  int    `json:"disk"`
	Path  string `json:"path"`
	State string `json:"state,omitempty"` // the VM's saved state file, with state only
}

// GuestPause is how long one VM's guest was paused.
type GuestPause struct {
	VM      string  `json:"vm"`
	PauseMS float64 `json:"pause_ms"`
}
