package wire

import "time"

// Host is one daemon of an installation whose hosts share a PostgreSQL
// store (GET /hosts, /hosts/{name}); a SQLite installation has one.
type Host struct {
	Name         string `json:"name"`
	AdvertiseURL string `json:"advertise_url"`
	// State is "active", "draining" (placement skips it) or "removed".
	State string `json:"state"`
	// Online: seen within the offline threshold (three heartbeats, 15 s).
	Online    bool      `json:"online"`
	MemoryMiB int       `json:"memory_mib"`
	CPUs      int       `json:"cpus"`
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	// Deployed names the configurations deployed on the host.
	Deployed []string `json:"deployed"`
	// Homed names every configuration whose home the host is (deployed
	// or not): what `host drain --all` still has to move.
	Homed []string `json:"homed"`
	// Drain is the host's latest drain (absent: never drained).
	Drain *HostDrain `json:"drain,omitempty"`
}

// HostDrain is a drain of a host: carried out by the host itself, one
// configuration at a time; Deployed (and Homed, with All) say what is
// left.
type HostDrain struct {
	// State is DrainQueued, DrainRunning, DrainDone or DrainFailed.
	State string `json:"state"`
	All   bool   `json:"all"`
	// Error is why it stopped (failed): the configuration it could not
	// move, and why (for a placement, every host's verdict).
	Error string `json:"error,omitempty"`
	// Attempts > 1: the host's daemon stopped mid-drain and resumed it.
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	DoneAt    time.Time `json:"done_at,omitzero"`
}

// States of a HostDrain: those of its work item.
const (
	DrainQueued  = "queued"
	DrainRunning = "claimed"
	DrainDone    = "done"
	DrainFailed  = "failed"
)
