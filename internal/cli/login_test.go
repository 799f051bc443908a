package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/auth"
	"stagehand/internal/cli"
	"stagehand/internal/store"
)

// TestLoginKeepsTheSession: stagehand login --password-stdin against a
// daemon that wants credentials keeps the session in
// $XDG_CONFIG_HOME/stagehand/token (0600); later commands without a token
// use it; a token from STAGEHAND_TOKEN wins over it; logout revokes it
// (the same token is then refused) and removes the file; a wrong password
// is refused and keeps nothing.
func TestLoginKeepsTheSession(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	l.User(t, "alice", false)
	hash, err := auth.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		u, err := tx.Users().Get("alice")
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		return tx.Users().Update(u)
	}); err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	env := map[string]string{"STAGEHAND_SERVER": srv.URL, "XDG_CONFIG_HOME": cfg, "USER": "alice"}
	run := func(stdin string, extra map[string]string, args ...string) (string, string, int) {
		var out, errw bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Deps{
			Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errw,
			Getenv: func(k string) string {
				if v, ok := extra[k]; ok {
					return v
				}
				return env[k]
			},
		})
		return out.String(), errw.String(), code
	}
	file := filepath.Join(cfg, "stagehand", "token")

	if _, errOut, code := run("", nil, "status"); code == 0 || !strings.Contains(errOut, "authentication required") {
		t.Fatalf("status before login: exit %d %q, want refused", code, errOut)
	}
	if _, errOut, code := run("wrong password here\n", nil, "login", "--password-stdin"); code == 0 || !strings.Contains(errOut, "wrong user name or password") {
		t.Errorf("login with a wrong password: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("a refused login left %s", file)
	}
	if out, errOut, code := run("correct horse battery\n", nil, "login", "--password-stdin"); code != 0 || !strings.Contains(out, "Logged in as alice") {
		t.Fatalf("login: exit %d %q %q", code, out, errOut)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v, %v; want 0600", file, fi, err)
	}
	b, _ := os.ReadFile(file)
	session := strings.TrimSpace(string(b))
	if !strings.HasPrefix(session, "shs_") {
		t.Fatalf("the kept token is not a session")
	}
	if _, errOut, code := run("", nil, "status"); code != 0 {
		t.Errorf("status with the kept session: exit %d %q", code, errOut)
	}
	if _, errOut, code := run("", map[string]string{"STAGEHAND_TOKEN": "sht_not_a_token"}, "status"); code == 0 || !strings.Contains(errOut, "malformed API token") {
		t.Errorf("STAGEHAND_TOKEN must win over the kept session: exit %d %q", code, errOut)
	}
	if out, errOut, code := run("", nil, "logout"); code != 0 || !strings.Contains(out, "Logged out") {
		t.Fatalf("logout: exit %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("logout left %s", file)
	}
	if _, errOut, code := run("", map[string]string{"STAGEHAND_TOKEN": session}, "status"); code == 0 || !strings.Contains(errOut, "revoked") {
		t.Errorf("the session after logout: exit %d %q, want revoked", code, errOut)
	}
}
