package sqlstore

import (
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Lease policies of workspaces (graduated leases, issue 15).

func scanLeasePolicy(s Scanner) (store.LeasePolicy, error) {
	var p store.LeasePolicy
	err := s.Scan(&p.WorkspaceID, &p.Policy)
	return p, err
}

func (t leasePolicies) Put(p *store.LeasePolicy) error {
	_, err := t.guarded(`INSERT INTO lease_policies (workspace_id, policy) VALUES (?, ?)
		ON CONFLICT (workspace_id) DO UPDATE SET policy = excluded.policy`, p.WorkspaceID, p.Policy)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("lease policy: workspace %d does not exist", p.WorkspaceID)
	case err != nil:
		return fmt.Errorf("put lease policy of workspace %d: %w", p.WorkspaceID, err)
	}
	return nil
}

func (t leasePolicies) Get(workspaceID int64) (*store.LeasePolicy, error) {
	p, err := queryOne(t.db, scanLeasePolicy, "SELECT workspace_id, policy FROM lease_policies WHERE workspace_id = ?", workspaceID)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("workspace %d has no lease policy", workspaceID)
	case err != nil:
		return nil, fmt.Errorf("get lease policy of workspace %d: %w", workspaceID, err)
	}
	return &p, nil
}

func (t leasePolicies) Delete(workspaceID int64) error {
	found, err := t.changeOne("DELETE FROM lease_policies WHERE workspace_id = ?", workspaceID)
	switch {
	case err != nil:
		return fmt.Errorf("delete lease policy of workspace %d: %w", workspaceID, err)
	case !found:
		return errdefs.NotFound("workspace %d has no lease policy", workspaceID)
	}
	return nil
}

func (t leasePolicies) List() ([]store.LeasePolicy, error) {
	ps, err := queryAll(t.db, scanLeasePolicy, "SELECT workspace_id, policy FROM lease_policies ORDER BY workspace_id")
	if err != nil {
		return nil, fmt.Errorf("list lease policies: %w", err)
	}
	return ps, nil
}

// LeasePolicies returns the workspaces' lease policies.
func (t *Tx) LeasePolicies() store.LeasePolicies { return leasePolicies{t.db} }

type leasePolicies struct{ *db }
