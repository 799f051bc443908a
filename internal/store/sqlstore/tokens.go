package sqlstore

import (
	"database/sql"
	"fmt"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Tokens (schema version 5; console links since 6). Times are unix
// nanoseconds, NULL for never/none.

const tokenCols = "id, user_id, hash, kind, name, created_at, expires_at, last_used_at, revoked_at, restrict_workspace_id, restrict_role, console_config_id, console_vm"

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNullNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

func scanToken(s Scanner) (store.Token, error) {
	var (
		tk                     store.Token
		created                int64
		expires, used, revoked sql.NullInt64
		restrictWS, consoleCfg sql.NullInt64
		restrictRole, vm       sql.NullString
	)
	err := s.Scan(&tk.ID, &tk.UserID, &tk.Hash, &tk.Kind, &tk.Name, &created, &expires, &used, &revoked, &restrictWS, &restrictRole, &consoleCfg, &vm)
	tk.CreatedAt = fromNanos(created)
	tk.ExpiresAt, tk.LastUsedAt, tk.RevokedAt = fromNullNanos(expires), fromNullNanos(used), fromNullNanos(revoked)
	tk.RestrictWorkspaceID, tk.RestrictRole = restrictWS.Int64, restrictRole.String
	tk.ConsoleConfigID, tk.ConsoleVM = consoleCfg.Int64, vm.String
	return tk, err
}

func (t tokens) Create(tk *store.Token) error {
	if err := tk.Check(); err != nil {
		return err
	}
	created := stamp(tk.CreatedAt)
	_, err := t.guarded(`INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tk.ID, tk.UserID, tk.Hash, tk.Kind, tk.Name, created.UnixNano(), nullTime(tk.ExpiresAt), nullTime(tk.LastUsedAt),
		nullTime(tk.RevokedAt), nullID(tk.RestrictWorkspaceID), nullText(tk.RestrictRole),
		nullID(tk.ConsoleConfigID), nullText(tk.ConsoleVM))
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("token %q: id already in use", tk.Name)
	case t.d.IsForeignKey(err):
		if !exists(t.db, "users", tk.UserID) {
			return errdefs.Conflict("token %q: user %d does not exist", tk.Name, tk.UserID)
		}
		if tk.ConsoleConfigID != 0 && !exists(t.db, "configs", tk.ConsoleConfigID) {
			return errdefs.Conflict("token %q: configuration %d does not exist", tk.Name, tk.ConsoleConfigID)
		}
		return errdefs.Conflict("token %q: workspace %d does not exist", tk.Name, tk.RestrictWorkspaceID)
	case err != nil:
		return fmt.Errorf("create token %q: %w", tk.Name, err)
	}
	tk.CreatedAt = created
	return nil
}

// qTokenByID runs on every request that carries a token.
var qTokenByID = hot("SELECT " + tokenCols + " FROM tokens WHERE id = ?")

// Get's errors do not repeat the id: it is half of a credential.
func (t tokens) Get(id string) (*store.Token, error) {
	tk, err := queryOne(t.db, scanToken, qTokenByID, id)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("token not found")
	case err != nil:
		return nil, fmt.Errorf("get token: %w", err)
	}
	return &tk, nil
}

func (t tokens) List(userID int64) ([]store.Token, error) {
	ts, err := queryAll(t.db, scanToken, "SELECT "+tokenCols+" FROM tokens WHERE user_id = ? ORDER BY created_at, id", userID)
	if err != nil {
		return nil, fmt.Errorf("tokens of user %d: %w", userID, err)
	}
	return ts, nil
}

func (t tokens) Revoke(id string, at time.Time) error {
	found, err := t.changeOne("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", stamp(at).UnixNano(), id)
	switch {
	case err != nil:
		return fmt.Errorf("revoke token: %w", err)
	case !found:
		return errdefs.NotFound("token not found")
	}
	return nil
}

func (t tokens) Touch(id string, at time.Time) error {
	found, err := t.changeOne("UPDATE tokens SET last_used_at = ? WHERE id = ?", stamp(at).UnixNano(), id)
	switch {
	case err != nil:
		return fmt.Errorf("touch token: %w", err)
	case !found:
		return errdefs.NotFound("token not found")
	}
	return nil
}

func (t tokens) DeleteExpired(now time.Time) (int64, error) {
	n, err := t.exec("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("delete expired tokens: %w", err)
	}
	return n, nil
}
