package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
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

// Token lifetimes: the default, and the longest a token may be given; a
// token always expires.
const (
	DefaultTokenLifetime = 90 * 24 * time.Hour
	MaxTokenLifetime     = 366 * 24 * time.Hour
)

// directoryHandler serves the directory's endpoints over the store.
type directoryHandler struct {
	*env
	store store.Store // nil: the directory is not served (503)
	// jobs lets auth explain decide on jobs (job/ID); nil: they are not
	// found.
	jobs *jobs.Manager
}

func (h directoryHandler) register(r *router) {
	p := wire.APIPrefix
	// dir registers a route whose handler decides: action on the kind of
	// directory record that path value param (or the body, or the caller)
	// names.
	dir := func(pattern string, action auth.Action, kind, param string, fn apiFunc) {
		r.add(RouteInfo{Pattern: pattern, Action: action, Kind: kind, Param: param}, h.served(fn))
	}
	// Users are the system administrator's; a user reads their own record
	// and sets their own password.
	dir("POST "+p+"/users", auth.UserAdmin, "user", "", h.createUser)
	dir("GET "+p+"/users", auth.UserAdmin, "user", "", h.listUsers)
	dir("GET "+p+"/users/{name}", auth.UserAdmin, "user", "name", h.getUser)
	dir("PATCH "+p+"/users/{name}", auth.UserAdmin, "user", "name", h.updateUser)
	dir("DELETE "+p+"/users/{name}", auth.UserAdmin, "user", "name", h.deleteUser)
	dir("PUT "+p+"/users/{name}/password", auth.UserAdmin, "user", "name", h.setPassword)

	// Organizations are made by the system administrator and run by their
	// admins: admins, workspaces, quotas of workspaces, groups. Anyone
	// lists those they administer or work in.
	dir("POST "+p+"/orgs", auth.OrgAdmin, "org", "", h.createOrg)
	dir("GET "+p+"/orgs", auth.StatusRead, "org", "", h.listOrgs)
	dir("POST "+p+"/orgs/{org}/admins", auth.OrgAdmin, "org", "org", h.addOrgAdmin)
	dir("DELETE "+p+"/orgs/{org}/admins/{user}", auth.OrgAdmin, "org", "org", h.removeOrgAdmin)
	dir("POST "+p+"/groups", auth.OrgAdmin, "org", "", h.createGroup)
	dir("GET "+p+"/groups", auth.StatusRead, "org", "", h.listGroups)
	dir("DELETE "+p+"/groups/{org}/{name}", auth.OrgAdmin, "org", "org", h.deleteGroup)
	dir("POST "+p+"/groups/{org}/{name}/members", auth.OrgAdmin, "org", "org", h.addGroupMember)
	dir("DELETE "+p+"/groups/{org}/{name}/members/{user}", auth.OrgAdmin, "org", "org", h.removeGroupMember)

	// Workspaces: made and deleted by their organization's admins, their
	// members managed by their own admins too; members see them.
	dir("POST "+p+"/workspaces", auth.OrgAdmin, "workspace", "", h.createWorkspace)
	dir("GET "+p+"/workspaces", auth.StatusRead, "workspace", "", h.listWorkspaces)
	dir("GET "+p+"/workspaces/{org}/{name}", auth.StatusRead, "workspace", "name", h.getWorkspace)
	dir("DELETE "+p+"/workspaces/{org}/{name}", auth.OrgAdmin, "workspace", "name", h.deleteWorkspace)
	dir("POST "+p+"/workspaces/{org}/{name}/members", auth.WorkspaceAdmin, "workspace", "name", h.addMember)
	dir("DELETE "+p+"/workspaces/{org}/{name}/members/{user}", auth.WorkspaceAdmin, "workspace", "name", h.removeMember)
	// A workspace's quota is its organization's admins'; a user's the
	// system administrator's (see setQuota).
	dir("PUT "+p+"/quotas", auth.OrgAdmin, "workspace", "", h.setQuota)

	// Tokens: anyone's own (status.read is every user's), another user's
	// for the system administrator only.
	dir("POST "+p+"/tokens", auth.StatusRead, "token", "", h.createToken)
	dir("GET "+p+"/tokens", auth.StatusRead, "token", "", h.listTokens)
	dir("DELETE "+p+"/tokens/{id}", auth.StatusRead, "token", "id", h.revokeToken)

	// Explaining is for those who administer what is explained; the
	// checker's Explain decides.
	dir("POST "+p+"/auth/explain", auth.OrgAdmin, "org", "", h.explain)

	// Shares are decided on the configuration, by the route table's check.
	r.route("POST "+p+"/configs/{name}/shares", auth.ConfigShare, object("config", "name"), h.served(h.share))
	r.route("GET "+p+"/configs/{name}/shares", auth.ConfigRead, object("config", "name"), h.served(h.listShares))
	r.route("DELETE "+p+"/configs/{name}/shares/{grantee}", auth.ConfigShare, object("config", "name"), h.served(h.unshare))
}

// served answers 503 when the handler has no store.
func (h directoryHandler) served(fn apiFunc) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if h.store == nil {
			return errdefs.Unavailable("the directory (users, workspaces, tokens) is not served by this daemon")
		}
		return fn(w, r)
	}
}

func (h directoryHandler) checker() *access.Checker {
	c := access.New(h.store, h.log)
	if h.jobs != nil { // a nil *jobs.Manager must stay a nil access.Jobs
		c.WithJobs(h.jobs)
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
		return tx.AddEvent(&store.Event{At: time.Now().UTC(), Actor: actor, Action: e.Action, Object: e.Object,
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
func (h directoryHandler) decideOrg(tx store.Tx, c caller, o *store.Org) error {
	if c.admin() {
		return nil
	}
	var adminOf []int64
	if c.id.UserID != 0 {
		orgs, err := tx.ListOrgsAdministeredBy(c.id.UserID)
		if err != nil {
			return err
		}
		for _, x := range orgs {
			adminOf = append(adminOf, x.ID)
		}
	}
	d := auth.Decide(auth.Input{
		Actor:  c.id.Actor(adminOf),
		Action: auth.OrgAdmin,
		Object: auth.Object{Kind: "organization", Name: o.Name, OrgID: o.ID},
	})
	if d.Allowed {
		return nil
	}
	if visible, err := orgVisible(tx, c, o); err != nil || !visible {
		if err == nil {
			err = errdefs.NotFound("organization %q not found", o.Name)
		}
		return err
	}
	return errdefs.Forbidden("%s", d.Reason)
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
	v, err := tx.LoadViewer(c.id.UserID)
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
func (h directoryHandler) checkWorkspace(ctx context.Context, action auth.Action, ref string) error {
	if callerOf(ctx).admin() {
		return nil
	}
	err := h.checker().Check(ctx, action, access.Ref{Kind: "workspace", Workspace: ref})
	if errors.Is(err, errdefs.ErrNotFound) {
		return errdefs.NotFound("workspace %q not found", ref)
	}
	return err
}

// needSystemAdmin refuses anyone but the system and an unrestricted
// system administrator, through the checker (user.admin on the system).
func (h directoryHandler) needSystemAdmin(ctx context.Context, action auth.Action) error {
	if callerOf(ctx).admin() {
		return nil
	}
	return h.checker().Check(ctx, action, access.Ref{Kind: access.KindSystem})
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
	o, err := n.tx.GetOrgByID(id)
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
	w, err := n.tx.GetWorkspaceByID(id)
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
	u, err := n.tx.GetUserByID(id)
	if err != nil {
		return "", err
	}
	n.usrs[id] = u.Name
	return u.Name, nil
}

// workspaceAt returns the workspace of path values {org} and {name}.
func workspaceAt(tx store.Tx, r *http.Request) (*store.Org, *store.Workspace, error) {
	org, name := r.PathValue("org"), r.PathValue("name")
	o, err := tx.GetOrg(org)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, nil, errdefs.NotFound("workspace %q not found (no organization %q)", org+"/"+name, org)
	}
	if err != nil {
		return nil, nil, err
	}
	w, err := tx.GetWorkspace(o.ID, name)
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
	o, err := tx.GetOrg(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("organization %q not found", name)
	}
	return o, err
}

func userNamed(tx store.Tx, name string) (*store.User, error) {
	if name == "" {
		return nil, errdefs.Invalid("a user name is required")
	}
	u, err := tx.GetUser(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("user %q not found", name)
	}
	return u, err
}

// --- users ----------------------------------------------------------------

func (h directoryHandler) createUser(w http.ResponseWriter, r *http.Request) error {
	var req wire.UserRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
		return err
	}
	if err := lab.CheckName("user", req.Name); err != nil {
		return err
	}
	if reservedUserNames[req.Name] {
		return errdefs.Invalid("user name %q is reserved: the event log names the daemon's own actions by it", req.Name)
	}
	if err := checkDirText("email", req.Email); err != nil {
		return err
	}
	if req.Email != "" && !strings.Contains(req.Email, "@") {
		return errdefs.Invalid("email %q is not an address", req.Email)
	}
	if err := checkDirText("display name", req.DisplayName); err != nil {
		return err
	}
	u := store.User{Name: req.Name, Email: req.Email, DisplayName: req.DisplayName, Disabled: req.Disabled, SystemAdmin: req.SystemAdmin}
	if req.Password != "" {
		// Hashed before the transaction: argon2id takes tens of ms and
		// the store serialises writers.
		hash, err := auth.HashPassword(req.Password)
		if err != nil {
			return fmt.Errorf("user %q: %w", req.Name, err)
		}
		u.PasswordHash = hash
	}
	var out wire.User
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		if req.DefaultWorkspace != "" {
			ws, err := access.ResolveWorkspace(tx, 0, req.DefaultWorkspace)
			if err != nil {
				return err
			}
			u.DefaultWorkspaceID = ws.ID
		}
		if err := tx.CreateUser(&u); err != nil {
			return err
		}
		if err := record(tx, callerOf(r.Context()), "user", "create", u.Name, fmt.Sprintf("system admin: %t", u.SystemAdmin)); err != nil {
			return err
		}
		var err error
		out, err = userToWire(namesIn(tx), &u)
		return err
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("users", u.Name))
	return writeJSON(w, http.StatusCreated, out)
}

func userToWire(n *names, u *store.User) (wire.User, error) {
	ws, err := n.workspace(u.DefaultWorkspaceID)
	if errors.Is(err, errdefs.ErrNotFound) {
		ws, err = "", nil
	}
	return wire.User{
		Name: u.Name, Email: u.Email, DisplayName: u.DisplayName, Disabled: u.Disabled,
		SystemAdmin: u.SystemAdmin, HasPassword: u.PasswordHash != "", DefaultWorkspace: ws,
		CreatedAt: u.CreatedAt,
	}, err
}

func (h directoryHandler) listUsers(w http.ResponseWriter, r *http.Request) error {
	if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
		return err
	}
	out := []wire.User{}
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		us, err := tx.ListUsers()
		if err != nil {
			return err
		}
		n := namesIn(tx)
		for i := range us {
			wu, err := userToWire(n, &us[i])
			if err != nil {
				return err
			}
			out = append(out, wu)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// userFor returns the user of path value {name} for c: c's own record, or
// anyone's for the system administrator; to anyone else the user is not
// found, so names cannot be probed.
func (h directoryHandler) userFor(ctx context.Context, tx store.Tx, name string) (*store.User, error) {
	c := callerOf(ctx)
	u, err := userNamed(tx, name)
	if err != nil {
		return nil, err
	}
	if c.admin() || c.is(u.ID) {
		return u, nil
	}
	if err := h.needSystemAdmin(ctx, auth.UserAdmin); err != nil {
		return nil, errdefs.NotFound("user %q not found", name)
	}
	return u, nil
}

func (h directoryHandler) getUser(w http.ResponseWriter, r *http.Request) error {
	var out wire.User
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		u, err := h.userFor(r.Context(), tx, r.PathValue("name"))
		if err != nil {
			return err
		}
		n := namesIn(tx)
		if out, err = userToWire(n, u); err != nil {
			return err
		}
		ms, err := tx.ListMembershipsOfUser(u.ID)
		if err != nil {
			return err
		}
		for _, m := range ms {
			ws, err := n.workspace(m.WorkspaceID)
			if err != nil {
				return err
			}
			out.Memberships = append(out.Memberships, wire.Membership{Workspace: ws, User: u.Name, Role: m.Role})
		}
		gs, err := tx.ListGroupsOfUser(u.ID)
		if err != nil {
			return err
		}
		for _, g := range gs {
			o, err := n.org(g.OrgID)
			if err != nil {
				return err
			}
			out.Groups = append(out.Groups, o+"/"+g.Name)
		}
		orgs, err := tx.ListOrgsAdministeredBy(u.ID)
		if err != nil {
			return err
		}
		for _, o := range orgs {
			out.AdminOf = append(out.AdminOf, o.Name)
		}
		out.Quota, out.Usage, err = quotaOf(tx, store.QuotaScopeUser, u.ID)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// quotaOf returns the quota of a scope (nil: none) and its use.
func quotaOf(tx store.Tx, scope string, id int64) (*wire.QuotaLimits, *wire.QuotaUsage, error) {
	var lim *wire.QuotaLimits
	q, err := tx.GetQuota(scope, id)
	switch {
	case err == nil:
		lim = &wire.QuotaLimits{StoredVMs: q.StoredVMs, DeployedVMs: q.DeployedVMs, VCPUs: q.VCPUs, MemoryMiB: q.MemoryMiB, DiskGiB: q.DiskGiB}
	case !errors.Is(err, errdefs.ErrNotFound):
		return nil, nil, err
	}
	u, err := tx.QuotaUse(scope, id)
	if err != nil {
		return nil, nil, err
	}
	return lim, &wire.QuotaUsage{StoredVMs: u.StoredVMs, DeployedVMs: u.DeployedVMs, VCPUs: u.VCPUs, MemoryMiB: u.MemoryMiB, DiskGiB: u.DiskGiB}, nil
}

func (h directoryHandler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
		return err
	}
	c := callerOf(r.Context())
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		u, err := userNamed(tx, r.PathValue("name"))
		if err != nil {
			return err
		}
		if c.is(u.ID) {
			// Nobody would be left to undo it if this were the last
			// administrator; another administrator can do it.
			return errdefs.Conflict("user %q: you cannot delete yourself", u.Name)
		}
		if err := tx.DeleteUser(u.ID); err != nil {
			return err
		}
		return record(tx, c, "user", "delete", u.Name, "")
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateUser changes the fields of a user the request gives (PATCH: the
// others stay). The system administrator changes anyone's; a user their
// own e-mail, display name and default workspace (one they are a member
// of). Disabling and making or unmaking a system administrator are the
// system administrator's, who cannot do either to themselves (someone
// must be left to undo it). A restricted token changes nothing: the change
// would outlive its restriction. A disabled user's tokens and sessions
// are refused from the next request on: authentication reads the user
// every time.
func (h directoryHandler) updateUser(w http.ResponseWriter, r *http.Request) error {
	var req wire.UserUpdate
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ctx, name := r.Context(), r.PathValue("name")
	c := callerOf(ctx)
	if !c.system && c.id.Restrict != nil {
		return errdefs.Forbidden("a token restricted to one workspace cannot change users")
	}
	if req.Email != nil {
		if err := checkDirText("email", *req.Email); err != nil {
			return err
		}
		if *req.Email != "" && !strings.Contains(*req.Email, "@") {
			return errdefs.Invalid("email %q is not an address", *req.Email)
		}
	}
	if req.DisplayName != nil {
		if err := checkDirText("display name", *req.DisplayName); err != nil {
			return err
		}
	}
	if req.Email == nil && req.DisplayName == nil && req.DefaultWorkspace == nil && req.Disabled == nil && req.SystemAdmin == nil {
		return errdefs.Invalid("user %q: nothing to change: give email, display_name, default_workspace, disabled or system_admin", name)
	}
	var out wire.User
	err := h.updateDirectory(ctx, h.store, func(tx store.Tx) error {
		u, err := h.userFor(ctx, tx, name)
		if err != nil {
			return err
		}
		if req.Disabled != nil || req.SystemAdmin != nil {
			if err := h.needSystemAdmin(ctx, auth.UserAdmin); err != nil {
				return fmt.Errorf("user %q: disabling and system administration are the system administrator's: %w", name, err)
			}
			if c.is(u.ID) && (req.Disabled != nil && *req.Disabled || req.SystemAdmin != nil && !*req.SystemAdmin) {
				return errdefs.Conflict("user %q: you cannot disable yourself or give up your own system administration; another administrator can", name)
			}
		}
		var changed []string
		if req.Email != nil {
			u.Email = *req.Email
			changed = append(changed, "email")
		}
		if req.DisplayName != nil {
			u.DisplayName = *req.DisplayName
			changed = append(changed, "display name")
		}
		if req.DefaultWorkspace != nil {
			u.DefaultWorkspaceID = 0
			if ref := *req.DefaultWorkspace; ref != "" {
				ws, err := access.ResolveWorkspace(tx, 0, ref)
				if err != nil {
					return err
				}
				if !c.admin() {
					// Checked on the checker's own read: a member of
					// the workspace (or an admin of its organization).
					if err := h.checkWorkspace(ctx, auth.StatusRead, ref); err != nil {
						return err
					}
				}
				u.DefaultWorkspaceID = ws.ID
			}
			changed = append(changed, "default workspace "+orNone(*req.DefaultWorkspace))
		}
		if req.Disabled != nil {
			u.Disabled = *req.Disabled
			changed = append(changed, fmt.Sprintf("disabled: %t", u.Disabled))
		}
		if req.SystemAdmin != nil {
			u.SystemAdmin = *req.SystemAdmin
			changed = append(changed, fmt.Sprintf("system admin: %t", u.SystemAdmin))
		}
		if err := tx.UpdateUser(u); err != nil {
			return err
		}
		if err := record(tx, c, "user", "update", u.Name, strings.Join(changed, ", ")); err != nil {
			return err
		}
		out, err = userToWire(namesIn(tx), u)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// setPassword sets a user's password: one's own with the current one, or
// anyone's as the system administrator. A restricted token changes no
// password: it would outlive its restriction.
func (h directoryHandler) setPassword(w http.ResponseWriter, r *http.Request) error {
	var req wire.PasswordRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c := callerOf(r.Context())
	name := r.PathValue("name")
	if !c.system && c.id.Restrict != nil {
		return errdefs.Forbidden("a token restricted to one workspace cannot change passwords")
	}
	if err := auth.ValidatePassword(req.Password); err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	var current string
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		u, err := h.userFor(r.Context(), tx, name)
		if err != nil {
			return err
		}
		current = u.PasswordHash
		if c.admin() {
			return nil
		}
		if req.OldPassword == "" {
			return errdefs.Invalid("changing your own password needs the current one (old_password; stagehand user set-password %s --current)", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !c.admin() {
		if current == "" || auth.CheckPassword(current, req.OldPassword) != nil {
			return errdefs.Forbidden("user %q: the current password is wrong", name)
		}
	}
	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		return fmt.Errorf("user %q: %w", name, err)
	}
	err = h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		u, err := userNamed(tx, name)
		if err != nil {
			return err
		}
		if u.PasswordHash != current {
			return errdefs.Conflict("user %q: the password changed meanwhile; try again", name)
		}
		u.PasswordHash = hash
		if err := tx.UpdateUser(u); err != nil {
			return err
		}
		return record(tx, c, "user", "set-password", u.Name, "")
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- organizations --------------------------------------------------------

func (h directoryHandler) createOrg(w http.ResponseWriter, r *http.Request) error {
	var req wire.OrgRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := h.needSystemAdmin(r.Context(), auth.OrgAdmin); err != nil {
		return err
	}
	if err := lab.CheckName("organization", req.Name); err != nil {
		return err
	}
	var out wire.Org
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		o := store.Org{Name: req.Name}
		if err := tx.CreateOrg(&o); err != nil {
			return err
		}
		// Every organization has its shared workspace main (the issue's
		// rule; default/main is the store's own).
		if err := tx.CreateWorkspace(&store.Workspace{OrgID: o.ID, Name: store.MainWorkspace, Kind: store.WorkspaceShared}); err != nil {
			return err
		}
		if err := record(tx, callerOf(r.Context()), "org", "create", o.Name, ""); err != nil {
			return err
		}
		var err error
		out, err = orgToWire(tx, &o)
		return err
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("orgs", req.Name))
	return writeJSON(w, http.StatusCreated, out)
}

func orgToWire(tx store.Tx, o *store.Org) (wire.Org, error) {
	out := wire.Org{Name: o.Name, CreatedAt: o.CreatedAt, Admins: []string{}, Workspaces: []string{}, Groups: []string{}}
	admins, err := tx.ListOrgAdmins(o.ID)
	if err != nil {
		return out, err
	}
	for _, u := range admins {
		out.Admins = append(out.Admins, u.Name)
	}
	wss, err := tx.ListWorkspaces(o.ID)
	if err != nil {
		return out, err
	}
	for _, ws := range wss {
		out.Workspaces = append(out.Workspaces, ws.Name)
	}
	gs, err := tx.ListGroups(o.ID)
	if err != nil {
		return out, err
	}
	for _, g := range gs {
		out.Groups = append(out.Groups, g.Name)
	}
	return out, nil
}

// listOrgs lists the organizations the caller administers or is a member
// of a workspace of (all for the system administrator).
func (h directoryHandler) listOrgs(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	out := []wire.Org{}
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		orgs, err := tx.ListOrgs()
		if err != nil {
			return err
		}
		for i := range orgs {
			if ok, err := orgVisible(tx, c, &orgs[i]); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			wo, err := orgToWire(tx, &orgs[i])
			if err != nil {
				return err
			}
			out = append(out, wo)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h directoryHandler) addOrgAdmin(w http.ResponseWriter, r *http.Request) error {
	var req wire.OrgAdminRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return h.orgAdmins(w, r, req.User, "add-admin", func(tx store.Tx, o *store.Org, u *store.User) error {
		return tx.AddOrgAdmin(o.ID, u.ID)
	})
}

func (h directoryHandler) removeOrgAdmin(w http.ResponseWriter, r *http.Request) error {
	return h.orgAdmins(w, r, r.PathValue("user"), "remove-admin", func(tx store.Tx, o *store.Org, u *store.User) error {
		return tx.RemoveOrgAdmin(o.ID, u.ID)
	})
}

// orgAdmins changes the admins of organization {org}, as its admin.
func (h directoryHandler) orgAdmins(w http.ResponseWriter, r *http.Request, user, action string, change func(store.Tx, *store.Org, *store.User) error) error {
	c := callerOf(r.Context())
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		o, err := orgNamed(tx, r.PathValue("org"))
		if err != nil {
			return err
		}
		if err := h.decideOrg(tx, c, o); err != nil {
			return err
		}
		u, err := userNamed(tx, user)
		if err != nil {
			return err
		}
		if err := change(tx, o, u); err != nil {
			return err
		}
		return record(tx, c, "org", action, o.Name, "user "+u.Name)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- workspaces -----------------------------------------------------------

func (h directoryHandler) createWorkspace(w http.ResponseWriter, r *http.Request) error {
	var req wire.WorkspaceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := lab.CheckName("workspace", req.Name); err != nil {
		return err
	}
	switch req.Kind {
	case "":
		req.Kind = wire.WorkspaceShared
	case wire.WorkspaceShared, wire.WorkspacePrivate:
	default:
		return errdefs.Invalid("workspace kind %q: want shared or private", req.Kind)
	}
	c := callerOf(r.Context())
	var out wire.Workspace
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		o, err := orgNamed(tx, req.Org)
		if err != nil {
			return err
		}
		if err := h.decideOrg(tx, c, o); err != nil {
			return err
		}
		ws := store.Workspace{OrgID: o.ID, Name: req.Name, Kind: req.Kind}
		if err := tx.CreateWorkspace(&ws); err != nil {
			return err
		}
		if err := record(tx, c, "workspace", "create", o.Name+"/"+ws.Name, "kind "+ws.Kind); err != nil {
			return err
		}
		out = wire.Workspace{Org: o.Name, Name: ws.Name, Kind: ws.Kind, CreatedAt: ws.CreatedAt}
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("workspaces", out.Org)+"/"+out.Name)
	return writeJSON(w, http.StatusCreated, out)
}

// listWorkspaces lists the workspaces the caller may see: all for the
// system administrator, those of the organizations they administer, and
// those they are a member of (a restricted token: its own only).
func (h directoryHandler) listWorkspaces(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	out := []wire.Workspace{}
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		var orgID int64
		if name := r.URL.Query().Get("org"); name != "" {
			o, err := orgNamed(tx, name)
			if err != nil {
				return err
			}
			orgID = o.ID
		}
		wss, err := tx.ListWorkspaces(orgID)
		if err != nil {
			return err
		}
		keep := func(store.Workspace) bool { return true }
		if !c.admin() {
			v := &store.Viewer{}
			if c.id.UserID != 0 {
				if v, err = tx.LoadViewer(c.id.UserID); err != nil {
					return err
				}
			}
			keep = func(ws store.Workspace) bool {
				if c.id.Restrict != nil {
					return ws.ID == c.id.Restrict.WorkspaceID
				}
				if v.SystemAdmin || slices.Contains(v.AdminOfOrgs, ws.OrgID) {
					return true
				}
				return slices.ContainsFunc(v.Workspaces, func(m store.ViewerWorkspace) bool { return m.ID == ws.ID })
			}
		}
		n := namesIn(tx)
		for _, ws := range wss {
			if !keep(ws) {
				continue
			}
			o, err := n.org(ws.OrgID)
			if err != nil {
				return err
			}
			out = append(out, wire.Workspace{Org: o, Name: ws.Name, Kind: ws.Kind, CreatedAt: ws.CreatedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// pathWorkspace is the workspace reference of path values {org}/{name}.
func pathWorkspace(r *http.Request) string { return r.PathValue("org") + "/" + r.PathValue("name") }

func (h directoryHandler) getWorkspace(w http.ResponseWriter, r *http.Request) error {
	if err := h.checkWorkspace(r.Context(), auth.StatusRead, pathWorkspace(r)); err != nil {
		return err
	}
	var out wire.Workspace
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		o, ws, err := workspaceAt(tx, r)
		if err != nil {
			return err
		}
		out = wire.Workspace{Org: o.Name, Name: ws.Name, Kind: ws.Kind, CreatedAt: ws.CreatedAt, Members: []wire.Membership{}}
		ms, err := tx.ListMembershipsOfWorkspace(ws.ID)
		if err != nil {
			return err
		}
		n := namesIn(tx)
		for _, m := range ms {
			u, err := n.user(m.UserID)
			if err != nil {
				return err
			}
			out.Members = append(out.Members, wire.Membership{Workspace: o.Name + "/" + ws.Name, User: u, Role: m.Role})
		}
		out.Quota, out.Usage, err = quotaOf(tx, store.QuotaScopeWorkspace, ws.ID)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h directoryHandler) deleteWorkspace(w http.ResponseWriter, r *http.Request) error {
	if err := h.checkWorkspace(r.Context(), auth.OrgAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		o, ws, err := workspaceAt(tx, r)
		if err != nil {
			return err
		}
		if o.Name == store.DefaultOrg && ws.Name == store.MainWorkspace {
			return errdefs.Conflict("workspace %q: the default workspace cannot be deleted", pathWorkspace(r))
		}
		if err := tx.DeleteWorkspace(ws.ID); err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "workspace", "delete", pathWorkspace(r), "")
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h directoryHandler) addMember(w http.ResponseWriter, r *http.Request) error {
	var req wire.MemberRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return err
	}
	if err := h.checkWorkspace(r.Context(), auth.WorkspaceAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	err = h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		_, ws, err := workspaceAt(tx, r)
		if err != nil {
			return err
		}
		u, err := userNamed(tx, req.User)
		if err != nil {
			return err
		}
		if err := tx.PutMembership(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: string(role)}); err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "workspace", "add-member", pathWorkspace(r), fmt.Sprintf("user %s, role %s", u.Name, role))
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h directoryHandler) removeMember(w http.ResponseWriter, r *http.Request) error {
	if err := h.checkWorkspace(r.Context(), auth.WorkspaceAdmin, pathWorkspace(r)); err != nil {
		return err
	}
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		_, ws, err := workspaceAt(tx, r)
		if err != nil {
			return err
		}
		u, err := userNamed(tx, r.PathValue("user"))
		if err != nil {
			return err
		}
		err = tx.DeleteMembership(u.ID, ws.ID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.NotFound("user %q is not a member of workspace %q", u.Name, pathWorkspace(r))
		}
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "workspace", "remove-member", pathWorkspace(r), "user "+u.Name)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// setQuota sets a workspace's quota (its organization's admin) or a
// user's (the system administrator: a user's objects may be in any
// organization).
func (h directoryHandler) setQuota(w http.ResponseWriter, r *http.Request) error {
	var req wire.QuotaRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	l := req.QuotaLimits
	if req.Target == "" {
		return errdefs.Invalid("quota: target is required (a user, or a workspace org/ws)")
	}
	if l.StoredVMs < 0 || l.DeployedVMs < 0 || l.VCPUs < 0 || l.MemoryMiB < 0 || l.DiskGiB < 0 {
		return errdefs.Invalid("quota of %s %q: a limit is 0 (none) or more", req.Scope, req.Target)
	}
	switch req.Scope {
	case wire.QuotaWorkspace:
		if err := h.checkWorkspace(r.Context(), auth.OrgAdmin, req.Target); err != nil {
			return err
		}
	case wire.QuotaUser:
		if err := h.needSystemAdmin(r.Context(), auth.UserAdmin); err != nil {
			return err
		}
	default:
		return errdefs.Invalid("quota scope %q: want user or workspace", req.Scope)
	}
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		var id int64
		if req.Scope == wire.QuotaWorkspace {
			ws, err := access.ResolveWorkspace(tx, 0, req.Target)
			if err != nil {
				return err
			}
			id = ws.ID
		} else {
			u, err := userNamed(tx, req.Target)
			if err != nil {
				return err
			}
			id = u.ID
		}
		var err error
		if l == (wire.QuotaLimits{}) {
			if err = tx.DeleteQuota(req.Scope, id); errors.Is(err, errdefs.ErrNotFound) {
				err = nil
			}
		} else {
			err = tx.SetQuota(&store.Quota{Scope: req.Scope, ScopeID: id, StoredVMs: l.StoredVMs, DeployedVMs: l.DeployedVMs,
				VCPUs: l.VCPUs, MemoryMiB: l.MemoryMiB, DiskGiB: l.DiskGiB})
		}
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), req.Scope, "set-quota", req.Target,
			fmt.Sprintf("stored VMs %d, deployed VMs %d, vCPUs %d, memory %d MiB, disk %d GiB (0: no limit)",
				l.StoredVMs, l.DeployedVMs, l.VCPUs, l.MemoryMiB, l.DiskGiB))
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}

// --- groups ---------------------------------------------------------------

func (h directoryHandler) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req wire.GroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := lab.CheckName("group", req.Name); err != nil {
		return err
	}
	c := callerOf(r.Context())
	var out wire.Group
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		o, err := orgNamed(tx, req.Org)
		if err != nil {
			return err
		}
		if err := h.decideOrg(tx, c, o); err != nil {
			return err
		}
		g := store.Group{OrgID: o.ID, Name: req.Name}
		if err := tx.CreateGroup(&g); err != nil {
			return err
		}
		if err := record(tx, c, "group", "create", o.Name+"/"+g.Name, ""); err != nil {
			return err
		}
		out = wire.Group{Org: o.Name, Name: g.Name, Members: []string{}, CreatedAt: g.CreatedAt}
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", location("groups", out.Org)+"/"+out.Name)
	return writeJSON(w, http.StatusCreated, out)
}

// listGroups lists the groups of the organizations the caller may see
// (see listOrgs), with their members.
func (h directoryHandler) listGroups(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	out := []wire.Group{}
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		var orgID int64
		if name := r.URL.Query().Get("org"); name != "" {
			o, err := orgNamed(tx, name)
			if err != nil {
				return err
			}
			orgID = o.ID
		}
		gs, err := tx.ListGroups(orgID)
		if err != nil {
			return err
		}
		visible := map[int64]bool{}
		for _, g := range gs {
			ok, seen := visible[g.OrgID]
			if !seen {
				o, err := tx.GetOrgByID(g.OrgID)
				if err != nil {
					return err
				}
				if ok, err = orgVisible(tx, c, o); err != nil {
					return err
				}
				visible[g.OrgID] = ok
			}
			if !ok {
				continue
			}
			wg, err := groupToWire(tx, &g)
			if err != nil {
				return err
			}
			out = append(out, wg)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func groupToWire(tx store.Tx, g *store.Group) (wire.Group, error) {
	o, err := tx.GetOrgByID(g.OrgID)
	if err != nil {
		return wire.Group{}, err
	}
	out := wire.Group{Org: o.Name, Name: g.Name, Members: []string{}, CreatedAt: g.CreatedAt}
	us, err := tx.ListGroupMembers(g.ID)
	if err != nil {
		return out, err
	}
	for _, u := range us {
		out.Members = append(out.Members, u.Name)
	}
	return out, nil
}

// changeGroup runs change on group {org}/{name}, as its organization's
// admin.
func (h directoryHandler) changeGroup(w http.ResponseWriter, r *http.Request, action string, change func(store.Tx, *store.Group) (detail string, err error)) error {
	c := callerOf(r.Context())
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		o, err := orgNamed(tx, r.PathValue("org"))
		if err != nil {
			return err
		}
		if err := h.decideOrg(tx, c, o); err != nil {
			return err
		}
		g, err := tx.GetGroup(o.ID, r.PathValue("name"))
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.NotFound("group %q not found", o.Name+"/"+r.PathValue("name"))
		}
		if err != nil {
			return err
		}
		detail, err := change(tx, g)
		if err != nil {
			return err
		}
		return record(tx, c, "group", action, o.Name+"/"+g.Name, detail)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h directoryHandler) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	return h.changeGroup(w, r, "delete", func(tx store.Tx, g *store.Group) (string, error) { return "", tx.DeleteGroup(g.ID) })
}

func (h directoryHandler) addGroupMember(w http.ResponseWriter, r *http.Request) error {
	var req wire.GroupMemberRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return h.changeGroup(w, r, "add-member", func(tx store.Tx, g *store.Group) (string, error) {
		u, err := userNamed(tx, req.User)
		if err != nil {
			return "", err
		}
		return "user " + u.Name, tx.AddGroupMember(g.ID, u.ID)
	})
}

func (h directoryHandler) removeGroupMember(w http.ResponseWriter, r *http.Request) error {
	return h.changeGroup(w, r, "remove-member", func(tx store.Tx, g *store.Group) (string, error) {
		u, err := userNamed(tx, r.PathValue("user"))
		if err != nil {
			return "", err
		}
		return "user " + u.Name, tx.RemoveGroupMember(g.ID, u.ID)
	})
}

// --- tokens ---------------------------------------------------------------

// ParseLifetime reads a token lifetime: a Go duration ("12h", "720h") or
// whole days ("30d"), more than 0 and at most MaxTokenLifetime; "" is
// DefaultTokenLifetime.
func ParseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return DefaultTokenLifetime, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, errdefs.Invalid("token lifetime %q: want a duration such as 30d or 12h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errdefs.Invalid("token lifetime %q: want a duration such as 30d or 12h", s)
		}
	}
	if d <= 0 || d > MaxTokenLifetime {
		return 0, errdefs.Invalid("token lifetime %q: want more than 0 and at most 366d (a token always expires)", s)
	}
	return d, nil
}

// tokenOwner returns whose tokens a request reads or (change) makes or
// revokes: name ("" for the caller's own), another user's for the system
// administrator only. A restricted token lists its user's tokens but
// changes none: a new one could shed its restriction. The unix peer root
// has no user and must name one.
func (h directoryHandler) tokenOwner(ctx context.Context, tx store.Tx, name string, change bool) (*store.User, error) {
	c := callerOf(ctx)
	if change && !c.system && c.id.Restrict != nil {
		return nil, errdefs.Forbidden("a token restricted to one workspace cannot manage tokens")
	}
	if name == "" {
		if c.system || c.id.UserID == 0 {
			return nil, errdefs.Invalid("you are not a user of the directory (the unix socket's root): name the user whose tokens these are")
		}
		u, err := tx.GetUserByID(c.id.UserID)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, errdefs.Unauthenticated("user %q no longer exists", c.id.Name)
		}
		return u, err
	}
	return h.userFor(ctx, tx, name)
}

func (h directoryHandler) createToken(w http.ResponseWriter, r *http.Request) error {
	var req wire.TokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkDirText("token name", req.Name); err != nil {
		return err
	}
	if strings.TrimSpace(req.Name) == "" {
		return errdefs.Invalid("a token needs a name (what it is for)")
	}
	life, err := ParseLifetime(req.ExpiresIn)
	if err != nil {
		return err
	}
	if (req.Workspace == "") != (req.MaxRole == "") {
		return errdefs.Invalid("token %q: workspace and max_role go together", req.Name)
	}
	var role auth.Role
	if req.MaxRole != "" {
		if role, err = auth.ParseRole(req.MaxRole); err != nil {
			return err
		}
	}
	plaintext, id, hash := auth.NewToken()
	now := time.Now()
	tk := store.Token{ID: id, Hash: hash, Kind: store.TokenAPI, Name: req.Name, CreatedAt: now,
		ExpiresAt: now.Add(life), RestrictRole: string(role)}
	var out wire.NewToken
	err = h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		u, err := h.tokenOwner(r.Context(), tx, req.User, true)
		if err != nil {
			return err
		}
		tk.UserID = u.ID
		if req.Workspace != "" {
			ws, err := access.ResolveWorkspace(tx, u.ID, req.Workspace)
			if err != nil {
				return err
			}
			tk.RestrictWorkspaceID = ws.ID
		}
		if err := tx.CreateToken(&tk); err != nil {
			return err
		}
		if err := record(tx, callerOf(r.Context()), "token", "create", tk.ID,
			fmt.Sprintf("%q of user %s, expires %s", tk.Name, u.Name, tk.ExpiresAt.UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		rec, err := tokenToWire(namesIn(tx), &tk, now)
		out = wire.NewToken{Token: plaintext, Record: rec}
		return err
	})
	if err != nil {
		return err
	}
	h.log.Info("token created", "token", tk.ID, "name", tk.Name, "user", out.Record.User)
	return writeJSON(w, http.StatusCreated, out)
}

func tokenToWire(n *names, tk *store.Token, now time.Time) (wire.Token, error) {
	u, err := n.user(tk.UserID)
	if err != nil {
		return wire.Token{}, err
	}
	ws, err := n.workspace(tk.RestrictWorkspaceID)
	if err != nil {
		return wire.Token{}, err
	}
	state := wire.TokenActive
	switch {
	case !tk.RevokedAt.IsZero():
		state = wire.TokenRevoked
	case !tk.ExpiresAt.IsZero() && !tk.ExpiresAt.After(now):
		state = wire.TokenExpired
	}
	return wire.Token{ID: tk.ID, Name: tk.Name, User: u, State: state, Workspace: ws, MaxRole: tk.RestrictRole,
		CreatedAt: tk.CreatedAt, ExpiresAt: tk.ExpiresAt, LastUsedAt: tk.LastUsedAt, RevokedAt: tk.RevokedAt}, nil
}

// listTokens lists API tokens, never their secrets: the caller's own, a
// named user's (the system administrator), or everyone's for the unix
// peer root, who has none of their own.
func (h directoryHandler) listTokens(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	user := r.URL.Query().Get("user")
	out := []wire.Token{}
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		var users []store.User
		if user == "" && c.admin() && c.id.UserID == 0 {
			var err error
			if users, err = tx.ListUsers(); err != nil {
				return err
			}
		} else {
			u, err := h.tokenOwner(r.Context(), tx, user, false)
			if err != nil {
				return err
			}
			users = []store.User{*u}
		}
		n, now := namesIn(tx), time.Now()
		for _, u := range users {
			tks, err := tx.ListTokens(u.ID)
			if err != nil {
				return err
			}
			for i := range tks {
				if tks[i].Kind != store.TokenAPI {
					continue
				}
				wt, err := tokenToWire(n, &tks[i], now)
				if err != nil {
					return err
				}
				out = append(out, wt)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// revokeToken revokes a token of the caller's, or anyone's for the system
// administrator; someone else's is not found.
func (h directoryHandler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r.Context())
	id := r.PathValue("id")
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		if !c.system && c.id.Restrict != nil {
			return errdefs.Forbidden("a token restricted to one workspace cannot manage tokens")
		}
		tk, err := tx.GetToken(id)
		if errors.Is(err, errdefs.ErrNotFound) || err == nil && !c.admin() && !c.is(tk.UserID) {
			return errdefs.NotFound("token %q not found", id)
		}
		if err != nil {
			return err
		}
		if err := tx.RevokeToken(id, time.Now()); err != nil {
			return err
		}
		return record(tx, c, "token", "revoke", id, "")
	})
	if err != nil {
		return err
	}
	h.log.Info("token revoked", "token", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- shares ---------------------------------------------------------------

// grantee resolves a share's "with": a user name, or "group:G" (a group of
// the configuration's organization) or "group:org/G".
func grantee(tx store.Tx, with string, cfgOrg int64) (userID, groupID int64, err error) {
	name, isGroup := strings.CutPrefix(with, "group:")
	if !isGroup {
		u, err := userNamed(tx, with)
		if err != nil {
			return 0, 0, err
		}
		return u.ID, 0, nil
	}
	orgID := cfgOrg
	if o, g, ok := strings.Cut(name, "/"); ok {
		org, err := orgNamed(tx, o)
		if err != nil {
			return 0, 0, err
		}
		orgID, name = org.ID, g
	}
	if orgID == 0 {
		d, err := orgNamed(tx, store.DefaultOrg)
		if err != nil {
			return 0, 0, err
		}
		orgID = d.ID
	}
	g, err := tx.GetGroup(orgID, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return 0, 0, errdefs.NotFound("group %q not found", with)
	}
	if err != nil {
		return 0, 0, err
	}
	return 0, g.ID, nil
}

// configAndOrg returns the configuration {name} and its organization's id
// (0 when it belongs to no workspace).
func configAndOrg(tx store.Tx, name string) (*store.Config, int64, error) {
	cfg, err := tx.GetConfig(name)
	if err != nil {
		return nil, 0, err
	}
	if cfg.WorkspaceID == 0 {
		return cfg, 0, nil
	}
	ws, err := tx.GetWorkspaceByID(cfg.WorkspaceID)
	if err != nil {
		return nil, 0, err
	}
	return cfg, ws.OrgID, nil
}

func (h directoryHandler) share(w http.ResponseWriter, r *http.Request) error {
	var req wire.ShareRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	level, err := auth.ParseShareLevel(req.Level)
	if err != nil {
		return err
	}
	if req.With == "" {
		return errdefs.Invalid("share: with is required (a user, or group:G)")
	}
	name := r.PathValue("name")
	var out wire.Share
	err = h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		cfg, org, err := configAndOrg(tx, name)
		if err != nil {
			return err
		}
		uid, gid, err := grantee(tx, req.With, org)
		if err != nil {
			return err
		}
		s := store.Share{ObjectKind: store.ObjectConfig, ObjectID: cfg.ID, UserID: uid, GroupID: gid, Level: string(level)}
		if err := tx.PutShare(&s); err != nil {
			return err
		}
		if err := record(tx, callerOf(r.Context()), "config", "share", name, fmt.Sprintf("with %s, level %s", req.With, level)); err != nil {
			return err
		}
		out, err = shareToWire(namesIn(tx), &s)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func shareToWire(n *names, s *store.Share) (wire.Share, error) {
	out := wire.Share{Level: s.Level, CreatedAt: s.CreatedAt}
	if s.UserID != 0 {
		u, err := n.user(s.UserID)
		out.With = u
		return out, err
	}
	g, err := n.tx.GetGroupByID(s.GroupID)
	if err != nil {
		return out, err
	}
	o, err := n.org(g.OrgID)
	out.With = "group:" + o + "/" + g.Name
	return out, err
}

func (h directoryHandler) listShares(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	out := []wire.Share{}
	err := h.store.View(r.Context(), func(tx store.Tx) error {
		cfg, err := tx.GetConfig(name)
		if err != nil {
			return err
		}
		ss, err := tx.ListSharesOf(store.ObjectConfig, cfg.ID)
		if err != nil {
			return err
		}
		n := namesIn(tx)
		for i := range ss {
			ws, err := shareToWire(n, &ss[i])
			if err != nil {
				return err
			}
			out = append(out, ws)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (h directoryHandler) unshare(w http.ResponseWriter, r *http.Request) error {
	name, with := r.PathValue("name"), r.PathValue("grantee")
	err := h.updateDirectory(r.Context(), h.store, func(tx store.Tx) error {
		cfg, org, err := configAndOrg(tx, name)
		if err != nil {
			return err
		}
		uid, gid, err := grantee(tx, with, org)
		if err != nil {
			return err
		}
		err = tx.RemoveShare(store.ObjectConfig, cfg.ID, uid, gid)
		if errors.Is(err, errdefs.ErrNotFound) {
			return errdefs.NotFound("configuration %q is not shared with %s", name, with)
		}
		if err != nil {
			return err
		}
		return record(tx, callerOf(r.Context()), "config", "unshare", name, "with "+with)
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- explain --------------------------------------------------------------

// explainRef reads an explained object: "kind/name", "workspace/org/ws"
// or "workspace/ws" (an action in the workspace itself: the action's kind
// in it), or "system".
func explainRef(action auth.Action, object string) (access.Ref, error) {
	if object == "system" {
		return access.Ref{Kind: access.KindSystem}, nil
	}
	kind, name, ok := strings.Cut(object, "/")
	if !ok || name == "" {
		return access.Ref{}, errdefs.Invalid("object %q: want KIND/NAME (config/web), workspace/ORG/NAME or system", object)
	}
	switch kind {
	case "workspace":
		k, _, _ := strings.Cut(string(action), ".")
		return access.Ref{Kind: k, Workspace: name}, nil
	case access.KindTemplate, access.KindNetwork, access.KindConfig, access.KindLibrary, access.KindArchive, access.KindJob:
		return access.Ref{Kind: kind, Name: name}, nil
	}
	return access.Ref{}, errdefs.Invalid("object %q: kind %q is not template, network, config, library, archive, job or workspace", object, kind)
}

func (h directoryHandler) explain(w http.ResponseWriter, r *http.Request) error {
	var req wire.ExplainRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	action, err := auth.ParseAction(req.Action)
	if err != nil {
		return err
	}
	ref, err := explainRef(action, req.Object)
	if err != nil {
		return err
	}
	if req.User == "" {
		return errdefs.Invalid("explain: user is required")
	}
	d, err := h.checker().Explain(r.Context(), req.User, action, ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.Explanation{Allowed: d.Allowed, Visible: d.Visible, Reason: d.Reason})
}
