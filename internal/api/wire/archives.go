package wire

import "time"

// ArchiveRequest is the body of POST /archives: archive configuration
// Config as Name (202, the Job).
type ArchiveRequest struct {
	Config       string `json:"config"`
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
	// Workspace is where the archive goes; "" is the configuration's.
	Workspace string `json:"workspace,omitempty"`
	// WithSnapshots carries the configuration's snapshot tree (layers and
	// saved states) in the archive, so a restore has the same snapshots,
	// and the current saved state of each VM undeployed --save-state, so
	// the restore's deploy resumes it.
	WithSnapshots bool `json:"with_snapshots,omitempty"`
}

// RestoreRequest is the body of POST /archives/{name}/restore: a new
// configuration Name by full clone from the archive (202, the Job).
type RestoreRequest struct {
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
	// Workspace is where the configuration goes; "" is the archive's.
	Workspace string `json:"workspace,omitempty"`
}

// ExportRequest is the body of POST /archives/{name}/export: write the
// archive as a bundle at File, an absolute path on the daemon's host that
// must not exist (202, the Job).
type ExportRequest struct {
	File string `json:"file"`
}

// ImportRequest is the body of POST /archives/import: import the bundle at
// File (absolute, on the daemon's host) as archive Name ("" keeps the
// bundle's), with the bundle's networks renamed by MapNetwork (old ->
// new) (202, the Job).
type ImportRequest struct {
	File         string            `json:"file"`
	Name         string            `json:"name,omitempty"`
	MapNetwork   map[string]string `json:"map_network,omitempty"`
	StorageLease string            `json:"storage_lease,omitempty"`
	// Workspace is where the archive goes (see TemplateRequest).
	Workspace string `json:"workspace,omitempty"`
}

// Archive is a consolidated, read-only copy of a configuration.
type Archive struct {
	Name        string      `json:"name"`
	Source      string      `json:"source"`
	Dir         string      `json:"dir"`
	Description string      `json:"description"`
	Owner       string      `json:"owner"`
	Workspace   string      `json:"workspace"` // see Template
	Size        int64       `json:"size"`      // bytes of its files
	CreatedAt   time.Time   `json:"created_at"`
	Networks    []string    `json:"networks"`
	VMs         []ArchiveVM `json:"vms"`
	// Snapshots is the snapshot tree it carries (archived
	// --with-snapshots), in the order taken; empty otherwise.
	Snapshots []ArchiveSnapshot `json:"snapshots"`
	Lease     Lease             `json:"lease"`
}

// ArchiveSnapshot is one snapshot an archive carries.
type ArchiveSnapshot struct {
	Name      string    `json:"name"`
	Parent    string    `json:"parent"` // "" for a root
	CreatedAt time.Time `json:"created_at"`
	WithState bool      `json:"with_state"`
	Size      int64     `json:"size"` // bytes of its layers and states in the archive
}

// ArchiveVM is one VM of an archive.
type ArchiveVM struct {
	Name      string        `json:"name"`
	Template  string        `json:"template"`
	CPUs      int           `json:"cpus"`
	MemoryMiB int           `json:"memory_mib"`
	Disks     []ArchiveDisk `json:"disks"`
	NICs      []NIC         `json:"nics"`
	// SavedState is true when the archive carries the VM's saved state
	// (archived saved, --with-snapshots): the restored VM is saved and its
	// deploy resumes it. SavedStateSize is that state's bytes.
	SavedState     bool  `json:"saved_state"`
	SavedStateSize int64 `json:"saved_state_size,omitempty"`
}

// ArchiveDisk is one disk of an archived VM: a compressed standalone qcow2,
// or with snapshots its current top, a compressed delta on Backing.
type ArchiveDisk struct {
	Index       int    `json:"index"`
	Path        string `json:"path"`
	VirtualSize int64  `json:"virtual_size"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Backing     string `json:"backing,omitempty"`
}
