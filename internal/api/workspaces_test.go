package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/client"
	"stagehand/internal/store"
)

// authorInTwoWorkspaces makes, on a seeded lab, workspaces w1 and w2
// (shared, organization default) and user ann, an author in both, a
// viewer in default/main (where the seed's template and network are),
// with w1 her default workspace; it returns her token.
func authorInTwoWorkspaces(t *testing.T, l *apitest.Lab) string {
	t.Helper()
	ann := l.User(t, "ann", false)
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		main, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		if err := tx.Memberships().Put(&store.Membership{UserID: ann.ID, WorkspaceID: main.ID, Role: string(auth.RoleViewer)}); err != nil {
			return err
		}
		for _, name := range []string{"w1", "w2"} {
			ws := &store.Workspace{OrgID: org.ID, Name: name, Kind: store.WorkspaceShared}
			if err := tx.Workspaces().Create(ws); err != nil {
				return err
			}
			if err := tx.Memberships().Put(&store.Membership{UserID: ann.ID, WorkspaceID: ws.ID, Role: string(auth.RoleAuthor)}); err != nil {
				return err
			}
			if name == "w1" {
				ann.DefaultWorkspaceID = ws.ID
			}
		}
		return tx.Users().Update(ann)
	})
	if err != nil {
		t.Fatal(err)
	}
	return l.Token(t, "ann", apitest.TokenOptions{})
}

// as sends a request with tok and decodes a 2xx answer into out.
func as(t *testing.T, srv *httptest.Server, tok, method, path, body string, out any) (int, string) {
	t.Helper()
	status, _, b := sendAs(t, srv, method, path, body, map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
	if status/100 == 2 && out != nil {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return status, b
}

// TestCreatesNameTheirWorkspace: a user who is an author in w1 and w2
// creates a configuration in w2 by naming it: it is in w2 and hers; her
// default (w1) is where one naming none goes. Naming default/main, where
// she is a viewer, is 403 naming the role; an unknown workspace 404; a
// workspace in the query of a JSON create is refused (400), as is the
// body's field spelled twice: the gate decides on the workspace the
// handler uses, and nothing is made by a refused request. A clone goes to
// its source's workspace, or where --workspace says when she may create
// there; capture and checkout, archive and restore likewise. Lists take
// ?workspace=.
func TestCreatesNameTheirWorkspace(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	ann := authorInTwoWorkspaces(t, l)
	vms := `"vms":[{"name":"vm1","template":"tmpl","network":"lan"}]`

	var c wire.Config
	if status, b := as(t, srv, ann, http.MethodPost, "/api/v1/configs", `{"name":"c2","workspace":"w2",`+vms+`}`, &c); status != http.StatusCreated {
		t.Fatalf("create in w2: %d %s", status, b)
	}
	if c.Workspace != "w2" || c.Owner != "ann" {
		t.Errorf("c2: workspace %q, owner %q; want w2, ann", c.Workspace, c.Owner)
	}
	if status, b := as(t, srv, ann, http.MethodPost, "/api/v1/configs", `{"name":"c1",`+vms+`}`, &c); status != http.StatusCreated || c.Workspace != "w1" {
		t.Errorf("create naming no workspace: %d %s; want 201 in w1, her default", status, b)
	}

	refused := []struct {
		what, path, body string
		status           int
		says             string
	}{
		{"viewer in main", "/api/v1/configs", `{"name":"x1","workspace":"main",` + vms + `}`, http.StatusForbidden, "viewer"},
		{"viewer in main, org named", "/api/v1/configs", `{"name":"x2","workspace":"default/main",` + vms + `}`, http.StatusForbidden, "viewer"},
		{"unknown workspace", "/api/v1/configs", `{"name":"x3","workspace":"nope",` + vms + `}`, http.StatusNotFound, `workspace \"nope\" not found`},
		{"unknown organization", "/api/v1/configs", `{"name":"x4","workspace":"acme/w1",` + vms + `}`, http.StatusNotFound, "acme"},
		{"query says w1, body main", "/api/v1/configs?workspace=w1", `{"name":"x5","workspace":"main",` + vms + `}`, http.StatusBadRequest, "body"},
		{"query says main, body none", "/api/v1/configs?workspace=main", `{"name":"x6",` + vms + `}`, http.StatusBadRequest, "body"},
		{"field spelled twice", "/api/v1/configs", `{"name":"x7","workspace":"w1","Workspace":"main",` + vms + `}`, http.StatusBadRequest, "more than once"},
		{"clone into main", "/api/v1/configs/c2/clone", `{"name":"x8","workspace":"main"}`, http.StatusForbidden, "viewer"},
		{"clone into nowhere", "/api/v1/configs/c2/clone", `{"name":"x9","workspace":"nope"}`, http.StatusNotFound, "nope"},
		{"capture into main", "/api/v1/library", `{"config":"c2","name":"x10","workspace":"main"}`, http.StatusForbidden, "viewer"},
	}
	for _, r := range refused {
		status, b := as(t, srv, ann, http.MethodPost, r.path, r.body, nil)
		if status != r.status || !strings.Contains(b, r.says) {
			t.Errorf("%s: %d %s; want %d saying %q", r.what, status, strings.TrimSpace(b), r.status, r.says)
		}
	}
	cs, err := l.Configs.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if strings.HasPrefix(c.Name, "x") {
			t.Errorf("a refused request made %s in %s", c.Name, c.Workspace)
		}
	}

	for _, tc := range []struct{ name, body, want string }{
		{"c3", `{"name":"c3"}`, "w2"},                  // the source's, not her default
		{"c4", `{"name":"c4","workspace":"w1"}`, "w1"}, // elsewhere, where she may create
		{"c5", `{"name":"c5","mode":"full"}`, "w2"},    // a full clone too
		{"c6", `{"name":"c6","mode":"full","workspace":"w1"}`, "w1"},
	} {
		status, b := as(t, srv, ann, http.MethodPost, "/api/v1/configs/c2/clone", tc.body, nil)
		if status != http.StatusCreated && status != http.StatusAccepted {
			t.Fatalf("clone %s: %d %s", tc.name, status, b)
		}
		if status == http.StatusAccepted {
			var j wire.Job
			json.Unmarshal([]byte(b), &j)
			if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/jobs/"+j.ID+"/wait?timeout=60s", "", &j); status != http.StatusOK || j.State != wire.JobSucceeded {
				t.Fatalf("clone %s: job %d %s", tc.name, status, b)
			}
		}
		if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/configs/"+tc.name, "", &c); status != http.StatusOK || c.Workspace != tc.want || c.Owner != "ann" {
			t.Errorf("clone %s: %d %s; want in %s, owned by ann", tc.name, status, b, tc.want)
		}
	}

	// The library: an entry goes to its configuration's workspace or the
	// one named; a checkout to the entry's or the one named.
	for _, tc := range []struct{ path, body, get, want string }{
		{"/api/v1/library", `{"config":"c2","name":"e2"}`, "/api/v1/library/e2", "w2"},
		{"/api/v1/library", `{"config":"c2","name":"e1","workspace":"w1"}`, "/api/v1/library/e1", "w1"},
		{"/api/v1/library/e2/checkout", `{"name":"k2"}`, "/api/v1/configs/k2", "w2"},
		{"/api/v1/library/e2/checkout", `{"name":"k1","workspace":"w1"}`, "/api/v1/configs/k1", "w1"},
	} {
		if status, b := as(t, srv, ann, http.MethodPost, tc.path, tc.body, nil); status != http.StatusCreated {
			t.Fatalf("POST %s %s: %d %s", tc.path, tc.body, status, b)
		}
		if status, b := as(t, srv, ann, http.MethodGet, tc.get, "", &c); status != http.StatusOK || c.Workspace != tc.want || c.Owner != "ann" {
			t.Errorf("GET %s: %d %s; want in %s, owned by ann", tc.get, status, b, tc.want)
		}
	}

	var listed []wire.Config
	if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/configs?workspace=w2", "", &listed); status != http.StatusOK {
		t.Fatalf("list w2: %d %s", status, b)
	}
	var names []string
	for _, c := range listed {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if want := []string{"c2", "c3", "c5", "k2"}; !slices.Equal(names, want) {
		t.Errorf("configurations in w2: %q, want %q", names, want)
	}
	if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/library?workspace=default/w1", "", &listed); status != http.StatusOK || len(listed) != 1 || listed[0].Name != "e1" {
		t.Errorf("library in default/w1: %d %s; want e1 alone", status, b)
	}
	if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/configs?workspace=nope", "", nil); status != http.StatusNotFound {
		t.Errorf("list of an unknown workspace: %d %s; want 404", status, b)
	}

	// Archives: one goes where it is named, a restore to the archive's
	// workspace or the one named.
	wait := func(what, b string) {
		t.Helper()
		var j wire.Job
		json.Unmarshal([]byte(b), &j)
		if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/jobs/"+j.ID+"/wait?timeout=60s", "", &j); status != http.StatusOK || j.State != wire.JobSucceeded {
			t.Fatalf("%s: job %d %s", what, status, b)
		}
	}
	status, b := as(t, srv, ann, http.MethodPost, "/api/v1/archives", `{"config":"c2","name":"a1","workspace":"w1"}`, nil)
	if status != http.StatusAccepted {
		t.Fatalf("archive c2 into w1: %d %s", status, b)
	}
	wait("archive", b)
	var a wire.Archive
	if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/archives/a1", "", &a); status != http.StatusOK || a.Workspace != "w1" || a.Owner != "ann" {
		t.Errorf("archive a1: %d %s; want in w1, owned by ann", status, b)
	}
	if status, b := as(t, srv, ann, http.MethodPost, "/api/v1/archives/a1/restore", `{"name":"r1","workspace":"main"}`, nil); status != http.StatusForbidden {
		t.Errorf("restore into main: %d %s; want 403", status, b)
	}
	for _, tc := range []struct{ body, name, want string }{
		{`{"name":"r1"}`, "r1", "w1"},
		{`{"name":"r2","workspace":"w2"}`, "r2", "w2"},
	} {
		status, b := as(t, srv, ann, http.MethodPost, "/api/v1/archives/a1/restore", tc.body, nil)
		if status != http.StatusAccepted {
			t.Fatalf("restore %s: %d %s", tc.body, status, b)
		}
		wait("restore", b)
		if status, b := as(t, srv, ann, http.MethodGet, "/api/v1/configs/"+tc.name, "", &c); status != http.StatusOK || c.Workspace != tc.want {
			t.Errorf("restored %s: %d %s; want in %s", tc.name, status, b, tc.want)
		}
	}
}

// TestObjectsShowTheirWorkspace: a network and a template made in a
// workspace show it and their owner, and so do their lists (the JSON of
// the CLI's -o json); the upload names its workspace in the query.
func TestObjectsShowTheirWorkspace(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	authorInTwoWorkspaces(t, l)
	admin := l.AdminToken(t)
	var n wire.Network
	if status, b := as(t, srv, admin, http.MethodPost, "/api/v1/networks", `{"name":"n2","subnet":"10.9.0.0/24","pools":["10.9.0.10-10.9.0.20"],"workspace":"w2"}`, &n); status != http.StatusCreated || n.Workspace != "w2" || n.Owner != "admin" {
		t.Fatalf("network in w2: %d %s", status, b)
	}
	var ns []wire.Network
	if status, b := as(t, srv, admin, http.MethodGet, "/api/v1/networks?workspace=w2", "", &ns); status != http.StatusOK || len(ns) != 1 || ns[0].Name != "n2" || ns[0].Workspace != "w2" || ns[0].Owner != "admin" {
		t.Errorf("networks of w2: %d %s", status, b)
	}
	up, err := client.New(srv.URL, client.WithToken(admin)).Templates().Upload(context.Background(),
		client.TemplateUpload{Name: "t2", Disks: []string{l.Image(t, "t2.qcow2", 1<<20)}, Workspace: "w2"})
	if err != nil || up.Workspace != "w2" || up.Owner != "admin" {
		t.Fatalf("upload into w2: %+v, %v", up, err)
	}
	var ts []wire.Template
	status, b := as(t, srv, admin, http.MethodGet, "/api/v1/templates", "", &ts)
	in := map[string]string{}
	for _, x := range ts {
		in[x.Name] = x.Workspace
	}
	if status != http.StatusOK || len(ts) != 2 || in["tmpl"] != "main" || in["t2"] != "w2" {
		t.Errorf("templates: %d %s; want tmpl in main, t2 in w2", status, b)
	}
	if status, b := as(t, srv, admin, http.MethodGet, "/api/v1/templates?workspace=w2", "", &ts); status != http.StatusOK || len(ts) != 1 || ts[0].Name != "t2" {
		t.Errorf("templates of w2: %d %s; want t2", status, b)
	}
}
