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
}
