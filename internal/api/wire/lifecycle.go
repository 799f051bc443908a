package wire

import "time"

// The library, archives, leases, cleanup and the event log.
//
// Lease lengths in requests are strings: "never", a number of days ("30d")
// or weeks ("2w"), or a duration ("8h", "90m"). "" leaves the daemon's
// default (or the current setting).

// UserHeader names who sends a request; the event log records it. The CLI
// sends $USER.
const UserHeader = "X-Stagehand-User"

// Lease is the storage and deployment lease of a configuration, library
// entry or archive. Zero times (omitted) mean none.
type Lease struct {
	StorageExpires time.Time `json:"storage_expires,omitzero"`
	// ExpiredAt is when the reaper found the storage lease run out;
	// DeleteAt when the delete policy deletes it (omitted under notify).
	ExpiredAt time.Time `json:"expired_at,omitzero"`
	DeleteAt  time.Time `json:"delete_at,omitzero"`
	// DeployLeaseSeconds is the length of the deployment lease each
	// deploy gets; 0 means none.
	DeployLeaseSeconds int64     `json:"deploy_lease_seconds"`
	DeployExpires      time.Time `json:"deploy_expires,omitzero"`
	// UndeployAction is what a deployment lease that runs out does:
	// UndeploySave or UndeployDiscard.
	UndeployAction string `json:"undeploy_action"`
	// LastUsed is the creation, or the last deploy, undeploy, checkout,
	// restore or export since: what idle is measured from.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Undeploy actions of a deployment lease.
const (
	UndeploySave    = "save"
	UndeployDiscard = "discard"
)

// LeaseRequest is the body of POST /configs/{name}/lease and POST
// /archives/{name}/lease (storage only); empty fields stay as they are.
// The answer is the Config (or Archive).
type LeaseRequest struct {
	Storage        string `json:"storage,omitempty"`
	Deploy         string `json:"deploy,omitempty"`
	UndeployAction string `json:"undeploy_action,omitempty"`
}

// Configuration kinds (Config.Kind).
const (
	KindConfig  = "config"
	KindLibrary = "library"
)

// CaptureRequest is the body of POST /library: capture configuration
// Config as library entry Name (201, the entry as a Config).
type CaptureRequest struct {
	Config       string `json:"config"`
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
}

// CheckoutRequest is the body of POST /library/{name}/checkout: a new
// configuration Name from the entry (201, the Config).
type CheckoutRequest struct {
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
}

// ArchiveRequest is the body of POST /archives: archive configuration
// Config as Name (202, the Job).
type ArchiveRequest struct {
	Config       string `json:"config"`
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
}

// RestoreRequest is the body of POST /archives/{name}/restore: a new
// configuration Name by full clone from the archive (202, the Job).
type RestoreRequest struct {
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
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
}

// Archive is a consolidated, read-only copy of a configuration.
type Archive struct {
	Name        string      `json:"name"`
	Source      string      `json:"source"`
	Dir         string      `json:"dir"`
	Description string      `json:"description"`
	Owner       string      `json:"owner"`
	Size        int64       `json:"size"` // bytes of its files
	CreatedAt   time.Time   `json:"created_at"`
	Networks    []string    `json:"networks"`
	VMs         []ArchiveVM `json:"vms"`
	Lease       Lease       `json:"lease"`
}

// ArchiveVM is one VM of an archive.
type ArchiveVM struct {
	Name      string        `json:"name"`
	Template  string        `json:"template"`
	CPUs      int           `json:"cpus"`
	MemoryMiB int           `json:"memory_mib"`
	Disks     []ArchiveDisk `json:"disks"`
	NICs      []NIC         `json:"nics"`
}

// ArchiveDisk is one disk of an archived VM: a compressed standalone qcow2.
type ArchiveDisk struct {
	Index       int    `json:"index"`
	Path        string `json:"path"`
	VirtualSize int64  `json:"virtual_size"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

// CleanupRequest is the body of POST /cleanup, which deletes what the view
// lists as deletable (or with DryRun only says so). GET /cleanup?idle_days=N
// is the view.
type CleanupRequest struct {
	IdleDays int  `json:"idle_days,omitempty"`
	DryRun   bool `json:"dry_run,omitempty"`
}

// Objects of cleanup items and events.
const (
	ObjectConfig   = "config"
	ObjectLibrary  = "library"
	ObjectArchive  = "archive"
	ObjectTemplate = "template"
	ObjectNetwork  = "network"
)

// CleanupItem is one expired or idle configuration, library entry or
// archive.
type CleanupItem struct {
	Object    string    `json:"object"`
	Name      string    `json:"name"`
	State     string    `json:"state,omitempty"`
	Reasons   []string  `json:"reasons"`
	Lease     Lease     `json:"lease"`
	IdleSince time.Time `json:"idle_since"`
	// Frees is the bytes deleting this item alone frees.
	Frees     int64  `json:"frees"`
	Deletable bool   `json:"deletable"`
	Kept      string `json:"kept,omitempty"` // why it is not deletable
	Deleted   bool   `json:"deleted"`
	Error     string `json:"error,omitempty"`
}

// CleanupReport is the cleanup view, and what an apply did.
type CleanupReport struct {
	Items []CleanupItem `json:"items"`
	// Frees is the bytes deleting every deletable item together frees
	// (more than the sum of each alone when they share layers).
	Frees   int64 `json:"frees"`
	Applied bool  `json:"applied"`
	Freed   int64 `json:"freed"` // bytes the deletions freed
	// Policy is what the reaper does with expired objects: "notify" or
	// "delete" after GraceSeconds.
	Policy       string `json:"policy"`
	GraceSeconds int64  `json:"grace_seconds"`
}

// Event results.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// Event is one entry of the log of state changes: GET /events (a JSON
// list, ?after=ID&limit=N), or with ?follow=1 or "Accept:
// text/event-stream" a stream of server-sent events, each "id: ID" and
// "data: <Event as JSON>", resumable with Last-Event-ID.
type Event struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Object  string    `json:"object"`
	Subject string    `json:"subject"`
	Result  string    `json:"result"`
	Detail  string    `json:"detail"`
}
