package sqlstore

import (
	"database/sql"
	"fmt"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Shares, quotas and the placement of objects (schema version 5).

const shareCols = "id, object_kind, object_id, grantee_user_id, grantee_group_id, level, created_at"

func scanShare(s Scanner) (store.Share, error) {
	var (
		sh          store.Share
		user, group sql.NullInt64
		created     int64
	)
	err := s.Scan(&sh.ID, &sh.ObjectKind, &sh.ObjectID, &user, &group, &sh.Level, &created)
	sh.UserID, sh.GroupID, sh.CreatedAt = user.Int64, group.Int64, fromNanos(created)
	return sh, err
}

// grantee names the user or group of a share for messages.
func grantee(userID, groupID int64) string {
	if userID != 0 {
		return fmt.Sprintf("user %d", userID)
	}
	return fmt.Sprintf("group %d", groupID)
}

func (t shares) Put(s *store.Share) error {
	table, err := objectTable(s.ObjectKind)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("share of %s %d with %s", s.ObjectKind, s.ObjectID, grantee(s.UserID, s.GroupID))
	switch s.Level {
	case store.ShareFull, store.ShareChange, store.ShareRead, store.ShareConsole:
	default:
		return errdefs.Invalid("%s: level %q: want full, change, read or console", what, s.Level)
	}
	if (s.UserID == 0) == (s.GroupID == 0) {
		return errdefs.Invalid("share of %s %d: exactly one of user and group must be set (got %d and %d)", s.ObjectKind, s.ObjectID, s.UserID, s.GroupID)
	}
	// The object cannot be a foreign key (its table depends on the kind).
	if !exists(t.db, table, s.ObjectID) {
		return errdefs.Conflict("%s: %s %d does not exist", what, s.ObjectKind, s.ObjectID)
	}
	conflict := "grantee_user_id"
	if s.GroupID != 0 {
		conflict = "grantee_group_id"
	}
	var (
		id      int64
		created int64
	)
	_, err = t.c.Guarded(func(r Scanner) error { return r.Scan(&id, &created) }, `INSERT INTO shares (object_kind, object_id, grantee_user_id, grantee_group_id, level, created_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (object_kind, object_id, `+conflict+`) DO UPDATE SET level = excluded.level
		RETURNING id, created_at`,
		s.ObjectKind, s.ObjectID, nullID(s.UserID), nullID(s.GroupID), s.Level, stamp(s.CreatedAt).UnixNano())
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("%s: %s does not exist", what, grantee(s.UserID, s.GroupID))
	case err != nil:
		return fmt.Errorf("put %s: %w", what, err)
	}
	s.ID, s.CreatedAt = id, fromNanos(created)
	return nil
}

func (t shares) Remove(objectKind string, objectID, userID, groupID int64) error {
	if _, err := objectTable(objectKind); err != nil {
		return err
	}
	if (userID == 0) == (groupID == 0) {
		return errdefs.Invalid("remove share of %s %d: exactly one of user and group must be set (got %d and %d)", objectKind, objectID, userID, groupID)
	}
	found, err := t.changeOne(`DELETE FROM shares WHERE object_kind = ? AND object_id = ?
		AND `+t.d.IsNotDistinct("grantee_user_id")+` AND `+t.d.IsNotDistinct("grantee_group_id"), objectKind, objectID, nullID(userID), nullID(groupID))
	switch {
	case err != nil:
		return fmt.Errorf("remove share of %s %d with %s: %w", objectKind, objectID, grantee(userID, groupID), err)
	case !found:
		return errdefs.NotFound("%s %d is not shared with %s", objectKind, objectID, grantee(userID, groupID))
	}
	return nil
}

func (t shares) Of(objectKind string, objectID int64) ([]store.Share, error) {
	ss, err := queryAll(t.db, scanShare, "SELECT "+shareCols+" FROM shares WHERE object_kind = ? AND object_id = ? ORDER BY id", objectKind, objectID)
	if err != nil {
		return nil, fmt.Errorf("shares of %s %d: %w", objectKind, objectID, err)
	}
	return ss, nil
}

func (t shares) ToUser(userID int64) ([]store.Share, error) {
	ss, err := queryAll(t.db, scanShare, "SELECT "+shareCols+" FROM shares WHERE grantee_user_id = ? ORDER BY id", userID)
	if err != nil {
		return nil, fmt.Errorf("shares with user %d: %w", userID, err)
	}
	return ss, nil
}

func (t shares) ToGroup(groupID int64) ([]store.Share, error) {
	ss, err := queryAll(t.db, scanShare, "SELECT "+shareCols+" FROM shares WHERE grantee_group_id = ? ORDER BY id", groupID)
	if err != nil {
		return nil, fmt.Errorf("shares with group %d: %w", groupID, err)
	}
	return ss, nil
}

// Quotas.

const quotaCols = "scope, scope_id, stored_vms, deployed_vms, vcpus, memory_mib, disk_gib"

func scanQuota(s Scanner) (store.Quota, error) {
	var q store.Quota
	err := s.Scan(&q.Scope, &q.ScopeID, &q.StoredVMs, &q.DeployedVMs, &q.VCPUs, &q.MemoryMiB, &q.DiskGiB)
	return q, err
}

// quotaOwnerColumn is the column of an object that puts it in a scope.
func quotaOwnerColumn(scope string) (string, error) {
	switch scope {
	case store.QuotaScopeUser:
		return "owner_id", nil
	case store.QuotaScopeWorkspace:
		return "workspace_id", nil
	}
	return "", errdefs.Invalid("quota scope %q: want user or workspace", scope)
}

func (t quotas) Set(q *store.Quota) error {
	if _, err := quotaOwnerColumn(q.Scope); err != nil {
		return err
	}
	if q.StoredVMs < 0 || q.DeployedVMs < 0 || q.VCPUs < 0 || q.MemoryMiB < 0 || q.DiskGiB < 0 {
		return errdefs.Invalid("quota of %s %d: limits cannot be negative (0 means no limit)", q.Scope, q.ScopeID)
	}
	// The scope cannot be a foreign key (its table depends on the scope).
	table := map[string]string{store.QuotaScopeUser: "users", store.QuotaScopeWorkspace: "workspaces"}[q.Scope]
	if !exists(t.db, table, q.ScopeID) {
		return errdefs.Conflict("quota of %s %d: %s %d does not exist", q.Scope, q.ScopeID, q.Scope, q.ScopeID)
	}
	_, err := t.guarded(`INSERT INTO quotas (`+quotaCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (scope, scope_id) DO UPDATE SET stored_vms = excluded.stored_vms, deployed_vms = excluded.deployed_vms,
			vcpus = excluded.vcpus, memory_mib = excluded.memory_mib, disk_gib = excluded.disk_gib`,
		q.Scope, q.ScopeID, q.StoredVMs, q.DeployedVMs, q.VCPUs, q.MemoryMiB, q.DiskGiB)
	if err != nil {
		return fmt.Errorf("set quota of %s %d: %w", q.Scope, q.ScopeID, err)
	}
	return nil
}

func (t quotas) Get(scope string, scopeID int64) (*store.Quota, error) {
	q, err := queryOne(t.db, scanQuota, "SELECT "+quotaCols+" FROM quotas WHERE scope = ? AND scope_id = ?", scope, scopeID)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("%s %d has no quota", scope, scopeID)
	case err != nil:
		return nil, fmt.Errorf("get quota of %s %d: %w", scope, scopeID, err)
	}
	return &q, nil
}

func (t quotas) Delete(scope string, scopeID int64) error {
	found, err := t.changeOne("DELETE FROM quotas WHERE scope = ? AND scope_id = ?", scope, scopeID)
	switch {
	case err != nil:
		return fmt.Errorf("delete quota of %s %d: %w", scope, scopeID, err)
	case !found:
		return errdefs.NotFound("%s %d has no quota", scope, scopeID)
	}
	return nil
}

const gib = 1 << 30

// Use counts in one statement what store.Directory documents. A
// configuration in any state but undeployed and failed may have its VMs on
// the host, so deploying and undeploying count as deployed.
func (t quotas) Use(scope string, scopeID int64) (store.QuotaUsage, error) {
	col, err := quotaOwnerColumn(scope)
	if err != nil {
		return store.QuotaUsage{}, err
	}
	var u store.QuotaUsage
	var layerBytes, archiveBytes int64
	err = t.c.Row(`SELECT
		(SELECT count(*) FROM vms v JOIN configs c ON c.id = v.config_id WHERE c.`+col+` = ?1),
		(SELECT count(*) FROM vms v JOIN configs c ON c.id = v.config_id WHERE c.`+col+` = ?1 AND c.state IN (?2, ?3, ?4)),
		(SELECT coalesce(sum(v.cpus), 0) FROM vms v JOIN configs c ON c.id = v.config_id WHERE c.`+col+` = ?1 AND c.state IN (?2, ?3, ?4)),
		(SELECT coalesce(sum(v.memory_mib), 0) FROM vms v JOIN configs c ON c.id = v.config_id WHERE c.`+col+` = ?1 AND c.state IN (?2, ?3, ?4)),
		(SELECT coalesce(sum(l.virtual_size), 0) FROM disks d JOIN vms v ON v.id = d.vm_id JOIN configs c ON c.id = v.config_id
			JOIN layers l ON l.id = d.top_layer_id WHERE c.`+col+` = ?1),
		(SELECT coalesce(sum(size), 0) FROM archives WHERE `+col+` = ?1)`,
		scopeID, store.StateDeploying, store.StateDeployed, store.StateUndeploying).Scan(
		&u.StoredVMs, &u.DeployedVMs, &u.VCPUs, &u.MemoryMiB, &layerBytes, &archiveBytes)
	if err != nil {
		return store.QuotaUsage{}, fmt.Errorf("quota use of %s %d: %w", scope, scopeID, t.c.Failed(err))
	}
	u.DiskBytes = layerBytes + archiveBytes
	u.DiskGiB = (u.DiskBytes + gib - 1) / gib
	return u, nil
}

// Ownership.

func (t objects) SetOwnership(objectKind string, objectID, workspaceID, ownerID int64) error {
	table, err := objectTable(objectKind)
	if err != nil {
		return err
	}
	found, err := t.changeOne("UPDATE "+table+" SET workspace_id = ?, owner_id = ? WHERE id = ?", nullID(workspaceID), nullID(ownerID), objectID)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("%s %d: %s", objectKind, objectID, missingOwnership(t.db, workspaceID, ownerID))
	case err != nil:
		return fmt.Errorf("set workspace and owner of %s %d: %w", objectKind, objectID, err)
	case !found:
		return errdefs.NotFound("%s %d not found", objectKind, objectID)
	}
	return nil
}
