package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/auth"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// The authorization matrix: every route of the table × every persona ×
// the objects of the route's kind, over real HTTP against the real lab on
// a temporary SQLite store. The expected answer of each cell is computed
// by auth.Decide from inputs this test builds from its own fixture (not
// from access.Checker's loading), and ~20 cells are also written out by
// hand, so the oracle itself is checked. A refused request must leave the
// lab as it was.

// persona is who asks.
type persona struct {
	name  string
	token string
	// expect401 for no credentials, an expired or a revoked token.
	expect401 bool
	actor     auth.Actor
	members   map[int64]auth.Role
	defaultWS int64
}

// fixtureObject is an object of the fixture, as Decide sees it.
type fixtureObject struct {
	label string // own, member, w2, share-read, …
	kind  string // template, network, config, library, archive, job
	name  string // what the path names (a job's id)
	obj   auth.Object
}

type matrix struct {
	t        *testing.T
	l        *apitest.Lab
	srv      *httptest.Server
	orgDef   int64
	orgOther int64
	ws       map[string]*store.Workspace // "main", "w1", "w2", "other/o1"
	users    map[string]*store.User
	personas []*persona
	objects  map[string][]fixtureObject // by kind; configs also by persona (own)
	own      map[string]fixtureObject   // persona → their own configuration
	kinds    map[int64]auth.WorkspaceKind
	orgOf    map[int64]int64
	// remake makes an object of the fixture again (same name, workspace,
	// owner and shares) after an allowed delete.
	remake map[string]func()
}

var roles = []auth.Role{auth.RoleAdmin, auth.RoleTemplateCreator, auth.RoleAuthor, auth.RoleUser, auth.RoleConsoleOnly, auth.RoleViewer}

func (m *matrix) update(fn func(tx store.Tx) error) {
	m.t.Helper()
	if err := m.l.Store().Update(context.Background(), fn); err != nil {
		m.t.Fatal(err)
	}
}

// setup builds organizations default (workspaces main, w1 private, w2
// shared) and other (o1 shared), the personas' users and tokens, and the
// objects.
func newMatrix(t *testing.T) *matrix {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	m := &matrix{t: t, l: l, srv: srv, ws: map[string]*store.Workspace{}, users: map[string]*store.User{},
		objects: map[string][]fixtureObject{}, own: map[string]fixtureObject{},
		kinds: map[int64]auth.WorkspaceKind{}, orgOf: map[int64]int64{}, remake: map[string]func(){}}
	m.update(func(tx store.Tx) error {
		def, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		m.orgDef = def.ID
		if m.ws["main"], err = tx.Workspaces().Get(def.ID, store.MainWorkspace); err != nil {
			return err
		}
		// The host the system's host routes name (fillObject's "x").
		if err := tx.Hosts().Register(&store.Host{Name: "x", AdvertiseURL: "http://127.0.0.1:1"}); err != nil {
			return err
		}
		other := &store.Org{Name: "other"}
		if err := tx.Orgs().Create(other); err != nil {
			return err
		}
		m.orgOther = other.ID
		for _, w := range []struct {
			key  string
			org  int64
			kind string
		}{{"w1", def.ID, store.WorkspacePrivate}, {"w2", def.ID, store.WorkspaceShared}, {"other/o1", other.ID, store.WorkspaceShared}} {
			name := w.key[strings.LastIndex(w.key, "/")+1:]
			ws := &store.Workspace{OrgID: w.org, Name: name, Kind: w.kind}
			if err := tx.Workspaces().Create(ws); err != nil {
				return err
			}
			m.ws[w.key] = ws
		}
		return nil
	})
	for _, ws := range m.ws {
		m.kinds[ws.ID], m.orgOf[ws.ID] = auth.WorkspaceKind(ws.Kind), ws.OrgID
	}
	w1, w2, o1 := m.ws["w1"].ID, m.ws["w2"].ID, m.ws["other/o1"].ID

	// Personas.
	add := func(name string, sys bool, members map[int64]auth.Role, def int64, orgAdmin bool) *persona {
		u := l.User(t, name, sys)
		m.update(func(tx store.Tx) error {
			for ws, r := range members {
				if err := tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws, Role: string(r)}); err != nil {
					return err
				}
			}
			if orgAdmin {
				if err := tx.Orgs().AddAdmin(m.orgDef, u.ID); err != nil {
					return err
				}
			}
			u.DefaultWorkspaceID = def
			return tx.Users().Update(u)
		})
		m.users[name] = u
		p := &persona{name: name, token: l.Token(t, name, apitest.TokenOptions{}), members: members, defaultWS: def,
			actor: auth.Actor{UserID: u.ID, Name: name, SystemAdmin: sys}}
		if orgAdmin {
			p.actor.OrgAdminOf = []int64{m.orgDef}
		}
		m.personas = append(m.personas, p)
		return p
	}
	add("sysadmin", true, nil, 0, false)
	add("orgadmin", false, nil, 0, true)
	for _, r := range roles {
		add("r-"+string(r), false, map[int64]auth.Role{w1: r}, w1, false)
	}
	add("w2user", false, map[int64]auth.Role{w2: auth.RoleAuthor}, w2, false)
	add("otherorg", false, map[int64]auth.Role{o1: auth.RoleAuthor}, o1, false)
	author := m.users["r-author"]
	restricted := &persona{name: "restricted", token: l.Token(t, "r-author", apitest.TokenOptions{Workspace: w1, Role: string(auth.RoleViewer)}),
		members: map[int64]auth.Role{w1: auth.RoleAuthor}, defaultWS: w1,
		actor: auth.Actor{UserID: author.ID, Name: "r-author", Restrict: &auth.Restriction{WorkspaceID: w1, MaxRole: auth.RoleViewer}}}
	m.personas = append(m.personas, restricted,
		&persona{name: "none", expect401: true},
		&persona{name: "expired", expect401: true, token: l.Token(t, "r-author", apitest.TokenOptions{Expires: time.Now().Add(-time.Hour)})},
		&persona{name: "revoked", expect401: true, token: l.Token(t, "r-author", apitest.TokenOptions{Revoked: true})})

	m.makeObjects()
	return m
}

// place moves an object to a workspace and owner.
func (m *matrix) place(kind string, id, ws, owner int64) {
	m.update(func(tx store.Tx) error { return tx.Objects().SetOwnership(kind, id, ws, owner) })
}

func (m *matrix) configID(name string) int64 {
	var id int64
	m.l.Store().View(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err == nil {
			id = c.ID
		}
		return err
	})
	if id == 0 {
		m.t.Fatalf("no configuration %s", name)
	}
	return id
}

// makeObjects makes, as the system, the objects of each kind in w1, w2
// and o1 (and configurations shared with every persona's user).
func (m *matrix) makeObjects() {
	t, ctx := m.t, context.Background()
	w1, w2, o1 := m.ws["w1"].ID, m.ws["w2"].ID, m.ws["other/o1"].ID
	owners := map[int64]int64{w1: m.users["r-author"].ID, w2: m.users["w2user"].ID, o1: m.users["otherorg"].ID}
	labels := map[int64]string{w1: "w1-member", w2: "w2", o1: "other-org"}
	wsName := map[int64]string{w1: "w1", w2: "w2", o1: "other/o1"}
	object := func(kind, name string, id, ws, owner int64, shares []auth.Share) auth.Object {
		return auth.Object{Kind: kind, Name: name, ID: id, WorkspaceID: ws, OrgID: m.orgOf[ws], OwnerID: owner, Shares: shares}
	}
	for i, ws := range []int64{w1, w2, o1} {
		tname, nname := fmt.Sprintf("t-%d", i), fmt.Sprintf("n-%d", i)
		img := m.l.Image(t, fmt.Sprintf("t%d.qcow2", i), 1<<20)
		makeTemplate := func() int64 {
			if _, err := m.l.Templates.Import(ctx, lab.TemplateSpec{Name: tname, Disks: []string{img}, Workspace: wsName[ws]}); err != nil {
				t.Fatal(err)
			}
			var tid int64
			m.l.Store().View(ctx, func(tx store.Tx) error { tt, err := tx.Templates().Get(tname); tid = tt.ID; return err })
			m.place(store.ObjectTemplate, tid, ws, owners[ws])
			return tid
		}
		m.remake[tname] = func() { makeTemplate() }
		m.objects["template"] = append(m.objects["template"], fixtureObject{labels[ws], "template", tname, object("template", tname, makeTemplate(), ws, owners[ws], nil)})

		makeNetwork := func() int64 {
			if _, err := m.l.Networks.Create(ctx, lab.NetworkSpec{Name: nname, Subnet: fmt.Sprintf("10.7%d.0.0/24", i), Pools: []string{fmt.Sprintf("10.7%d.0.10-10.7%d.0.20", i, i)}, Workspace: wsName[ws]}); err != nil {
				t.Fatal(err)
			}
			var nid int64
			m.l.Store().View(ctx, func(tx store.Tx) error { n, err := tx.Networks().Get(nname); nid = n.ID; return err })
			m.place(store.ObjectNetwork, nid, ws, owners[ws])
			return nid
		}
		m.remake[nname] = func() { makeNetwork() }
		m.objects["network"] = append(m.objects["network"], fixtureObject{labels[ws], "network", nname, object("network", nname, makeNetwork(), ws, owners[ws], nil)})
	}
	var newConfig func(name string, ws, owner int64, shares []auth.Share) auth.Object
	newConfig = func(name string, ws, owner int64, shares []auth.Share) auth.Object {
		m.remake[name] = func() { newConfig(name, ws, owner, shares) }
		if _, err := m.l.Configs.Create(ctx, lab.ConfigSpec{Name: name, VMs: []lab.VMSpec{{Name: "vm1", Template: "tmpl", Network: "lan"}}, Workspace: wsName[ws]}); err != nil {
			t.Fatal(err)
		}
		id := m.configID(name)
		m.place(store.ObjectConfig, id, ws, owner)
		m.update(func(tx store.Tx) error {
			for _, s := range shares {
				if err := tx.Shares().Put(&store.Share{ObjectKind: store.ObjectConfig, ObjectID: id, UserID: s.UserID, Level: string(s.Level)}); err != nil {
					return err
				}
			}
			return nil
		})
		return object("config", name, id, ws, owner, shares)
	}
	// Each persona's own configuration, in their home workspace (w1 for
	// the system and org admins).
	for _, p := range m.personas {
		if p.actor.UserID == 0 || p.name == "restricted" {
			continue
		}
		home := p.defaultWS
		if home == 0 {
			home = w1
		}
		name := "c-" + p.name
		m.own[p.name] = fixtureObject{"own", "config", name, newConfig(name, home, p.actor.UserID, nil)}
	}
	m.own["restricted"] = m.own["r-author"]
	m.objects["config"] = []fixtureObject{
		{"w1-member", "config", "c-r-author", m.own["r-author"].obj},
		{"w2", "config", "c-w2user", m.own["w2user"].obj},
		{"other-org", "config", "c-otherorg", m.own["otherorg"].obj},
	}
	for _, lvl := range []auth.ShareLevel{auth.ShareRead, auth.ShareChange, auth.ShareConsole} {
		var shares []auth.Share
		for _, p := range m.personas {
			if p.actor.UserID != 0 && p.name != "restricted" {
				shares = append(shares, auth.Share{UserID: p.actor.UserID, Level: lvl})
			}
		}
		name := "c-shared-" + string(lvl)
		m.objects["config"] = append(m.objects["config"], fixtureObject{"share-" + string(lvl), "config", name, newConfig(name, w2, owners[w2], shares)})
	}
	// Library entries and archives, captured and archived from a
	// configuration of each workspace; the archive job of w1's is the job.
	for i, ws := range []int64{w1, w2, o1} {
		src := newConfig(fmt.Sprintf("src-%d", i), ws, owners[ws], nil)
		lname, aname := fmt.Sprintf("lib-%d", i), fmt.Sprintf("arc-%d", i)
		capture := func() int64 {
			if _, err := m.l.Library.Capture(ctx, src.Name, lname, lab.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			lid := m.configID(lname)
			m.place(store.ObjectConfig, lid, ws, owners[ws])
			return lid
		}
		m.remake[lname] = func() { capture() }
		m.objects["library"] = append(m.objects["library"], fixtureObject{labels[ws], "library", lname, object("library", lname, capture(), ws, owners[ws], nil)})

		archive := func() (string, int64) {
			j, err := m.l.Archives.StartCreate(ctx, src.Name, aname, lab.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			j, err = m.l.Jobs().Wait(wctx, j.ID)
			cancel()
			if err != nil || j.State != "succeeded" {
				t.Fatalf("archive job: %+v %v", j, err)
			}
			var aid int64
			m.l.Store().View(ctx, func(tx store.Tx) error { a, err := tx.Archives().Get(aname); aid = a.ID; return err })
			m.place(store.ObjectArchive, aid, ws, owners[ws])
			return j.ID, aid
		}
		m.remake[aname] = func() { archive() }
		jobID, aid := archive()
		m.objects["archive"] = append(m.objects["archive"], fixtureObject{labels[ws], "archive", aname, object("archive", aname, aid, ws, owners[ws], nil)})
		jo := object("job", jobID, aid, ws, owners[ws], nil)
		m.objects["job"] = append(m.objects["job"], fixtureObject{labels[ws], "job", jobID, jo})
	}
}

// cell is one request of the matrix.
type cell struct {
	route      api.RouteInfo
	persona    *persona
	target     string // the object's or workspace's label
	targetName string // the object's name, "" for none
	method     string
	path       string
	body       string
	// oracle: the status class Decide predicts: 0 allowed (anything but
	// 401, 403, 404), else 401, 403 or 404.
	want   int
	reason string
}

func (m *matrix) input(p *persona, action auth.Action, obj auth.Object) auth.Input {
	in := auth.Input{Actor: p.actor, Action: action, Object: obj, Memberships: p.members}
	if obj.WorkspaceID != 0 {
		in.WorkspaceKind = m.kinds[obj.WorkspaceID]
	}
	return in
}

func expect(d auth.Decision) int {
	switch {
	case d.Allowed:
		return 0
	case !d.Visible:
		return http.StatusNotFound
	default:
		return http.StatusForbidden
	}
}

// fillObject returns the path of pattern with the object name in its object
// parameter and the fixture's names elsewhere.
func fillObject(pattern, param, name string) (string, string) {
	method, path, _ := strings.Cut(pattern, " ")
	path = pathParam.ReplaceAllStringFunc(path, func(p string) string {
		switch p {
		case "{" + param + "}":
			return url.PathEscape(name)
		case "{vm}":
			return "vm1"
		case "{disk}", "{nic}":
			return "0"
		case "{org}":
			return "default"
		default:
			return "x"
		}
	})
	return method, path
}

// cells enumerates the matrix.
func (m *matrix) cells(routes []api.RouteInfo) []cell {
	var out []cell
	probe := `"__authz_probe":1` // an unknown field: an allowed request is refused by its handler's decode, after the gate
	for _, ri := range routes {
		if ri.Public {
			continue
		}
		kind, verb, _ := strings.Cut(string(ri.Action), ".")
		for _, p := range m.personas {
			addCell := func(target, name, method, path, body string, decide func() (int, string)) {
				c := cell{route: ri, persona: p, target: target, targetName: name, method: method, path: path, body: body}
				switch {
				case p.expect401:
					c.want = http.StatusUnauthorized
				case decide == nil:
					c.want = 0
				default:
					c.want, c.reason = decide()
				}
				out = append(out, c)
			}
			body := ""
			if m, _, _ := strings.Cut(ri.Pattern, " "); m != http.MethodGet && m != http.MethodDelete {
				body = "{" + probe + "}"
			}
			switch {
			case ri.Filtered:
				// Decided item by item by the lab: every caller is
				// answered with what they may see (events_test.go,
				// the lab's cleanup tests).
				method, path := fillObject(ri.Pattern, "", "")
				addCell("filtered", "", method, path, body, nil)
			case api.DirectoryKinds[ri.Kind] || ri.Kind == "" && (kind == "user" || kind == "org" || kind == "workspace"):
				// Decided by the directory's handlers: only who is
				// authenticated is the gate's.
				method, path := fillObject(ri.Pattern, ri.Param, "x")
				if p.expect401 || p.name == "sysadmin" {
					addCell("directory", "x", method, path, body, nil)
				}
			case ri.Param != "" || ri.Body != "":
				objs := m.objects[ri.Kind]
				if ri.Kind == "config" {
					if own, ok := m.own[p.name]; ok {
						objs = append([]fixtureObject{own}, objs...)
					}
				}
				for _, o := range objs {
					method, path := fillObject(ri.Pattern, ri.Param, o.name)
					b := body
					if ri.Body != "" {
						b = fmt.Sprintf(`{%q:%q,%s}`, ri.Body, o.name, probe)
					}
					obj := o.obj
					addCell(o.label, o.name, method, path, b, func() (int, string) {
						d := auth.Decide(m.input(p, ri.Action, obj))
						return expect(d), d.Reason
					})
				}
			case objectKinds[kind]:
				for _, ws := range []string{"", "w1", "w2", "other/o1"} {
					method, path := fillObject(ri.Pattern, "", "")
					b := body
					// A list and an upload name the workspace in the
					// query, a JSON create in its body (routes.go).
					switch {
					case ws == "":
					case verb == "read" || strings.HasSuffix(path, "/upload"):
						path += "?workspace=" + url.QueryEscape(ws)
					default:
						b = fmt.Sprintf(`{"workspace":%q,%s}`, ws, probe)
					}
					if verb == "read" && ws == "" {
						addCell("list", "", method, path, body, nil) // the lab filters it
						continue
					}
					wsID := p.defaultWS
					if ws != "" {
						wsID = m.ws[ws].ID
					} else if wsID == 0 {
						wsID = m.ws["main"].ID
					}
					obj := auth.Object{Kind: kind, WorkspaceID: wsID, OrgID: m.orgOf[wsID]}
					label := ws
					if label == "" {
						label = "default-ws"
					}
					addCell(label, "", method, path, b, func() (int, string) {
						d := auth.Decide(m.input(p, ri.Action, obj))
						return expect(d), d.Reason
					})
				}
			default: // the system
				method, path := fillObject(ri.Pattern, "", "")
				addCell("system", "", method, path, body, func() (int, string) {
					d := auth.Decide(m.input(p, ri.Action, auth.Object{}))
					return expect(d), d.Reason
				})
			}
		}
	}
	return out
}

var objectKinds = map[string]bool{"template": true, "network": true, "config": true, "library": true, "archive": true, "job": true}

// snapshot is what a refused request must not change.
func (m *matrix) snapshot() string {
	ctx := context.Background()
	var b strings.Builder
	cs, _ := m.l.Configs.List(ctx)
	for _, c := range cs {
		fmt.Fprintf(&b, "config %s %s %v|", c.Name, c.State, c.Lease.StorageExpires)
	}
	ls, _ := m.l.Library.List(ctx)
	for _, c := range ls {
		fmt.Fprintf(&b, "library %s|", c.Name)
	}
	ts, _ := m.l.Templates.List(ctx)
	for _, x := range ts {
		fmt.Fprintf(&b, "template %s|", x.Name)
	}
	ns, _ := m.l.Networks.List(ctx)
	for _, x := range ns {
		fmt.Fprintf(&b, "network %s %d|", x.Name, x.PoolUsed)
	}
	as, _ := m.l.Archives.List(ctx)
	for _, x := range as {
		fmt.Fprintf(&b, "archive %s %v|", x.Name, x.Lease.StorageExpires)
	}
	js := m.l.Jobs().List()
	sort.Slice(js, func(i, j int) bool { return js[i].ID < js[j].ID })
	for _, j := range js {
		fmt.Fprintf(&b, "job %s %s|", j.ID, j.State)
	}
	return b.String()
}

// settle waits for the running jobs to end.
func (m *matrix) settle() {
	for _, j := range m.l.Jobs().List() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		m.l.Jobs().Wait(ctx, j.ID)
		cancel()
	}
}

func (m *matrix) do(c cell) (int, string) {
	hdr := map[string]string{"Content-Type": "application/json"}
	if c.persona.token != "" {
		hdr["Authorization"] = "Bearer " + c.persona.token
	}
	status, _, body := sendAs(m.t, m.srv, c.method, c.path, c.body, hdr)
	return status, body
}

// TestAuthorizationMatrix runs the matrix.
func TestAuthorizationMatrix(t *testing.T) {
	m := newMatrix(t)
	_, h := apitest.ServeStrict(t, m.l)
	routes := h.Routes()
	cells := m.cells(routes)

	// The oracle, checked by hand on key cells: route, persona, target → status.
	handTable := []struct {
		pattern, persona, target string
		want                     int
	}{
		{"GET /api/v1/configs/{name}", "r-viewer", "w1-member", http.StatusNotFound},             // private w1: someone else's, no share
		{"GET /api/v1/configs/{name}", "r-admin", "w1-member", 0},                                // the workspace's admin sees all of it
		{"DELETE /api/v1/configs/{name}", "r-viewer", "own", http.StatusForbidden},               // own, but a viewer deletes nothing
		{"DELETE /api/v1/configs/{name}", "r-user", "own", 0},                                    // a user deletes their own
		{"POST /api/v1/configs/{name}/lease", "r-user", "own", http.StatusForbidden},             // config.edit is not a user's
		{"POST /api/v1/configs/{name}/lease", "r-author", "own", 0},                              // an author's
		{"GET /api/v1/configs/{name}", "w2user", "w1-member", http.StatusNotFound},               // another workspace
		{"GET /api/v1/configs/{name}", "otherorg", "w2", http.StatusNotFound},                    // another organization
		{"GET /api/v1/configs/{name}", "r-user", "share-read", 0},                                // outside w2, read through a share
		{"POST /api/v1/configs/{name}/deploy", "r-author", "share-change", http.StatusForbidden}, // outside its workspace at most read
		{"GET /api/v1/configs/{name}/vms/{vm}/console", "r-author", "share-console", http.StatusForbidden},
		{"GET /api/v1/configs/{name}", "orgadmin", "w2", 0},                          // org admin: everything in the org
		{"GET /api/v1/configs/{name}", "orgadmin", "other-org", http.StatusNotFound}, // not the other org
		{"DELETE /api/v1/configs/{name}", "sysadmin", "other-org", 0},
		{"GET /api/v1/configs/{name}", "restricted", "own", 0},                          // viewer in w1 reads
		{"DELETE /api/v1/configs/{name}", "restricted", "own", http.StatusForbidden},    // not beyond viewer
		{"GET /api/v1/configs/{name}", "restricted", "share-read", http.StatusNotFound}, // nothing outside w1
		{"POST /api/v1/templates", "r-author", "w1", http.StatusForbidden},              // authors make no templates
		{"POST /api/v1/templates", "r-template-creator", "w1", 0},
		{"POST /api/v1/configs", "r-user", "w2", http.StatusNotFound},     // not a member of w2
		{"GET /api/v1/doctor", "r-admin", "system", http.StatusForbidden}, // the system administrator's
		{"GET /api/v1/status", "r-viewer", "system", 0},
		{"POST /api/v1/library", "r-user", "own", http.StatusForbidden}, // capture is an author's
		{"POST /api/v1/archives", "r-author", "own", 0},
		{"GET /api/v1/jobs/{id}", "r-viewer", "w1-member", http.StatusNotFound}, // the job's archive is not theirs to see
		{"GET /api/v1/jobs/{id}", "r-admin", "w1-member", 0},
		{"GET /api/v1/configs", "none", "list", http.StatusUnauthorized},
		{"GET /api/v1/configs/{name}", "expired", "w1-member", http.StatusUnauthorized},
		{"DELETE /api/v1/configs/{name}", "revoked", "w1-member", http.StatusUnauthorized},
	}
	for _, hc := range handTable {
		found := false
		for _, c := range cells {
			if c.route.Pattern == hc.pattern && c.persona.name == hc.persona && c.target == hc.target {
				found = true
				if c.want != hc.want {
					t.Errorf("oracle: %s by %s on %s predicts %d, the hand table %d (%s)", hc.pattern, hc.persona, hc.target, c.want, hc.want, c.reason)
				}
			}
		}
		if !found {
			t.Errorf("hand table: no cell %s by %s on %s", hc.pattern, hc.persona, hc.target)
		}
	}

	covered := map[string]map[string]bool{}
	before := m.snapshot()
	counts := map[int]int{}
	for _, c := range cells {
		if covered[c.route.Pattern] == nil {
			covered[c.route.Pattern] = map[string]bool{}
		}
		covered[c.route.Pattern][c.persona.name] = true
		status, body := m.do(c)
		counts[c.want]++
		// A 404 refuses only when it is the target's: an allowed request
		// may still name something else that is not there (a user "x").
		refused := status == http.StatusUnauthorized || status == http.StatusForbidden ||
			status == http.StatusNotFound && c.target != "directory" && (strings.Contains(body, c.targetName+`\" not found`) || strings.Contains(body, "workspace"))
		switch {
		case c.want == 0 && refused:
			t.Errorf("%s %s by %s on %s: %d %s; the policy allows it (%s)", c.method, c.path, c.persona.name, c.target, status, strings.TrimSpace(body), c.reason)
		case c.want != 0 && status != c.want:
			t.Errorf("%s %s by %s on %s: %d %s; want %d (%s)", c.method, c.path, c.persona.name, c.target, status, strings.TrimSpace(body), c.want, c.reason)
		}
		after := m.snapshot()
		if c.want != 0 && after != before {
			t.Errorf("%s %s by %s on %s was refused (%d) yet changed the lab:\n before %s\n after  %s", c.method, c.path, c.persona.name, c.target, status, before, after)
		}
		if after != before && c.method == http.MethodDelete && c.want == 0 {
			// An allowed delete did its work: the object is made again
			// (a new id, same name, workspace, owner and shares) so that
			// later cells find the fixture as it was.
			name, _ := url.PathUnescape(c.path[strings.LastIndex(c.path, "/")+1:])
			remake := m.remake[name]
			if remake == nil {
				t.Fatalf("%s deleted %s, which the fixture cannot make again", c.path, name)
			}
			remake()
			after = m.snapshot()
		} else if after != before {
			// An allowed operation that takes no body (a consolidation)
			// starts a job: let it end before the next cell compares.
			m.settle()
			after = m.snapshot()
		}
		before = after
	}
	for _, ri := range routes {
		if ri.Public {
			continue
		}
		for _, p := range m.personas {
			if !covered[ri.Pattern][p.name] && !(api.DirectoryKinds[ri.Kind] || strings.HasPrefix(string(ri.Action), "user.") || strings.HasPrefix(string(ri.Action), "org.") || strings.HasPrefix(string(ri.Action), "workspace.")) {
				t.Errorf("%s: persona %s not covered", ri.Pattern, p.name)
			}
		}
		if len(covered[ri.Pattern]) == 0 {
			t.Errorf("%s: not covered", ri.Pattern)
		}
	}
	t.Logf("%d cells over %d routes and %d personas: %d expected allowed, %d 401, %d 403, %d 404",
		len(cells), len(routes), len(m.personas), counts[0], counts[401], counts[403], counts[404])

}
