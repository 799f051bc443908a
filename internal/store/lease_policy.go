package store

// LeasePolicies: at most one per workspace, an opaque document (package
// lease reads and checks it); deleting the workspace deletes its policy.
type LeasePolicies interface {
	// Put sets the policy of a workspace (ErrConflict when it does not
	// exist), replacing the one it had.
	Put(p *LeasePolicy) error
	Get(workspaceID int64) (*LeasePolicy, error)
	Delete(workspaceID int64) error
	// List returns every workspace's policy ordered by workspace ID.
	List() ([]LeasePolicy, error)
}

// LeasePolicy is a workspace's lease policy, as package lease encodes it.
type LeasePolicy struct {
	WorkspaceID int64
	Policy      string
}
