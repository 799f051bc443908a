package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"stagehand/internal/cli"
)

// TestServeOIDCFlags: serve lists the --oidc-* flags, and a bad
// --oidc-group-role (repeated: the second is the bad one) is a usage
// error naming the flag, its value and the syntax, before anything starts.
func TestServeOIDCFlags(t *testing.T) {
	var out, errw bytes.Buffer
	env := func(string) string { return "" }
	if code := cli.Run(context.Background(), []string{"serve", "--help"}, deps(nil, &out, &errw, env)); code != 0 {
		t.Fatalf("serve --help: exit %d: %s", code, errw.String())
	}
	for _, want := range []string{"--oidc-issuer string", "--oidc-client-id string", "--oidc-client-secret-file string",
		"--oidc-redirect-url string", "--oidc-group-role stringArray", "--oidc-scope stringArray"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	errw.Reset()
	code := cli.Run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--oidc-issuer", "https://id.example.test", "--oidc-client-id", "stagehand",
		"--oidc-group-role", "lab-admins=main:admin", "--oidc-group-role", "devs=main"}, deps(nil, &out, &errw, env))
	want := `stagehand: --oidc-group-role "devs=main": no ":" between workspace and role; want GROUP=WORKSPACE:ROLE`
	if code != cli.ExitUsage || !strings.HasPrefix(errw.String(), want) {
		t.Errorf("serve with a bad --oidc-group-role: exit %d %q, want %d %q…", code, errw.String(), cli.ExitUsage, want)
	}
}
