package lab_test

// Ownership, visibility and quotas through the lab, over a real SQLite
// store and real qemu-img: who asks travels in the context (the api puts
// it there), every create records a workspace and an owner, lists show
// what the caller may see, and quotas refuse in the operation's own
// transaction.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// people are the users and workspaces of an env: workspace team (shared,
// alice's default, alice admin, vera viewer), priv (private: alice author,
// pat user) and other (bob author), and main (alice author).
type people struct {
	e     *env
	users map[string]int64
	ws    map[string]int64
}

func newPeople(t *testing.T, e *env) *people {
	t.Helper()
	p := &people{e: e, users: map[string]int64{}, ws: map[string]int64{}}
	err := e.db.Update(context.Background(), func(tx store.Tx) error {
		def, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		main, err := tx.Workspaces().Get(def.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		p.ws["main"] = main.ID
		for _, w := range []struct{ name, kind string }{{"team", store.WorkspaceShared}, {"priv", store.WorkspacePrivate}, {"other", store.WorkspaceShared}} {
			ws := &store.Workspace{OrgID: def.ID, Name: w.name, Kind: w.kind}
			if err := tx.Workspaces().Create(ws); err != nil {
				return err
			}
			p.ws[w.name] = ws.ID
		}
		for _, u := range []struct {
			name  string
			roles map[string]auth.Role
		}{
			{"alice", map[string]auth.Role{"team": auth.RoleAdmin, "priv": auth.RoleAuthor, "main": auth.RoleAuthor}},
			{"vera", map[string]auth.Role{"team": auth.RoleViewer}},
			{"pat", map[string]auth.Role{"priv": auth.RoleUser}},
			{"bob", map[string]auth.Role{"other": auth.RoleAuthor}},
		} {
			user := &store.User{Name: u.name}
			if u.name == "alice" {
				user.DefaultWorkspaceID = p.ws["team"]
			}
			if err := tx.Users().Create(user); err != nil {
				return err
			}
			p.users[u.name] = user.ID
			for ws, r := range u.roles {
				if err := tx.Memberships().Put(&store.Membership{UserID: user.ID, WorkspaceID: p.ws[ws], Role: string(r)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *people) as(name string) context.Context {
	return auth.WithIdentity(context.Background(), auth.Identity{UserID: p.users[name], Name: name, Via: auth.ViaToken})
}

// placed returns the workspace and owner ids the store records for an
// object.
func (p *people) placed(t *testing.T, kind, name string) (ws, owner int64) {
	t.Helper()
	err := p.e.db.View(context.Background(), func(tx store.Tx) error {
		switch kind {
		case "template":
			o, err := tx.Templates().Get(name)
			if err != nil {
				return err
			}
			ws, owner = o.WorkspaceID, o.OwnerID
		case "network":
			o, err := tx.Networks().Get(name)
			if err != nil {
				return err
			}
			ws, owner = o.WorkspaceID, o.OwnerID
		case "config":
			o, err := tx.Configs().Get(name)
			if err != nil {
				return err
			}
			ws, owner = o.WorkspaceID, o.OwnerID
		case "archive":
			o, err := tx.Archives().Get(name)
			if err != nil {
				return err
			}
			ws, owner = o.WorkspaceID, o.OwnerID
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s %q: %v", kind, name, err)
	}
	return ws, owner
}

func vm(name, template, network string) lab.VMSpec {
	return lab.VMSpec{Name: name, Template: template, Network: network}
}

// TestEveryCreateRecordsOwnerAndWorkspace: each kind of create records
// the caller as owner, and the workspace named, else the source's (copies)
// or the caller's default; without identity (the system) default/main
// and no owner.
func TestEveryCreateRecordsOwnerAndWorkspace(t *testing.T) {
	e := newEnv(t)
	p := newPeople(t, e)
	alice := p.as("alice")
	ok := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "sys", Disks: []string{makeImage(t, 16)}})
	ok("system template", err)
	img, err := os.ReadFile(makeImage(t, 16))
	ok("read image", err)
	up, err := e.svc.Uploads.Receive(alice, "base.qcow2", bytes.NewReader(img), int64(len(img)), sum(img))
	ok("upload", err)
	tv, err := e.svc.Templates.Import(alice, lab.TemplateSpec{Name: "base", DiskUploads: []*lab.Upload{up}})
	ok("template", err)
	nv, err := e.svc.Networks.Create(alice, lab.NetworkSpec{Name: "lan", Subnet: "10.9.0.0/24", Pools: []string{"10.9.0.10-10.9.0.50"}})
	ok("network", err)
	cv, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{vm("a", "base", "lan")}})
	ok("config", err)
	if tv.Workspace != "team" || tv.Owner != "alice" || nv.Workspace != "team" || nv.Owner != "alice" || cv.Workspace != "team" || cv.Owner != "alice" {
		t.Errorf("views: template %s/%s network %s/%s config %s/%s, want team/alice", tv.Workspace, tv.Owner, nv.Workspace, nv.Owner, cv.Workspace, cv.Owner)
	}
	_, err = e.svc.Configs.LinkedClone(alice, "web", "web-same", lab.CreateOptions{})
	ok("linked clone", err)
	_, err = e.svc.Configs.LinkedClone(alice, "web", "web-main", lab.CreateOptions{Workspace: "main"})
	ok("linked clone to main", err)
	e.wait(e.svc.Configs.StartFullClone(alice, "web", "web-full", lab.CreateOptions{}))
	_, err = e.svc.Library.Capture(alice, "web", "gold", lab.CreateOptions{})
	ok("capture", err)
	_, err = e.svc.Library.Checkout(alice, "gold", "web-out", lab.CreateOptions{Workspace: "default/priv"})
	ok("checkout", err)
	e.wait(e.svc.Archives.StartCreate(alice, "web", "arch", lab.CreateOptions{}))
	e.wait(e.svc.Archives.StartRestore(alice, "arch", "web-back", lab.CreateOptions{}))
	sys, err := e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: "sysconf", Owner: "ops", VMs: []lab.VMSpec{vm("a", "base", "")}})
	ok("system config", err)
	if sys.Workspace != store.MainWorkspace || sys.Owner != "ops" {
		t.Errorf("system config shows %q/%q, want main and its owner text", sys.Workspace, sys.Owner)
	}

	for _, c := range []struct {
		kind, name, ws, owner string
	}{
		{"template", "sys", "main", ""},
		{"template", "base", "team", "alice"},
		{"network", "lan", "team", "alice"},
		{"config", "web", "team", "alice"},
		{"config", "web-same", "team", "alice"},
		{"config", "web-main", "main", "alice"},
		{"config", "web-full", "team", "alice"},
		{"config", "gold", "team", "alice"},
		{"config", "web-out", "priv", "alice"},
		{"archive", "arch", "team", "alice"},
		{"config", "web-back", "team", "alice"},
		{"config", "sysconf", "main", ""},
	} {
		ws, owner := p.placed(t, c.kind, c.name)
		if ws != p.ws[c.ws] || owner != p.users[c.owner] {
			t.Errorf("%s %q: workspace %d owner %d, want %s (%d) and %q (%d)", c.kind, c.name, ws, owner, c.ws, p.ws[c.ws], c.owner, p.users[c.owner])
		}
	}

	// Creating where one may not: a viewer, and a workspace of which one
	// is not a member (which is not found).
	if _, err := e.svc.Configs.Create(p.as("vera"), lab.ConfigSpec{Name: "v", Workspace: "team", VMs: []lab.VMSpec{vm("a", "base", "")}}); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("viewer creating: %v, want forbidden", err)
	}
	if _, err := e.svc.Configs.LinkedClone(p.as("bob"), "web", "stolen", lab.CreateOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob cloning into team: %v, want not found", err)
	}
}

// TestVisibilityAndSharing: a member of another workspace gets not found
// and does not see the object in lists; a viewer sees it and gets
// forbidden on delete; a change share in a private workspace lets a
// member who is not the owner clone but not delete; a restricted token
// never sees beyond its workspace.
func TestVisibilityAndSharing(t *testing.T) {
	e := newEnv(t)
	p := newPeople(t, e)
	e.template("base") // the system's, in default/main
	alice := p.as("alice")
	if _, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{vm("a", "base", "")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "secret", Workspace: "priv", VMs: []lab.VMSpec{vm("a", "base", "")}}); err != nil {
		t.Fatal(err)
	}
	listed := func(ctx context.Context) string {
		cs, err := e.svc.Configs.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		return strings.Join(names, " ")
	}
	check := func(who string, action auth.Action, name string) error {
		return e.svc.Access.Check(p.as(who), action, access.Ref{Kind: "config", Name: name})
	}

	if err := check("bob", auth.ConfigRead, "web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("bob reads web: %v, want not found", err)
	}
	if got := listed(p.as("bob")); got != "" {
		t.Errorf("bob lists %q, want nothing", got)
	}
	if got := listed(p.as("vera")); got != "web" {
		t.Errorf("vera lists %q, want web", got)
	}
	if err := check("vera", auth.ConfigDelete, "web"); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("vera deletes web: %v, want forbidden", err)
	}
	if got := listed(alice); got != "web secret" {
		t.Errorf("alice lists %q", got)
	}
	if got := listed(context.Background()); got != "web secret" {
		t.Errorf("the system lists %q", got)
	}

	// pat is a member of the private workspace but not the owner.
	if err := check("pat", auth.ConfigClone, "secret"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pat clones secret before the share: %v, want not found", err)
	}
	if err := e.db.Update(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get("secret")
		if err != nil {
			return err
		}
		return tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: p.users["pat"], Level: store.ShareChange})
	}); err != nil {
		t.Fatal(err)
	}
	if err := check("pat", auth.ConfigClone, "secret"); err != nil {
		t.Errorf("pat clones secret shared at change: %v", err)
	}
	if _, err := e.svc.Configs.LinkedClone(p.as("pat"), "secret", "pats", lab.CreateOptions{}); err != nil {
		t.Errorf("pat's clone: %v", err)
	} else if ws, owner := p.placed(t, "config", "pats"); ws != p.ws["priv"] || owner != p.users["pat"] {
		t.Errorf("pat's clone placed in %d owned by %d", ws, owner)
	}
	if err := check("pat", auth.ConfigDelete, "secret"); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("pat deletes secret shared at change: %v, want forbidden", err)
	}
	if got := listed(p.as("pat")); got != "secret pats" {
		t.Errorf("pat lists %q", got)
	}

	// alice's token restricted to priv: sees nothing of team, may not
	// create there, and cannot be widened by naming it.
	tok := auth.WithIdentity(context.Background(), auth.Identity{UserID: p.users["alice"], Name: "alice", Via: auth.ViaToken,
		Restrict: &auth.Restriction{WorkspaceID: p.ws["priv"], MaxRole: auth.RoleAuthor}})
	if got := listed(tok); got != "secret" {
		t.Errorf("restricted token lists %q, want only hers in priv (pat's is private)", got)
	}
	if err := e.svc.Access.Check(tok, auth.ConfigRead, access.Ref{Kind: "config", Name: "web"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("restricted token reads web: %v, want not found", err)
	}
	if _, err := e.svc.Configs.Create(tok, lab.ConfigSpec{Name: "escape", Workspace: "team", VMs: []lab.VMSpec{vm("a", "base", "")}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("restricted token creates in team: %v, want not found", err)
	}
	if _, err := e.svc.Configs.LinkedClone(tok, "secret", "copy-out", lab.CreateOptions{Workspace: "team"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("restricted token clones into team: %v, want not found", err)
	}
}

// counts are the rows a refused create must leave as they were.
func counts(t *testing.T, e *env) string {
	t.Helper()
	var s string
	err := e.db.View(context.Background(), func(tx store.Tx) error {
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		ls, err := tx.Layers().List()
		if err != nil {
			return err
		}
		ops, err := tx.Ops().List()
		if err != nil {
			return err
		}
		s = strings.Join([]string{itoa(len(cs)), itoa(len(ls)), itoa(len(ops))}, "/")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s + " files " + itoa(len(everyFile(t, e.dir)))
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestQuotaRefusalChangesNothing: a create over the owner's quota is a
// conflict naming the quota, its use and its limit, and leaves the store
// and the data dir as they were; a clone, a checkout and a restore are
// held to the same quota; a deploy to the deployed-VM quota.
func TestQuotaRefusalChangesNothing(t *testing.T) {
	e := newEnv(t)
	p := newPeople(t, e)
	e.template("base")
	alice := p.as("alice")
	if _, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{vm("a", "base", ""), vm("b", "base", "")}}); err != nil {
		t.Fatal(err)
	}
	e.wait(e.svc.Archives.StartCreate(alice, "web", "arch", lab.CreateOptions{}))
	if _, err := e.svc.Library.Capture(context.Background(), "web", "gold", lab.CreateOptions{Workspace: "team"}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(context.Background(), func(tx store.Tx) error {
		return tx.Quotas().Set(&store.Quota{Scope: store.QuotaScopeUser, ScopeID: p.users["alice"], StoredVMs: 3})
	}); err != nil {
		t.Fatal(err)
	}
	before := counts(t, e)
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `user "alice"`) ||
			!strings.Contains(err.Error(), "stored VMs: 2 in use + 2 requested exceeds the limit of 3") {
			t.Errorf("%s over quota: %v, want a conflict naming the quota, use and limit", what, err)
		}
		if after := counts(t, e); after != before {
			t.Errorf("%s over quota changed rows/files: %s, was %s", what, after, before)
		}
	}
	_, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "more", VMs: []lab.VMSpec{vm("a", "base", ""), vm("b", "base", "")}})
	refused("create", err)
	_, err = e.svc.Configs.LinkedClone(alice, "web", "more", lab.CreateOptions{})
	refused("linked clone", err)
	_, err = e.svc.Library.Checkout(alice, "gold", "more", lab.CreateOptions{})
	refused("checkout", err)
	j := e.wait(e.svc.Archives.StartRestore(alice, "arch", "more", lab.CreateOptions{}))
	if j.State != "failed" || !strings.Contains(j.Error, "stored VMs: 2 in use + 2 requested exceeds the limit of 3") {
		t.Errorf("restore over quota: job %s %q", j.State, j.Error)
	}
	if after := counts(t, e); after != before {
		t.Errorf("restore over quota changed rows/files: %s, was %s", after, before)
	}
	// The system (no identity) owns nothing, so no user quota holds it.
	if _, err := e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: "sys", VMs: []lab.VMSpec{vm("a", "base", "")}}); err != nil {
		t.Errorf("system create: %v", err)
	}
}

// TestConcurrentCreatesAtQuota: with room for one more VM in the
// workspace, two concurrent creates: exactly one succeeds, the other is
// refused by the quota.
func TestConcurrentCreatesAtQuota(t *testing.T) {
	e := newEnv(t)
	p := newPeople(t, e)
	e.template("base")
	alice := p.as("alice")
	if _, err := e.svc.Configs.Create(alice, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{vm("a", "base", "")}}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Update(context.Background(), func(tx store.Tx) error {
		return tx.Quotas().Set(&store.Quota{Scope: store.QuotaScopeWorkspace, ScopeID: p.ws["team"], StoredVMs: 2})
	}); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := "c" + itoa(round) + "-" + itoa(i)
				_, errs[i] = e.svc.Configs.Create(alice, lab.ConfigSpec{Name: name, VMs: []lab.VMSpec{vm("a", "base", "")}})
			}()
		}
		wg.Wait()
		okN := 0
		for _, err := range errs {
			switch {
			case err == nil:
				okN++
			case errors.Is(err, errdefs.ErrConflict) && strings.Contains(err.Error(), `workspace "team"`):
			default:
				t.Errorf("round %d: %v", round, err)
			}
		}
		if okN != 1 {
			t.Fatalf("round %d: %d creates succeeded at quota-1, want exactly 1 (%v)", round, okN, errs)
		}
		// Make room again for the next round.
		cs, _ := e.svc.Configs.List(alice)
		for _, c := range cs {
			if c.Name != "web" {
				if err := e.svc.Configs.Delete(alice, c.Name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestDeployQuota: a deploy over the workspace's deployed-VM quota is a
// conflict naming it, starts nothing and leaves the configuration
// undeployed; raising the quota lets the same deploy through.
func TestDeployQuota(t *testing.T) {
	e, host := deployEnv(t, nil)
	setQuota := func(n int64) {
		t.Helper()
		if err := e.db.Update(context.Background(), func(tx store.Tx) error {
			c, err := tx.Configs().Get("a")
			if err != nil {
				return err
			}
			return tx.Quotas().Set(&store.Quota{Scope: store.QuotaScopeWorkspace, ScopeID: c.WorkspaceID, DeployedVMs: n, VCPUs: 8})
		}); err != nil {
			t.Fatal(err)
		}
	}
	setQuota(1)
	_, err := e.svc.Deployments.Deploy(context.Background(), "a", lab.DeployOptions{})
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `workspace "main"`) ||
		!strings.Contains(err.Error(), "deployed VMs: 0 in use + 2 requested exceeds the limit of 1") {
		t.Fatalf("deploy over quota: %v", err)
	}
	if calls := host.Calls.Take(); len(calls) != 0 {
		t.Errorf("a refused deploy touched the host: %v", calls)
	}
	if c := e.get("a"); c.State != store.StateUndeployed {
		t.Errorf("after a refused deploy the configuration is %s", c.State)
	}
	setQuota(2)
	if _, err := e.svc.Deployments.Deploy(context.Background(), "a", lab.DeployOptions{}); err != nil {
		t.Fatalf("deploy within quota: %v", err)
	}
	t.Cleanup(func() { e.svc.Deployments.Undeploy(context.Background(), "a", false) })
}
