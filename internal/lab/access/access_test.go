package access_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// world is a real SQLite store with organization default (workspaces main,
// shared, and priv, private), organization acme (workspace lab), users and
// configurations in them.
type world struct {
	t     testing.TB
	db    store.Store
	chk   *access.Checker
	jobs  *jobs.Manager
	users map[string]int64
	ws    map[string]*store.Workspace
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	jm := jobs.NewManager()
	t.Cleanup(jm.Close)
	w := &world{t: t, db: db, chk: access.New(db, nil).WithJobs(jm), jobs: jm, users: map[string]int64{}, ws: map[string]*store.Workspace{}}
	w.update(func(tx store.Tx) error {
		def, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		if w.ws["main"], err = tx.Workspaces().Get(def.ID, store.MainWorkspace); err != nil {
			return err
		}
		w.ws["priv"] = &store.Workspace{OrgID: def.ID, Name: "priv", Kind: store.WorkspacePrivate}
		if err := tx.Workspaces().Create(w.ws["priv"]); err != nil {
			return err
		}
		acme := &store.Org{Name: "acme"}
		if err := tx.Orgs().Create(acme); err != nil {
			return err
		}
		w.ws["acme/lab"] = &store.Workspace{OrgID: acme.ID, Name: "lab", Kind: store.WorkspaceShared}
		return tx.Workspaces().Create(w.ws["acme/lab"])
	})
	return w
}

func (w *world) update(fn func(tx store.Tx) error) {
	w.t.Helper()
	if err := w.db.Update(context.Background(), fn); err != nil {
		w.t.Fatal(err)
	}
}

// user makes a user with roles in workspaces ("main": "viewer", ...).
func (w *world) user(name string, roles map[string]auth.Role) int64 {
	w.t.Helper()
	w.update(func(tx store.Tx) error {
		u := &store.User{Name: name}
		if err := tx.Users().Create(u); err != nil {
			return err
		}
		w.users[name] = u.ID
		for ws, r := range roles {
			if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: w.ws[ws].ID, Role: string(r)}); err != nil {
				return err
			}
		}
		return nil
	})
	return w.users[name]
}

// config records configuration name in workspace ws owned by owner.
func (w *world) config(name, ws, owner string) int64 {
	w.t.Helper()
	var id int64
	w.update(func(tx store.Tx) error {
		c := &store.Config{Name: name, State: store.StateUndeployed, WorkspaceID: w.ws[ws].ID, OwnerID: w.users[owner]}
		err := tx.Configs().Create(c)
		id = c.ID
		return err
	})
	return id
}

func (w *world) share(configID int64, user string, level string) {
	w.t.Helper()
	w.update(func(tx store.Tx) error {
		return tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: configID, UserID: w.users[user], Level: level})
	})
}

func (w *world) as(name string) context.Context {
	return auth.WithIdentity(context.Background(), auth.Identity{UserID: w.users[name], Name: name, Via: auth.ViaToken})
}

func kindOf(err error) string {
	switch {
	case err == nil:
		return "allowed"
	case errors.Is(err, errdefs.ErrNotFound):
		return "not found"
	case errors.Is(err, errdefs.ErrForbidden):
		return "forbidden"
	case errors.Is(err, errdefs.ErrUnauthenticated):
		return "unauthenticated"
	}
	return "error: " + err.Error()
}

func TestCheck(t *testing.T) {
	w := newWorld(t)
	w.user("alice", map[string]auth.Role{"main": auth.RoleAuthor, "priv": auth.RoleAuthor})
	w.user("vera", map[string]auth.Role{"main": auth.RoleViewer})
	w.user("pat", map[string]auth.Role{"priv": auth.RoleUser})
	w.user("olga", map[string]auth.Role{"acme/lab": auth.RoleAdmin})
	web := w.config("web", "main", "alice")
	secret := w.config("secret", "priv", "alice")
	w.share(web, "olga", store.ShareChange)
	w.share(secret, "pat", store.ShareRead)
	w.update(func(tx store.Tx) error {
		acme, _ := tx.Orgs().Get("acme")
		return tx.Orgs().AddAdmin(acme.ID, w.users["olga"])
	})
	// A group share reaches its members: pat's group may read web, a
	// group pat is not in may change it.
	w.update(func(tx store.Tx) error {
		def, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		crew, others := &store.Group{OrgID: def.ID, Name: "crew"}, &store.Group{OrgID: def.ID, Name: "others"}
		for _, g := range []*store.Group{crew, others} {
			if err := tx.Groups().Create(g); err != nil {
				return err
			}
		}
		if err := tx.Groups().AddMember(crew.ID, w.users["pat"]); err != nil {
			return err
		}
		if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: web, GroupID: crew.ID, Level: store.ShareRead}); err != nil {
			return err
		}
		return tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: web, GroupID: others.ID, Level: store.ShareFull})
	})
	restricted := auth.WithIdentity(context.Background(), auth.Identity{UserID: w.users["alice"], Name: "alice", Via: auth.ViaToken,
		Restrict: &auth.Restriction{WorkspaceID: w.ws["priv"].ID, MaxRole: auth.RoleViewer}})
	gone := auth.WithIdentity(context.Background(), auth.Identity{UserID: 9999, Name: "ghost", Via: auth.ViaToken})
	root := auth.WithIdentity(context.Background(), auth.Identity{Name: "root", SystemAdmin: true, Via: auth.ViaUnixPeer})
	// No user behind it (so no viewer or share to read), restricted.
	rootInMain := auth.WithIdentity(context.Background(), auth.Identity{Name: "root", SystemAdmin: true, Via: auth.ViaUnixPeer,
		Restrict: &auth.Restriction{WorkspaceID: w.ws["main"].ID, MaxRole: auth.RoleViewer}})

	cases := []struct {
		name   string
		ctx    context.Context
		action auth.Action
		obj    access.Ref
		want   string
	}{
		{"no identity is the system", context.Background(), auth.ConfigDelete, access.Ref{Kind: "config", Name: "secret"}, "allowed"},
		{"root on the socket", root, auth.DoctorRepair, access.Ref{}, "allowed"},
		{"owner deletes", w.as("alice"), auth.ConfigDelete, access.Ref{Kind: "config", Name: "web"}, "allowed"},
		{"viewer reads in shared ws", w.as("vera"), auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}, "allowed"},
		{"viewer may not delete", w.as("vera"), auth.ConfigDelete, access.Ref{Kind: "config", Name: "web"}, "forbidden"},
		{"other workspace: invisible", w.as("vera"), auth.ConfigRead, access.Ref{Kind: "config", Name: "secret"}, "not found"},
		{"private ws, another's, read share", w.as("pat"), auth.ConfigRead, access.Ref{Kind: "config", Name: "secret"}, "allowed"},
		{"private ws, another's, read share, no deploy", w.as("pat"), auth.ConfigDeploy, access.Ref{Kind: "config", Name: "secret"}, "forbidden"},
		{"outside its workspace a change share is at most read", w.as("olga"), auth.ConfigClone, access.Ref{Kind: "config", Name: "web"}, "forbidden"},
		{"outsider with change share reads", w.as("olga"), auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}, "allowed"},
		{"outsider may not delete", w.as("olga"), auth.ConfigDelete, access.Ref{Kind: "config", Name: "web"}, "forbidden"},
		{"a group share reaches its member", w.as("pat"), auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}, "allowed"},
		{"another group's share does not", w.as("pat"), auth.ConfigDelete, access.Ref{Kind: "config", Name: "web"}, "forbidden"},
		{"missing object", w.as("alice"), auth.ConfigRead, access.Ref{Kind: "config", Name: "nope"}, "not found"},
		{"create in own default (main)", w.as("alice"), auth.ConfigCreate, access.Ref{Kind: "config"}, "allowed"},
		{"create in another org's ws", w.as("alice"), auth.ConfigCreate, access.Ref{Kind: "config", Workspace: "acme/lab"}, "not found"},
		{"viewer may not create", w.as("vera"), auth.ConfigCreate, access.Ref{Kind: "config", Workspace: "main"}, "forbidden"},
		{"org admin creates in its org", w.as("olga"), auth.ConfigCreate, access.Ref{Kind: "config", Workspace: "acme/lab"}, "allowed"},
		{"unknown workspace", w.as("alice"), auth.ConfigCreate, access.Ref{Kind: "config", Workspace: "nope"}, "not found"},
		{"restricted token outside its workspace", restricted, auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}, "not found"},
		{"restricted token inside, within its role", restricted, auth.ConfigRead, access.Ref{Kind: "config", Name: "secret"}, "allowed"},
		{"restricted token inside, beyond its role", restricted, auth.ConfigDelete, access.Ref{Kind: "config", Name: "secret"}, "forbidden"},
		{"status for anyone", w.as("vera"), auth.StatusRead, access.Ref{}, "allowed"},
		{"doctor for the system admin only", w.as("alice"), auth.DoctorRead, access.Ref{}, "forbidden"},
		{"a deleted user", gone, auth.StatusRead, access.Ref{}, "unauthenticated"},
		{"a deleted user on an object", gone, auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}, "unauthenticated"},
		{"a deleted user on a missing object", gone, auth.ConfigRead, access.Ref{Kind: "config", Name: "nope"}, "unauthenticated"},
		{"a deleted user on a workspace", gone, auth.ConfigCreate, access.Ref{Kind: "config", Workspace: "main"}, "unauthenticated"},
		{"restricted root reads in its workspace", rootInMain, auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}, "allowed"},
		{"restricted root, beyond its role", rootInMain, auth.ConfigDelete, access.Ref{Kind: "config", Name: "web"}, "forbidden"},
		{"restricted root, outside its workspace", rootInMain, auth.ConfigRead, access.Ref{Kind: "config", Name: "secret"}, "not found"},
	}
	for _, c := range cases {
		err := w.chk.Check(c.ctx, c.action, c.obj)
		if got := kindOf(err); got != c.want {
			t.Errorf("%s: %s %s: %s (%v), want %s", c.name, c.action, c.obj, got, err, c.want)
		}
	}
}

// TestCheckJobs: the starter reads and cancels a job; others decide on
// the object the job works on; while it does not exist nobody else sees
// the job.
func TestCheckJobs(t *testing.T) {
	w := newWorld(t)
	w.user("alice", map[string]auth.Role{"main": auth.RoleAuthor})
	w.user("vera", map[string]auth.Role{"main": auth.RoleViewer})
	w.user("bob", map[string]auth.Role{"priv": auth.RoleAuthor})
	w.config("web", "main", "alice")
	block := make(chan struct{})
	defer close(block)
	wait := func(ctx context.Context, _ func(int64, int64)) error { <-block; return nil }
	onWeb := w.jobs.StartFrom(w.as("alice"), "consolidate", "web/vm/0", wait)
	onNew := w.jobs.StartFrom(w.as("alice"), "full-clone", "web2", wait)
	for _, c := range []struct {
		who    string
		action auth.Action
		job    jobs.Job
		want   string
	}{
		{"alice", auth.JobCancel, onNew, "allowed"},
		{"vera", auth.JobRead, onWeb, "allowed"},
		{"vera", auth.JobCancel, onWeb, "forbidden"},
		{"bob", auth.JobRead, onWeb, "not found"},
		{"vera", auth.JobRead, onNew, "not found"},
	} {
		err := w.chk.Check(w.as(c.who), c.action, access.Ref{Kind: "job", Name: c.job.ID})
		if got := kindOf(err); got != c.want {
			t.Errorf("%s %s on job %s %s: %s (%v), want %s", c.who, c.action, c.job.Kind, c.job.Subject, got, err, c.want)
		}
	}
}

// TestExplain: the system and org admins may ask why; others may not.
func TestExplain(t *testing.T) {
	w := newWorld(t)
	w.user("alice", map[string]auth.Role{"main": auth.RoleAuthor})
	w.user("vera", map[string]auth.Role{"main": auth.RoleViewer})
	w.user("olga", nil)
	w.update(func(tx store.Tx) error {
		def, _ := tx.Orgs().Get(store.DefaultOrg)
		return tx.Orgs().AddAdmin(def.ID, w.users["olga"])
	})
	w.config("web", "main", "alice")
	ref := access.Ref{Kind: "config", Name: "web"}
	for _, ctx := range []context.Context{context.Background(), w.as("olga")} {
		d, err := w.chk.Explain(ctx, "vera", auth.ConfigDelete, ref)
		if err != nil || d.Allowed || !strings.Contains(d.Reason, "role viewer") {
			t.Errorf("explain vera config.delete: %+v, %v; want refused by role viewer", d, err)
		}
	}
	if _, err := w.chk.Explain(w.as("alice"), "vera", auth.ConfigRead, ref); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("alice explaining: %v, want forbidden", err)
	}
	if _, err := w.chk.Explain(w.as("olga"), "vera", auth.DoctorRead, access.Ref{}); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("an org admin explaining a system action: %v, want forbidden", err)
	}
}

// BenchmarkCheck: one Check of config.deploy by a user with 20
// memberships on a configuration with 10 shares, over a temp SQLite store.
func BenchmarkCheck(b *testing.B) {
	w := newCheckBench(b)
	benchCheck(b, w, w.as("bench"))
}

// BenchmarkCheckRequestContext is BenchmarkCheck with a context that can
// be canceled, as a request's can: the SQLite driver then watches it
// during every statement (a goroutine each), and database/sql during the
// transaction.
func BenchmarkCheckRequestContext(b *testing.B) {
	w := newCheckBench(b)
	ctx, cancel := context.WithCancel(w.as("bench"))
	defer cancel()
	benchCheck(b, w, ctx)
}

func benchCheck(b *testing.B, w *world, ctx context.Context) {
	ref := access.Ref{Kind: "config", Name: "web"}
	if err := w.chk.Check(ctx, auth.ConfigDeploy, ref); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := w.chk.Check(ctx, auth.ConfigDeploy, ref); err != nil {
			b.Fatal(err)
		}
	}
}

// newCheckBench makes BenchmarkCheck's world: user bench is a member
// (user) of 20 private workspaces; configuration web, in the last one,
// is owner's, shared with 9 other users (read) and with bench (change).
func newCheckBench(b *testing.B) *world {
	w := newWorld(b)
	var cfg int64
	w.update(func(tx store.Tx) error {
		def, _ := tx.Orgs().Get(store.DefaultOrg)
		u := &store.User{Name: "bench"}
		if err := tx.Users().Create(u); err != nil {
			return err
		}
		w.users["bench"] = u.ID
		var last int64
		for i := range 20 {
			ws := &store.Workspace{OrgID: def.ID, Name: fmt.Sprintf("w%d", i), Kind: store.WorkspacePrivate}
			if err := tx.Workspaces().Create(ws); err != nil {
				return err
			}
			if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: string(auth.RoleUser)}); err != nil {
				return err
			}
			last = ws.ID
		}
		owner := &store.User{Name: "owner"}
		if err := tx.Users().Create(owner); err != nil {
			return err
		}
		c := &store.Config{Name: "web", State: store.StateUndeployed, WorkspaceID: last, OwnerID: owner.ID}
		if err := tx.Configs().Create(c); err != nil {
			return err
		}
		cfg = c.ID
		for i := range 9 {
			o := &store.User{Name: fmt.Sprintf("other%d", i)}
			if err := tx.Users().Create(o); err != nil {
				return err
			}
			if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: cfg, UserID: o.ID, Level: store.ShareRead}); err != nil {
				return err
			}
		}
		return tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: cfg, UserID: u.ID, Level: store.ShareChange})
	})
	return w
}

// TestPlace: a create is decided on the workspace it goes to (named, or
// the source's), with the caller's role there, whatever their default
// workspace.
func TestPlace(t *testing.T) {
	w := newWorld(t)
	w.user("pat", map[string]auth.Role{"priv": auth.RoleUser})
	w.user("vera", map[string]auth.Role{"main": auth.RoleViewer, "priv": auth.RoleAuthor})
	w.user("olga", nil)
	w.update(func(tx store.Tx) error {
		acme, err := tx.Orgs().Get("acme")
		if err != nil {
			return err
		}
		return tx.Orgs().AddAdmin(acme.ID, w.users["olga"])
	})
	for _, c := range []struct {
		who       string
		workspace string
		fallback  string // the source's workspace
		want      string // the workspace placed in, or the kind of error
	}{
		{"pat", "priv", "", "priv"},
		{"pat", "", "priv", "priv"},
		{"pat", "", "", "not found"},      // default/main, where pat is not a member
		{"pat", "main", "", "not found"},  // not a member
		{"vera", "main", "", "forbidden"}, // a viewer
		{"vera", "", "main", "forbidden"},
		{"vera", "priv", "", "priv"},
		{"vera", "", "priv", "priv"},
		{"olga", "acme/lab", "", "acme/lab"},
		{"olga", "", "acme/lab", "acme/lab"},
		{"olga", "priv", "", "not found"},
	} {
		var fallback int64
		if c.fallback != "" {
			fallback = w.ws[c.fallback].ID
		}
		var got string
		err := w.db.View(context.Background(), func(tx store.Tx) error {
			p, err := w.chk.Place(w.as(c.who), tx, auth.ConfigCreate, access.KindConfig, c.workspace, fallback)
			if err != nil {
				return err
			}
			if p.OwnerID != w.users[c.who] {
				t.Errorf("%s in %q (source in %q): owner %d, want %d", c.who, c.workspace, c.fallback, p.OwnerID, w.users[c.who])
			}
			for name, ws := range w.ws {
				if ws.ID == p.WorkspaceID {
					got = name
				}
			}
			return nil
		})
		if err != nil {
			got = kindOf(err)
		}
		if got != c.want {
			t.Errorf("%s in %q (source in %q): %s (%v), want %s", c.who, c.workspace, c.fallback, got, err, c.want)
		}
	}
}
