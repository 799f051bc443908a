package auth

import (
	"fmt"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
)

// The world of the Decide tests: organization 1 has workspaces 10 (shared)
// and 11 (private); organization 2 has workspace 20 (shared).
const (
	org1, org2             = 1, 2
	wsShared, wsPriv, ws20 = 10, 11, 20
	group100               = 100
)

var (
	alice = persona{Actor{UserID: 1, Name: "alice"}, map[int64]Role{wsShared: RoleAuthor, wsPriv: RoleAuthor}, nil}
	bob   = persona{Actor{UserID: 2, Name: "bob"}, map[int64]Role{wsShared: RoleUser, wsPriv: RoleUser}, nil}
	carol = persona{Actor{UserID: 3, Name: "carol"}, map[int64]Role{wsShared: RoleViewer}, nil}
	dave  = persona{Actor{UserID: 4, Name: "dave"}, map[int64]Role{ws20: RoleAuthor}, []int64{group100}}
	erin  = persona{Actor{UserID: 5, Name: "erin", OrgAdminOf: []int64{org1}}, nil, nil}
	root  = persona{Actor{UserID: 6, Name: "root", SystemAdmin: true}, nil, nil}
	gina  = persona{Actor{UserID: 7, Name: "gina"}, map[int64]Role{wsPriv: RoleConsoleOnly}, nil}
	henry = persona{Actor{UserID: 8, Name: "henry"}, map[int64]Role{wsPriv: RoleAdmin}, nil}
	// ivan owns a configuration in workspace 10 but is no longer a member.
	ivan = persona{Actor{UserID: 9, Name: "ivan"}, map[int64]Role{ws20: RoleUser}, nil}
)

type persona struct {
	actor  Actor
	member map[int64]Role
	groups []int64
}

// restricted returns p acting through a token restricted to ws and role.
func (p persona) restricted(ws int64, role Role) persona {
	p.actor.Restrict = &Restriction{WorkspaceID: ws, MaxRole: role}
	return p
}

func cfg(name string, ws, org, owner int64, shares ...Share) Object {
	return Object{Kind: "config", Name: name, ID: int64(len(name)) + 1000, WorkspaceID: ws, OrgID: org, OwnerID: owner, Shares: shares}
}

var (
	aWeb  = cfg("a-web", wsShared, org1, 1) // alice's, in the shared workspace
	aPriv = cfg("a-priv", wsPriv, org1, 1)  // alice's, in the private workspace
	dCfg  = cfg("d-cfg", ws20, org2, 4)     // dave's, in the other organization
	iOld  = cfg("i-old", wsShared, org1, 9) // ivan's, who left workspace 10
	wsObj = func(kind string, ws, org int64) Object { return Object{Kind: kind, WorkspaceID: ws, OrgID: org} }
)

func shareTo(o Object, s ...Share) Object { o.Shares = s; return o }

func kindOf(ws int64) WorkspaceKind {
	if ws == wsPriv {
		return WorkspacePrivate
	}
	return WorkspaceShared
}

func input(p persona, a Action, o Object) Input {
	return Input{Actor: p.actor, Action: a, Object: o, Memberships: p.member, Groups: p.groups, WorkspaceKind: kindOf(o.WorkspaceID)}
}

func TestDecide(t *testing.T) {
	const (
		allow     = "allow"
		forbidden = "403" // refused, visible
		notFound  = "404" // refused, invisible
	)
	for _, tc := range []struct {
		name   string
		who    persona
		action Action
		obj    Object
		want   string
		reason string // a part of Reason naming the row that decided
	}{
		// 1. the system administrator
		{"sysadmin deletes in another org", root, ConfigDelete, dCfg, allow, "system administrator"},
		{"sysadmin repairs", root, DoctorRepair, Object{}, allow, "system administrator"},
		{"sysadmin scrapes metrics", root, MetricsRead, Object{}, allow, "system administrator"},
		// 2. an organization's admin
		{"org admin deletes in a private workspace of their org", erin, ConfigDelete, aPriv, allow, "admin of organization 1"},
		{"org admin administers the org", erin, OrgAdmin, Object{Kind: "org", OrgID: org1}, allow, "admin of organization 1"},
		{"org admin of another org sees nothing", erin, ConfigRead, dCfg, notFound, "not a member of workspace 20 and no share"},
		{"org admin is not system admin", erin, DoctorRepair, Object{}, forbidden, "the rest is the system administrator's"},
		// 3. system-wide actions
		{"anyone reads status", bob, StatusRead, Object{}, allow, "status.read is open"},
		{"user may not repair", bob, DoctorRepair, Object{}, forbidden, "system administrator"},
		{"user may not scrape metrics", bob, MetricsRead, Object{}, forbidden, "system administrator"},
		{"org admin may not scrape metrics", erin, MetricsRead, Object{}, forbidden, "the rest is the system administrator's"},
		{"sysadmin drains a host", root, HostAdmin, Object{}, allow, "system administrator"},
		{"user may not list hosts", bob, HostRead, Object{}, forbidden, "system administrator"},
		{"org admin may not drain a host", erin, HostAdmin, Object{}, forbidden, "the rest is the system administrator's"},
		{"user may not administer users", bob, UserAdmin, Object{Kind: "user", Name: "carol", ID: 3}, forbidden, "system administrator"},
		{"member is not org admin", bob, OrgAdmin, Object{Kind: "org", OrgID: org1}, forbidden, "not an admin of organization 1"},
		// 4. the workspace itself: create and list
		{"user creates a configuration", bob, ConfigCreate, wsObj("config", wsShared, org1), allow, "role user in workspace 10"},
		{"user may not create a template", bob, TemplateCreate, wsObj("template", wsShared, org1), forbidden, "role user in workspace 10"},
		{"viewer lists", carol, ConfigRead, wsObj("config", wsShared, org1), allow, "role viewer in workspace 10"},
		{"outsider may not list", dave, ConfigRead, wsObj("config", wsShared, org1), notFound, "not a member of workspace 10"},
		{"workspace admin adds members", henry, WorkspaceAdmin, wsObj("workspace", wsPriv, org1), allow, "role admin in workspace 11"},
		{"user may not add members", bob, WorkspaceAdmin, wsObj("workspace", wsPriv, org1), forbidden, "role user in workspace 11"},
		// 5. objects, members
		{"owner deletes own in private", alice, ConfigDelete, aPriv, allow, "owner, role author in workspace 11"},
		{"owner's role still bounds", bob, ConfigEdit, cfg("b-own", wsPriv, org1, 2), forbidden, "owner, role user"},
		{"shared workspace: another's, role decides", bob, ConfigDeploy, aWeb, allow, "role user in shared workspace 10"},
		{"shared workspace: role refuses edit", bob, ConfigEdit, aWeb, forbidden, "role user in shared workspace 10"},
		{"viewer reads", carol, ConfigRead, aWeb, allow, "role viewer in shared workspace 10"},
		{"viewer may not delete", carol, ConfigDelete, aWeb, forbidden, "role viewer"},
		{"private: another's, no share, invisible", bob, ConfigRead, aPriv, notFound, "private workspace 11: not the owner and no share"},
		{"private: read share reads", bob, ConfigRead, shareTo(aPriv, Share{UserID: 2, Level: ShareRead}), allow, "role user in private workspace 11 ∩ share read with user"},
		{"private: read share does not deploy", bob, ConfigDeploy, shareTo(aPriv, Share{UserID: 2, Level: ShareRead}), forbidden, "share read with user"},
		{"private: change share deploys", bob, ConfigDeploy, shareTo(aPriv, Share{UserID: 2, Level: ShareChange}), allow, "share change with user"},
		{"private: full share cannot exceed role", bob, ConfigEdit, shareTo(aPriv, Share{UserID: 2, Level: ShareFull}), forbidden, "role user in private workspace 11 ∩ share full"},
		{"private: workspace admin, another's", henry, ConfigDelete, aPriv, allow, "role admin in workspace 11"},
		{"private: console-only with console share", gina, ConfigConsole, shareTo(aPriv, Share{UserID: 7, Level: ShareConsole}), allow, "role console-only in private workspace 11 ∩ share console"},
		{"private: console share does not power", gina, ConfigPower, shareTo(aPriv, Share{UserID: 7, Level: ShareFull}), forbidden, "role console-only"},
		{"share to someone else does not count", bob, ConfigRead, shareTo(aPriv, Share{UserID: 7, Level: ShareFull}), notFound, "no share"},
		{"two shares: the one that grants is named", bob, ConfigDeploy,
			shareTo(aPriv, Share{UserID: 2, Level: ShareRead}, Share{GroupID: 55, Level: ShareFull}, Share{UserID: 2, Level: ShareChange}), allow, "share change with user"},
		// 6. objects, outsiders
		{"outsider without share", dave, ConfigRead, aWeb, notFound, "not a member of workspace 10 and no share"},
		{"outsider reads through a group share", dave, ConfigRead, shareTo(aWeb, Share{GroupID: group100, Level: ShareFull}), allow, "share full with group 100, outside its workspace at most read"},
		{"outsider: full share is still read", dave, ConfigDeploy, shareTo(aWeb, Share{GroupID: group100, Level: ShareFull}), forbidden, "at most read"},
		{"outsider: clone is not read", dave, ConfigClone, shareTo(aWeb, Share{UserID: 4, Level: ShareChange}), forbidden, "at most read"},
		{"owner who left sees nothing", ivan, ConfigRead, iOld, notFound, "not a member of workspace 10 and no share"},
		// restricted tokens
		{"restricted: reads in its workspace", alice.restricted(wsShared, RoleViewer), ConfigRead, aWeb, allow, "token restricted to role viewer"},
		{"restricted: no more than its role", alice.restricted(wsShared, RoleViewer), ConfigDelete, aWeb, forbidden, "owner, role author in workspace 10; token restricted to role viewer"},
		{"restricted: nothing outside its workspace", alice.restricted(wsShared, RoleAdmin), ConfigRead, aPriv, notFound, "token restricted to workspace 10, the object is in workspace 11"},
		{"restricted: cannot raise the owner's role", alice.restricted(wsShared, RoleAdmin), TemplateCreate, wsObj("template", wsShared, org1), forbidden, "role author in workspace 10"},
		{"restricted sysadmin: inside, role row", root.restricted(wsShared, RoleUser), ConfigDeploy, aWeb, allow, "system administrator; token restricted to role user"},
		{"restricted sysadmin: inside, beyond role", root.restricted(wsShared, RoleUser), ConfigEdit, aWeb, forbidden, "token restricted to role user"},
		{"restricted sysadmin: other workspace", root.restricted(wsShared, RoleAdmin), ConfigRead, dCfg, notFound, "token restricted to workspace 10"},
		{"restricted sysadmin: no system actions", root.restricted(wsShared, RoleAdmin), DoctorRepair, Object{}, forbidden, "token restricted to role admin in workspace 10"},
		{"restricted sysadmin: no metrics", root.restricted(wsShared, RoleAdmin), MetricsRead, Object{}, forbidden, "token restricted to role admin in workspace 10"},
		{"restricted sysadmin: no hosts", root.restricted(wsShared, RoleAdmin), HostAdmin, Object{}, forbidden, "token restricted to role admin in workspace 10"},
		{"restricted: status still answers", bob.restricted(wsShared, RoleViewer), StatusRead, Object{}, allow, "token restricted"},
		{"restricted org admin: no org actions", erin.restricted(wsShared, RoleAdmin), OrgAdmin, Object{Kind: "org", OrgID: org1}, forbidden, "token restricted"},
		// odd inputs
		{"unknown action", root, Action("config.*"), aWeb, forbidden, `unknown action "config.*"`},
		{"user id 0 matches no share and owns nothing", persona{Actor{}, map[int64]Role{wsPriv: RoleUser}, nil}, ConfigRead,
			cfg("zero", wsPriv, org1, 0, Share{UserID: 0, Level: ShareFull}), notFound, "no share"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(input(tc.who, tc.action, tc.obj))
			got := allow
			switch {
			case !d.Allowed && d.Visible:
				got = forbidden
			case !d.Allowed:
				got = notFound
			}
			if got != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = %s, %q\nwant %s, reason containing %q", got, d.Reason, tc.want, tc.reason)
			}
			if !strings.Contains(d.Reason, string(tc.action)) {
				t.Errorf("reason %q does not name the action", d.Reason)
			}
			err := d.Err()
			wantKind := map[string]error{allow: nil, forbidden: errdefs.ErrForbidden, notFound: errdefs.ErrNotFound}[tc.want]
			if errdefs.Kind(err) != wantKind || (err == nil) != (wantKind == nil) {
				t.Fatalf("Err() = %v, want kind %v", err, wantKind)
			}
			// A 404 says nothing of why: no share, role, membership or restriction.
			if msg := fmt.Sprint(err); tc.want == notFound && (strings.ContainsAny(msg, ":;∩") ||
				strings.Contains(msg, "share") || strings.Contains(msg, "member") || strings.Contains(msg, "token")) {
				t.Errorf("the not-found error %q tells why", err)
			}
		})
	}
}

// TestDecideInvariants enumerates personas × actions × objects × shares
// and checks the rules that must hold whatever the tables say.
func TestDecideInvariants(t *testing.T) {
	people := []persona{alice, bob, carol, dave, erin, gina, henry, ivan,
		alice.restricted(wsShared, RoleViewer), bob.restricted(wsPriv, RoleAdmin), henry.restricted(wsPriv, RoleConsoleOnly)}
	var objects []Object
	for _, base := range []Object{aWeb, aPriv, dCfg, iOld, cfg("h-own", wsPriv, org1, 8)} {
		objects = append(objects, base)
		for _, l := range ShareLevels() {
			objects = append(objects, shareTo(base, Share{UserID: 2, Level: l}), shareTo(base, Share{GroupID: group100, Level: l}),
				shareTo(base, Share{UserID: 7, Level: l}))
		}
	}
	for _, ws := range []int64{wsShared, wsPriv, ws20} {
		objects = append(objects, wsObj("config", ws, map[int64]int64{wsShared: org1, wsPriv: org1, ws20: org2}[ws]))
	}
	n := 0
	for _, p := range people {
		for _, o := range objects {
			for _, a := range Actions() {
				in := input(p, a, o)
				d := Decide(in)
				n++
				where := fmt.Sprintf("%s %s %s: %s", p.actor.Name, a, subject(&o), d.Reason)
				if d.Allowed && !d.Visible {
					t.Fatalf("allowed but invisible: %s", where)
				}
				role, member := p.member[o.WorkspaceID]
				orgAdmin := len(p.actor.OrgAdminOf) > 0 && p.actor.OrgAdminOf[0] == o.OrgID
				if r := p.actor.Restrict; r != nil {
					if d.Allowed && (!r.MaxRole.Allows(a) || o.WorkspaceID != r.WorkspaceID) {
						t.Fatalf("a restricted token exceeds its restriction: %s", where)
					}
					free := in
					free.Actor.Restrict = nil
					if d.Allowed && !Decide(free).Allowed {
						t.Fatalf("a restricted token exceeds its owner: %s", where)
					}
					continue
				}
				if orgAdmin {
					if !d.Allowed {
						t.Fatalf("org admin refused in their org: %s", where)
					}
					continue
				}
				if !member && d.Allowed && !readSet.has(a) {
					t.Fatalf("an outsider may do more than read: %s", where)
				}
				if member && d.Allowed && !role.Allows(a) {
					t.Fatalf("a member exceeds their role: %s", where)
				}
				if !member && len(o.Shares) == 0 && d.Visible {
					t.Fatalf("an outsider sees an unshared object: %s", where)
				}
				if member && o.ID != 0 && kindOf(o.WorkspaceID) == WorkspacePrivate && role != RoleAdmin &&
					o.OwnerID != p.actor.UserID && len(o.Shares) == 0 && d.Visible {
					t.Fatalf("a private object is visible to a member without a share: %s", where)
				}
			}
		}
	}
	t.Logf("%d decisions checked", n)
}
