package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/cli"
	"stagehand/internal/store"
)

// TestWorkspaceFlag: a user who is an author in w1 and w2 (her default
// w1) and a viewer in main creates with --workspace w2; config list shows
// the WORKSPACE and OWNER of each, --workspace filters it, -o json
// carries both; a clone stays in its source's workspace unless
// --workspace moves it; a workspace where she is a viewer exits 8 naming
// the role, an unknown one 3.
func TestWorkspaceFlag(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
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
	token := l.Token(t, "ann", apitest.TokenOptions{})
	config := t.TempDir()
	run := func(want int, args ...string) (string, string) {
		t.Helper()
		var out, errw bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Deps{
			Stdout: &out, Stderr: &errw,
			Getenv: func(k string) string {
				return map[string]string{"STAGEHAND_SERVER": srv.URL, "STAGEHAND_TOKEN": token, "XDG_CONFIG_HOME": config, "USER": "tester"}[k]
			},
		})
		if code != want {
			t.Fatalf("%v: exit %d, want %d; stderr %q", args, code, want, errw.String())
		}
		return out.String(), errw.String()
	}

	out, _ := run(cli.ExitOK, "config", "create", "c2", "--vm", "vm1=tmpl,net=lan", "--workspace", "w2")
	if !strings.Contains(out, "Workspace:") || !strings.Contains(out, "w2") {
		t.Errorf("config create printed:\n%s", out)
	}
	run(cli.ExitOK, "config", "create", "c1", "--vm", "vm1=tmpl,net=lan")
	run(cli.ExitOK, "config", "clone", "c2", "c3")
	run(cli.ExitOK, "config", "clone", "c2", "c4", "--workspace", "w1")

	// The table: a WORKSPACE and an OWNER column, in that order after NAME.
	out, _ = run(cli.ExitOK, "config", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if head := strings.Fields(lines[0]); len(head) < 3 || head[1] != "WORKSPACE" || head[2] != "OWNER" {
		t.Fatalf("config list header %q", lines[0])
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f[1:3]
	}
	for name, want := range map[string]string{"c1": "w1", "c2": "w2", "c3": "w2", "c4": "w1", "web": "main"} {
		if got := rows[name]; got == nil || got[0] != want || name != "web" && got[1] != "ann" {
			t.Errorf("config list row of %s: %q, want in %s (owner ann)\n%s", name, got, want, out)
		}
	}

	out, _ = run(cli.ExitOK, "config", "list", "--workspace", "w2", "-o", "json")
	var cs []map[string]any
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c["name"].(string))
		if c["workspace"] != "w2" || c["owner"] != "ann" {
			t.Errorf("config list --workspace w2 -o json: %v", c)
		}
	}
	if strings.Join(names, ",") != "c2,c3" {
		t.Errorf("config list --workspace w2: %q, want c2,c3", names)
	}

	_, msg := run(cli.ExitForbidden, "config", "create", "x1", "--vm", "vm1=tmpl,net=lan", "--workspace", "main")
	if !strings.Contains(msg, "viewer") {
		t.Errorf("create in main, where she is a viewer: %q does not name the role", msg)
	}
	run(cli.ExitForbidden, "config", "clone", "c2", "x2", "--workspace", "main")
	run(cli.ExitNotFound, "config", "create", "x3", "--vm", "vm1=tmpl,net=lan", "--workspace", "nope")
	run(cli.ExitNotFound, "config", "list", "--workspace", "nope")

	out, _ = run(cli.ExitOK, "library", "capture", "c2", "e1", "--workspace", "w1", "-o", "json")
	var e wire.Config
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.Workspace != "w1" || e.Owner != "ann" {
		t.Errorf("library capture --workspace w1: %v %s", err, out)
	}
	out, _ = run(cli.ExitOK, "library", "list")
	if !strings.Contains(out, "WORKSPACE") || !strings.Contains(out, "w1") {
		t.Errorf("library list:\n%s", out)
	}
}
