// Package access is the lab's one place of authorization: it loads who asks
// (the request's auth.Identity), the object and its workspace, memberships
// and shares from the store, and asks auth.Decide; it also places new objects
// in a workspace and checks quotas.
package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/store"
)

// Object kinds of a Ref. KindSystem ("") is a system-wide action (status,
// doctor, users, organizations).
const (
	KindTemplate = "template"
	KindNetwork  = "network"
	KindConfig   = "config"
	KindLibrary  = "library"
	KindArchive  = "archive"
	KindJob      = "job"
	KindSystem   = ""
)

// Ref names what an action is on. With a Name it is one object of Kind (a
// job's Name is its id); without one the action is on a workspace itself
// (create in it, list it), named by Workspace: "ws" in organization
// default, or "org/ws"; "" is the caller's default workspace, else
// default/main. Kind "" is the system.
type Ref struct {
	Kind      string
	Name      string
	Workspace string
}

func (r Ref) String() string {
	switch {
	case r.Kind == KindSystem:
		return "the system"
	case r.Name != "":
		return r.Kind + "/" + r.Name
	default:
		return r.Kind + "s in workspace " + orDefault(r.Workspace)
	}
}

func orDefault(ws string) string {
	if ws == "" {
		return "(default)"
	}
	return ws
}

// Jobs is what Check needs of the job manager: a job by id.
type Jobs interface {
	Get(id string) (jobs.Job, error)
}

// Checker answers whether the caller of a context may do an action. It
// keeps no state between calls beyond its store: every Check reads what it
// needs in one read transaction. It is safe for concurrent use.
type Checker struct {
	store store.Store
	log   *slog.Logger
	jobs  Jobs
}

// New returns a Checker over st.
func New(st store.Store, log *slog.Logger) *Checker {
	if log == nil {
		log = slog.Default()
	}
	return &Checker{store: st, log: log}
}

// WithJobs lets the checker decide on jobs (Ref kind "job"); without it
// they are not found for anyone but the system administrator. It returns c.
func (c *Checker) WithJobs(j Jobs) *Checker {
	c.jobs = j
	return c
}

// Check returns nil when the caller of ctx may do action on obj; an
// errdefs NotFound when the object (or its workspace) does not exist or is
// invisible to the caller; an errdefs Forbidden naming the deciding row
// when it is visible but the action is not allowed; Unauthenticated when
// the identity's user no longer exists. A context without identity is the
// system, which may do everything.
func (c *Checker) Check(ctx context.Context, action auth.Action, obj Ref) error {
	id, ok := auth.FromContext(ctx)
	if !ok || id.SystemAdmin && id.Restrict == nil {
		return nil // the system, or an unrestricted system administrator: nothing to load
	}
	var d auth.Decision
	err := c.store.View(ctx, func(tx store.Tx) error {
		var err error
		d, err = c.decide(tx, id, action, obj)
		return err
	})
	if err != nil {
		return err
	}
	if !d.Allowed {
		c.log.Debug("access refused", "user", id.Name, "action", action, "object", obj.String(), "reason", d.Reason)
	}
	return d.Err()
}

// Explain returns the decision Check would make for user (a user name) on
// action and obj, as that user with no token restriction. Only the system
// administrator and an admin of the object's organization may ask; anyone
// else gets an errdefs Forbidden (or NotFound when the object is invisible
// to them).
func (c *Checker) Explain(ctx context.Context, user string, action auth.Action, obj Ref) (auth.Decision, error) {
	if _, err := auth.ParseAction(string(action)); err != nil {
		return auth.Decision{}, err
	}
	caller, hasCaller := auth.FromContext(ctx)
	var d auth.Decision
	err := c.store.View(ctx, func(tx store.Tx) error {
		u, err := tx.Users().Get(user)
		if err != nil {
			return err
		}
		target := auth.Identity{UserID: u.ID, Name: u.Name, SystemAdmin: u.SystemAdmin}
		d, err = c.decide(tx, target, action, obj)
		if err != nil {
			return err
		}
		if hasCaller && !(caller.SystemAdmin && caller.Restrict == nil) {
			// The caller must administer what is explained: the object's
			// organization, or the system for a system-wide object.
			cin, err := c.input(tx, caller, auth.OrgAdmin, Ref{})
			if err != nil {
				return err
			}
			cin.Object = auth.Object{Kind: "organization", OrgID: orgOf(tx, target, obj)}
			if cd := auth.Decide(*cin); !cd.Allowed {
				return errdefs.Forbidden("explain: %s may not see why others are allowed on %s: only the system administrator or an admin of its organization may", caller.Name, obj)
			}
		}
		return nil
	})
	return d, err
}

// orgOf returns the organization obj is in (0: none, or unknown).
func orgOf(tx store.Tx, id auth.Identity, obj Ref) int64 {
	in := &auth.Input{}
	c := &Checker{}
	if _, err := c.object(tx, id, obj, in); err != nil {
		return 0
	}
	return in.Object.OrgID
}

// Viewer returns the viewer the store's List*Visible filter by for the
// caller of ctx, or all when no filter applies (the system, an
// unrestricted system administrator). For a restricted token the viewer
// is narrowed as far as the store can express; Scope gives the filter its
// results still need.
func (c *Checker) Viewer(ctx context.Context) (v store.Viewer, all bool, err error) {
	s, err := c.Scope(ctx, "")
	if err != nil {
		return store.Viewer{}, false, err
	}
	return s.Viewer, s.All, nil
}

// Scope is what a list of one kind shows its caller.
type Scope struct {
	// All: no filter (the system, an unrestricted system administrator).
	All bool
	// Viewer filters the store's List*Visible.
	Viewer store.Viewer
	// Workspace, when not 0, is the only workspace a restricted token may
	// see: results elsewhere (reached by a share) are dropped.
	Workspace int64
	// Nothing: a restricted token whose role cannot read this kind.
	Nothing bool
}

// Keep reports whether an object in workspace ws passes what the store's
// filter could not express.
func (s Scope) Keep(ws int64) bool {
	return !s.Nothing && (s.Workspace == 0 || ws == s.Workspace)
}

// Scope returns what a list of kind (a Ref kind; "" for any) shows the
// caller of ctx, reading the viewer in one transaction.
func (c *Checker) Scope(ctx context.Context, kind string) (Scope, error) {
	id, ok := auth.FromContext(ctx)
	if !ok || id.SystemAdmin && id.Restrict == nil {
		return Scope{All: true}, nil
	}
	var s Scope
	err := c.store.View(ctx, func(tx store.Tx) error {
		v, err := c.viewer(id, tx.Viewers().Load)
		if err != nil {
			return err
		}
		s.Viewer = *v
		if r := id.Restrict; r != nil {
			s.Workspace = r.WorkspaceID
			if kind != "" && !r.MaxRole.Allows(auth.Action(kind+".read")) {
				s.Nothing = true
			}
			// Only the one workspace: as an admin of it (the system's, its
			// organization's or its own admin) every object in it, else
			// the membership as it is.
			ws, err := tx.Workspaces().GetByID(r.WorkspaceID)
			if err != nil {
				s.Nothing = true
				return nil
			}
			admin := v.SystemAdmin || contains(v.AdminOfOrgs, ws.OrgID)
			var kept []store.ViewerWorkspace
			for _, w := range v.Workspaces {
				if w.ID == ws.ID {
					admin = admin || w.Role == string(auth.RoleAdmin)
					kept = append(kept, w)
				}
			}
			if admin {
				kept = []store.ViewerWorkspace{{ID: ws.ID, OrgID: ws.OrgID, Kind: store.WorkspaceShared, Role: string(auth.RoleAdmin)}}
			}
			s.Viewer.SystemAdmin, s.Viewer.AdminOfOrgs, s.Viewer.Workspaces = false, nil, kept
		}
		return nil
	})
	return s, err
}

// ScopeFor returns what a view whose items are decided one by one shows
// the caller of ctx when the view itself takes action (event.read,
// cleanup.read): Scope(ctx, "") without the memberships whose role lacks
// action, so a workspace counts only where the caller's role may use the
// view there; objects shared with the caller still count. A restricted
// token whose role lacks action sees nothing.
func (c *Checker) ScopeFor(ctx context.Context, action auth.Action) (Scope, error) {
	s, err := c.Scope(ctx, "")
	if err != nil || s.All {
		return s, err
	}
	if id, _ := auth.FromContext(ctx); id.Restrict != nil && !id.Restrict.MaxRole.Allows(action) {
		s.Nothing = true
	}
	var kept []store.ViewerWorkspace
	for _, w := range s.Viewer.Workspaces {
		if auth.Role(w.Role).Allows(action) {
			kept = append(kept, w)
		}
	}
	s.Viewer.Workspaces = kept
	return s, nil
}

// EventFilter returns which events the caller of ctx may read (all:
// every one, for the system and an unrestricted system administrator):
// those they caused, and those whose object they may see in the
// workspaces where their role has event.read, or through a share
// (ScopeFor). The events of a deleted object are then its actor's and the
// administrators' only. A restricted token reads only the events of the
// objects of its workspace, not its user's own elsewhere.
func (c *Checker) EventFilter(ctx context.Context) (f store.EventFilter, all bool, err error) {
	s, err := c.ScopeFor(ctx, auth.EventRead)
	if err != nil || s.All {
		return store.EventFilter{}, s.All, err
	}
	id, _ := auth.FromContext(ctx)
	f = store.EventFilter{Viewer: s.Viewer, Workspace: s.Workspace, NoObjects: s.Nothing}
	if id.Restrict == nil {
		f.Actor = id.Name
	}
	return f, false, nil
}

// viewer loads the identity's viewer with load (LoadViewer, or
// LoadViewerIn of one workspace); the unix peer root (no user) is a viewer
// with only the identity's flag.
func (c *Checker) viewer(id auth.Identity, load func(userID int64) (*store.Viewer, error)) (*store.Viewer, error) {
	if id.UserID == 0 {
		return &store.Viewer{SystemAdmin: id.SystemAdmin}, nil
	}
	v, err := load(id.UserID)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.Unauthenticated("user %q no longer exists", id.Name)
	}
	if err != nil {
		return nil, err
	}
	v.SystemAdmin = v.SystemAdmin || id.SystemAdmin
	return v, nil
}

// input builds Decide's input for id doing action on obj, inside tx: the
// object first, then the actor (read along with a named object).
func (c *Checker) input(tx store.Tx, id auth.Identity, action auth.Action, obj Ref) (*auth.Input, error) {
	in := &auth.Input{Action: action}
	v, err := c.object(tx, id, obj, in)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errStarter) {
		return nil, err
	}
	if v == nil {
		// Not read with the object; or the object (or the user) is
		// missing, and a user deleted since the request was
		// authenticated is told so rather than that the object is.
		var verr error
		if v, verr = c.viewerIn(tx, id, in.Object.WorkspaceID); verr != nil {
			return nil, verr
		}
	}
	if err != nil {
		return nil, err
	}
	setActor(in, id, v)
	return in, nil
}

// viewerIn loads the identity's viewer with, of its memberships, only the
// one in workspace ws: the only one Decide reads for an object in ws (a
// user with many memberships costs no more than one with one).
func (c *Checker) viewerIn(tx store.Tx, id auth.Identity, ws int64) (*store.Viewer, error) {
	return c.viewer(id, func(userID int64) (*store.Viewer, error) { return tx.Viewers().LoadIn(userID, ws) })
}

// setActor fills in the actor of in from the identity and its viewer.
func setActor(in *auth.Input, id auth.Identity, v *store.Viewer) {
	in.Actor = id.Actor(v.AdminOfOrgs)
	in.Actor.SystemAdmin = v.SystemAdmin
	in.Groups = v.GroupIDs
	in.Memberships = make(map[int64]auth.Role, len(v.Workspaces))
	for _, w := range v.Workspaces {
		in.Memberships[w.ID] = auth.Role(w.Role)
	}
}

// object fills in.Object (with its organization and the shares that
// reach the identity's user) and in.WorkspaceKind for obj. A named object
// of a user is read with store.LoadAccess: one statement brings the
// object's row (not the object: a configuration would bring every VM,
// disk and NIC), the user's viewer, returned, and the shares Decide looks
// at. Otherwise the viewer is left to the caller (nil).
func (c *Checker) object(tx store.Tx, id auth.Identity, obj Ref, in *auth.Input) (*store.Viewer, error) {
	o := &in.Object
	o.Kind, o.Name = obj.Kind, obj.Name
	if obj.Kind == KindSystem {
		return nil, nil
	}
	if obj.Name == "" {
		ws, err := ResolveWorkspace(tx, id.UserID, obj.Workspace)
		if err != nil {
			return nil, err
		}
		o.WorkspaceID, o.OrgID = ws.ID, ws.OrgID
		in.WorkspaceKind = auth.WorkspaceKind(ws.Kind)
		return nil, nil
	}
	var storeKind string
	switch obj.Kind {
	case KindTemplate:
		storeKind = store.ObjectTemplate
	case KindNetwork:
		storeKind = store.ObjectNetwork
	case KindConfig, KindLibrary:
		storeKind = store.ObjectConfig
	case KindArchive:
		storeKind = store.ObjectArchive
	case KindJob:
		return c.jobObject(tx, id, obj.Name, in)
	default:
		return nil, errdefs.Invalid("unknown object kind %q", obj.Kind)
	}
	var (
		r   store.ObjectRef
		a   *store.Access
		err error
	)
	if id.UserID == 0 {
		// The unix peer root: no user, so no viewer to read and no
		// share that reaches it.
		r, err = tx.Objects().Ref(storeKind, obj.Name)
	} else if a, err = tx.Objects().Access(id.UserID, storeKind, obj.Name); err == nil {
		r = a.Object
	}
	if err != nil {
		if obj.Kind == KindLibrary && errors.Is(err, errdefs.ErrNotFound) {
			return nil, errdefs.NotFound("library entry %q not found", obj.Name)
		}
		return nil, err
	}
	o.ID, o.WorkspaceID, o.OrgID, o.OwnerID = r.ID, r.WorkspaceID, r.OrgID, r.OwnerID
	in.WorkspaceKind = auth.WorkspaceKind(r.WorkspaceKind)
	if a == nil {
		return nil, nil
	}
	for _, s := range a.Shares {
		o.Shares = append(o.Shares, auth.Share{UserID: s.UserID, GroupID: s.GroupID, Level: auth.ShareLevel(s.Level)})
	}
	v := &a.Viewer
	v.SystemAdmin = v.SystemAdmin || id.SystemAdmin
	return v, nil
}

// jobObject decides a job on the object its operation names. Its starter
// may read and cancel it whatever that object is; while the object does
// not exist yet (a clone being made), nobody else but the system
// administrator sees the job.
func (c *Checker) jobObject(tx store.Tx, id auth.Identity, jobID string, in *auth.Input) (*store.Viewer, error) {
	notFound := errdefs.NotFound("job %q not found", jobID)
	if c.jobs == nil {
		return nil, notFound
	}
	j, err := c.jobs.Get(jobID)
	if err != nil {
		return nil, err
	}
	if j.UserID != 0 && j.UserID == id.UserID {
		return nil, errStarter
	}
	kind, name := JobObject(j)
	ref := Ref{Kind: kind, Name: name}
	if kind == "" {
		return nil, notFound
	}
	v, err := c.object(tx, id, ref, in)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, notFound
		}
		return nil, err
	}
	in.Object.Kind, in.Object.Name = KindJob, jobID
	return v, nil
}

// errStarter tells decide that the caller started the job asked about.
var errStarter = errors.New("the job's starter")

// decide builds the input for id doing action on obj inside tx and
// decides it.
func (c *Checker) decide(tx store.Tx, id auth.Identity, action auth.Action, obj Ref) (auth.Decision, error) {
	in, err := c.input(tx, id, action, obj)
	if errors.Is(err, errStarter) {
		if action == auth.JobRead || action == auth.JobCancel {
			return auth.Decision{Allowed: true, Visible: true,
				Reason: fmt.Sprintf("allowed: %s %s on job %q: started it", id.Name, action, obj.Name)}, nil
		}
		in, err = c.input(tx, id, action, Ref{Kind: KindSystem})
	}
	if err != nil {
		return auth.Decision{}, err
	}
	return auth.Decide(*in), nil
}

// JobObject returns the kind and name of the object job j works on: the
// configuration a full clone, consolidation or restore makes or changes,
// the archive an archive, export or import makes or reads.
func JobObject(j jobs.Job) (kind, name string) {
	switch j.Kind {
	case "full-clone", "restore":
		return KindConfig, j.Subject
	case "consolidate": // config/vm/disk
		name, _, _ := strings.Cut(j.Subject, "/")
		return KindConfig, name
	case "archive", "export", "import":
		return KindArchive, j.Subject
	}
	return "", ""
}

// ResolveWorkspace returns the workspace name names ("ws" in organization
// default, or "org/ws"); "" is user's default workspace (user 0: none),
// else default/main.
func ResolveWorkspace(tx store.Tx, userID int64, name string) (*store.Workspace, error) {
	if name == "" {
		if userID != 0 {
			u, err := tx.Users().GetByID(userID)
			if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				return nil, err
			}
			if u != nil && u.DefaultWorkspaceID != 0 {
				ws, err := tx.Workspaces().GetByID(u.DefaultWorkspaceID)
				if err == nil {
					return ws, nil
				}
				if !errors.Is(err, errdefs.ErrNotFound) {
					return nil, err
				}
			}
		}
		name = store.DefaultOrg + "/" + store.MainWorkspace
	}
	orgName, wsName, ok := strings.Cut(name, "/")
	if !ok {
		orgName, wsName = store.DefaultOrg, name
	}
	org, err := tx.Orgs().Get(orgName)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("workspace %q not found (no organization %q)", name, orgName)
	}
	if err != nil {
		return nil, err
	}
	ws, err := tx.Workspaces().Get(org.ID, wsName)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("workspace %q not found", name)
	}
	return ws, err
}

// WorkspaceName is how a workspace is shown: "ws" in organization default,
// "org/ws" elsewhere.
func WorkspaceName(org *store.Org, ws *store.Workspace) string {
	if org.Name == store.DefaultOrg {
		return ws.Name
	}
	return org.Name + "/" + ws.Name
}

func contains(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
