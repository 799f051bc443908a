package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// The directory: users, organizations, workspaces and their members,
// groups, quotas, API tokens, configuration shares and auth explain, kept
// by the store's Directory methods.
//
// Who may do what (every decision is auth.Decide's, through access.Checker
// where the object is a workspace or a configuration):
//   - the system administrator: everything;
//   - an admin of an organization: its workspaces, their members and
//     quotas, its groups and its admins;
//   - a workspace's admin role: the workspace's members (not its quota);
//   - any user: their own tokens and their own password (giving the
//     current one), their own record; a configuration's sharer
//     (config.share) its shares.
//
// A request without identity is the system (see auth.FromContext); the
// api's authentication step guarantees that requests from outside carry
// one. A restricted token (one workspace, a role at most) manages nothing
// of the directory but what its role allows in its workspace.

// DirectoryKinds are the kinds of the directory routes' objects: users,
// organizations, workspaces (of an organization) and tokens. access.Ref
// names the lab's objects only, so a route of one of these kinds is
// decided by its handler, with auth.Decide (through access.Checker where
// the object is a workspace), on the record its path or body names; the
// route table still names each route's action.
var DirectoryKinds = map[string]bool{"user": true, "org": true, "workspace": true, "token": true}

// directory is what the directory's handlers share: the store that keeps
// it, and the jobs auth explain decides on.
type directory struct {
	*env
	store store.Store // nil: the directory is not served (503)
	// jobs lets auth explain decide on jobs (job/ID); nil: they are not
	// found.
	jobs *jobs.Manager
}

// directoryHandler serves the directory's endpoints over the store, each
// by the handler of its kind of record (users and their tokens in
// users.go, organizations and their groups in orgs.go, workspaces.go,
// shares.go, explain.go), all over one directory.
type directoryHandler directory

func (h directoryHandler) register(r *router) {
	p := wire.APIPrefix
	d := directory(h)
	users, orgs, groups, workspaces := usersHandler{d}, orgsHandler{d}, groupsHandler{d}, workspacesHandler{d}
	tokens, explain, shares := tokensHandler{d}, explainHandler{d}, sharesHandler{d}
	// dir registers a route whose handler decides: action on the kind of
	// directory record that path value param (or the body, or the caller)
	// names.
	dir := func(pattern string, action auth.Action, kind, param string, fn apiFunc) {
		r.add(RouteInfo{Pattern: pattern, Action: action, Kind: kind, Param: param}, d.served(fn))
	}
	// Users are the system administrator's; a user reads their own record
	// and sets their own password.
	dir("POST "+p+"/users", auth.UserAdmin, "user", "", users.createUser)
	dir("GET "+p+"/users", auth.UserAdmin, "user", "", users.listUsers)
	dir("GET "+p+"/users/{name}", auth.UserAdmin, "user", "name", users.getUser)
	dir("PATCH "+p+"/users/{name}", auth.UserAdmin, "user", "name", users.updateUser)
	dir("DELETE "+p+"/users/{name}", auth.UserAdmin, "user", "name", users.deleteUser)
	dir("PUT "+p+"/users/{name}/password", auth.UserAdmin, "user", "name", users.setPassword)

	// Organizations are made by the system administrator and run by their
	// admins: admins, workspaces, quotas of workspaces, groups. Anyone
	// lists those they administer or work in.
	dir("POST "+p+"/orgs", auth.OrgAdmin, "org", "", orgs.createOrg)
	dir("GET "+p+"/orgs", auth.StatusRead, "org", "", orgs.listOrgs)
	dir("POST "+p+"/orgs/{org}/admins", auth.OrgAdmin, "org", "org", orgs.addOrgAdmin)
	dir("DELETE "+p+"/orgs/{org}/admins/{user}", auth.OrgAdmin, "org", "org", orgs.removeOrgAdmin)
	dir("POST "+p+"/groups", auth.OrgAdmin, "org", "", groups.createGroup)
	dir("GET "+p+"/groups", auth.StatusRead, "org", "", groups.listGroups)
	dir("DELETE "+p+"/groups/{org}/{name}", auth.OrgAdmin, "org", "org", groups.deleteGroup)
	dir("POST "+p+"/groups/{org}/{name}/members", auth.OrgAdmin, "org", "org", groups.addGroupMember)
	dir("DELETE "+p+"/groups/{org}/{name}/members/{user}", auth.OrgAdmin, "org", "org", groups.removeGroupMember)

	// Workspaces: made and deleted by their organization's admins, their
	// members managed by their own admins too; members see them.
	dir("POST "+p+"/workspaces", auth.OrgAdmin, "workspace", "", workspaces.createWorkspace)
	dir("GET "+p+"/workspaces", auth.StatusRead, "workspace", "", workspaces.listWorkspaces)
	dir("GET "+p+"/workspaces/{org}/{name}", auth.StatusRead, "workspace", "name", workspaces.getWorkspace)
	dir("DELETE "+p+"/workspaces/{org}/{name}", auth.OrgAdmin, "workspace", "name", workspaces.deleteWorkspace)
	dir("POST "+p+"/workspaces/{org}/{name}/members", auth.WorkspaceAdmin, "workspace", "name", workspaces.addMember)
	dir("DELETE "+p+"/workspaces/{org}/{name}/members/{user}", auth.WorkspaceAdmin, "workspace", "name", workspaces.removeMember)
	// A workspace's lease policy is one of its settings (lease_policy.go).
	dir("GET "+p+"/workspaces/{org}/{name}/lease-policy", auth.WorkspaceAdmin, "workspace", "name", workspaces.getLeasePolicy)
	dir("PUT "+p+"/workspaces/{org}/{name}/lease-policy", auth.WorkspaceAdmin, "workspace", "name", workspaces.setLeasePolicy)
	// A workspace's quota is its organization's admins'; a user's the
	// system administrator's (see setQuota).
	dir("PUT "+p+"/quotas", auth.OrgAdmin, "workspace", "", workspaces.setQuota)

	// Tokens: anyone's own (status.read is every user's), another user's
	// for the system administrator only.
	dir("POST "+p+"/tokens", auth.StatusRead, "token", "", tokens.createToken)
	dir("GET "+p+"/tokens", auth.StatusRead, "token", "", tokens.listTokens)
	dir("DELETE "+p+"/tokens/{id}", auth.StatusRead, "token", "id", tokens.revokeToken)

	// Explaining is for those who administer what is explained; the
	// checker's Explain decides.
	dir("POST "+p+"/auth/explain", auth.OrgAdmin, "org", "", explain.explain)

	// Shares are decided on the configuration, by the route table's check.
	r.route("POST "+p+"/configs/{name}/shares", auth.ConfigShare, object("config", "name"), d.served(shares.share))
	r.route("GET "+p+"/configs/{name}/shares", auth.ConfigRead, object("config", "name"), d.served(shares.listShares))
	r.route("DELETE "+p+"/configs/{name}/shares/{grantee}", auth.ConfigShare, object("config", "name"), d.served(shares.unshare))
}

// served answers 503 when the handler has no store.
func (d directory) served(fn apiFunc) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if d.store == nil {
			return errdefs.Unavailable("the directory (users, workspaces, tokens) is not served by this daemon")
		}
		return fn(w, r)
	}
}

func (d directory) checker() *access.Checker {
	c := access.New(d.store, d.log)
	if d.jobs != nil { // a nil *jobs.Manager must stay a nil access.Jobs
		c.WithJobs(d.jobs)
	}
	return c
}

// --- who asks -------------------------------------------------------------

// caller is who a request is: its identity, or the system (ok false).
type caller struct {
	id     auth.Identity
	system bool // no identity: the system, which may do everything
}

func callerOf(ctx context.Context) caller {
	id, ok := auth.FromContext(ctx)
	return caller{id: id, system: !ok}
}

// EventAppender is where the directory's changes are recorded
// (*events.Log): in the change's own transaction, told to the live
// followers once it has committed.
type EventAppender interface {
	Append(ctx context.Context, tx store.Tx, e events.Event) (publish func(), err error)
}

// directoryTx is a write transaction of updateDirectory: the store's, and
// what record needs to append its events and publish them after the
// commit.
type directoryTx struct {
	store.Tx
	ctx     context.Context
	log     EventAppender
	publish *[]func()
}

// updateDirectory runs fn in a write transaction of st in which record
// appends the change's event (events.Log.Append): the change and its
// event commit together, and once they have, the event goes to the live
// followers (events --follow) as the lab's own events do, so following
// shows what listing shows.
func (e *env) updateDirectory(ctx context.Context, st store.Store, fn func(tx store.Tx) error) error {
	var publish []func()
	err := st.Update(ctx, func(tx store.Tx) error {
		publish = publish[:0] // a transaction run again records again
		return fn(directoryTx{Tx: tx, ctx: ctx, log: e.events, publish: &publish})
	})
	if err != nil {
		return err
	}
	for _, p := range publish {
		p()
	}
	return nil
}

// record writes the event of a directory change in the change's own
// transaction: the log says who changed who may do what, and a change
// without its event is not committed. In a transaction of
// updateDirectory the event is published to followers after the commit;
// in any other it is only written (listed, not followed).
func record(tx store.Tx, c caller, object, action, subject, detail string) error {
	actor := c.id.Name
	if c.system || actor == "" {
		actor = "system"
	}
	e := events.Event{Object: object, Action: action, Subject: subject, Result: events.ResultOK, Detail: detail}
	dt, ok := tx.(directoryTx)
	if !ok || dt.log == nil {
		return tx.Events().Add(&store.Event{At: time.Now().UTC(), Actor: actor, Action: e.Action, Object: e.Object,
			Subject: e.Subject, Result: e.Result, Detail: e.Detail})
	}
	publish, err := dt.log.Append(events.WithActor(dt.ctx, actor), dt.Tx, e)
	if err != nil {
		return err
	}
	*dt.publish = append(*dt.publish, publish)
	return nil
}

// admin reports whether c may do everything without asking: the system,
// or an unrestricted system administrator.
func (c caller) admin() bool { return c.system || c.id.SystemAdmin && c.id.Restrict == nil }

// is reports whether c is the user with id uid.
func (c caller) is(uid int64) bool { return !c.system && c.id.UserID != 0 && c.id.UserID == uid }

// decideOrg asks auth.Decide whether c may do action (org.admin) on
// organization o: the system administrator or one of o's admins, and no
// restricted token (no role row holds org.admin). An organization is
// visible to whoever administers it or is a member of one of its
// workspaces; to anyone else it is not found.
func decideOrg(tx store.Tx, c caller, o *store.Org) error {
	if c.admin() {
		return nil
	}
	var adminOf []int64
	if c.id.UserID != 0 {
		orgs, err := tx.Orgs().AdministeredBy(c.id.UserID)
		if err != nil {
			return err
		}
		for _, x := range orgs {
			adminOf = append(adminOf, x.ID)
		}
	}
	dec := auth.Decide(auth.Input{
		Actor:  c.id.Actor(adminOf),
		Action: auth.OrgAdmin,
		Object: auth.Object{Kind: "organization", Name: o.Name, OrgID: o.ID},
	})
	if dec.Allowed {
		return nil
	}
	if visible, err := orgVisible(tx, c, o); err != nil || !visible {
		if err == nil {
			err = errdefs.NotFound("organization %q not found", o.Name)
		}
		return err
	}
	return errdefs.Forbidden("%s", dec.Reason)
}

// orgVisible reports whether c administers o or is a member of one of its
// workspaces.
func orgVisible(tx store.Tx, c caller, o *store.Org) (bool, error) {
	if c.admin() {
		return true, nil
	}
	if c.id.UserID == 0 {
		return false, nil
	}
	v, err := tx.Viewers().Load(c.id.UserID)
	if err != nil {
		return false, err
	}
	if slices.Contains(v.AdminOfOrgs, o.ID) {
		return true, nil
	}
	for _, w := range v.Workspaces {
		if w.OrgID == o.ID {
			return true, nil
		}
	}
	return false, nil
}

// checkWorkspace asks the checker whether the caller of ctx may do action
// in workspace ref itself (workspace.admin: its members; org.admin: its
// quota, deleting it; status.read: seeing it). Its not-found names the
// workspace as the caller gave it.
func (d directory) checkWorkspace(ctx context.Context, action auth.Action, ref string) error {
	if callerOf(ctx).admin() {
		return nil
	}
	err := d.checker().Check(ctx, action, access.Ref{Kind: "workspace", Workspace: ref})
	if errors.Is(err, errdefs.ErrNotFound) {
		return errdefs.NotFound("workspace %q not found", ref)
	}
	return err
}

// needSystemAdmin refuses anyone but the system and an unrestricted
// system administrator, through the checker (user.admin on the system).
func (d directory) needSystemAdmin(ctx context.Context, action auth.Action) error {
	if callerOf(ctx).admin() {
		return nil
	}
	return d.checker().Check(ctx, action, access.Ref{Kind: access.KindSystem})
}

// userFor returns the user of path value {name} for c: c's own record, or
// anyone's for the system administrator; to anyone else the user is not
// found, so names cannot be probed.
func (d directory) userFor(ctx context.Context, tx store.Tx, name string) (*store.User, error) {
	c := callerOf(ctx)
	u, err := userNamed(tx, name)
	if err != nil {
		return nil, err
	}
	if c.admin() || c.is(u.ID) {
		return u, nil
	}
	if err := d.needSystemAdmin(ctx, auth.UserAdmin); err != nil {
		return nil, errdefs.NotFound("user %q not found", name)
	}
	return u, nil
}

// --- names ----------------------------------------------------------------

// reservedUserNames are the actors the event log names besides users:
// the unix socket's root, the system (the directory changed without a
// request), the lab's reaper and a context without actor. A user of one
// of these names would read their events as their own (event.read shows
// each reader the events they caused).
var reservedUserNames = map[string]bool{"root": true, "system": true, lab.ActorReaper: true, events.ActorAnonymous: true}

// checkDirText accepts a free-text field of the directory (e-mail,
// display name): at most 254 bytes, no control characters.
func checkDirText(field, s string) error {
	if len(s) > 254 {
		return errdefs.Invalid("%s of %d bytes is longer than 254", field, len(s))
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return errdefs.Invalid("%s %q holds a control character (or is not UTF-8)", field, s)
		}
	}
	return nil
}

// names turns ids into names and keeps them for the rest of a request.
type names struct {
	tx   store.Tx
	orgs map[int64]string
	ws   map[int64]string
	usrs map[int64]string
}

func namesIn(tx store.Tx) *names {
	return &names{tx: tx, orgs: map[int64]string{}, ws: map[int64]string{}, usrs: map[int64]string{}}
}

func (n *names) org(id int64) (string, error) {
	if s, ok := n.orgs[id]; ok {
		return s, nil
	}
	o, err := n.tx.Orgs().GetByID(id)
	if err != nil {
		return "", err
	}
	n.orgs[id] = o.Name
	return o.Name, nil
}

// workspace is "org/ws"; "" for id 0.
func (n *names) workspace(id int64) (string, error) {
	if id == 0 {
		return "", nil
	}
	if s, ok := n.ws[id]; ok {
		return s, nil
	}
	w, err := n.tx.Workspaces().GetByID(id)
	if err != nil {
		return "", err
	}
	o, err := n.org(w.OrgID)
	if err != nil {
		return "", err
	}
	n.ws[id] = o + "/" + w.Name
	return n.ws[id], nil
}

func (n *names) user(id int64) (string, error) {
	if s, ok := n.usrs[id]; ok {
		return s, nil
	}
	u, err := n.tx.Users().GetByID(id)
	if err != nil {
		return "", err
	}
	n.usrs[id] = u.Name
	return u.Name, nil
}

// workspaceAt returns the workspace of path values {org} and {name}.
func workspaceAt(tx store.Tx, r *http.Request) (*store.Org, *store.Workspace, error) {
	org, name := r.PathValue("org"), r.PathValue("name")
	o, err := tx.Orgs().Get(org)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil, errdefs.NotFound("workspace %q not found (no organization %q)", org+"/"+name, org)
	}
	if err != nil {
		return nil, nil, err
	}
	w, err := tx.Workspaces().Get(o.ID, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil, errdefs.NotFound("workspace %q not found", org+"/"+name)
	}
	return o, w, err
}

// orgNamed returns organization name ("" is default), not found by name.
func orgNamed(tx store.Tx, name string) (*store.Org, error) {
	if name == "" {
		name = store.DefaultOrg
	}
	o, err := tx.Orgs().Get(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("organization %q not found", name)
	}
	return o, err
}

// administeredOrg returns organization name ("" is default) when c may
// administer it (decideOrg).
func administeredOrg(tx store.Tx, c caller, name string) (*store.Org, error) {
	o, err := orgNamed(tx, name)
	if err != nil {
		return nil, err
	}
	if err := decideOrg(tx, c, o); err != nil {
		return nil, err
	}
	return o, nil
}

// orgQuery returns the id of the organization the query's org names, or
// 0 when it names none (every organization).
func orgQuery(tx store.Tx, r *http.Request) (int64, error) {
	name := r.URL.Query().Get("org")
	if name == "" {
		return 0, nil
	}
	o, err := orgNamed(tx, name)
	if err != nil {
		return 0, err
	}
	return o.ID, nil
}

func userNamed(tx store.Tx, name string) (*store.User, error) {
	if name == "" {
		return nil, errdefs.Invalid("a user name is required")
	}
	u, err := tx.Users().Get(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("user %q not found", name)
	}
	return u, err
}

// quotaOf returns the quota of a scope (nil: none) and its use.
func quotaOf(tx store.Tx, scope string, id int64) (*wire.QuotaLimits, *wire.QuotaUsage, error) {
	var lim *wire.QuotaLimits
	q, err := tx.Quotas().Get(scope, id)
	switch {
	case err == nil:
		lim = &wire.QuotaLimits{StoredVMs: q.StoredVMs, DeployedVMs: q.DeployedVMs, VCPUs: q.VCPUs, MemoryMiB: q.MemoryMiB, DiskGiB: q.DiskGiB}
	case !errors.Is(err, errdefs.ErrNotFound):
		return nil, nil, err
	}
	u, err := tx.Quotas().Use(scope, id)
	if err != nil {
		return nil, nil, err
	}
	return lim, &wire.QuotaUsage{StoredVMs: u.StoredVMs, DeployedVMs: u.DeployedVMs, VCPUs: u.VCPUs, MemoryMiB: u.MemoryMiB, DiskGiB: u.DiskGiB}, nil
}

// --- transactions ---------------------------------------------------------

// viewJSON answers 200 with what read finds in one read transaction of st.
func viewJSON[T any](w http.ResponseWriter, r *http.Request, st store.Store, read func(tx store.Tx) (T, error)) error {
	var out T
	err := st.View(r.Context(), func(tx store.Tx) error {
		var err error
		out, err = read(tx)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// updated runs change in one write transaction of the directory (see
// updateDirectory) and returns what it made.
func updated[T any](ctx context.Context, d directory, change func(tx store.Tx) (T, error)) (T, error) {
	var out T
	err := d.updateDirectory(ctx, d.store, func(tx store.Tx) error {
		var err error
		out, err = change(tx)
		return err
	})
	return out, err
}

// noContent runs change in one write transaction of the directory (see
// updateDirectory) and answers 204.
func (d directory) noContent(w http.ResponseWriter, r *http.Request, change func(tx store.Tx) error) error {
	if err := d.updateDirectory(r.Context(), d.store, change); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// toWire converts each record of a list; the result is never nil, so an
// empty list is [] in JSON.
func toWire[S, T any](records []S, conv func(*S) (T, error)) ([]T, error) {
	out := make([]T, 0, len(records))
	for i := range records {
		t, err := conv(&records[i])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
