package cli_test

import (
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// completions runs cobra's completion entry point (what the shell scripts
// call on TAB) and returns the offered words without their descriptions,
// and the directive line.
func completions(t *testing.T, env map[string]string, args ...string) ([]string, string) {
	t.Helper()
	out, errOut, code := runEnv(env, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d: %s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	directive := lines[len(lines)-1]
	if !strings.HasPrefix(directive, ":") {
		t.Fatalf("__complete %q: no directive last:\n%s", args, out)
	}
	var words []string
	for _, l := range lines[:len(lines)-1] {
		word, _, _ := strings.Cut(l, "\t")
		words = append(words, word)
	}
	return words, directive
}

// TestCompletionNamesFromTheDaemon: the completion entry point offers the
// names the real API holds (configurations, a configuration's VMs,
// templates, networks, library entries, archives, workspaces), the values
// of flags, and parts of --vm; a prefix narrows them.
func TestCompletionNamesFromTheDaemon(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"library", "capture", "web", "gold"},
		{"archive", "create", "web", "arch"},
		{"config", "clone", "web", "web-2"},
	} {
		if _, errOut, code := e.run(args...); code != 0 {
			t.Fatalf("stagehand %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
	}
	env := map[string]string{"STAGEHAND_SERVER": e.url}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"config", "show", ""}, []string{"web", "web-2"}},
		{[]string{"config", "deploy", "web-"}, []string{"web-2"}},
		{[]string{"config", "show", "x"}, nil},
		{[]string{"config", "show", "web", ""}, nil}, // one argument only
		{[]string{"vm", "start", "web", ""}, []string{"vm1"}},
		{[]string{"vm", "start", "nope", ""}, nil},
		{[]string{"disk", "chain", "web-2", "v"}, []string{"vm1"}},
		{[]string{"template", "delete", ""}, []string{"tmpl"}},
		{[]string{"network", "show", ""}, []string{"lan"}},
		{[]string{"library", "checkout", ""}, []string{"gold"}},
		{[]string{"archive", "restore", ""}, []string{"arch"}},
		{[]string{"archive", "restore", "arch", ""}, nil}, // a new name
		{[]string{"config", "list", "--workspace", ""}, []string{"main"}},
		{[]string{"config", "deploy", "web", "--fence-policy", ""}, []string{"block", "out", "in-out"}},
		{[]string{"config", "share", "web", "--level", "c"}, []string{"change", "console"}},
		{[]string{"config", "clone", "web", "x", "--mode", ""}, []string{"linked", "full"}},
		{[]string{"config", "list", "-o", ""}, []string{"table", "json"}},
		{[]string{"config", "create", "x", "--vm", "a="}, []string{"a=tmpl"}},
		{[]string{"config", "create", "x", "--vm", "a=tmpl,"}, []string{"a=tmpl,net=", "a=tmpl,ip="}},
		{[]string{"config", "create", "x", "--vm", "a=tmpl,net="}, []string{"a=tmpl,net=lan"}},
		{[]string{"config", "create", "x", "--vm", "a=tmpl,net=lan,ip=d"}, []string{"a=tmpl,net=lan,ip=dhcp"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
	} {
		got, _ := completions(t, env, tc.args...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("stagehand __complete %s: %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	if _, dir := completions(t, env, "archive", "export", "arch", ""); dir != ":0" {
		t.Errorf("archive export's FILE: directive %s, want :0 (the shell completes files)", dir)
	}
	// --server on the command line being completed is the daemon asked.
	if got, _ := completions(t, map[string]string{}, "--server", e.url, "config", "show", ""); !slices.Equal(got, []string{"web", "web-2"}) {
		t.Errorf("with --server on the line: %q", got)
	}
}

// TestCompletionWhenTheDaemonFails: a daemon that refuses connections and
// one that never answers complete nothing, silently, within the
// completion's bound.
func TestCompletionWhenTheDaemonFails(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String()
	closed.Close()

	// Accepts connections and never answers them.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	t.Cleanup(func() {
		silent.Close()
		close(held)
		for c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()

	for name, server := range map[string]string{
		"refused": closedURL,
		"silent":  "http://" + silent.Addr().String(),
	} {
		began := time.Now()
		out, errOut, code := runEnv(map[string]string{"STAGEHAND_SERVER": server}, "__complete", "config", "show", "")
		took := time.Since(began)
		if code != 0 || out != ":4\n" || errOut != "Completion ended with directive: ShellCompDirectiveNoFileComp\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 0, no names, nothing but cobra's note", name, code, out, errOut)
		}
		if took > 4*time.Second {
			t.Errorf("%s: completion took %v; a TAB waits at most the completion's bound (2s)", name, took)
		}
	}
}

// TestCompletionPinsNothing: against an https daemon whose certificate is
// not pinned yet, a TAB completes (the command about to run would trust it
// on first use anyway) but neither pins the certificate nor says so: the
// command itself does both.
func TestCompletionPinsNothing(t *testing.T) {
	rec := newRecorder(t)
	srv := httptest.NewTLSServer(rec)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	env := map[string]string{"STAGEHAND_SERVER": srv.URL, "HOME": home}
	known := filepath.Join(home, ".config", "stagehand", "known_servers")

	if got, _ := completions(t, env, "config", "show", ""); !slices.Equal(got, []string{"web"}) {
		t.Errorf("completion against an unpinned https daemon: %q", got)
	}
	if _, err := os.Stat(known); err == nil {
		t.Errorf("a TAB pinned a certificate in %s", known)
	}
	if _, errOut, code := runEnv(env, "config", "list"); code != 0 || !strings.Contains(errOut, "trusting") {
		t.Errorf("the first command after a TAB: exit %d, stderr %q; want it to trust on first use and say so", code, errOut)
	}
	// Pinned now: a TAB trusts that certificate and refuses any other.
	if got, _ := completions(t, env, "config", "show", ""); !slices.Equal(got, []string{"web"}) {
		t.Errorf("completion against the pinned daemon: %q", got)
	}
	b, err := os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	// Another certificate pinned for the same host:port.
	host := strings.TrimPrefix(srv.URL, "https://")
	if err := os.WriteFile(known, []byte(host+" SHA256:"+strings.Repeat("00", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := rec.calls.Load()
	if got, _ := completions(t, env, "config", "show", ""); got != nil || rec.calls.Load() != before {
		t.Errorf("completion against a certificate other than the pinned one: %q, %d requests", got, rec.calls.Load()-before)
	}
	if b2, _ := os.ReadFile(known); !strings.Contains(string(b2), strings.Repeat("00", 32)) || strings.Contains(string(b2), string(b)) {
		t.Errorf("known_servers changed by a TAB:\n%s", b2)
	}
}
