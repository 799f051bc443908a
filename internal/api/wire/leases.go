package wire

import "time"

// Lease lengths in requests are strings: "never", a number of days ("30d")
// or weeks ("2w"), or a duration ("8h", "90m"). "" leaves the daemon's
// default (or the current setting).

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
	// Ladder is the configuration's graduated lease, in a configuration
	// shown alone.
	Ladder *LeaseLadder `json:"ladder,omitempty"`
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
