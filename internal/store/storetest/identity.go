package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// The directory: organizations, workspaces, users, groups, memberships,
// organization administrators, tokens, shares, quotas and ownership.

// mustOrg returns the organization of name, creating it.
func mustOrg(t *testing.T, tx store.Tx, name string) *store.Org {
	t.Helper()
	o := &store.Org{Name: name}
	if err := tx.Orgs().Create(o); err != nil {
		t.Fatalf("create organization %q: %v", name, err)
	}
	return o
}

func mustWorkspace(t *testing.T, tx store.Tx, orgID int64, name, kind string) *store.Workspace {
	t.Helper()
	w := &store.Workspace{OrgID: orgID, Name: name, Kind: kind}
	if err := tx.Workspaces().Create(w); err != nil {
		t.Fatalf("create workspace %q: %v", name, err)
	}
	return w
}

func mustUser(t *testing.T, tx store.Tx, name string) *store.User {
	t.Helper()
	u := &store.User{Name: name, DisplayName: name}
	if err := tx.Users().Create(u); err != nil {
		t.Fatalf("create user %q: %v", name, err)
	}
	return u
}

func testDefaultWorkspace(t *testing.T, s store.Store) {
	view(t, s, func(tx store.Tx) error {
		orgs, err := tx.Orgs().List()
		if err != nil {
			return err
		}
		if len(orgs) != 1 || orgs[0].Name != store.DefaultOrg {
			t.Fatalf("a new store's organizations: %+v, want only %q", orgs, store.DefaultOrg)
		}
		w, err := tx.Workspaces().Get(orgs[0].ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		if w.Kind != store.WorkspaceShared {
			t.Errorf("workspace %q is %q, want shared", w.Name, w.Kind)
		}
		return nil
	})
}

func testOrgsAndWorkspaces(t *testing.T, s store.Store) {
	ctx := context.Background()
	var acme, empty store.Org
	var team, priv store.Workspace
	update(t, s, func(tx store.Tx) error {
		acme = store.Org{Name: "acme", CreatedAt: someTime}
		empty = store.Org{Name: "empty"}
		for _, o := range []*store.Org{&acme, &empty} {
			if err := tx.Orgs().Create(o); err != nil {
				return err
			}
		}
		team = store.Workspace{OrgID: acme.ID, Name: "team", Kind: store.WorkspaceShared}
		priv = store.Workspace{OrgID: acme.ID, Name: "priv", Kind: store.WorkspacePrivate}
		for _, w := range []*store.Workspace{&team, &priv} {
			if err := tx.Workspaces().Create(w); err != nil {
				return err
			}
		}
		// The same name in another organization is another workspace.
		return tx.Workspaces().Create(&store.Workspace{OrgID: empty.ID, Name: "team", Kind: store.WorkspacePrivate})
	})
	if !acme.CreatedAt.Equal(someTime) || team.ID == 0 || team.CreatedAt.IsZero() {
		t.Errorf("created: %+v %+v", acme, team)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Orgs().Get("acme")
		if err != nil {
			return err
		}
		diff(t, "Orgs.Get", &acme, got)
		got, err = tx.Orgs().GetByID(empty.ID)
		if err != nil {
			return err
		}
		diff(t, "Orgs.GetByID", &empty, got)
		def, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		orgs, err := tx.Orgs().List()
		if err != nil {
			return err
		}
		// By id: acme's CreatedAt (given, in 2024) is before the others'.
		diff(t, "Orgs.List", []store.Org{*def, acme, empty}, orgs)
		w, err := tx.Workspaces().Get(acme.ID, "priv")
		if err != nil {
			return err
		}
		diff(t, "Workspaces.Get", &priv, w)
		w, err = tx.Workspaces().GetByID(team.ID)
		if err != nil {
			return err
		}
		diff(t, "Workspaces.GetByID", &team, w)
		ws, err := tx.Workspaces().List(acme.ID)
		if err != nil {
			return err
		}
		diff(t, "ListWorkspaces(acme)", []store.Workspace{team, priv}, ws)
		ws, err = tx.Workspaces().List(0)
		if err != nil {
			return err
		}
		if len(ws) != 4 { // main, team, priv, empty/team
			t.Errorf("ListWorkspaces(0): %d workspaces, want 4", len(ws))
		}
		_, err = tx.Orgs().Get("nope")
		wantKind(t, "GetOrg of a missing name", err, errdefs.ErrNotFound, "nope")
		_, err = tx.Workspaces().Get(acme.ID, "nope")
		wantKind(t, "GetWorkspace of a missing name", err, errdefs.ErrNotFound, "nope")
		_, err = tx.Workspaces().GetByID(987654)
		wantKind(t, "GetWorkspaceByID of a missing id", err, errdefs.ErrNotFound)
		return nil
	})

	for _, c := range []struct {
		what string
		kind error
		fn   func(tx store.Tx) error
	}{
		{"CreateOrg with a taken name", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Orgs().Create(&store.Org{Name: "acme"}) }},
		{"CreateOrg without a name", errdefs.ErrInvalid, func(tx store.Tx) error { return tx.Orgs().Create(&store.Org{}) }},
		{"CreateWorkspace with a taken name", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Workspaces().Create(&store.Workspace{OrgID: acme.ID, Name: "team", Kind: store.WorkspaceShared})
		}},
		{"CreateWorkspace of a bad kind", errdefs.ErrInvalid, func(tx store.Tx) error {
			return tx.Workspaces().Create(&store.Workspace{OrgID: acme.ID, Name: "x", Kind: "public"})
		}},
		{"CreateWorkspace in a missing organization", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Workspaces().Create(&store.Workspace{OrgID: 987654, Name: "x", Kind: store.WorkspaceShared})
		}},
		{"UpdateWorkspace to a taken name", errdefs.ErrConflict, func(tx store.Tx) error {
			w := priv
			w.Name = "team"
			return tx.Workspaces().Update(&w)
		}},
		{"UpdateWorkspace of a missing id", errdefs.ErrNotFound, func(tx store.Tx) error {
			return tx.Workspaces().Update(&store.Workspace{ID: 987654, Name: "x", Kind: store.WorkspaceShared})
		}},
		{"DeleteOrg with workspaces", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Orgs().Delete(acme.ID) }},
		{"DeleteOrg of a missing id", errdefs.ErrNotFound, func(tx store.Tx) error { return tx.Orgs().Delete(987654) }},
		{"DeleteWorkspace of a missing id", errdefs.ErrNotFound, func(tx store.Tx) error { return tx.Workspaces().Delete(987654) }},
	} {
		err := s.Update(ctx, c.fn)
		wantKind(t, c.what, err, c.kind)
	}

	// UpdateWorkspace writes Name and Kind.
	update(t, s, func(tx store.Tx) error {
		priv.Name, priv.Kind = "own", store.WorkspaceShared
		if err := tx.Workspaces().Update(&priv); err != nil {
			return err
		}
		got, err := tx.Workspaces().GetByID(priv.ID)
		if err != nil {
			return err
		}
		diff(t, "workspace after UpdateWorkspace", &priv, got)
		return nil
	})

	// A workspace holding an object cannot go; its memberships go with it.
	var u *store.User
	update(t, s, func(tx store.Tx) error {
		u = mustUser(t, tx, "wendy")
		if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: team.ID, Role: "author"}); err != nil {
			return err
		}
		return tx.Configs().Create(&store.Config{Name: "held", State: store.StateUndeployed, WorkspaceID: team.ID})
	})
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Workspaces().Delete(team.ID) })
	wantKind(t, "DeleteWorkspace holding a configuration", err, errdefs.ErrConflict, "team", "1 configuration")
	update(t, s, func(tx store.Tx) error {
		c, err := tx.Configs().Get("held")
		if err != nil {
			return err
		}
		if err := tx.Configs().Delete(c.ID); err != nil {
			return err
		}
		return tx.Workspaces().Delete(team.ID)
	})
	view(t, s, func(tx store.Tx) error {
		ms, err := tx.Memberships().OfUser(u.ID)
		if err != nil {
			return err
		}
		diff(t, "memberships after DeleteWorkspace", []store.Membership(nil), ms)
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		if err := tx.Workspaces().Delete(priv.ID); err != nil {
			return err
		}
		return tx.Orgs().Delete(acme.ID)
	})
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Orgs().Get("acme")
		wantKind(t, "GetOrg after DeleteOrg", err, errdefs.ErrNotFound, "acme")
		return nil
	})
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	var full, bare, dated store.User
	var org store.Org
	var ws *store.Workspace
	update(t, s, func(tx store.Tx) error {
		org = *mustOrg(t, tx, "acme")
		ws = mustWorkspace(t, tx, org.ID, "team", store.WorkspaceShared)
		full = store.User{Name: "alice", Email: "Alice@Example.com", DisplayName: "Alice A.", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
			Disabled: true, SystemAdmin: true, DefaultWorkspaceID: ws.ID}
		bare = store.User{Name: "bob"}
		dated = store.User{Name: "carol", CreatedAt: someTime}
		for _, u := range []*store.User{&full, &bare, &dated} {
			if err := tx.Users().Create(u); err != nil {
				return err
			}
		}
		return nil
	})
	if !dated.CreatedAt.Equal(someTime) || full.CreatedAt.IsZero() {
		t.Errorf("CreatedAt: %v, %v", dated.CreatedAt, full.CreatedAt)
	}
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Users().Get("alice")
		if err != nil {
			return err
		}
		diff(t, "Users.Get", &full, got)
		got, err = tx.Users().GetByID(bare.ID)
		if err != nil {
			return err
		}
		diff(t, "GetUserByID (no e-mail, no password)", &bare, got)
		got, err = tx.Users().GetByEmail("alice@example.COM")
		if err != nil {
			return err
		}
		diff(t, "GetUserByEmail (another case)", &full, got)
		all, err := tx.Users().List()
		if err != nil {
			return err
		}
		diff(t, "Users.List", []store.User{full, bare, dated}, all)
		_, err = tx.Users().Get("nope")
		wantKind(t, "GetUser of a missing name", err, errdefs.ErrNotFound, "nope")
		_, err = tx.Users().GetByEmail("nope@example.com")
		wantKind(t, "GetUserByEmail of a missing address", err, errdefs.ErrNotFound, "nope@example.com")
		_, err = tx.Users().GetByEmail("")
		wantKind(t, "GetUserByEmail of no address", err, errdefs.ErrNotFound)
		return nil
	})

	err := s.Update(ctx, func(tx store.Tx) error { return tx.Users().Create(&store.User{Name: "alice"}) })
	wantKind(t, "CreateUser with a taken name", err, errdefs.ErrConflict, `user "alice": already exists`)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Users().Create(&store.User{Name: "al", Email: "ALICE@example.com"}) })
	wantKind(t, "CreateUser with a taken e-mail address", err, errdefs.ErrConflict, "ALICE@example.com")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Users().Create(&store.User{Name: " "}) })
	wantKind(t, "CreateUser without a name", err, errdefs.ErrInvalid)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Users().Create(&store.User{Name: "x", DefaultWorkspaceID: 987654}) })
	wantKind(t, "CreateUser with a missing default workspace", err, errdefs.ErrConflict)

	// UpdateUser writes every field but ID and CreatedAt.
	update(t, s, func(tx store.Tx) error {
		bare.Email, bare.DisplayName, bare.PasswordHash = "bob@example.com", "Bob", "$2a$10$hash"
		bare.SystemAdmin, bare.DefaultWorkspaceID = true, ws.ID
		if err := tx.Users().Update(&bare); err != nil {
			return err
		}
		full.Email, full.PasswordHash, full.Disabled, full.SystemAdmin, full.DefaultWorkspaceID = "", "", false, false, 0
		return tx.Users().Update(&full)
	})
	view(t, s, func(tx store.Tx) error {
		all, err := tx.Users().List()
		if err != nil {
			return err
		}
		diff(t, "users after UpdateUser", []store.User{full, bare, dated}, all)
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error {
		u := dated
		u.Email = "BOB@example.com"
		return tx.Users().Update(&u)
	})
	wantKind(t, "UpdateUser to a taken e-mail address", err, errdefs.ErrConflict, "BOB@example.com")
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Users().Update(&store.User{ID: 987654, Name: "x"}) })
	wantKind(t, "UpdateUser of a missing id", err, errdefs.ErrNotFound)

	// Deleting the default workspace clears it.
	update(t, s, func(tx store.Tx) error { return tx.Workspaces().Delete(ws.ID) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Users().GetByID(bare.ID)
		if err != nil {
			return err
		}
		if got.DefaultWorkspaceID != 0 {
			t.Errorf("DefaultWorkspaceID %d after its workspace was deleted, want 0", got.DefaultWorkspaceID)
		}
		return nil
	})

	// A user who owns objects cannot go; everything else of theirs goes.
	var grp store.Group
	update(t, s, func(tx store.Tx) error {
		main := mainWorkspace(t, tx)
		if err := tx.Configs().Create(&store.Config{Name: "mine", State: store.StateUndeployed, OwnerID: dated.ID}); err != nil {
			return err
		}
		n := store.Network{Name: "other", WorkspaceID: main.ID, OwnerID: full.ID}
		if err := tx.Networks().Create(&n); err != nil {
			return err
		}
		if err := tx.Memberships().Put(&store.Membership{UserID: full.ID, WorkspaceID: main.ID, Role: "user"}); err != nil {
			return err
		}
		grp = store.Group{OrgID: org.ID, Name: "ops"}
		if err := tx.Groups().Create(&grp); err != nil {
			return err
		}
		if err := tx.Groups().AddMember(grp.ID, full.ID); err != nil {
			return err
		}
		if err := tx.Orgs().AddAdmin(org.ID, full.ID); err != nil {
			return err
		}
		if err := tx.Tokens().Create(&store.Token{ID: "tok-alice", UserID: full.ID, Hash: []byte{1}, Kind: store.TokenAPI}); err != nil {
			return err
		}
		if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectNetwork, ObjectID: n.ID, UserID: full.ID, Level: store.ShareRead}); err != nil {
			return err
		}
		if err := tx.Quotas().Set(&store.Quota{Scope: store.QuotaScopeUser, ScopeID: full.ID, StoredVMs: 3}); err != nil {
			return err
		}
		return tx.Objects().SetOwnership(store.ObjectNetwork, n.ID, main.ID, 0)
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Users().Delete(dated.ID) })
	wantKind(t, "DeleteUser owning a configuration", err, errdefs.ErrConflict, "carol", "1 configuration")
	update(t, s, func(tx store.Tx) error { return tx.Users().Delete(full.ID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Users().Get("alice")
		wantKind(t, "GetUser after DeleteUser", err, errdefs.ErrNotFound, "alice")
		ms, err := tx.Memberships().OfUser(full.ID)
		if err != nil {
			return err
		}
		members, err := tx.Groups().Members(grp.ID)
		if err != nil {
			return err
		}
		admins, err := tx.Orgs().Admins(org.ID)
		if err != nil {
			return err
		}
		tokens, err := tx.Tokens().List(full.ID)
		if err != nil {
			return err
		}
		shares, err := tx.Shares().ToUser(full.ID)
		if err != nil {
			return err
		}
		if len(ms)+len(members)+len(admins)+len(tokens)+len(shares) != 0 {
			t.Errorf("left after DeleteUser: memberships %v, group members %v, admins %v, tokens %v, shares %v", ms, members, admins, tokens, shares)
		}
		_, err = tx.Quotas().Get(store.QuotaScopeUser, full.ID)
		wantKind(t, "GetQuota of a deleted user", err, errdefs.ErrNotFound)
		return nil
	})
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Users().Delete(full.ID) })
	wantKind(t, "DeleteUser of a missing id", err, errdefs.ErrNotFound)
}

// mainWorkspace returns the workspace every store starts with.
func mainWorkspace(t *testing.T, tx store.Tx) *store.Workspace {
	t.Helper()
	o, err := tx.Orgs().Get(store.DefaultOrg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tx.Workspaces().Get(o.ID, store.MainWorkspace)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func testGroupsAndAdmins(t *testing.T, s store.Store) {
	ctx := context.Background()
	var org, other store.Org
	var ops, dev, otherOps store.Group
	var ann, ben *store.User
	update(t, s, func(tx store.Tx) error {
		org, other = *mustOrg(t, tx, "acme"), *mustOrg(t, tx, "globex")
		ann, ben = mustUser(t, tx, "ann"), mustUser(t, tx, "ben")
		ops = store.Group{OrgID: org.ID, Name: "ops"}
		dev = store.Group{OrgID: org.ID, Name: "dev", CreatedAt: someTime}
		otherOps = store.Group{OrgID: other.ID, Name: "ops"}
		for _, g := range []*store.Group{&ops, &dev, &otherOps} {
			if err := tx.Groups().Create(g); err != nil {
				return err
			}
		}
		for _, m := range [][2]int64{{ops.ID, ann.ID}, {ops.ID, ben.ID}, {ops.ID, ann.ID}, {dev.ID, ann.ID}} {
			if err := tx.Groups().AddMember(m[0], m[1]); err != nil {
				return err
			}
		}
		for _, a := range [][2]int64{{org.ID, ann.ID}, {org.ID, ann.ID}, {other.ID, ann.ID}, {org.ID, ben.ID}} {
			if err := tx.Orgs().AddAdmin(a[0], a[1]); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		g, err := tx.Groups().Get(org.ID, "dev")
		if err != nil {
			return err
		}
		diff(t, "Groups.Get", &dev, g)
		g, err = tx.Groups().GetByID(otherOps.ID)
		if err != nil {
			return err
		}
		diff(t, "Groups.GetByID", &otherOps, g)
		gs, err := tx.Groups().List(org.ID)
		if err != nil {
			return err
		}
		diff(t, "ListGroups(acme)", []store.Group{ops, dev}, gs)
		gs, err = tx.Groups().List(0)
		if err != nil {
			return err
		}
		diff(t, "ListGroups(0)", []store.Group{ops, dev, otherOps}, gs)
		us, err := tx.Groups().Members(ops.ID)
		if err != nil {
			return err
		}
		diff(t, "ListGroupMembers(ops), ann added twice", []store.User{*ann, *ben}, us)
		gs, err = tx.Groups().OfUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "ListGroupsOfUser(ann)", []store.Group{ops, dev}, gs)
		us, err = tx.Orgs().Admins(org.ID)
		if err != nil {
			return err
		}
		diff(t, "ListOrgAdmins(acme)", []store.User{*ann, *ben}, us)
		os, err := tx.Orgs().AdministeredBy(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "ListOrgsAdministeredBy(ann)", []store.Org{org, other}, os)
		_, err = tx.Groups().Get(org.ID, "nope")
		wantKind(t, "GetGroup of a missing name", err, errdefs.ErrNotFound, "nope")
		return nil
	})
	for _, c := range []struct {
		what string
		kind error
		fn   func(tx store.Tx) error
	}{
		{"CreateGroup with a taken name", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Groups().Create(&store.Group{OrgID: org.ID, Name: "ops"}) }},
		{"CreateGroup in a missing organization", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Groups().Create(&store.Group{OrgID: 987654, Name: "x"}) }},
		{"AddGroupMember of a missing user", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Groups().AddMember(ops.ID, 987654) }},
		{"AddGroupMember to a missing group", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Groups().AddMember(987654, ann.ID) }},
		{"RemoveGroupMember of a non-member", errdefs.ErrNotFound, func(tx store.Tx) error { return tx.Groups().RemoveMember(dev.ID, ben.ID) }},
		{"AddOrgAdmin of a missing organization", errdefs.ErrConflict, func(tx store.Tx) error { return tx.Orgs().AddAdmin(987654, ann.ID) }},
		{"RemoveOrgAdmin of a non-admin", errdefs.ErrNotFound, func(tx store.Tx) error { return tx.Orgs().RemoveAdmin(other.ID, ben.ID) }},
		{"DeleteGroup of a missing id", errdefs.ErrNotFound, func(tx store.Tx) error { return tx.Groups().Delete(987654) }},
	} {
		wantKind(t, c.what, s.Update(ctx, c.fn), c.kind)
	}
	update(t, s, func(tx store.Tx) error {
		if err := tx.Groups().RemoveMember(ops.ID, ann.ID); err != nil {
			return err
		}
		if err := tx.Orgs().RemoveAdmin(org.ID, ann.ID); err != nil {
			return err
		}
		return tx.Groups().Delete(dev.ID)
	})
	view(t, s, func(tx store.Tx) error {
		gs, err := tx.Groups().OfUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "groups of ann after RemoveGroupMember and DeleteGroup", []store.Group(nil), gs)
		os, err := tx.Orgs().AdministeredBy(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "organizations of ann after RemoveOrgAdmin", []store.Org{other}, os)
		return nil
	})
	// An organization's groups and administrators go with it.
	update(t, s, func(tx store.Tx) error { return tx.Orgs().Delete(other.ID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Groups().GetByID(otherOps.ID)
		wantKind(t, "GetGroupByID after DeleteOrg", err, errdefs.ErrNotFound)
		os, err := tx.Orgs().AdministeredBy(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "organizations of ann after DeleteOrg", []store.Org(nil), os)
		return nil
	})
}

func testMemberships(t *testing.T, s store.Store) {
	ctx := context.Background()
	var w1, w2 *store.Workspace
	var ann, ben *store.User
	update(t, s, func(tx store.Tx) error {
		org := mustOrg(t, tx, "acme")
		w1, w2 = mustWorkspace(t, tx, org.ID, "one", store.WorkspaceShared), mustWorkspace(t, tx, org.ID, "two", store.WorkspacePrivate)
		ann, ben = mustUser(t, tx, "ann"), mustUser(t, tx, "ben")
		for _, m := range []store.Membership{
			{UserID: ann.ID, WorkspaceID: w2.ID, Role: "viewer"},
			{UserID: ann.ID, WorkspaceID: w1.ID, Role: "author"},
			{UserID: ben.ID, WorkspaceID: w1.ID, Role: "user"},
			{UserID: ann.ID, WorkspaceID: w2.ID, Role: "admin"}, // replaces viewer
		} {
			if err := tx.Memberships().Put(&m); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		ms, err := tx.Memberships().OfUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "ListMembershipsOfUser(ann): one row per pair, last role", []store.Membership{
			{UserID: ann.ID, WorkspaceID: w1.ID, Role: "author"}, {UserID: ann.ID, WorkspaceID: w2.ID, Role: "admin"}}, ms)
		ms, err = tx.Memberships().OfWorkspace(w1.ID)
		if err != nil {
			return err
		}
		diff(t, "ListMembershipsOfWorkspace(one)", []store.Membership{
			{UserID: ann.ID, WorkspaceID: w1.ID, Role: "author"}, {UserID: ben.ID, WorkspaceID: w1.ID, Role: "user"}}, ms)
		m, err := tx.Memberships().Get(ben.ID, w1.ID)
		if err != nil {
			return err
		}
		diff(t, "Memberships.Get", &store.Membership{UserID: ben.ID, WorkspaceID: w1.ID, Role: "user"}, m)
		_, err = tx.Memberships().Get(ben.ID, w2.ID)
		wantKind(t, "GetMembership of a non-member", err, errdefs.ErrNotFound)
		return nil
	})
	for _, c := range []struct {
		what string
		kind error
		m    store.Membership
	}{
		{"PutMembership without a role", errdefs.ErrInvalid, store.Membership{UserID: ann.ID, WorkspaceID: w1.ID}},
		{"PutMembership of a missing user", errdefs.ErrConflict, store.Membership{UserID: 987654, WorkspaceID: w1.ID, Role: "user"}},
		{"PutMembership in a missing workspace", errdefs.ErrConflict, store.Membership{UserID: ann.ID, WorkspaceID: 987654, Role: "user"}},
	} {
		wantKind(t, c.what, s.Update(ctx, func(tx store.Tx) error { return tx.Memberships().Put(&c.m) }), c.kind)
	}
	update(t, s, func(tx store.Tx) error { return tx.Memberships().Delete(ann.ID, w1.ID) })
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Memberships().Delete(ann.ID, w1.ID) })
	wantKind(t, "DeleteMembership of a non-member", err, errdefs.ErrNotFound)
	view(t, s, func(tx store.Tx) error {
		ms, err := tx.Memberships().OfUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "memberships after DeleteMembership", []store.Membership{{UserID: ann.ID, WorkspaceID: w2.ID, Role: "admin"}}, ms)
		return nil
	})
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	var ann, ben *store.User
	var ws *store.Workspace
	var full, session, expired, never store.Token
	before := time.Now()
	update(t, s, func(tx store.Tx) error {
		ann, ben = mustUser(t, tx, "ann"), mustUser(t, tx, "ben")
		ws = mustWorkspace(t, tx, mustOrg(t, tx, "acme").ID, "team", store.WorkspaceShared)
		full = store.Token{ID: "t-full", UserID: ann.ID, Hash: []byte{0, 1, 2, 255}, Kind: store.TokenAPI, Name: "ci",
			CreatedAt: someTime, ExpiresAt: future, LastUsedAt: someTime.Add(time.Minute),
			RestrictWorkspaceID: ws.ID, RestrictRole: "viewer"}
		session = store.Token{ID: "t-session", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenSession, ExpiresAt: future}
		expired = store.Token{ID: "t-expired", UserID: ben.ID, Hash: []byte("h"), Kind: store.TokenSession, ExpiresAt: past}
		never = store.Token{ID: "t-never", UserID: ben.ID, Hash: []byte("h"), Kind: store.TokenAPI}
		for _, tk := range []*store.Token{&full, &session, &expired, &never} {
			if err := tx.Tokens().Create(tk); err != nil {
				return err
			}
		}
		return nil
	})
	checkStamped(t, "token CreatedAt", session.CreatedAt, before, time.Now())
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Tokens().Get("t-full")
		if err != nil {
			return err
		}
		diff(t, "GetToken (every field)", &full, got)
		got, err = tx.Tokens().Get("t-never")
		if err != nil {
			return err
		}
		diff(t, "GetToken (no expiry, no restriction)", &never, got)
		ts, err := tx.Tokens().List(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "ListTokens(ann), by CreatedAt", []store.Token{full, session}, ts)
		_, err = tx.Tokens().Get("nope")
		wantKind(t, "GetToken of a missing id", err, errdefs.ErrNotFound)
		return nil
	})
	for _, c := range []struct {
		what string
		kind error
		tk   store.Token
	}{
		{"CreateToken with a taken id", errdefs.ErrConflict, store.Token{ID: "t-full", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenAPI}},
		{"CreateToken without an id", errdefs.ErrInvalid, store.Token{UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenAPI}},
		{"CreateToken without a hash", errdefs.ErrInvalid, store.Token{ID: "x", UserID: ann.ID, Kind: store.TokenAPI}},
		{"CreateToken of a bad kind", errdefs.ErrInvalid, store.Token{ID: "x", UserID: ann.ID, Hash: []byte("h"), Kind: "magic"}},
		{"CreateToken of a missing user", errdefs.ErrConflict, store.Token{ID: "x", UserID: 987654, Hash: []byte("h"), Kind: store.TokenAPI}},
		{"CreateToken restricted to a missing workspace", errdefs.ErrConflict, store.Token{ID: "x", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenAPI, RestrictWorkspaceID: 987654}},
	} {
		wantKind(t, c.what, s.Update(ctx, func(tx store.Tx) error { return tx.Tokens().Create(&c.tk) }), c.kind)
	}

	// Revoking keeps the first time; touching sets the last use.
	first, second := someTime.Add(time.Hour), someTime.Add(2*time.Hour)
	update(t, s, func(tx store.Tx) error {
		if err := tx.Tokens().Revoke("t-session", first); err != nil {
			return err
		}
		if err := tx.Tokens().Revoke("t-session", second); err != nil {
			return err
		}
		return tx.Tokens().Touch("t-never", second)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Tokens().Get("t-session")
		if err != nil {
			return err
		}
		if !got.RevokedAt.Equal(first) {
			t.Errorf("RevokedAt after two revocations = %v, want the first %v", got.RevokedAt, first)
		}
		got, err = tx.Tokens().Get("t-never")
		if err != nil {
			return err
		}
		if !got.LastUsedAt.Equal(second) {
			t.Errorf("LastUsedAt after TouchToken = %v, want %v", got.LastUsedAt, second)
		}
		return nil
	})
	wantKind(t, "RevokeToken of a missing id", s.Update(ctx, func(tx store.Tx) error { return tx.Tokens().Revoke("nope", first) }), errdefs.ErrNotFound)
	wantKind(t, "TouchToken of a missing id", s.Update(ctx, func(tx store.Tx) error { return tx.Tokens().Touch("nope", first) }), errdefs.ErrNotFound)

	// Only tokens with an expiry at or before now go.
	var deleted int64
	update(t, s, func(tx store.Tx) error {
		var err error
		deleted, err = tx.Tokens().DeleteExpired(time.Now())
		return err
	})
	if deleted != 1 {
		t.Errorf("DeleteExpiredTokens deleted %d, want 1", deleted)
	}
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Tokens().Get("t-expired")
		wantKind(t, "GetToken of a deleted expired token", err, errdefs.ErrNotFound)
		for _, id := range []string{"t-full", "t-session", "t-never"} {
			if _, err := tx.Tokens().Get(id); err != nil {
				t.Errorf("DeleteExpiredTokens deleted %s: %v", id, err)
			}
		}
		return nil
	})

	// A token restricted to a workspace does not outlive it.
	update(t, s, func(tx store.Tx) error { return tx.Workspaces().Delete(ws.ID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Tokens().Get("t-full")
		wantKind(t, "GetToken restricted to a deleted workspace", err, errdefs.ErrNotFound)
		return nil
	})

	// A console link names its configuration and VM, and goes with the
	// configuration.
	var link store.Token
	update(t, s, func(tx store.Tx) error {
		c := store.Config{Name: "linked", State: store.StateUndeployed}
		if err := tx.Configs().Create(&c); err != nil {
			return err
		}
		link = store.Token{ID: "t-link", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenConsole, Name: "console of linked/vm1",
			CreatedAt: someTime, ExpiresAt: future, ConsoleConfigID: c.ID, ConsoleVM: "vm1"}
		return tx.Tokens().Create(&link)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Tokens().Get("t-link")
		if err != nil {
			return err
		}
		diff(t, "GetToken of a console link", &link, got)
		return nil
	})
	for _, c := range []struct {
		what string
		kind error
		tk   store.Token
	}{
		{"a console token without its VM", errdefs.ErrInvalid, store.Token{ID: "x", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenConsole, ConsoleConfigID: link.ConsoleConfigID}},
		{"an API token naming a VM", errdefs.ErrInvalid, store.Token{ID: "x", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenAPI, ConsoleConfigID: link.ConsoleConfigID, ConsoleVM: "vm1"}},
		{"a console token of a missing configuration", errdefs.ErrConflict, store.Token{ID: "x", UserID: ann.ID, Hash: []byte("h"), Kind: store.TokenConsole, ConsoleConfigID: 987654, ConsoleVM: "vm1"}},
	} {
		wantKind(t, c.what, s.Update(ctx, func(tx store.Tx) error { return tx.Tokens().Create(&c.tk) }), c.kind)
	}
	update(t, s, func(tx store.Tx) error { return tx.Configs().Delete(link.ConsoleConfigID) })
	view(t, s, func(tx store.Tx) error {
		_, err := tx.Tokens().Get("t-link")
		wantKind(t, "GetToken of the link of a deleted configuration", err, errdefs.ErrNotFound)
		return nil
	})
}

func testShares(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ann, ben *store.User
	var grp store.Group
	var c store.Config
	var n store.Network
	var first, byGroup, onNet store.Share
	update(t, s, func(tx store.Tx) error {
		org := mustOrg(t, tx, "acme")
		ann, ben = mustUser(t, tx, "ann"), mustUser(t, tx, "ben")
		grp = store.Group{OrgID: org.ID, Name: "ops"}
		if err := tx.Groups().Create(&grp); err != nil {
			return err
		}
		c = store.Config{Name: "web", State: store.StateUndeployed}
		if err := tx.Configs().Create(&c); err != nil {
			return err
		}
		n = store.Network{Name: "lan"}
		if err := tx.Networks().Create(&n); err != nil {
			return err
		}
		first = store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: ann.ID, Level: store.ShareRead, CreatedAt: someTime}
		byGroup = store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, GroupID: grp.ID, Level: store.ShareConsole}
		onNet = store.Share{ObjectKind: store.ObjectNetwork, ObjectID: n.ID, UserID: ann.ID, Level: store.ShareFull}
		for _, sh := range []*store.Share{&first, &byGroup, &onNet} {
			if err := tx.Shares().Put(sh); err != nil {
				return err
			}
		}
		return nil
	})
	// Putting the share again replaces its level and keeps its id.
	again := store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: ann.ID, Level: store.ShareChange}
	update(t, s, func(tx store.Tx) error { return tx.Shares().Put(&again) })
	if again.ID != first.ID || !again.CreatedAt.Equal(someTime) {
		t.Errorf("PutShare of an existing share: id %d created %v, want id %d created %v", again.ID, again.CreatedAt, first.ID, someTime)
	}
	first.Level = store.ShareChange
	view(t, s, func(tx store.Tx) error {
		ss, err := tx.Shares().Of(store.ObjectConfig, c.ID)
		if err != nil {
			return err
		}
		diff(t, "ListSharesOf(web)", []store.Share{first, byGroup}, ss)
		ss, err = tx.Shares().ToUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "ListSharesToUser(ann)", []store.Share{first, onNet}, ss)
		ss, err = tx.Shares().ToGroup(grp.ID)
		if err != nil {
			return err
		}
		diff(t, "ListSharesToGroup(ops)", []store.Share{byGroup}, ss)
		return nil
	})
	for _, c := range []struct {
		what string
		kind error
		sh   store.Share
	}{
		{"PutShare of a bad level", errdefs.ErrInvalid, store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: ben.ID, Level: "owner"}},
		{"PutShare of a bad kind", errdefs.ErrInvalid, store.Share{ObjectKind: "vm", ObjectID: c.ID, UserID: ben.ID, Level: store.ShareRead}},
		{"PutShare with two grantees", errdefs.ErrInvalid, store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: ben.ID, GroupID: grp.ID, Level: store.ShareRead}},
		{"PutShare with no grantee", errdefs.ErrInvalid, store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, Level: store.ShareRead}},
		{"PutShare of a missing object", errdefs.ErrConflict, store.Share{ObjectKind: store.ObjectTemplate, ObjectID: 987654, UserID: ben.ID, Level: store.ShareRead}},
		{"PutShare with a missing user", errdefs.ErrConflict, store.Share{ObjectKind: store.ObjectConfig, ObjectID: c.ID, UserID: 987654, Level: store.ShareRead}},
	} {
		wantKind(t, c.what, s.Update(ctx, func(tx store.Tx) error { return tx.Shares().Put(&c.sh) }), c.kind)
	}
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Shares().Remove(store.ObjectConfig, c.ID, ben.ID, 0) })
	wantKind(t, "RemoveShare of a share that is not there", err, errdefs.ErrNotFound)
	err = s.Update(ctx, func(tx store.Tx) error { return tx.Shares().Remove(store.ObjectConfig, c.ID, 0, 0) })
	wantKind(t, "RemoveShare with no grantee", err, errdefs.ErrInvalid)

	update(t, s, func(tx store.Tx) error { return tx.Shares().Remove(store.ObjectConfig, c.ID, 0, grp.ID) })
	view(t, s, func(tx store.Tx) error {
		ss, err := tx.Shares().Of(store.ObjectConfig, c.ID)
		if err != nil {
			return err
		}
		diff(t, "shares of web after RemoveShare", []store.Share{first}, ss)
		return nil
	})
	// Deleting the object deletes its shares.
	update(t, s, func(tx store.Tx) error {
		if err := tx.Configs().Delete(c.ID); err != nil {
			return err
		}
		return tx.Networks().Delete(n.ID)
	})
	view(t, s, func(tx store.Tx) error {
		ss, err := tx.Shares().ToUser(ann.ID)
		if err != nil {
			return err
		}
		diff(t, "shares after their objects were deleted", []store.Share(nil), ss)
		return nil
	})
}

func testQuotas(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newConfigFixture(t, s) // layers of 1 GiB
	var ann, ben *store.User
	var ws, other *store.Workspace
	update(t, s, func(tx store.Tx) error {
		org := mustOrg(t, tx, "acme")
		ann, ben = mustUser(t, tx, "ann"), mustUser(t, tx, "ben")
		ws, other = mustWorkspace(t, tx, org.ID, "team", store.WorkspaceShared), mustWorkspace(t, tx, org.ID, "other", store.WorkspaceShared)
		vm := func(name string, cpus, mem int, layers ...int) store.VM {
			v := store.VM{Name: name, CPUs: cpus, MemoryMiB: mem, State: store.StateUndeployed}
			for i, l := range layers {
				v.Disks = append(v.Disks, store.Disk{Index: i, TopLayerID: f.layers[l].ID})
			}
			return v
		}
		for _, c := range []store.Config{
			// ann's, in team: 3 stored VMs (one in the library), 2 deployed.
			{Name: "up", State: store.StateDeployed, WorkspaceID: ws.ID, OwnerID: ann.ID, VMs: []store.VM{vm("a", 2, 512, 1), vm("b", 1, 256, 2, 3)}},
			{Name: "down", State: store.StateUndeployed, WorkspaceID: ws.ID, OwnerID: ann.ID, Kind: store.KindLibrary, VMs: []store.VM{vm("c", 4, 1024, 4)}},
			// ben's, in team, failed: stored, not deployed.
			{Name: "broken", State: store.StateFailed, WorkspaceID: ws.ID, OwnerID: ben.ID, VMs: []store.VM{vm("d", 8, 4096, 5)}},
			// ann's, in the other workspace, undeploying: deployed.
			{Name: "going", State: store.StateUndeploying, WorkspaceID: other.ID, OwnerID: ann.ID, VMs: []store.VM{vm("e", 1, 128)}},
		} {
			if err := tx.Configs().Create(&c); err != nil {
				return err
			}
		}
		return tx.Archives().Create(&store.Archive{Name: "old", Dir: "a-1", Manifest: []byte("{}"), Size: 1 << 29, WorkspaceID: ws.ID, OwnerID: ben.ID})
	})
	view(t, s, func(tx store.Tx) error {
		for _, c := range []struct {
			scope string
			id    int64
			want  store.QuotaUsage
		}{
			{store.QuotaScopeUser, ann.ID, store.QuotaUsage{StoredVMs: 4, DeployedVMs: 3, VCPUs: 4, MemoryMiB: 896, DiskGiB: 4, DiskBytes: 4 << 30}},
			{store.QuotaScopeUser, ben.ID, store.QuotaUsage{StoredVMs: 1, DiskGiB: 2, DiskBytes: 1<<30 + 1<<29}},
			{store.QuotaScopeWorkspace, ws.ID, store.QuotaUsage{StoredVMs: 4, DeployedVMs: 2, VCPUs: 3, MemoryMiB: 768, DiskGiB: 6, DiskBytes: 5<<30 + 1<<29}},
			{store.QuotaScopeWorkspace, other.ID, store.QuotaUsage{StoredVMs: 1, DeployedVMs: 1, VCPUs: 1, MemoryMiB: 128}},
		} {
			got, err := tx.Quotas().Use(c.scope, c.id)
			if err != nil {
				return err
			}
			diff(t, fmt.Sprintf("QuotaUse(%s %d)", c.scope, c.id), c.want, got)
		}
		_, err := tx.Quotas().Use("org", 1)
		wantKind(t, "QuotaUse of a bad scope", err, errdefs.ErrInvalid)
		_, err = tx.Quotas().Get(store.QuotaScopeUser, ann.ID)
		wantKind(t, "GetQuota of a scope without one", err, errdefs.ErrNotFound)
		return nil
	})
	q := store.Quota{Scope: store.QuotaScopeWorkspace, ScopeID: ws.ID, StoredVMs: 10, DeployedVMs: 5, VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}
	update(t, s, func(tx store.Tx) error {
		if err := tx.Quotas().Set(&store.Quota{Scope: store.QuotaScopeWorkspace, ScopeID: ws.ID, StoredVMs: 1}); err != nil {
			return err
		}
		return tx.Quotas().Set(&q) // replaces
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Quotas().Get(store.QuotaScopeWorkspace, ws.ID)
		if err != nil {
			return err
		}
		diff(t, "GetQuota after two SetQuota", &q, got)
		return nil
	})
	for _, c := range []struct {
		what string
		kind error
		q    store.Quota
	}{
		{"SetQuota of a bad scope", errdefs.ErrInvalid, store.Quota{Scope: "org", ScopeID: 1}},
		{"SetQuota with a negative limit", errdefs.ErrInvalid, store.Quota{Scope: store.QuotaScopeUser, ScopeID: ann.ID, VCPUs: -1}},
		{"SetQuota of a missing user", errdefs.ErrConflict, store.Quota{Scope: store.QuotaScopeUser, ScopeID: 987654}},
	} {
		wantKind(t, c.what, s.Update(ctx, func(tx store.Tx) error { return tx.Quotas().Set(&c.q) }), c.kind)
	}
	update(t, s, func(tx store.Tx) error { return tx.Quotas().Delete(store.QuotaScopeWorkspace, ws.ID) })
	err := s.Update(ctx, func(tx store.Tx) error { return tx.Quotas().Delete(store.QuotaScopeWorkspace, ws.ID) })
	wantKind(t, "DeleteQuota of a scope without one", err, errdefs.ErrNotFound)
}

func testOwnership(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ann *store.User
	var ws, other *store.Workspace
	var tm store.Template
	var n store.Network
	var c store.Config
	var a store.Archive
	update(t, s, func(tx store.Tx) error {
		org := mustOrg(t, tx, "acme")
		ann = mustUser(t, tx, "ann")
		ws, other = mustWorkspace(t, tx, org.ID, "team", store.WorkspaceShared), mustWorkspace(t, tx, org.ID, "other", store.WorkspacePrivate)
		tm = store.Template{Name: "tmpl", CPUs: 1, MemoryMiB: 64, WorkspaceID: ws.ID, OwnerID: ann.ID}
		n = store.Network{Name: "lan", WorkspaceID: ws.ID}
		c = store.Config{Name: "web", State: store.StateUndeployed, OwnerID: ann.ID}
		a = store.Archive{Name: "arch", Dir: "a-1", Manifest: []byte("{}"), WorkspaceID: ws.ID, OwnerID: ann.ID}
		if err := tx.Templates().Create(&tm); err != nil {
			return err
		}
		if err := tx.Networks().Create(&n); err != nil {
			return err
		}
		if err := tx.Configs().Create(&c); err != nil {
			return err
		}
		return tx.Archives().Create(&a)
	})
	check := func(what string) {
		t.Helper()
		view(t, s, func(tx store.Tx) error {
			gt, err := tx.Templates().Get("tmpl")
			if err != nil {
				return err
			}
			diff(t, what+": template", &tm, gt)
			gn, err := tx.Networks().GetByID(n.ID)
			if err != nil {
				return err
			}
			diff(t, what+": network", &n, gn)
			gc, err := tx.Configs().Get("web")
			if err != nil {
				return err
			}
			diff(t, what+": configuration", &c, gc)
			as, err := tx.Archives().List()
			if err != nil {
				return err
			}
			diff(t, what+": archives", []store.Archive{a}, as)
			return nil
		})
	}
	check("Create*")
	update(t, s, func(tx store.Tx) error {
		for _, o := range []struct {
			kind    string
			id      int64
			ws, own int64
		}{
			{store.ObjectTemplate, tm.ID, other.ID, 0},
			{store.ObjectNetwork, n.ID, other.ID, ann.ID},
			{store.ObjectConfig, c.ID, ws.ID, 0},
			{store.ObjectArchive, a.ID, 0, 0},
		} {
			if err := tx.Objects().SetOwnership(o.kind, o.id, o.ws, o.own); err != nil {
				return err
			}
		}
		return nil
	})
	tm.WorkspaceID, tm.OwnerID = other.ID, 0
	n.WorkspaceID, n.OwnerID = other.ID, ann.ID
	c.WorkspaceID, c.OwnerID = ws.ID, 0
	a.WorkspaceID, a.OwnerID = 0, 0
	check("Objects.SetOwnership")

	// UpdateConfig leaves the placement alone.
	update(t, s, func(tx store.Tx) error {
		changed := c
		changed.WorkspaceID, changed.OwnerID = other.ID, ann.ID
		return tx.Configs().Update(&changed)
	})
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		if got.WorkspaceID != ws.ID || got.OwnerID != 0 {
			t.Errorf("UpdateConfig changed the placement: workspace %d owner %d", got.WorkspaceID, got.OwnerID)
		}
		return nil
	})

	for _, c := range []struct {
		what string
		kind error
		fn   func(tx store.Tx) error
	}{
		{"CreateTemplate in a missing workspace", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Templates().Create(&store.Template{Name: "x", WorkspaceID: 987654})
		}},
		{"CreateNetwork with a missing owner", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Networks().Create(&store.Network{Name: "x", OwnerID: 987654})
		}},
		{"CreateConfig in a missing workspace", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Configs().Create(&store.Config{Name: "x", State: store.StateUndeployed, WorkspaceID: 987654})
		}},
		{"CreateArchive with a missing owner", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Archives().Create(&store.Archive{Name: "x", Dir: "x", Manifest: []byte("{}"), OwnerID: 987654})
		}},
		{"SetOwnership to a missing workspace", errdefs.ErrConflict, func(tx store.Tx) error {
			return tx.Objects().SetOwnership(store.ObjectConfig, c.ID, 987654, 0)
		}},
		{"SetOwnership of a missing object", errdefs.ErrNotFound, func(tx store.Tx) error {
			return tx.Objects().SetOwnership(store.ObjectArchive, 987654, 0, 0)
		}},
		{"SetOwnership of a bad kind", errdefs.ErrInvalid, func(tx store.Tx) error {
			return tx.Objects().SetOwnership("vm", c.ID, 0, 0)
		}},
	} {
		wantKind(t, c.what, s.Update(ctx, c.fn), c.kind)
	}
}
