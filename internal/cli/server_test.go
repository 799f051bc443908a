package cli_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/cli"
)

// runEnv runs the CLI with args and only the environment env.
func runEnv(env map[string]string, args ...string) (string, string, int) {
	var out, errw bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Deps{
		Stdout: &out,
		Stderr: &errw,
		Getenv: func(k string) string { return env[k] },
	})
	return out.String(), errw.String(), code
}

// recorder serves the real API over a lab and remembers how many requests
// came and the last Authorization header.
type recorder struct {
	calls atomic.Int64
	auth  atomic.Value
	h     http.Handler
	lab   *apitest.Lab
}

func newRecorder(t *testing.T) *recorder {
	l := apitest.New(t).Seed(t)
	_, h := apitest.Serve(t, l)
	r := &recorder{h: h, lab: l}
	r.auth.Store("")
	return r
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.calls.Add(1)
	r.auth.Store(req.Header.Get("Authorization"))
	r.h.ServeHTTP(w, req)
}

// TestDefaultServerIsTheSocket: with a socket in the data dir
// (STAGEHAND_DATA_DIR) the CLI talks to the daemon there without
// --server; STAGEHAND_SERVER still wins; without a socket the default is
// the TCP address.
func TestDefaultServerIsTheSocket(t *testing.T) {
	rec := newRecorder(t)
	data := t.TempDir()
	sock := filepath.Join(data, cli.SocketFile)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rec}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	env := map[string]string{"STAGEHAND_DATA_DIR": data}
	out, errOut, code := runEnv(env, "config", "list")
	if code != 0 || !strings.Contains(out, "web") || rec.calls.Load() == 0 {
		t.Fatalf("config list over the default socket: exit %d, %d requests\n%s%s", code, rec.calls.Load(), out, errOut)
	}
	if out, _, _ := runEnv(env, "--help"); !strings.Contains(out, `(default "unix://`+sock+`")`) {
		t.Errorf("--help does not show the socket as the default server:\n%s", out)
	}

	other := httptest.NewServer(rec)
	t.Cleanup(other.Close)
	before := rec.calls.Load()
	env["STAGEHAND_SERVER"] = other.URL
	if out, _, _ := runEnv(env, "--help"); !strings.Contains(out, `(default "`+other.URL+`")`) {
		t.Errorf("STAGEHAND_SERVER is not the default server:\n%s", out)
	}
	if _, errOut, code := runEnv(env, "config", "list"); code != 0 || rec.calls.Load() == before {
		t.Errorf("config list with STAGEHAND_SERVER: exit %d %s", code, errOut)
	}

	if out, _, _ := runEnv(map[string]string{"STAGEHAND_DATA_DIR": t.TempDir()}, "--help"); !strings.Contains(out, `(default "`+cli.DefaultServer+`")`) {
		t.Errorf("without a socket the default server is not %s:\n%s", cli.DefaultServer, out)
	}
}

// TestToken sends STAGEHAND_TOKEN, or the content of --token-file, as a
// bearer token, and never prints it.
func TestToken(t *testing.T) {
	rec := newRecorder(t)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	fromEnv, fromFile := rec.lab.AdminToken(t), rec.lab.AdminToken(t)
	env := map[string]string{"STAGEHAND_SERVER": srv.URL, "STAGEHAND_TOKEN": fromEnv}
	out, errOut, code := runEnv(env, "config", "show", "nope")
	if code != cli.ExitNotFound || rec.auth.Load() != "Bearer "+fromEnv {
		t.Errorf("with STAGEHAND_TOKEN: exit %d, Authorization %q", code, rec.auth.Load())
	}
	if strings.Contains(out+errOut, fromEnv) {
		t.Errorf("the token was printed: %q %q", out, errOut)
	}

	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runEnv(env, "--token-file", file, "config", "list"); code != 0 || rec.auth.Load() != "Bearer "+fromFile {
		t.Errorf("with --token-file: exit %d %s, Authorization %q", code, errOut, rec.auth.Load())
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, errOut, code := runEnv(env, "--token-file", empty, "config", "list"); code != cli.ExitUsage || !strings.Contains(errOut, "is empty") {
		t.Errorf("empty --token-file: exit %d %s", code, errOut)
	}
}

// TestTrustOnFirstUse: the first command against an https server with a
// certificate no CA vouches for says on stderr which fingerprint it
// trusts, and pins it in $HOME/.config/stagehand/known_servers; the next
// says nothing.
func TestTrustOnFirstUse(t *testing.T) {
	rec := newRecorder(t)
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	env := map[string]string{"STAGEHAND_SERVER": srv.URL, "HOME": home}
	_, errOut, code := runEnv(env, "config", "list")
	host := strings.TrimPrefix(srv.URL, "https://")
	if code != 0 || !strings.HasPrefix(errOut, "stagehand: trusting "+host+" with fingerprint SHA256:") {
		t.Fatalf("first use: exit %d, stderr %q", code, errOut)
	}
	known := filepath.Join(home, ".config", "stagehand", "known_servers")
	if b, err := os.ReadFile(known); err != nil || !strings.HasPrefix(string(b), host+" SHA256:") {
		t.Errorf("known_servers: %q, %v", b, err)
	}
	if _, errOut, code := runEnv(env, "config", "list"); code != 0 || errOut != "" {
		t.Errorf("second use: exit %d, stderr %q", code, errOut)
	}
}
