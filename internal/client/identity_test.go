package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// directory is the API over a real lab (seeded: configuration "web" in
// default/main, owned by nobody), served as the daemon serves it: a
// request without credentials is the unix socket's root (apitest.Serve),
// users send real API tokens.
type directory struct {
	t   *testing.T
	lab *apitest.Lab
	url string
}

func newDirectory(t *testing.T) *directory {
	t.Helper()
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.Serve(t, l)
	return &directory{t: t, lab: l, url: srv.URL}
}

// root is the unix socket's root: the system administrator, no user.
func (d *directory) root() *client.Client { return client.New(d.url) }

// user returns a client of user name (made if need be) with a token of
// its own, restricted as o says.
func (d *directory) user(name string, o apitest.TokenOptions) *client.Client {
	d.t.Helper()
	return client.New(d.url, client.WithToken(d.lab.Token(d.t, name, o)))
}

// record reads user name from the store.
func (d *directory) record(name string) *store.User {
	d.t.Helper()
	var u *store.User
	err := d.lab.Store().View(context.Background(), func(tx store.Tx) error {
		var err error
		u, err = tx.Users().Get(name)
		return err
	})
	if err != nil {
		d.t.Fatal(err)
	}
	return u
}

const goodPassword = "correct horse battery"

// wantKind fails unless err is of errdefs kind kind.
func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: err = %v, want %v", what, err, kind)
	}
}

func TestUsers(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	root := d.root()
	u, err := root.Users().Create(ctx, wire.UserRequest{Name: "alice", Email: "alice@example.com", DisplayName: "Alice", Password: goodPassword, DefaultWorkspace: "main"})
	if err != nil || u.Name != "alice" || !u.HasPassword || u.DefaultWorkspace != "default/main" || u.SystemAdmin {
		t.Fatalf("CreateUser = %+v, %v", u, err)
	}
	_, err = root.Users().Create(ctx, wire.UserRequest{Name: "alice", Password: goodPassword})
	wantKind(t, "duplicate user", err, errdefs.ErrConflict)
	_, err = root.Users().Create(ctx, wire.UserRequest{Name: "bob", Password: "short"})
	wantKind(t, "weak password", err, errdefs.ErrInvalid)
	_, err = root.Users().Create(ctx, wire.UserRequest{Name: "bad/name"})
	wantKind(t, "name with a slash", err, errdefs.ErrInvalid)
	if _, err := root.Users().Create(ctx, wire.UserRequest{Name: "bob"}); err != nil {
		t.Fatal(err)
	}

	// The hash is stored (argon2id) and never answered.
	if err := auth.CheckPassword(d.record("alice").PasswordHash, goodPassword); err != nil {
		t.Errorf("stored hash does not check: %v", err)
	}
	us, err := root.Users().List(ctx)
	if err != nil || len(us) != 2 || us[0].Name != "alice" || us[1].HasPassword {
		t.Fatalf("ListUsers = %+v, %v", us, err)
	}
	if b, _ := json.Marshal(us); strings.Contains(string(b), "argon2") {
		t.Errorf("the user list carries a hash: %s", b)
	}

	// A user reads their own record only; users are the system
	// administrator's.
	alice := d.user("alice", apitest.TokenOptions{})
	if me, err := alice.Users().Get(ctx, "alice"); err != nil || me.Email != "alice@example.com" {
		t.Fatalf("own GetUser = %+v, %v", me, err)
	}
	_, err = alice.Users().Get(ctx, "bob")
	wantKind(t, "alice reads bob", err, errdefs.ErrNotFound)
	_, err = alice.Users().List(ctx)
	wantKind(t, "alice lists users", err, errdefs.ErrForbidden)
	_, err = alice.Users().Create(ctx, wire.UserRequest{Name: "mallory"})
	wantKind(t, "alice creates a user", err, errdefs.ErrForbidden)
	wantKind(t, "alice deletes bob", alice.Users().Delete(ctx, "bob"), errdefs.ErrForbidden)

	if err := root.Users().Delete(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = root.Users().Get(ctx, "bob")
	wantKind(t, "deleted user", err, errdefs.ErrNotFound)
}

func TestSetPassword(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	root := d.root()
	for _, n := range []string{"alice", "bob"} {
		if _, err := root.Users().Create(ctx, wire.UserRequest{Name: n, Password: goodPassword}); err != nil {
			t.Fatal(err)
		}
	}
	alice := d.user("alice", apitest.TokenOptions{})
	const next = "another long passphrase"
	wantKind(t, "own password without the current one",
		alice.Users().SetPassword(ctx, "alice", wire.PasswordRequest{Password: next}), errdefs.ErrInvalid)
	wantKind(t, "own password with a wrong current one",
		alice.Users().SetPassword(ctx, "alice", wire.PasswordRequest{OldPassword: "not the password", Password: next}), errdefs.ErrForbidden)
	wantKind(t, "weak new password",
		alice.Users().SetPassword(ctx, "alice", wire.PasswordRequest{OldPassword: goodPassword, Password: "short"}), errdefs.ErrInvalid)
	wantKind(t, "someone else's password",
		alice.Users().SetPassword(ctx, "bob", wire.PasswordRequest{OldPassword: goodPassword, Password: next}), errdefs.ErrNotFound)
	if err := auth.CheckPassword(d.record("alice").PasswordHash, goodPassword); err != nil {
		t.Fatalf("a refused change changed the password: %v", err)
	}
	if err := alice.Users().SetPassword(ctx, "alice", wire.PasswordRequest{OldPassword: goodPassword, Password: next}); err != nil {
		t.Fatal(err)
	}
	if err := auth.CheckPassword(d.record("alice").PasswordHash, next); err != nil {
		t.Errorf("new password does not check: %v", err)
	}
	// The system administrator sets anyone's without the current one.
	if err := root.Users().SetPassword(ctx, "bob", wire.PasswordRequest{Password: next}); err != nil {
		t.Fatal(err)
	}
	if err := auth.CheckPassword(d.record("bob").PasswordHash, next); err != nil {
		t.Errorf("bob's new password does not check: %v", err)
	}
}

func TestOrgsAndWorkspaces(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	root := d.root()
	for _, n := range []string{"carol", "dave", "erin"} {
		if _, err := root.Users().Create(ctx, wire.UserRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := root.Orgs().Create(ctx, wire.OrgRequest{Name: "acme"})
	if err != nil || o.Name != "acme" || len(o.Workspaces) != 1 || o.Workspaces[0] != "main" {
		t.Fatalf("CreateOrg = %+v, %v", o, err)
	}
	_, err = root.Orgs().Create(ctx, wire.OrgRequest{Name: "acme"})
	wantKind(t, "duplicate organization", err, errdefs.ErrConflict)
	if err := root.Orgs().AddAdmin(ctx, "acme", "carol"); err != nil {
		t.Fatal(err)
	}

	// carol administers acme: its workspaces, members and quotas.
	carol := d.user("carol", apitest.TokenOptions{})
	ws, err := carol.Workspaces().Create(ctx, wire.WorkspaceRequest{Org: "acme", Name: "dev", Kind: wire.WorkspacePrivate})
	if err != nil || ws.Org != "acme" || ws.Kind != wire.WorkspacePrivate {
		t.Fatalf("CreateWorkspace = %+v, %v", ws, err)
	}
	_, err = carol.Workspaces().Create(ctx, wire.WorkspaceRequest{Name: "elsewhere"})
	wantKind(t, "carol creates in default", err, errdefs.ErrNotFound)
	_, err = carol.Workspaces().Create(ctx, wire.WorkspaceRequest{Org: "acme", Name: "odd", Kind: "public"})
	wantKind(t, "unknown workspace kind", err, errdefs.ErrInvalid)
	if err := carol.Workspaces().AddMember(ctx, "acme/dev", wire.MemberRequest{User: "dave", Role: "admin"}); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "unknown role", carol.Workspaces().AddMember(ctx, "acme/dev", wire.MemberRequest{User: "erin", Role: "superuser"}), errdefs.ErrInvalid)

	// dave, the workspace's admin, manages its members but not its quota.
	dave := d.user("dave", apitest.TokenOptions{})
	if err := dave.Workspaces().AddMember(ctx, "acme/dev", wire.MemberRequest{User: "erin", Role: "author"}); err != nil {
		t.Fatal(err)
	}
	_, err = dave.Workspaces().SetQuota(ctx, wire.QuotaRequest{Scope: wire.QuotaWorkspace, Target: "acme/dev", QuotaLimits: wire.QuotaLimits{StoredVMs: 5}})
	wantKind(t, "workspace admin sets the quota", err, errdefs.ErrForbidden)
	wantKind(t, "workspace admin adds to acme/main", dave.Workspaces().AddMember(ctx, "acme/main", wire.MemberRequest{User: "erin", Role: "user"}), errdefs.ErrNotFound)
	if _, err := carol.Workspaces().SetQuota(ctx, wire.QuotaRequest{Scope: wire.QuotaWorkspace, Target: "acme/dev", QuotaLimits: wire.QuotaLimits{StoredVMs: 5, DiskGiB: 100}}); err != nil {
		t.Fatal(err)
	}
	_, err = carol.Workspaces().SetQuota(ctx, wire.QuotaRequest{Scope: wire.QuotaUser, Target: "erin", QuotaLimits: wire.QuotaLimits{StoredVMs: 1}})
	wantKind(t, "org admin sets a user's quota", err, errdefs.ErrForbidden)

	// erin, an author, sees the workspace but changes nothing of it.
	erin := d.user("erin", apitest.TokenOptions{})
	got, err := erin.Workspaces().Get(ctx, "acme/dev")
	if err != nil || len(got.Members) != 2 || got.Quota == nil || got.Quota.StoredVMs != 5 || got.Usage == nil {
		t.Fatalf("GetWorkspace = %+v, %v", got, err)
	}
	if got.Members[0].User != "dave" || got.Members[0].Role != "admin" || got.Members[1].User != "erin" || got.Members[1].Role != "author" {
		t.Errorf("members = %+v", got.Members)
	}
	wantKind(t, "author removes a member", erin.Workspaces().RemoveMember(ctx, "acme/dev", "dave"), errdefs.ErrForbidden)
	_, err = erin.Workspaces().Get(ctx, "acme/main")
	wantKind(t, "non-member reads a workspace", err, errdefs.ErrNotFound)
	list, err := erin.Workspaces().List(ctx, "")
	if err != nil || len(list) != 1 || list[0].Name != "dev" {
		t.Errorf("erin's ListWorkspaces = %+v, %v", list, err)
	}
	if all, err := root.Workspaces().List(ctx, "acme"); err != nil || len(all) != 2 {
		t.Errorf("root's ListWorkspaces(acme) = %+v, %v", all, err)
	}
	if orgs, err := erin.Orgs().List(ctx); err != nil || len(orgs) != 1 || orgs[0].Name != "acme" || orgs[0].Admins[0] != "carol" {
		t.Errorf("erin's ListOrgs = %+v, %v", orgs, err)
	}
	me, err := erin.Users().Get(ctx, "erin")
	if err != nil || len(me.Memberships) != 1 || me.Memberships[0].Workspace != "acme/dev" || me.Memberships[0].Role != "author" {
		t.Errorf("erin's memberships = %+v, %v", me, err)
	}

	if err := dave.Workspaces().RemoveMember(ctx, "acme/dev", "erin"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "remove a non-member", dave.Workspaces().RemoveMember(ctx, "acme/dev", "erin"), errdefs.ErrNotFound)
	wantKind(t, "workspace admin deletes it", dave.Workspaces().Delete(ctx, "acme/dev"), errdefs.ErrForbidden)
	if err := carol.Workspaces().Delete(ctx, "acme/dev"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "delete default/main", root.Workspaces().Delete(ctx, "main"), errdefs.ErrConflict)
}

func TestGroups(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	root := d.root()
	for _, n := range []string{"alice", "bob"} {
		if _, err := root.Users().Create(ctx, wire.UserRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := root.Groups().Create(ctx, wire.GroupRequest{Name: "testers"})
	if err != nil || g.Org != "default" || g.Name != "testers" {
		t.Fatalf("CreateGroup = %+v, %v", g, err)
	}
	_, err = root.Groups().Create(ctx, wire.GroupRequest{Name: "testers"})
	wantKind(t, "duplicate group", err, errdefs.ErrConflict)
	if err := root.Groups().AddMember(ctx, "testers", "alice"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "unknown member", root.Groups().AddMember(ctx, "testers", "nobody"), errdefs.ErrNotFound)
	gs, err := root.Groups().List(ctx, "")
	if err != nil || len(gs) != 1 || len(gs[0].Members) != 1 || gs[0].Members[0] != "alice" {
		t.Fatalf("ListGroups = %+v, %v", gs, err)
	}
	// bob, in no workspace of default and no admin, sees no group and
	// changes none.
	bob := d.user("bob", apitest.TokenOptions{})
	if gs, err := bob.Groups().List(ctx, ""); err != nil || len(gs) != 0 {
		t.Errorf("bob's ListGroups = %+v, %v", gs, err)
	}
	wantKind(t, "bob adds himself", bob.Groups().AddMember(ctx, "testers", "bob"), errdefs.ErrNotFound)
	if err := root.Groups().RemoveMember(ctx, "testers", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := root.Groups().Delete(ctx, "testers"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "deleted group", root.Groups().Delete(ctx, "testers"), errdefs.ErrNotFound)
}

func TestTokens(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	root := d.root()
	for _, n := range []string{"alice", "bob"} {
		if _, err := root.Users().Create(ctx, wire.UserRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	alice := d.user("alice", apitest.TokenOptions{})
	nt, err := alice.Tokens().Create(ctx, wire.TokenRequest{Name: "ci", ExpiresIn: "30d", Workspace: "main", MaxRole: "viewer"})
	if err != nil || !strings.HasPrefix(nt.Token, "sht_") || nt.Record.User != "alice" || nt.Record.State != wire.TokenActive ||
		nt.Record.Workspace != "default/main" || nt.Record.MaxRole != "viewer" {
		t.Fatalf("CreateToken = %+v, %v", nt, err)
	}
	if life := nt.Record.ExpiresAt.Sub(nt.Record.CreatedAt); life.Hours() != 30*24 {
		t.Errorf("token lives %v, want 30 days", life)
	}
	// The plaintext is what the store's hash verifies, and only its hash
	// is kept.
	id, secret, err := auth.ParseToken(nt.Token)
	if err != nil || id != nt.Record.ID {
		t.Fatalf("ParseToken = %q, %v; record id %q", id, err, nt.Record.ID)
	}
	err = d.lab.Store().View(ctx, func(tx store.Tx) error {
		tk, err := tx.Tokens().Get(id)
		if err != nil {
			return err
		}
		if !auth.VerifyToken(tk.Hash, secret) || tk.RestrictRole != "viewer" || tk.RestrictWorkspaceID == 0 {
			t.Errorf("stored token %+v does not match", tk)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	_, err = alice.Tokens().Create(ctx, wire.TokenRequest{Name: "x", Workspace: "main", MaxRole: "root"})
	wantKind(t, "unknown max role", err, errdefs.ErrInvalid)
	_, err = alice.Tokens().Create(ctx, wire.TokenRequest{Name: "x", ExpiresIn: "400d"})
	wantKind(t, "token for 400 days", err, errdefs.ErrInvalid)
	_, err = alice.Tokens().Create(ctx, wire.TokenRequest{Name: "x", User: "bob"})
	wantKind(t, "alice makes bob a token", err, errdefs.ErrNotFound)
	restricted := d.user("alice", apitest.TokenOptions{Workspace: 1, Role: "viewer"})
	_, err = restricted.Tokens().Create(ctx, wire.TokenRequest{Name: "escape"})
	wantKind(t, "a restricted token makes a token", err, errdefs.ErrForbidden)

	// The list never carries the secret; a revoked token stays listed.
	bobs, err := root.Tokens().Create(ctx, wire.TokenRequest{Name: "bob's", User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, "alice revokes bob's token", alice.Tokens().Revoke(ctx, bobs.Record.ID), errdefs.ErrNotFound)
	if err := alice.Tokens().Revoke(ctx, nt.Record.ID); err != nil {
		t.Fatal(err)
	}
	ts, err := alice.Tokens().List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// alice's: the one her client sends, the restricted one, and ci.
	byID := map[string]wire.Token{}
	for _, tk := range ts {
		byID[tk.ID] = tk
		if tk.User != "alice" {
			t.Errorf("alice's list holds %+v", tk)
		}
	}
	if ci := byID[nt.Record.ID]; len(ts) != 3 || ci.State != wire.TokenRevoked || ci.RevokedAt.IsZero() {
		t.Fatalf("ListTokens = %+v", ts)
	}
	if b, _ := json.Marshal(ts); strings.Contains(string(b), nt.Token[strings.LastIndex(nt.Token, "_")+1:]) {
		t.Errorf("the token list carries the secret: %s", b)
	}
	_, err = alice.Tokens().List(ctx, "bob")
	wantKind(t, "alice lists bob's tokens", err, errdefs.ErrNotFound)
	all, err := root.Tokens().List(ctx, "")
	if err != nil || len(all) != 4 {
		t.Errorf("root's ListTokens = %+v, %v", all, err)
	}
	_, err = root.Tokens().Create(ctx, wire.TokenRequest{Name: "mine"})
	wantKind(t, "the socket's root makes a token of its own", err, errdefs.ErrInvalid)

	// The event log says who made and revoked which token.
	evs, err := d.lab.Events.List(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var made, revoked bool
	for _, e := range evs {
		made = made || e.Object == "token" && e.Action == "create" && e.Subject == nt.Record.ID && e.Actor == "alice"
		revoked = revoked || e.Object == "token" && e.Action == "revoke" && e.Subject == nt.Record.ID && e.Actor == "alice"
	}
	if !made || !revoked {
		t.Errorf("events %+v lack alice's token create (%t) or revoke (%t)", evs, made, revoked)
	}
}

func TestSharesAndExplain(t *testing.T) {
	d := newDirectory(t)
	ctx := context.Background()
	root := d.root()
	for _, n := range []string{"alice", "bob"} {
		if _, err := root.Users().Create(ctx, wire.UserRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.Groups().Create(ctx, wire.GroupRequest{Name: "testers"}); err != nil {
		t.Fatal(err)
	}
	s, err := root.Configs().Share(ctx, "web", wire.ShareRequest{With: "bob", Level: "read"})
	if err != nil || s.With != "bob" || s.Level != "read" {
		t.Fatalf("ShareConfig = %+v, %v", s, err)
	}
	if _, err := root.Configs().Share(ctx, "web", wire.ShareRequest{With: "group:testers", Level: "console"}); err != nil {
		t.Fatal(err)
	}
	_, err = root.Configs().Share(ctx, "web", wire.ShareRequest{With: "bob", Level: "owner"})
	wantKind(t, "unknown share level", err, errdefs.ErrInvalid)
	_, err = root.Configs().Share(ctx, "web", wire.ShareRequest{With: "group:nobody", Level: "read"})
	wantKind(t, "unknown group", err, errdefs.ErrNotFound)
	ss, err := root.Configs().Shares(ctx, "web")
	if err != nil || len(ss) != 2 || ss[0].With != "bob" || ss[1].With != "group:default/testers" || ss[1].Level != "console" {
		t.Fatalf("ListShares = %+v, %v", ss, err)
	}

	// bob, outside the workspace, reads web through his share but may
	// not deploy it (403: he sees it); alice sees nothing of it (404).
	e, err := root.Auth().Explain(ctx, wire.ExplainRequest{User: "bob", Action: "config.deploy", Object: "config/web"})
	if err != nil || e.Allowed || !e.Visible || !strings.Contains(e.Reason, "share read") {
		t.Errorf("explain bob deploy = %+v, %v", e, err)
	}
	e, err = root.Auth().Explain(ctx, wire.ExplainRequest{User: "bob", Action: "config.read", Object: "config/web"})
	if err != nil || !e.Allowed {
		t.Errorf("explain bob read = %+v, %v", e, err)
	}
	e, err = root.Auth().Explain(ctx, wire.ExplainRequest{User: "alice", Action: "config.read", Object: "config/web"})
	if err != nil || e.Allowed || e.Visible {
		t.Errorf("explain alice read = %+v, %v", e, err)
	}
	_, err = root.Auth().Explain(ctx, wire.ExplainRequest{User: "alice", Action: "config.fly", Object: "config/web"})
	wantKind(t, "unknown action", err, errdefs.ErrInvalid)
	_, err = d.user("alice", apitest.TokenOptions{}).Auth().Explain(ctx, wire.ExplainRequest{User: "bob", Action: "config.read", Object: "config/web"})
	wantKind(t, "alice explains bob", err, errdefs.ErrForbidden)

	// Sharing is config.share: bob's read share does not let him share.
	bob := d.user("bob", apitest.TokenOptions{})
	_, err = bob.Configs().Share(ctx, "web", wire.ShareRequest{With: "alice", Level: "full"})
	wantKind(t, "bob shares web", err, errdefs.ErrForbidden)
	_, err = d.user("alice", apitest.TokenOptions{}).Configs().Shares(ctx, "web")
	wantKind(t, "alice lists web's shares", err, errdefs.ErrNotFound)

	if err := root.Configs().Unshare(ctx, "web", "bob"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "unshare again", root.Configs().Unshare(ctx, "web", "bob"), errdefs.ErrNotFound)
	if err := root.Configs().Unshare(ctx, "web", "group:testers"); err != nil {
		t.Fatal(err)
	}
	if ss, err := root.Configs().Shares(ctx, "web"); err != nil || len(ss) != 0 {
		t.Errorf("ListShares after unsharing = %+v, %v", ss, err)
	}
}
