package sqlstore

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Lists filtered to what a viewer may see, in the query (the rule is
// store.Directory's).
//
// The filter is an OR of terms of the form "a.column IN (...)" (SQLite)
// or "a.column = ANY(array)" (PostgreSQL, one parameter, so that the
// statement's text and cached plan do not change with the number of ids),
// each of which the database can answer from an index (workspace_id,
// owner_id, the primary key, shares by grantee), so it may read only the
// rows that pass rather than every row; a system administrator gets no
// filter at all.
// The viewer's memberships, organizations and groups arrive as
// parameters: the caller built them with Viewers.Load (and may have
// narrowed them), and the workspace kind travels with each membership.

// VisibleWhere returns the filter on alias (a row of the table of
// objectKind) and its arguments.
func (d *Dialect) VisibleWhere(alias, objectKind string, v store.Viewer) (string, []any) {
	if v.SystemAdmin {
		return d.True, nil
	}
	var (
		terms []string
		args  []any
	)
	in := func(ids []int64) string {
		var cond string
		cond, args = d.InIDs(ids, args)
		return cond
	}
	if len(v.AdminOfOrgs) > 0 {
		terms = append(terms, alias+".workspace_id IN (SELECT id FROM workspaces WHERE org_id "+in(v.AdminOfOrgs)+")")
	}
	var shared, private []int64
	for _, w := range v.Workspaces {
		if w.Kind == store.WorkspaceShared {
			shared = append(shared, w.ID)
		} else {
			private = append(private, w.ID)
		}
	}
	if len(shared) > 0 {
		terms = append(terms, alias+".workspace_id "+in(shared))
	}
	if len(private) > 0 && v.UserID != 0 {
		args = append(args, v.UserID) // the owner's ? comes before the ids'
		terms = append(terms, "("+alias+".owner_id = ? AND "+alias+".workspace_id "+in(private)+")")
	}
	if v.UserID != 0 {
		terms = append(terms, alias+".id IN (SELECT object_id FROM shares WHERE grantee_user_id = ? AND object_kind = ?)")
		args = append(args, v.UserID, objectKind)
	}
	if len(v.GroupIDs) > 0 {
		terms = append(terms, alias+".id IN (SELECT object_id FROM shares WHERE grantee_group_id "+in(v.GroupIDs)+" AND object_kind = ?)")
		args = append(args, objectKind)
	}
	if len(terms) == 0 {
		return d.False, nil
	}
	return "(" + strings.Join(terms, " OR ") + ")", args
}

// The viewer's statements read everything Viewers.Load returns in one
// statement (they run on nearly every request): the user's row, the
// organizations it administers, its groups and its memberships, each row
// tagged with what it is. A membership's workspace is read by subqueries
// rather than a join, and the rows are sorted in Go rather than by ORDER
// BY (see the hot statement rule of store/sqlite).
const viewerBranches = `SELECT 0, id, CAST(system_admin AS INTEGER), '', '' FROM users WHERE id = ?
	UNION ALL SELECT 1, org_id, 0, '', '' FROM org_admins WHERE user_id = ?
	UNION ALL SELECT 2, group_id, 0, '', '' FROM group_members WHERE user_id = ?
	UNION ALL SELECT 3, m.workspace_id, (SELECT org_id FROM workspaces WHERE id = m.workspace_id),
		(SELECT kind FROM workspaces WHERE id = m.workspace_id), m.role FROM memberships m WHERE m.user_id = ?`

var (
	qViewer   = hot(viewerBranches)
	qViewerIn = hot(viewerBranches + " AND m.workspace_id = ?")
)

// Tags of the viewer statements' rows.
const (
	viewerUser = iota
	viewerOrgAdmin
	viewerGroup
	viewerMembership
)

// Load reads the user's flag, organizations administered,
// memberships (with each workspace's organization and kind) and groups.
func (t viewers) Load(userID int64) (*store.Viewer, error) {
	return loadViewer(t.db, qViewer, userID, userID, userID, userID, userID)
}

func (t viewers) LoadIn(userID, workspaceID int64) (*store.Viewer, error) {
	return loadViewer(t.db, qViewerIn, userID, userID, userID, userID, userID, workspaceID)
}

func loadViewer(t *db, query string, userID int64, args ...any) (*store.Viewer, error) {
	rows, err := t.c.Query(query, args...)
	if err != nil {
		return nil, fmt.Errorf("viewer of user %d: %w", userID, err)
	}
	defer rows.Close()
	var (
		v     = store.Viewer{UserID: userID}
		found bool
		tag   int
		id    int64
		other int64 // system_admin, or a membership's org_id
		kind  string
		role  string
	)
	for rows.Next() {
		if err := rows.Scan(&tag, &id, &other, &kind, &role); err != nil {
			return nil, fmt.Errorf("viewer of user %d: %w", userID, err)
		}
		switch tag {
		case viewerUser:
			found, v.SystemAdmin = true, other != 0
		case viewerOrgAdmin:
			v.AdminOfOrgs = append(v.AdminOfOrgs, id)
		case viewerGroup:
			v.GroupIDs = append(v.GroupIDs, id)
		case viewerMembership:
			v.Workspaces = append(v.Workspaces, store.ViewerWorkspace{ID: id, OrgID: other, Kind: kind, Role: role})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("viewer of user %d: %w", userID, t.c.Failed(err))
	}
	if !found {
		return nil, errdefs.NotFound("user %d not found", userID)
	}
	slices.Sort(v.AdminOfOrgs)
	slices.Sort(v.GroupIDs)
	slices.SortFunc(v.Workspaces, func(a, b store.ViewerWorkspace) int { return cmp.Compare(a.ID, b.ID) })
	return &v, nil
}

// objectRefQueries are Objects.Ref's and Objects.Access's statements by object
// kind, with what their kind is called in a "not found".
var objectRefQueries = map[string]struct{ query, access, what string }{
	store.ObjectConfig:   {objectRefQuery("configs"), accessQuery("configs", store.ObjectConfig), "configuration"},
	store.ObjectTemplate: {objectRefQuery("templates"), accessQuery("templates", store.ObjectTemplate), "template"},
	store.ObjectNetwork:  {objectRefQuery("networks"), accessQuery("networks", store.ObjectNetwork), "network"},
	store.ObjectArchive:  {objectRefQuery("archives"), accessQuery("archives", store.ObjectArchive), "archive"},
}

// objectRefQuery reads the workspace by subqueries, not a join (see the
// hot statement rule of store/sqlite).
func objectRefQuery(table string) string {
	return hot(`SELECT o.id, coalesce(o.workspace_id, 0), coalesce((SELECT org_id FROM workspaces WHERE id = o.workspace_id), 0),
		coalesce(o.owner_id, 0), coalesce((SELECT kind FROM workspaces WHERE id = o.workspace_id), '')
		FROM ` + table + ` o WHERE o.name = ?`)
}

func (t objects) Ref(objectKind, name string) (store.ObjectRef, error) {
	q, ok := objectRefQueries[objectKind]
	if !ok {
		return store.ObjectRef{}, errdefs.Invalid("object kind %q: want config, template, network or archive", objectKind)
	}
	r, err := queryOne(t.db, func(s Scanner) (store.ObjectRef, error) {
		var r store.ObjectRef
		err := s.Scan(&r.ID, &r.WorkspaceID, &r.OrgID, &r.OwnerID, &r.WorkspaceKind)
		return r, err
	}, q.query, name)
	switch {
	case t.d.NoRows(err):
		return store.ObjectRef{}, errdefs.NotFound("%s %q not found", q.what, name)
	case err != nil:
		return store.ObjectRef{}, fmt.Errorf("look up %s %q: %w", q.what, name, err)
	}
	return r, nil
}

func (t visible) Configs(v store.Viewer) ([]store.Config, error) {
	where, args := t.d.VisibleWhere("a", store.ObjectConfig, v)
	cs, err := queryAll(t.db, scanConfig, "SELECT "+prefixed("a", configCols)+" FROM configs a WHERE "+where+" ORDER BY a.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list configurations visible to user %d: %w", v.UserID, err)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	// The VMs of the configurations found, named by id: evaluating the
	// filter again for VMs, disks and NICs would cost three more scans.
	vmsOf := ""
	var vmArgs []any
	if !v.SystemAdmin {
		ids := make([]int64, len(cs))
		for i, c := range cs {
			ids[i] = c.ID
		}
		cond, arg, err := t.d.IDArray(ids)
		if err != nil {
			return nil, err
		}
		vmsOf, vmArgs = "WHERE v.config_id "+cond, []any{arg}
	}
	if err := attachVMs(t.db, cs, vmsOf, vmArgs...); err != nil {
		return nil, fmt.Errorf("list configurations visible to user %d: %w", v.UserID, err)
	}
	return cs, nil
}

func (t visible) Templates(v store.Viewer) ([]store.Template, error) {
	where, args := t.d.VisibleWhere("a", store.ObjectTemplate, v)
	ts, err := queryAll(t.db, t.d.scanTemplate, "SELECT "+prefixed("a", templateCols)+" FROM templates a WHERE "+where+" ORDER BY a.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list templates visible to user %d: %w", v.UserID, err)
	}
	return ts, nil
}

func (t visible) Networks(v store.Viewer) ([]store.Network, error) {
	where, args := t.d.VisibleWhere("a", store.ObjectNetwork, v)
	ns, err := queryAll(t.db, t.d.scanNetwork, "SELECT "+prefixed("a", networkCols)+" FROM networks a WHERE "+where+" ORDER BY a.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list networks visible to user %d: %w", v.UserID, err)
	}
	return ns, nil
}

func (t visible) Archives(v store.Viewer) ([]store.Archive, error) {
	where, args := t.d.VisibleWhere("a", store.ObjectArchive, v)
	as, err := queryAll(t.db, scanArchive, "SELECT "+prefixed("a", archiveCols)+" FROM archives a WHERE "+where+" ORDER BY a.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list archives visible to user %d: %w", v.UserID, err)
	}
	return as, nil
}

func (t objects) Visible(v store.Viewer, objectKind string, objectID int64) (bool, error) {
	table, err := objectTable(objectKind)
	if err != nil {
		return false, err
	}
	where, args := t.d.VisibleWhere("a", objectKind, v)
	var visible bool
	err = t.c.Row("SELECT EXISTS (SELECT 1 FROM "+table+" a WHERE a.id = ? AND "+where+")",
		append([]any{objectID}, args...)...).Scan(&visible)
	if err != nil {
		return false, fmt.Errorf("is %s %d visible to user %d: %w", objectKind, objectID, v.UserID, t.c.Failed(err))
	}
	return visible, nil
}

// Tags of accessQuery's rows.
const (
	accessObject = iota
	accessUser
	accessOrgAdmin
	accessGroup
	accessMembership
	accessShare
)

// accessQuery is Objects.Access's statement for the objects of table (kind
// objectKind): the object's row (tag 0), then the viewer's rows as in
// viewerBranches (tags 1 to 4, the membership only in the object's
// workspace), then the shares that reach the user (tag 5), from the two
// unique indexes of shares (object and grantee user; object and grantee
// group). ?1 is the object's name, ?2 the user's id. Columns: tag, id,
// three numbers, two texts, a time; what each means depends on the tag.
// Subqueries rather than joins, no ORDER BY (see the hot statement rule of store/sqlite).
func accessQuery(table, objectKind string) string {
	object := `(SELECT id FROM ` + table + ` WHERE name = ?1)`
	share := `SELECT 5, id, coalesce(grantee_user_id, 0), coalesce(grantee_group_id, 0), 0, level, '', created_at FROM shares
		WHERE object_kind = '` + objectKind + `' AND object_id = ` + object
	return hot(`SELECT 0, o.id, coalesce(o.workspace_id, 0), coalesce((SELECT org_id FROM workspaces WHERE id = o.workspace_id), 0),
		coalesce(o.owner_id, 0), coalesce((SELECT kind FROM workspaces WHERE id = o.workspace_id), ''), '', 0
		FROM ` + table + ` o WHERE o.name = ?1
	UNION ALL SELECT 1, id, CAST(system_admin AS INTEGER), 0, 0, '', '', 0 FROM users WHERE id = ?2
	UNION ALL SELECT 2, org_id, 0, 0, 0, '', '', 0 FROM org_admins WHERE user_id = ?2
	UNION ALL SELECT 3, group_id, 0, 0, 0, '', '', 0 FROM group_members WHERE user_id = ?2
	UNION ALL SELECT 4, m.workspace_id, (SELECT org_id FROM workspaces WHERE id = m.workspace_id), 0, 0,
		(SELECT kind FROM workspaces WHERE id = m.workspace_id), m.role, 0 FROM memberships m
		WHERE m.user_id = ?2 AND m.workspace_id = (SELECT workspace_id FROM ` + table + ` WHERE name = ?1)
	UNION ALL ` + share + ` AND grantee_user_id = ?2
	UNION ALL ` + share + ` AND grantee_group_id IN (SELECT group_id FROM group_members WHERE user_id = ?2)`)
}

func (t objects) Access(userID int64, objectKind, name string) (*store.Access, error) {
	q, ok := objectRefQueries[objectKind]
	if !ok {
		return nil, errdefs.Invalid("object kind %q: want config, template, network or archive", objectKind)
	}
	rows, err := t.c.Query(q.access, name, userID)
	if err != nil {
		return nil, fmt.Errorf("access of user %d to %s %q: %w", userID, q.what, name, err)
	}
	defer rows.Close()
	var (
		a                  = store.Access{Viewer: store.Viewer{UserID: userID}}
		object, user       bool
		tag                int
		id, n1, n2, n3, at int64
		text1, text2       string
	)
	for rows.Next() {
		if err := rows.Scan(&tag, &id, &n1, &n2, &n3, &text1, &text2, &at); err != nil {
			return nil, fmt.Errorf("access of user %d to %s %q: %w", userID, q.what, name, err)
		}
		switch tag {
		case accessObject:
			object = true
			a.Object = store.ObjectRef{ID: id, WorkspaceID: n1, OrgID: n2, OwnerID: n3, WorkspaceKind: text1}
		case accessUser:
			user, a.Viewer.SystemAdmin = true, n1 != 0
		case accessOrgAdmin:
			a.Viewer.AdminOfOrgs = append(a.Viewer.AdminOfOrgs, id)
		case accessGroup:
			a.Viewer.GroupIDs = append(a.Viewer.GroupIDs, id)
		case accessMembership:
			a.Viewer.Workspaces = append(a.Viewer.Workspaces, store.ViewerWorkspace{ID: id, OrgID: n1, Kind: text1, Role: text2})
		case accessShare:
			a.Shares = append(a.Shares, store.Share{ID: id, ObjectKind: objectKind, UserID: n1, GroupID: n2, Level: text1, CreatedAt: fromNanos(at)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("access of user %d to %s %q: %w", userID, q.what, name, t.c.Failed(err))
	}
	switch {
	case !object:
		return nil, errdefs.NotFound("%s %q not found", q.what, name)
	case !user:
		return nil, errdefs.NotFound("user %d not found", userID)
	}
	for i := range a.Shares {
		a.Shares[i].ObjectID = a.Object.ID
	}
	slices.Sort(a.Viewer.AdminOfOrgs)
	slices.Sort(a.Viewer.GroupIDs)
	slices.SortFunc(a.Shares, func(x, y store.Share) int { return cmp.Compare(x.ID, y.ID) })
	return &a, nil
}

// eventTables are the tables that hold the objects events name, with
// the Event.Object values that name them and their share kind.
var eventTables = []struct {
	table, kind string
	objects     []any
}{
	{"configs", store.ObjectConfig, []any{"config", "library"}},
	{"templates", store.ObjectTemplate, []any{"template"}},
	{"networks", store.ObjectNetwork, []any{"network"}},
	{"archives", store.ObjectArchive, []any{"archive"}},
}

// eventWhere returns the filter of f on alias e (a row of events): the
// actor, or for each table an EXISTS of the object the event names
// under VisibleWhere, which the database answers from the object's name index.
func (d *Dialect) eventWhere(f store.EventFilter) (string, []any) {
	var (
		terms []string
		args  []any
	)
	if f.Actor != "" {
		terms = append(terms, "e.actor = ?")
		args = append(args, f.Actor)
	}
	for _, t := range eventTables {
		if f.NoObjects {
			break
		}
		where, wargs := d.VisibleWhere("a", t.kind, f.Viewer)
		if where == d.False {
			continue
		}
		term := "(e.object IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(t.objects)), ", ") + ") AND EXISTS (SELECT 1 FROM " +
			t.table + " a WHERE a.name = e.subject AND " + where
		args = append(append(args, t.objects...), wargs...)
		if f.Workspace != 0 {
			term += " AND a.workspace_id = ?"
			args = append(args, f.Workspace)
		}
		terms = append(terms, term+"))")
	}
	if len(terms) == 0 {
		return d.False, nil
	}
	return "(" + strings.Join(terms, " OR ") + ")", args
}

func (t visible) Events(f store.EventFilter, afterID int64, limit int) ([]store.Event, error) {
	where, args := t.d.eventWhere(f)
	args = append([]any{afterID}, args...)
	es, err := queryAll(t.db, scanEvent, "SELECT "+prefixed("e", eventCols)+" FROM events e WHERE e.id > ? AND "+where+" ORDER BY e.id LIMIT ?",
		append(args, t.d.Limit(limit))...)
	if err != nil {
		return nil, fmt.Errorf("list events visible to user %d: %w", f.Viewer.UserID, err)
	}
	return es, nil
}

func (t visible) Event(f store.EventFilter, id int64) (bool, error) {
	where, args := t.d.eventWhere(f)
	var visible bool
	err := t.c.Row("SELECT EXISTS (SELECT 1 FROM events e WHERE e.id = ? AND "+where+")",
		append([]any{id}, args...)...).Scan(&visible)
	if err != nil {
		return false, fmt.Errorf("is event %d visible to user %d: %w", id, f.Viewer.UserID, t.c.Failed(err))
	}
	return visible, nil
}
