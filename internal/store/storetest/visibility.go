package storetest

import (
	"fmt"
	"slices"
	"testing"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// visibleObject is one object of the visibility scenario: where it is, who
// owns it, and who it is shared with.
type visibleObject struct {
	name       string
	workspace  string // "" for none
	owner      string // "" for none (the system)
	shareUser  string
	shareGroup string
}

// The scenario: organization acme with workspaces team (shared), priv
// (private) and far (shared), organization globex with workspace ext
// (shared); vic is a member of team and priv and of group crew (acme),
// olga of team, priv and far; ada administers acme; sam is a system
// administrator.
var visibilityObjects = []visibleObject{
	{name: "team-olga", workspace: "team", owner: "olga"},                          // a shared workspace: every member
	{name: "priv-vic", workspace: "priv", owner: "vic"},                            // a private one: the owner
	{name: "priv-olga", workspace: "priv", owner: "olga"},                          // ... and not the other members
	{name: "priv-olga-shared", workspace: "priv", owner: "olga", shareUser: "vic"}, // ... unless shared with them
	{name: "far-olga", workspace: "far", owner: "olga"},                            // not a member: nothing
	{name: "far-crew", workspace: "far", owner: "olga", shareGroup: "crew"},        // ... unless shared with a group of theirs
	{name: "ext-shared", workspace: "ext", owner: "olga", shareUser: "vic"},        // a share crosses organizations
	{name: "ext", workspace: "ext", owner: "olga"},                                 // another organization: nothing
	{name: "nowhere", workspace: ""},                                               // in no workspace: system administrators only
	{name: "priv-system", workspace: "priv"},                                       // the system's, in a private workspace
	{name: "far-vic", workspace: "far", owner: "vic"},                              // owning is not enough outside one's workspaces
}

// wantVisible lists, for each viewer, the objects it sees, in creation order.
var wantVisible = map[string][]string{
	"vic":  {"team-olga", "priv-vic", "priv-olga-shared", "far-crew", "ext-shared"},
	"olga": {"team-olga", "priv-olga", "priv-olga-shared", "far-olga", "far-crew", "far-vic"},
	"ada":  {"team-olga", "priv-vic", "priv-olga", "priv-olga-shared", "far-olga", "far-crew", "priv-system", "far-vic"},
	"sam": {"team-olga", "priv-vic", "priv-olga", "priv-olga-shared", "far-olga", "far-crew", "ext-shared", "ext",
		"nowhere", "priv-system", "far-vic"},
	"nobody": nil,
	// vic's viewer narrowed to team (as a token restricted to it would
	// be): shares naming vic still count, those of vic's groups do not.
	"vic-in-team": {"team-olga", "priv-olga-shared", "ext-shared"},
}

// createObject makes an object of kind with a name, workspace and owner and
// returns its id. The configuration in team is a library entry: library
// entries are configurations, filtered alike.
func createObject(tx store.Tx, kind, name string, ws, owner int64) (int64, error) {
	switch kind {
	case store.ObjectConfig:
		c := store.Config{Name: name, State: store.StateUndeployed, WorkspaceID: ws, OwnerID: owner}
		if name == "team-olga" {
			c.Kind = store.KindLibrary
		}
		err := tx.Configs().Create(&c)
		return c.ID, err
	case store.ObjectTemplate:
		tm := store.Template{Name: name, CPUs: 1, MemoryMiB: 64, WorkspaceID: ws, OwnerID: owner}
		err := tx.Templates().Create(&tm)
		return tm.ID, err
	case store.ObjectNetwork:
		n := store.Network{Name: name, WorkspaceID: ws, OwnerID: owner}
		err := tx.Networks().Create(&n)
		return n.ID, err
	case store.ObjectArchive:
		a := store.Archive{Name: name, Dir: "dir-" + name, Manifest: []byte("{}"), WorkspaceID: ws, OwnerID: owner}
		err := tx.Archives().Create(&a)
		return a.ID, err
	}
	return 0, fmt.Errorf("unknown kind %q", kind)
}

// listVisible returns the names of the objects of kind that v sees.
func listVisible(tx store.Tx, kind string, v store.Viewer) ([]string, error) {
	var names []string
	switch kind {
	case store.ObjectConfig:
		cs, err := tx.Visible().Configs(v)
		for _, c := range cs {
			names = append(names, c.Name)
		}
		return names, err
	case store.ObjectTemplate:
		ts, err := tx.Visible().Templates(v)
		for _, t := range ts {
			names = append(names, t.Name)
		}
		return names, err
	case store.ObjectNetwork:
		ns, err := tx.Visible().Networks(v)
		for _, n := range ns {
			names = append(names, n.Name)
		}
		return names, err
	case store.ObjectArchive:
		as, err := tx.Visible().Archives(v)
		for _, a := range as {
			names = append(names, a.Name)
		}
		return names, err
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

func testVisibility(t *testing.T, s store.Store) {
	kinds := []string{store.ObjectConfig, store.ObjectTemplate, store.ObjectNetwork, store.ObjectArchive}
	users := map[string]*store.User{}
	wss := map[string]*store.Workspace{}
	ids := map[string]map[string]int64{} // kind -> name -> id
	var crew store.Group
	update(t, s, func(tx store.Tx) error {
		acme, globex := mustOrg(t, tx, "acme"), mustOrg(t, tx, "globex")
		wss["team"] = mustWorkspace(t, tx, acme.ID, "team", store.WorkspaceShared)
		wss["priv"] = mustWorkspace(t, tx, acme.ID, "priv", store.WorkspacePrivate)
		wss["far"] = mustWorkspace(t, tx, acme.ID, "far", store.WorkspaceShared)
		wss["ext"] = mustWorkspace(t, tx, globex.ID, "ext", store.WorkspaceShared)
		for _, name := range []string{"vic", "olga", "ada", "sam"} {
			users[name] = mustUser(t, tx, name)
		}
		users["sam"].SystemAdmin = true
		if err := tx.Users().Update(users["sam"]); err != nil {
			return err
		}
		for _, m := range []struct{ user, ws, role string }{
			{"vic", "team", "author"}, {"vic", "priv", "user"},
			{"olga", "team", "admin"}, {"olga", "priv", "author"}, {"olga", "far", "viewer"},
		} {
			if err := tx.Memberships().Put(&store.Membership{UserID: users[m.user].ID, WorkspaceID: wss[m.ws].ID, Role: m.role}); err != nil {
				return err
			}
		}
		crew = store.Group{OrgID: acme.ID, Name: "crew"}
		if err := tx.Groups().Create(&crew); err != nil {
			return err
		}
		if err := tx.Groups().AddMember(crew.ID, users["vic"].ID); err != nil {
			return err
		}
		if err := tx.Orgs().AddAdmin(acme.ID, users["ada"].ID); err != nil {
			return err
		}
		for _, kind := range kinds {
			ids[kind] = map[string]int64{}
			for _, o := range visibilityObjects {
				var ws, owner int64
				if o.workspace != "" {
					ws = wss[o.workspace].ID
				}
				if o.owner != "" {
					owner = users[o.owner].ID
				}
				id, err := createObject(tx, kind, o.name, ws, owner)
				if err != nil {
					return fmt.Errorf("%s %s: %w", kind, o.name, err)
				}
				ids[kind][o.name] = id
				sh := store.Share{ObjectKind: kind, ObjectID: id, Level: store.ShareRead}
				switch {
				case o.shareUser != "":
					sh.UserID = users[o.shareUser].ID
				case o.shareGroup != "":
					sh.GroupID, sh.Level = crew.ID, store.ShareConsole
				default:
					continue
				}
				if err := tx.Shares().Put(&sh); err != nil {
					return err
				}
			}
		}
		return nil
	})

	viewers := map[string]store.Viewer{"nobody": {}}
	view(t, s, func(tx store.Tx) error {
		for _, name := range []string{"vic", "olga", "ada", "sam"} {
			v, err := tx.Viewers().Load(users[name].ID)
			if err != nil {
				return err
			}
			viewers[name] = *v
		}
		_, err := tx.Viewers().Load(987654)
		wantKind(t, "LoadViewer of a missing user", err, errdefs.ErrNotFound)
		return nil
	})
	diff(t, "LoadViewer(vic)", store.Viewer{
		UserID: users["vic"].ID,
		Workspaces: []store.ViewerWorkspace{
			{ID: wss["team"].ID, OrgID: wss["team"].OrgID, Kind: store.WorkspaceShared, Role: "author"},
			{ID: wss["priv"].ID, OrgID: wss["priv"].OrgID, Kind: store.WorkspacePrivate, Role: "user"},
		},
		GroupIDs: []int64{crew.ID},
	}, viewers["vic"])
	diff(t, "LoadViewer(ada)", store.Viewer{UserID: users["ada"].ID, AdminOfOrgs: []int64{wss["team"].OrgID}}, viewers["ada"])
	diff(t, "LoadViewer(sam)", store.Viewer{UserID: users["sam"].ID, SystemAdmin: true}, viewers["sam"])

	// LoadViewerIn is LoadViewer with only the membership in one
	// workspace.
	view(t, s, func(tx store.Tx) error {
		for _, name := range []string{"vic", "olga", "ada", "sam"} {
			for _, wsName := range []string{"team", "priv", "far", "ext", ""} {
				var wsID int64
				if w := wss[wsName]; w != nil {
					wsID = w.ID
				}
				want := viewers[name]
				want.Workspaces = nil
				for _, w := range viewers[name].Workspaces {
					if w.ID == wsID {
						want.Workspaces = append(want.Workspaces, w)
					}
				}
				got, err := tx.Viewers().LoadIn(users[name].ID, wsID)
				if err != nil {
					return err
				}
				diff(t, fmt.Sprintf("LoadViewerIn(%s, %q)", name, wsName), want, *got)
			}
		}
		_, err := tx.Viewers().LoadIn(987654, wss["team"].ID)
		wantKind(t, "LoadViewerIn of a missing user", err, errdefs.ErrNotFound)

		// LoadAccess: ObjectRef, LoadViewerIn of the object's workspace and
		// the shares that name the user or one of its groups, at once.
		reached := 0
		for _, kind := range kinds {
			for _, o := range visibilityObjects {
				ref, err := tx.Objects().Ref(kind, o.name)
				if err != nil {
					return err
				}
				all, err := tx.Shares().Of(kind, ref.ID)
				if err != nil {
					return err
				}
				for _, name := range []string{"vic", "olga", "ada", "sam"} {
					v, err := tx.Viewers().LoadIn(users[name].ID, ref.WorkspaceID)
					if err != nil {
						return err
					}
					want := store.Access{Object: ref, Viewer: *v}
					for _, sh := range all {
						if sh.UserID == users[name].ID || sh.GroupID != 0 && slices.Contains(v.GroupIDs, sh.GroupID) {
							want.Shares = append(want.Shares, sh)
						}
					}
					reached += len(want.Shares)
					got, err := tx.Objects().Access(users[name].ID, kind, o.name)
					if err != nil {
						return err
					}
					diff(t, fmt.Sprintf("LoadAccess(%s, %s %s)", name, kind, o.name), want, *got)
				}
			}
			_, err := tx.Objects().Access(users["vic"].ID, kind, "missing")
			wantKind(t, "LoadAccess of a missing "+kind, err, errdefs.ErrNotFound, `"missing"`)
			_, err = tx.Objects().Access(987654, kind, "team-olga")
			wantKind(t, "LoadAccess of a missing user", err, errdefs.ErrNotFound, "987654")
		}
		// vic: priv-olga-shared, ext-shared (by name), far-crew (by group crew).
		if want := 3 * len(kinds); reached != want {
			t.Errorf("%d shares reach someone, want %d", reached, want)
		}
		_, err = tx.Objects().Access(users["vic"].ID, "vm", "team-olga")
		wantKind(t, "LoadAccess of kind vm", err, errdefs.ErrInvalid, `"vm"`)
		return nil
	})
	narrowed := viewers["vic"]
	narrowed.Workspaces, narrowed.GroupIDs = narrowed.Workspaces[:1], nil
	viewers["vic-in-team"] = narrowed

	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			view(t, s, func(tx store.Tx) error {
				for name, v := range viewers {
					got, err := listVisible(tx, kind, v)
					if err != nil {
						return err
					}
					diff(t, fmt.Sprintf("%ss visible to %s", kind, name), wantVisible[name], got)
					for _, o := range visibilityObjects {
						ok, err := tx.Objects().Visible(v, kind, ids[kind][o.name])
						if err != nil {
							return err
						}
						if want := slices.Contains(wantVisible[name], o.name); ok != want {
							t.Errorf("ObjectVisible(%s, %s %s) = %v, want %v", name, kind, o.name, ok, want)
						}
					}
					if ok, err := tx.Objects().Visible(v, kind, 987654); err != nil || ok {
						t.Errorf("ObjectVisible(%s, a missing %s) = %v, %v; want false", name, kind, ok, err)
					}
				}
				return nil
			})
		})
	}

	// ObjectRef finds each object by name with its workspace, the
	// workspace's organization and kind, and its owner; zeros for none.
	view(t, s, func(tx store.Tx) error {
		for _, kind := range kinds {
			for _, o := range visibilityObjects {
				want := store.ObjectRef{ID: ids[kind][o.name]}
				if w := wss[o.workspace]; w != nil {
					want.WorkspaceID, want.OrgID, want.WorkspaceKind = w.ID, w.OrgID, w.Kind
				}
				if o.owner != "" {
					want.OwnerID = users[o.owner].ID
				}
				got, err := tx.Objects().Ref(kind, o.name)
				if err != nil {
					t.Errorf("ObjectRef(%s, %s): %v", kind, o.name, err)
					continue
				}
				diff(t, fmt.Sprintf("ObjectRef(%s, %s)", kind, o.name), want, got)
			}
			_, err := tx.Objects().Ref(kind, "missing")
			wantKind(t, "ObjectRef of a missing "+kind, err, errdefs.ErrNotFound, `"missing"`)
		}
		_, err := tx.Objects().Ref("vm", "team-olga")
		wantKind(t, "ObjectRef of kind vm", err, errdefs.ErrInvalid, `"vm"`)
		return nil
	})
	// Names are per kind: a template's name is not a configuration's.
	update(t, s, func(tx store.Tx) error {
		return tx.Templates().Create(&store.Template{Name: "only-a-template", CPUs: 1, MemoryMiB: 64})
	})
	view(t, s, func(tx store.Tx) error {
		if _, err := tx.Objects().Ref(store.ObjectTemplate, "only-a-template"); err != nil {
			t.Errorf("ObjectRef(template, only-a-template): %v", err)
		}
		_, err := tx.Objects().Ref(store.ObjectConfig, "only-a-template")
		wantKind(t, "ObjectRef(config) of a template's name", err, errdefs.ErrNotFound)
		return nil
	})

	// The configurations come with their VMs, like ListConfigs.
	update(t, s, func(tx store.Tx) error {
		return tx.Configs().Create(&store.Config{Name: "with-vms", State: store.StateUndeployed, WorkspaceID: wss["team"].ID,
			VMs: []store.VM{{Name: "a", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed}, {Name: "b", CPUs: 1, MemoryMiB: 64, State: store.StateUndeployed}}})
	})
	view(t, s, func(tx store.Tx) error {
		for _, name := range []string{"vic", "sam"} {
			cs, err := tx.Visible().Configs(viewers[name])
			if err != nil {
				return err
			}
			all, err := tx.Configs().List()
			if err != nil {
				return err
			}
			want := all[slices.IndexFunc(all, func(c store.Config) bool { return c.Name == "with-vms" })]
			i := slices.IndexFunc(cs, func(c store.Config) bool { return c.Name == "with-vms" })
			if i < 0 {
				t.Fatalf("%s does not see with-vms", name)
			}
			diff(t, "ListConfigsVisible(with-vms) for "+name, want, cs[i])
		}
		return nil
	})
}
