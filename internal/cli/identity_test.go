package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/cli"
	"stagehand/internal/store"
)

const goodPassword = "correct horse battery"

// okIn runs the CLI with stdin against e's daemon (as the socket's root)
// and fails unless it succeeds; it returns stdout.
func (e *env) okIn(stdin string, args ...string) string {
	e.t.Helper()
	out, errOut, code := runCLIInput(e.url, strings.NewReader(stdin), args...)
	if code != 0 {
		e.t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
	}
	return out
}

// fails runs the CLI and fails unless it exits with code; it returns
// stderr.
func (e *env) fails(code int, stdin string, args ...string) string {
	e.t.Helper()
	_, errOut, got := runCLIInput(e.url, strings.NewReader(stdin), args...)
	if got != code {
		e.t.Fatalf("%v: exit %d, want %d; stderr %q", args, got, code, errOut)
	}
	return errOut
}

// passwordHash reads a user's stored hash.
func (e *env) passwordHash(name string) string {
	e.t.Helper()
	var hash string
	err := e.lab.Store().View(context.Background(), func(tx store.Tx) error {
		u, err := tx.Users().Get(name)
		if err == nil {
			hash = u.PasswordHash
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return hash
}

func TestUserCommands(t *testing.T) {
	e := newEnv(t)
	out := e.okIn(goodPassword+"\n", "user", "create", "alice", "--email", "alice@example.com", "--password-stdin")
	if !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "Password:") {
		t.Errorf("user create printed:\n%s", out)
	}
	if err := auth.CheckPassword(e.passwordHash("alice"), goodPassword); err != nil {
		t.Errorf("the password read from stdin is not the one stored: %v", err)
	}
	if msg := e.fails(cli.ExitConflict, goodPassword+"\n", "user", "create", "alice", "--password-stdin"); !strings.Contains(msg, "alice") {
		t.Errorf("duplicate user: stderr %q", msg)
	}
	if msg := e.fails(cli.ExitUsage, "short\n", "user", "create", "bob", "--password-stdin"); !strings.Contains(msg, "password") {
		t.Errorf("weak password: stderr %q", msg)
	}
	// Without a terminal and without --password-stdin there is nowhere
	// to read a password from; it is never an argument.
	if msg := e.fails(cli.ExitUsage, "", "user", "create", "bob"); !strings.Contains(msg, "--password-stdin") || !strings.Contains(msg, "--no-password") {
		t.Errorf("no terminal: stderr %q", msg)
	}
	e.fails(cli.ExitUsage, "", "user", "create", "bob", "--password", goodPassword)
	e.okIn("", "user", "create", "bob", "--no-password")

	var us []wire.User
	if err := json.Unmarshal([]byte(e.okIn("", "user", "list", "-o", "json")), &us); err != nil || len(us) != 2 || !us[0].HasPassword || us[1].HasPassword {
		t.Fatalf("user list = %+v, %v", us, err)
	}
	const next = "another long passphrase"
	// alice changes her own password: the current one first, then the new.
	aliceToken := filepath.Join(t.TempDir(), "alice.token")
	if err := os.WriteFile(aliceToken, []byte(e.lab.Token(t, "alice", apitest.TokenOptions{})), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := e.fails(cli.ExitUsage, next+"\n", "--token-file", aliceToken, "user", "set-password", "alice", "--password-stdin"); !strings.Contains(msg, "--current") {
		t.Errorf("own password without the current one: stderr %q", msg)
	}
	e.okIn(goodPassword+"\n"+next+"\n", "--token-file", aliceToken, "user", "set-password", "alice", "--current", "--password-stdin")
	if err := auth.CheckPassword(e.passwordHash("alice"), next); err != nil {
		t.Errorf("own set-password: %v", err)
	}
	e.okIn(next+"\n", "user", "set-password", "bob", "--password-stdin")
	if err := auth.CheckPassword(e.passwordHash("bob"), next); err != nil {
		t.Errorf("set-password: %v", err)
	}
	if out := e.okIn("", "user", "show", "bob"); !strings.Contains(out, "Password:") || !strings.Contains(out, "yes") {
		t.Errorf("user show:\n%s", out)
	}
	e.okIn("", "user", "delete", "bob")
	e.fails(cli.ExitNotFound, "", "user", "show", "bob")
}

// TestUserSet: user set changes only the flags given (a bool flag
// alone is true, =false turns it off), a command with none is a usage
// error that never reaches the daemon, an unknown user is not found.
func TestUserSet(t *testing.T) {
	e := newEnv(t)
	e.okIn("", "user", "create", "alice", "--no-password", "--display-name", "Alice")
	out := e.okIn("", "user", "set", "alice", "--email", "a@example.com", "--default-workspace", "main")
	if !strings.Contains(out, "a@example.com") || !strings.Contains(out, "default/main") || !strings.Contains(out, "Alice") {
		t.Errorf("user set --email --default-workspace printed:\n%s", out)
	}
	var u wire.User
	if err := json.Unmarshal([]byte(e.okIn("", "user", "set", "alice", "--disabled", "-o", "json")), &u); err != nil || !u.Disabled || u.Email != "a@example.com" {
		t.Errorf("user set --disabled: %+v, %v", u, err)
	}
	if err := json.Unmarshal([]byte(e.okIn("", "user", "set", "alice", "--disabled=false", "--default-workspace", "", "-o", "json")), &u); err != nil ||
		u.Disabled || u.DefaultWorkspace != "" || u.DisplayName != "Alice" {
		t.Errorf("user set --disabled=false --default-workspace \"\": %+v, %v", u, err)
	}
	before := e.calls.Load()
	if msg := e.fails(cli.ExitUsage, "", "user", "set", "alice"); !strings.Contains(msg, "nothing to change") {
		t.Errorf("user set without flags: stderr %q", msg)
	}
	if e.calls.Load() != before {
		t.Errorf("user set without flags called the daemon")
	}
	e.fails(cli.ExitNotFound, "", "user", "set", "nobody", "--disabled")
}

func TestWorkspaceCommands(t *testing.T) {
	e := newEnv(t)
	e.okIn("", "user", "create", "alice", "--no-password")
	e.okIn("", "org", "create", "acme")
	if out := e.okIn("", "org", "list"); !strings.Contains(out, "acme") || !strings.Contains(out, "main") {
		t.Errorf("org list:\n%s", out)
	}
	if out := e.okIn("", "workspace", "create", "acme/dev", "--kind", "private"); !strings.Contains(out, "acme/dev") || !strings.Contains(out, "private") {
		t.Errorf("workspace create:\n%s", out)
	}
	e.okIn("", "workspace", "add-member", "acme/dev", "alice", "--role", "author")
	if msg := e.fails(cli.ExitUsage, "", "workspace", "add-member", "acme/dev", "alice", "--role", "wizard"); !strings.Contains(msg, "wizard") {
		t.Errorf("unknown role: stderr %q", msg)
	}
	e.okIn("", "workspace", "set-quota", "acme/dev", "--stored-vms", "3", "--disk-gib", "50")
	e.okIn("", "workspace", "set-quota", "--user", "alice", "--deployed-vms", "2")
	out := e.okIn("", "workspace", "show", "acme/dev")
	for _, want := range []string{"alice", "author", "0 of 3", "0 of 50", "(no limit)"} {
		if !strings.Contains(out, want) {
			t.Errorf("workspace show lacks %q:\n%s", want, out)
		}
	}
	if out := e.okIn("", "user", "show", "alice"); !strings.Contains(out, "acme/dev") || !strings.Contains(out, "0 of 2") {
		t.Errorf("user show:\n%s", out)
	}
	if out := e.okIn("", "workspace", "list", "--org", "acme"); !strings.Contains(out, "acme/main") || !strings.Contains(out, "acme/dev") {
		t.Errorf("workspace list:\n%s", out)
	}
	e.okIn("", "workspace", "remove-member", "acme/dev", "alice")
	e.fails(cli.ExitNotFound, "", "workspace", "remove-member", "acme/dev", "alice")
	e.okIn("", "workspace", "delete", "acme/dev")
	e.fails(cli.ExitNotFound, "", "workspace", "show", "acme/dev")

	e.okIn("", "group", "create", "acme/testers")
	e.okIn("", "group", "add-member", "acme/testers", "alice")
	if out := e.okIn("", "group", "list", "--org", "acme"); !strings.Contains(out, "acme/testers") || !strings.Contains(out, "alice") {
		t.Errorf("group list:\n%s", out)
	}
	e.okIn("", "group", "remove-member", "acme/testers", "alice")
	e.okIn("", "group", "delete", "acme/testers")
	e.fails(cli.ExitNotFound, "", "group", "delete", "acme/testers")
}

func TestTokenCommands(t *testing.T) {
	e := newEnv(t)
	e.okIn("", "user", "create", "alice", "--no-password")
	out := e.okIn("", "token", "create", "ci", "--user", "alice", "--expires-in", "7d", "--workspace", "main", "--max-role", "viewer")
	var token string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Token:" {
			token = f[1]
		}
	}
	if !strings.HasPrefix(token, "sht_") || !strings.Contains(out, "not shown again") {
		t.Fatalf("token create printed:\n%s", out)
	}
	e.fails(cli.ExitUsage, "", "token", "create", "x", "--user", "alice", "--workspace", "main", "--max-role", "king")

	// The token works: alice's CLI with it lists her own tokens.
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	list := e.okIn("", "--token-file", tokenFile, "token", "list")
	id, _, _ := strings.Cut(strings.TrimPrefix(token, "sht_"), "_")
	if !strings.Contains(list, id) || !strings.Contains(list, "active") || !strings.Contains(list, "viewer") {
		t.Errorf("token list:\n%s", list)
	}
	secret := token[strings.LastIndex(token, "_")+1:]
	if strings.Contains(list, secret) {
		t.Errorf("token list shows the secret:\n%s", list)
	}

	e.okIn("", "token", "revoke", id)
	var ts []wire.Token
	if err := json.Unmarshal([]byte(e.okIn("", "token", "list", "--user", "alice", "-o", "json")), &ts); err != nil || len(ts) != 1 || ts[0].State != wire.TokenRevoked {
		t.Fatalf("token list after revoke = %+v, %v", ts, err)
	}
	// A revoked token is refused.
	if _, msg, code := runCLI(e.url, "--token-file", tokenFile, "token", "list"); code == 0 || !strings.Contains(msg, "revoked") {
		t.Errorf("revoked token: exit %d, stderr %q", code, msg)
	}
}

func TestShareAndExplainCommands(t *testing.T) {
	e := newEnv(t)
	e.okIn("", "user", "create", "alice", "--no-password")
	if out := e.okIn("", "auth", "explain", "--user", "alice", "--action", "config.read", "--object", "config/web"); !strings.Contains(out, "refused") || !strings.Contains(out, "404") {
		t.Errorf("explain before sharing:\n%s", out)
	}
	if out := e.okIn("", "config", "share", "web", "--with", "alice", "--level", "read"); !strings.Contains(out, "alice") || !strings.Contains(out, "read") {
		t.Errorf("config share:\n%s", out)
	}
	if msg := e.fails(cli.ExitUsage, "", "config", "share", "web", "--with", "alice", "--level", "owner"); !strings.Contains(msg, "owner") {
		t.Errorf("unknown level: stderr %q", msg)
	}
	if out := e.okIn("", "config", "shares", "web"); !strings.Contains(out, "alice") {
		t.Errorf("config shares:\n%s", out)
	}
	out := e.okIn("", "auth", "explain", "--user", "alice", "--action", "config.read", "--object", "config/web")
	if !strings.Contains(out, "allowed") || !strings.Contains(out, "share read") {
		t.Errorf("explain after sharing:\n%s", out)
	}
	if out := e.okIn("", "auth", "explain", "--user", "alice", "--action", "config.deploy", "--object", "config/web"); !strings.Contains(out, "refused") || !strings.Contains(out, "403") {
		t.Errorf("explain deploy:\n%s", out)
	}
	e.fails(cli.ExitUsage, "", "auth", "explain", "--user", "alice", "--action", "config.read", "--object", "web")
	e.okIn("", "config", "unshare", "web", "--with", "alice")
	e.fails(cli.ExitNotFound, "", "config", "unshare", "web", "--with", "alice")
}
