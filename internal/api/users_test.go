package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/store"
)

// TestUpdateUser: PATCH /users/{name} changes the fields given and keeps
// the others; a user changes their own e-mail, display name and default
// workspace (one they are a member of), not whether they are disabled or
// a system administrator, and nobody else's record (404); a restricted
// token changes nothing; the system administrator changes anyone's but
// cannot disable or unmake themselves; disabling a user refuses their
// token and their session at the next request, enabling them again lets
// both in; each change is an event naming what changed.
func TestUpdateUser(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	admin := l.AdminToken(t)
	alice := l.User(t, "alice", false)
	l.User(t, "bob", false)
	var mainWS int64
	err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		mainWS = ws.ID
		if err := tx.Workspaces().Create(&store.Workspace{OrgID: org.ID, Name: "elsewhere", Kind: store.WorkspaceShared}); err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: alice.ID, WorkspaceID: ws.ID, Role: string(auth.RoleViewer)})
	})
	if err != nil {
		t.Fatal(err)
	}
	token := l.Token(t, "alice", apitest.TokenOptions{})
	session := l.Token(t, "alice", apitest.TokenOptions{Session: true})
	restricted := l.Token(t, "alice", apitest.TokenOptions{Workspace: mainWS, Role: string(auth.RoleViewer)})
	patch := func(tok, name, body string) (int, wire.User, string) {
		t.Helper()
		hdr := map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
		status, _, b := sendAs(t, srv, http.MethodPatch, "/api/v1/users/"+name, body, hdr)
		var u wire.User
		if status == http.StatusOK {
			if err := json.Unmarshal([]byte(b), &u); err != nil {
				t.Fatalf("PATCH %s: %v: %s", name, err, b)
			}
		}
		return status, u, b
	}
	works := func(tok string) int {
		t.Helper()
		status, _, _ := sendAs(t, srv, http.MethodGet, "/api/v1/status", "", bearer(tok))
		return status
	}

	status, u, body := patch(token, "alice", `{"email":"alice@example.com","display_name":"Alice A.","default_workspace":"main"}`)
	if status != http.StatusOK || u.Email != "alice@example.com" || u.DisplayName != "Alice A." || u.DefaultWorkspace != "default/main" {
		t.Errorf("alice updates her own record: %d %s", status, body)
	}
	if status, u, body := patch(token, "alice", `{"display_name":"Alice"}`); status != http.StatusOK || u.DisplayName != "Alice" || u.Email != "alice@example.com" || u.DefaultWorkspace != "default/main" {
		t.Errorf("a PATCH of one field changed the others: %d %s", status, body)
	}
	for _, c := range []struct {
		what, tok, name, body string
		want                  int
	}{
		{"a workspace alice is no member of", token, "alice", `{"default_workspace":"elsewhere"}`, http.StatusNotFound},
		{"alice disables herself", token, "alice", `{"disabled":true}`, http.StatusForbidden},
		{"alice makes herself system admin", token, "alice", `{"system_admin":true}`, http.StatusForbidden},
		{"alice changes bob", token, "bob", `{"display_name":"Bobby"}`, http.StatusNotFound},
		{"a restricted token", restricted, "alice", `{"display_name":"R"}`, http.StatusForbidden},
		{"nothing to change", admin, "alice", `{}`, http.StatusBadRequest},
		{"not an address", admin, "alice", `{"email":"nope"}`, http.StatusBadRequest},
		{"an unknown field", admin, "alice", `{"nickname":"al"}`, http.StatusBadRequest},
		{"the admin unmakes themselves", admin, "admin", `{"system_admin":false}`, http.StatusConflict},
		{"the admin disables themselves", admin, "admin", `{"disabled":true}`, http.StatusConflict},
		{"an unknown user", admin, "nobody", `{"disabled":true}`, http.StatusNotFound},
	} {
		if status, _, body := patch(c.tok, c.name, c.body); status != c.want {
			t.Errorf("%s: %d %s, want %d", c.what, status, body, c.want)
		}
	}
	if status, u, body := patch(admin, "alice", `{"email":"a@example.com"}`); status != http.StatusOK || u.DisplayName != "Alice" || u.Disabled || u.SystemAdmin {
		t.Errorf("after the refusals alice's record is %d %s", status, body)
	}

	// Disabled: her token and session are refused at once, and work
	// again once she is enabled.
	if works(token) != http.StatusOK || works(session) != http.StatusOK {
		t.Fatal("alice's credentials do not work to begin with")
	}
	if status, u, body := patch(admin, "alice", `{"disabled":true}`); status != http.StatusOK || !u.Disabled {
		t.Fatalf("admin disables alice: %d %s", status, body)
	}
	if s := works(token); s != http.StatusUnauthorized {
		t.Errorf("a disabled user's token: %d, want 401", s)
	}
	if s := works(session); s != http.StatusUnauthorized {
		t.Errorf("a disabled user's session: %d, want 401", s)
	}
	if status, _, body := patch(admin, "alice", `{"disabled":false,"system_admin":true}`); status != http.StatusOK {
		t.Fatalf("admin enables alice: %d %s", status, body)
	}
	if s := works(token); s != http.StatusOK {
		t.Errorf("an enabled user's token: %d", s)
	}
	if status, _, body := sendAs(t, srv, http.MethodGet, "/api/v1/doctor", "", bearer(token)); status != http.StatusOK {
		t.Errorf("alice, made system administrator, runs doctor: %d %s", status, body)
	}

	evs, err := l.Events.List(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var updates []string
	for _, e := range evs {
		if e.Object == "user" && e.Action == "update" {
			updates = append(updates, e.Actor+": "+e.Subject+" "+e.Detail)
		}
	}
	want := []string{
		"alice: alice email, display name, default workspace main",
		"alice: alice display name",
		"admin: alice email",
		"admin: alice disabled: true",
		"admin: alice disabled: false, system admin: true",
	}
	if strings.Join(updates, "\n") != strings.Join(want, "\n") {
		t.Errorf("update events:\n%s\nwant\n%s", strings.Join(updates, "\n"), strings.Join(want, "\n"))
	}
}

// TestReservedUserNames: the actors the event log names besides users
// cannot be made users, who would read those events as their own.
func TestReservedUserNames(t *testing.T) {
	l := apitest.New(t)
	srv, _ := apitest.ServeStrict(t, l)
	hdr := map[string]string{"Authorization": "Bearer " + l.AdminToken(t), "Content-Type": "application/json"}
	for _, name := range []string{"root", "system", "reaper", "anonymous"} {
		if status, _, body := sendAs(t, srv, http.MethodPost, "/api/v1/users", `{"name":"`+name+`"}`, hdr); status != http.StatusBadRequest || !strings.Contains(body, "reserved") {
			t.Errorf("user %s: %d %s, want 400 reserved", name, status, body)
		}
	}
}
