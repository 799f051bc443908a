package wire

import "time"

// CleanupRequest is the body of POST /cleanup, which deletes what the view
// lists as deletable (or with DryRun only says so). GET /cleanup?idle_days=N
// is the view.
type CleanupRequest struct {
	IdleDays int  `json:"idle_days,omitempty"`
	DryRun   bool `json:"dry_run,omitempty"`
}

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

// ConfigSpace is GET /configs/{name}/space: what deleting the
// configuration alone would free, counted as the cleanup view counts it
// (a layer its clones or library entries still build on is kept).
type ConfigSpace struct {
	FreesBytes int64        `json:"frees_bytes"`
	Layers     []FreedLayer `json:"layers"`
}

// FreedLayer is one layer the deletion would release.
type FreedLayer struct {
	ID    int64  `json:"id"`
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}
