package sqlstore

import (
	"database/sql"
	"fmt"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Organizations, workspaces, users, groups, memberships and organization
// administrators (schema version 5).

// exists reports whether table has a row with id.
func exists(t *db, table string, id int64) bool {
	var one int
	return t.c.Row("SELECT 1 FROM "+table+" WHERE id = ?", id).Scan(&one) == nil
}

// missingOwnership names the workspace or owner an object refers to that
// does not exist, after a foreign key violation.
func missingOwnership(t *db, workspaceID, ownerID int64) string {
	switch {
	case workspaceID != 0 && !exists(t, "workspaces", workspaceID):
		return fmt.Sprintf("workspace %d does not exist", workspaceID)
	case ownerID != 0 && !exists(t, "users", ownerID):
		return fmt.Sprintf("owner (user %d) does not exist", ownerID)
	}
	return "refers to a record that does not exist"
}

// objectTables maps the kinds of object that belong to a workspace to
// their tables.
var objectTables = map[string]string{
	store.ObjectConfig:   "configs",
	store.ObjectTemplate: "templates",
	store.ObjectNetwork:  "networks",
	store.ObjectArchive:  "archives",
}

func objectTable(kind string) (string, error) {
	table, ok := objectTables[kind]
	if !ok {
		return "", errdefs.Invalid("object kind %q: want config, template, network or archive", kind)
	}
	return table, nil
}

// ownedCounts says how many objects of each kind have col = id, for the
// message of a refused delete ("" when none).
func ownedCounts(t *db, col string, id int64) string {
	var parts []string
	for _, k := range []struct{ table, what string }{
		{"configs", "configuration(s) or library entr(ies)"},
		{"templates", "template(s)"},
		{"networks", "network(s)"},
		{"archives", "archive(s)"},
	} {
		var n int
		if err := t.c.Row("SELECT count(*) FROM "+k.table+" WHERE "+col+" = ?", id).Scan(&n); err == nil && n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k.what))
		}
	}
	return strings.Join(parts, ", ")
}

// deleteHolder deletes the workspace or user id (what, in table) and,
// while objects still refer to it through col, refuses naming them
// ("workspace "dev" still holds 2 template(s)").
func deleteHolder(t *db, table, what, col, verb string, id int64) error {
	found, err := t.changeOne("DELETE FROM "+table+" WHERE id = ?", id)
	switch {
	case t.d.IsForeignKey(err):
		var name string
		_ = t.c.Row("SELECT name FROM "+table+" WHERE id = ?", id).Scan(&name)
		return errdefs.Conflict("%s %q still %s %s", what, name, verb, ownedCounts(t, col, id))
	case err != nil:
		return fmt.Errorf("delete %s %d: %w", what, id, err)
	case !found:
		return errdefs.NotFound("%s %d not found", what, id)
	}
	return nil
}

// Organizations.

const orgCols = "id, name, created_at"

func scanOrg(s Scanner) (store.Org, error) {
	var (
		o       store.Org
		created int64
	)
	err := s.Scan(&o.ID, &o.Name, &created)
	o.CreatedAt = fromNanos(created)
	return o, err
}

func (t orgs) Create(o *store.Org) error {
	if err := store.NeedName("organization", o.Name); err != nil {
		return err
	}
	created := stamp(o.CreatedAt)
	id, err := t.insert("INSERT INTO organizations (name, created_at) VALUES (?, ?)", o.Name, created.UnixNano())
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("organization %q: already exists", o.Name)
	case err != nil:
		return fmt.Errorf("create organization %q: %w", o.Name, err)
	}
	o.ID, o.CreatedAt = id, created
	return nil
}

// The lookups of a request's user and of the workspace it names (hot
// statements, stmts.go).
var (
	qOrgByName       = hot("SELECT " + orgCols + " FROM organizations WHERE name = ?")
	qWorkspaceByName = hot("SELECT " + workspaceCols + " FROM workspaces WHERE org_id = ? AND name = ?")
	qWorkspaceByID   = hot("SELECT " + workspaceCols + " FROM workspaces WHERE id = ?")
	qUserByID        = hot("SELECT " + userCols + " FROM users WHERE id = ?")
)

func (t orgs) Get(name string) (*store.Org, error) {
	return getOne(t.db, scanOrg, fmt.Sprintf("organization %q", name), qOrgByName, name)
}

func (t orgs) GetByID(id int64) (*store.Org, error) {
	return getOne(t.db, scanOrg, fmt.Sprintf("organization %d", id), "SELECT "+orgCols+" FROM organizations WHERE id = ?", id)
}

func (t orgs) List() ([]store.Org, error) {
	orgs, err := queryAll(t.db, scanOrg, "SELECT "+orgCols+" FROM organizations ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list organizations: %w", err)
	}
	return orgs, nil
}

func (t orgs) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM organizations WHERE id = ?", id)
	switch {
	case t.d.IsForeignKey(err):
		var name string
		var n int
		_ = t.c.Row("SELECT name, (SELECT count(*) FROM workspaces WHERE org_id = o.id) FROM organizations o WHERE id = ?", id).Scan(&name, &n)
		return errdefs.Conflict("organization %q still has %d workspace(s)", name, n)
	case err != nil:
		return fmt.Errorf("delete organization %d: %w", id, err)
	case !found:
		return errdefs.NotFound("organization %d not found", id)
	}
	return nil
}

// getOne reads one record; what names it in the errors.
func getOne[T any](t *db, scan func(Scanner) (T, error), what, query string, args ...any) (*T, error) {
	v, err := queryOne(t, scan, query, args...)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("%s not found", what)
	case err != nil:
		return nil, fmt.Errorf("get %s: %w", what, err)
	}
	return &v, nil
}

// Workspaces.

const workspaceCols = "id, org_id, name, kind, created_at"

func scanWorkspace(s Scanner) (store.Workspace, error) {
	var (
		w       store.Workspace
		created int64
	)
	err := s.Scan(&w.ID, &w.OrgID, &w.Name, &w.Kind, &created)
	w.CreatedAt = fromNanos(created)
	return w, err
}

func (t workspaces) Create(w *store.Workspace) error {
	if err := w.Check(); err != nil {
		return err
	}
	created := stamp(w.CreatedAt)
	id, err := t.insert("INSERT INTO workspaces (org_id, name, kind, created_at) VALUES (?, ?, ?, ?)",
		w.OrgID, w.Name, w.Kind, created.UnixNano())
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("workspace %q: already exists in organization %d", w.Name, w.OrgID)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("workspace %q: organization %d does not exist", w.Name, w.OrgID)
	case err != nil:
		return fmt.Errorf("create workspace %q: %w", w.Name, err)
	}
	w.ID, w.CreatedAt = id, created
	return nil
}

func (t workspaces) Get(orgID int64, name string) (*store.Workspace, error) {
	return getOne(t.db, scanWorkspace, fmt.Sprintf("workspace %q of organization %d", name, orgID),
		qWorkspaceByName, orgID, name)
}

func (t workspaces) GetByID(id int64) (*store.Workspace, error) {
	return getOne(t.db, scanWorkspace, fmt.Sprintf("workspace %d", id), qWorkspaceByID, id)
}

func (t workspaces) List(orgID int64) ([]store.Workspace, error) {
	ws, err := queryAll(t.db, scanWorkspace, "SELECT "+workspaceCols+" FROM workspaces WHERE "+t.d.Int("?")+" = 0 OR org_id = ? ORDER BY id", orgID, orgID)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	return ws, nil
}

func (t workspaces) Update(w *store.Workspace) error {
	if err := w.Check(); err != nil {
		return err
	}
	found, err := t.changeOne("UPDATE workspaces SET name = ?, kind = ? WHERE id = ?", w.Name, w.Kind, w.ID)
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("workspace %q: already exists in its organization", w.Name)
	case err != nil:
		return fmt.Errorf("update workspace %q: %w", w.Name, err)
	case !found:
		return errdefs.NotFound("workspace %d not found", w.ID)
	}
	return nil
}

func (t workspaces) Delete(id int64) error {
	return deleteHolder(t.db, "workspaces", "workspace", "workspace_id", "holds", id)
}

// Users.

const userCols = "id, name, email, display_name, password_hash, disabled, system_admin, default_workspace_id, created_at"

func scanUser(s Scanner) (store.User, error) {
	var (
		u               store.User
		email, password sql.NullString
		defaultWS       sql.NullInt64
		created         int64
	)
	err := s.Scan(&u.ID, &u.Name, &email, &u.DisplayName, &password, &u.Disabled, &u.SystemAdmin, &defaultWS, &created)
	u.Email, u.PasswordHash, u.DefaultWorkspaceID = email.String, password.String, defaultWS.Int64
	u.CreatedAt = fromNanos(created)
	return u, err
}

// userConflict tells a taken name from a taken e-mail address after a
// unique violation.
func userConflict(t *db, u *store.User) error {
	var id int64
	if t.c.Row("SELECT id FROM users WHERE name = ?", u.Name).Scan(&id) == nil && id != u.ID {
		return errdefs.Conflict("user %q: already exists", u.Name)
	}
	return errdefs.Conflict("user %q: e-mail address %q is already in use", u.Name, u.Email)
}

func (t users) Create(u *store.User) error {
	if err := store.NeedName("user", u.Name); err != nil {
		return err
	}
	created := stamp(u.CreatedAt)
	id, err := t.insert(`INSERT INTO users (name, email, display_name, password_hash, disabled, system_admin, default_workspace_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		u.Name, nullText(u.Email), u.DisplayName, nullText(u.PasswordHash), u.Disabled, u.SystemAdmin, nullID(u.DefaultWorkspaceID), created.UnixNano())
	switch {
	case t.d.IsUnique(err):
		return userConflict(t.db, u)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("user %q: default workspace %d does not exist", u.Name, u.DefaultWorkspaceID)
	case err != nil:
		return fmt.Errorf("create user %q: %w", u.Name, err)
	}
	u.ID, u.CreatedAt = id, created
	return nil
}

func (t users) Get(name string) (*store.User, error) {
	return getOne(t.db, scanUser, fmt.Sprintf("user %q", name), "SELECT "+userCols+" FROM users WHERE name = ?", name)
}

func (t users) GetByID(id int64) (*store.User, error) {
	return getOne(t.db, scanUser, fmt.Sprintf("user %d", id), qUserByID, id)
}

// GetByEmail compares without case (SQLite: the column's collation;
// PostgreSQL: the unique index is on lower(email)).
func (t users) GetByEmail(email string) (*store.User, error) {
	if email == "" {
		return nil, errdefs.NotFound(`user with e-mail address "" not found`)
	}
	return getOne(t.db, scanUser, fmt.Sprintf("user with e-mail address %q", email), "SELECT "+userCols+" FROM users WHERE "+t.d.EqualFold("email"), email)
}

func (t users) List() ([]store.User, error) {
	us, err := queryAll(t.db, scanUser, "SELECT "+userCols+" FROM users ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return us, nil
}

func (t users) Update(u *store.User) error {
	if err := store.NeedName("user", u.Name); err != nil {
		return err
	}
	found, err := t.changeOne(`UPDATE users SET name = ?, email = ?, display_name = ?, password_hash = ?, disabled = ?,
		system_admin = ?, default_workspace_id = ? WHERE id = ?`,
		u.Name, nullText(u.Email), u.DisplayName, nullText(u.PasswordHash), u.Disabled, u.SystemAdmin, nullID(u.DefaultWorkspaceID), u.ID)
	switch {
	case t.d.IsUnique(err):
		return userConflict(t.db, u)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("user %q: default workspace %d does not exist", u.Name, u.DefaultWorkspaceID)
	case err != nil:
		return fmt.Errorf("update user %q: %w", u.Name, err)
	case !found:
		return errdefs.NotFound("user %d not found", u.ID)
	}
	return nil
}

func (t users) Delete(id int64) error {
	return deleteHolder(t.db, "users", "user", "owner_id", "owns", id)
}

// Groups.

const groupCols = "id, org_id, name, created_at"

func scanGroup(s Scanner) (store.Group, error) {
	var (
		g       store.Group
		created int64
	)
	err := s.Scan(&g.ID, &g.OrgID, &g.Name, &created)
	g.CreatedAt = fromNanos(created)
	return g, err
}

func (t groups) Create(g *store.Group) error {
	if err := store.NeedName("group", g.Name); err != nil {
		return err
	}
	created := stamp(g.CreatedAt)
	id, err := t.insert("INSERT INTO groups (org_id, name, created_at) VALUES (?, ?, ?)", g.OrgID, g.Name, created.UnixNano())
	switch {
	case t.d.IsUnique(err):
		return errdefs.Conflict("group %q: already exists in organization %d", g.Name, g.OrgID)
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("group %q: organization %d does not exist", g.Name, g.OrgID)
	case err != nil:
		return fmt.Errorf("create group %q: %w", g.Name, err)
	}
	g.ID, g.CreatedAt = id, created
	return nil
}

func (t groups) Get(orgID int64, name string) (*store.Group, error) {
	return getOne(t.db, scanGroup, fmt.Sprintf("group %q of organization %d", name, orgID),
		"SELECT "+groupCols+" FROM groups WHERE org_id = ? AND name = ?", orgID, name)
}

func (t groups) GetByID(id int64) (*store.Group, error) {
	return getOne(t.db, scanGroup, fmt.Sprintf("group %d", id), "SELECT "+groupCols+" FROM groups WHERE id = ?", id)
}

func (t groups) List(orgID int64) ([]store.Group, error) {
	gs, err := queryAll(t.db, scanGroup, "SELECT "+groupCols+" FROM groups WHERE "+t.d.Int("?")+" = 0 OR org_id = ? ORDER BY id", orgID, orgID)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	return gs, nil
}

func (t groups) Delete(id int64) error {
	found, err := t.changeOne("DELETE FROM groups WHERE id = ?", id)
	switch {
	case err != nil:
		return fmt.Errorf("delete group %d: %w", id, err)
	case !found:
		return errdefs.NotFound("group %d not found", id)
	}
	return nil
}

func (t groups) AddMember(groupID, userID int64) error {
	_, err := t.guarded("INSERT INTO group_members (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING", groupID, userID)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("add user %d to group %d: %s", userID, groupID, missingPair(t.db, "groups", groupID, "group", userID))
	case err != nil:
		return fmt.Errorf("add user %d to group %d: %w", userID, groupID, err)
	}
	return nil
}

// missingPair names which of a (thing, user) pair does not exist.
func missingPair(t *db, table string, id int64, what string, userID int64) string {
	if !exists(t, table, id) {
		return fmt.Sprintf("%s %d does not exist", what, id)
	}
	if !exists(t, "users", userID) {
		return fmt.Sprintf("user %d does not exist", userID)
	}
	return "refers to a record that does not exist"
}

func (t groups) RemoveMember(groupID, userID int64) error {
	found, err := t.changeOne("DELETE FROM group_members WHERE group_id = ? AND user_id = ?", groupID, userID)
	switch {
	case err != nil:
		return fmt.Errorf("remove user %d from group %d: %w", userID, groupID, err)
	case !found:
		return errdefs.NotFound("user %d is not a member of group %d", userID, groupID)
	}
	return nil
}

func (t groups) Members(groupID int64) ([]store.User, error) {
	us, err := queryAll(t.db, scanUser, "SELECT "+prefixed("u", userCols)+" FROM users u JOIN group_members m ON m.user_id = u.id WHERE m.group_id = ? ORDER BY u.id", groupID)
	if err != nil {
		return nil, fmt.Errorf("members of group %d: %w", groupID, err)
	}
	return us, nil
}

func (t groups) OfUser(userID int64) ([]store.Group, error) {
	gs, err := queryAll(t.db, scanGroup, "SELECT "+prefixed("g", groupCols)+" FROM groups g JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ? ORDER BY g.id", userID)
	if err != nil {
		return nil, fmt.Errorf("groups of user %d: %w", userID, err)
	}
	return gs, nil
}

// prefixed qualifies each column of a column list with alias.
func prefixed(alias, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = alias + "." + p
	}
	return strings.Join(parts, ", ")
}

// Memberships.

const membershipCols = "user_id, workspace_id, role"

func scanMembership(s Scanner) (store.Membership, error) {
	var m store.Membership
	err := s.Scan(&m.UserID, &m.WorkspaceID, &m.Role)
	return m, err
}

func (t memberships) Put(m *store.Membership) error {
	if m.Role == "" {
		return errdefs.Invalid("membership of user %d in workspace %d: a role is required", m.UserID, m.WorkspaceID)
	}
	_, err := t.guarded(`INSERT INTO memberships (user_id, workspace_id, role) VALUES (?, ?, ?)
		ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role`, m.UserID, m.WorkspaceID, m.Role)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("membership of user %d in workspace %d: %s", m.UserID, m.WorkspaceID,
			missingPair(t.db, "workspaces", m.WorkspaceID, "workspace", m.UserID))
	case err != nil:
		return fmt.Errorf("put membership of user %d in workspace %d: %w", m.UserID, m.WorkspaceID, err)
	}
	return nil
}

func (t memberships) Get(userID, workspaceID int64) (*store.Membership, error) {
	m, err := queryOne(t.db, scanMembership, "SELECT "+membershipCols+" FROM memberships WHERE user_id = ? AND workspace_id = ?", userID, workspaceID)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("user %d is not a member of workspace %d", userID, workspaceID)
	case err != nil:
		return nil, fmt.Errorf("get membership of user %d in workspace %d: %w", userID, workspaceID, err)
	}
	return &m, nil
}

func (t memberships) Delete(userID, workspaceID int64) error {
	found, err := t.changeOne("DELETE FROM memberships WHERE user_id = ? AND workspace_id = ?", userID, workspaceID)
	switch {
	case err != nil:
		return fmt.Errorf("delete membership of user %d in workspace %d: %w", userID, workspaceID, err)
	case !found:
		return errdefs.NotFound("user %d is not a member of workspace %d", userID, workspaceID)
	}
	return nil
}

func (t memberships) OfUser(userID int64) ([]store.Membership, error) {
	ms, err := queryAll(t.db, scanMembership, "SELECT "+membershipCols+" FROM memberships WHERE user_id = ? ORDER BY workspace_id", userID)
	if err != nil {
		return nil, fmt.Errorf("memberships of user %d: %w", userID, err)
	}
	return ms, nil
}

func (t memberships) OfWorkspace(workspaceID int64) ([]store.Membership, error) {
	ms, err := queryAll(t.db, scanMembership, "SELECT "+membershipCols+" FROM memberships WHERE workspace_id = ? ORDER BY user_id", workspaceID)
	if err != nil {
		return nil, fmt.Errorf("members of workspace %d: %w", workspaceID, err)
	}
	return ms, nil
}

// Organization administrators.

func (t orgs) AddAdmin(orgID, userID int64) error {
	_, err := t.guarded("INSERT INTO org_admins (org_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING", orgID, userID)
	switch {
	case t.d.IsForeignKey(err):
		return errdefs.Conflict("make user %d administrator of organization %d: %s", userID, orgID,
			missingPair(t.db, "organizations", orgID, "organization", userID))
	case err != nil:
		return fmt.Errorf("make user %d administrator of organization %d: %w", userID, orgID, err)
	}
	return nil
}

func (t orgs) RemoveAdmin(orgID, userID int64) error {
	found, err := t.changeOne("DELETE FROM org_admins WHERE org_id = ? AND user_id = ?", orgID, userID)
	switch {
	case err != nil:
		return fmt.Errorf("remove administrator %d of organization %d: %w", userID, orgID, err)
	case !found:
		return errdefs.NotFound("user %d is not an administrator of organization %d", userID, orgID)
	}
	return nil
}

func (t orgs) Admins(orgID int64) ([]store.User, error) {
	us, err := queryAll(t.db, scanUser, "SELECT "+prefixed("u", userCols)+" FROM users u JOIN org_admins a ON a.user_id = u.id WHERE a.org_id = ? ORDER BY u.id", orgID)
	if err != nil {
		return nil, fmt.Errorf("administrators of organization %d: %w", orgID, err)
	}
	return us, nil
}

func (t orgs) AdministeredBy(userID int64) ([]store.Org, error) {
	orgs, err := queryAll(t.db, scanOrg, "SELECT "+prefixed("o", orgCols)+" FROM organizations o JOIN org_admins a ON a.org_id = o.id WHERE a.user_id = ? ORDER BY o.id", userID)
	if err != nil {
		return nil, fmt.Errorf("organizations administered by user %d: %w", userID, err)
	}
	return orgs, nil
}
