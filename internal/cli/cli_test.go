package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/cli"
	"stagehand/internal/store"
)

// env is a daemon over a real lab (apitest.Lab.Seed): template "tmpl",
// network "lan" and configuration "web" (VM "vm1" on lan, pool address).
type env struct {
	t     *testing.T
	url   string
	lab   *apitest.Lab
	calls atomic.Int64 // requests that reached the daemon
}

func newEnv(t *testing.T, opts ...apitest.Option) *env {
	t.Helper()
	e := &env{t: t, lab: apitest.New(t, opts...).Seed(t)}
	_, h := apitest.Serve(t, e.lab)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// waitVM waits until the first VM of config is in state (a stop is an ACPI
// request: the VM is stopped once the guest is off).
func (e *env) waitVM(config, state string) {
	e.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := e.lab.GetConfig(context.Background(), config)
		if err != nil {
			e.t.Fatal(err)
		}
		if c.VMs[0].State == state {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("VM of %s is %s, not %s, after 5s", config, c.VMs[0].State, state)
		}
	}
}

// run runs the CLI with args against the env's daemon.
func (e *env) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return runCLI(e.url, args...)
}

// ok runs the CLI with args against the env's daemon and fails unless it
// succeeds; it returns stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("stagehand %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func runCLI(server string, args ...string) (string, string, int) {
	return runCLIInput(server, nil, args...)
}

// runCLIInput is runCLI with stdin.
func runCLIInput(server string, stdin io.Reader, args ...string) (string, string, int) {
	var out, errw bytes.Buffer
	code := cli.Run(context.Background(), args, cli.Deps{
		Stdin:  stdin,
		Stdout: &out,
		Stderr: &errw,
		Getenv: func(k string) string {
			switch k {
			case "STAGEHAND_SERVER":
				return server
			case "USER":
				return "tester"
			}
			return ""
		},
	})
	return out.String(), errw.String(), code
}

func TestConfigShowJSON(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run("config", "show", "web", "-o", "json")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if raw["name"] != "web" || raw["state"] != "undeployed" || raw["fenced"] != false {
		t.Errorf("config = %v", raw)
	}
	vms, _ := raw["vms"].([]any)
	if len(vms) != 1 {
		t.Fatalf("vms = %v", raw["vms"])
	}
	vm := vms[0].(map[string]any)
	if vm["name"] != "vm1" || vm["state"] == nil {
		t.Errorf("vm = %v", vm)
	}
	disk := vm["disks"].([]any)[0].(map[string]any)
	chain := disk["chain"].([]any)
	if disk["path"] == "" || len(chain) != 2 || chain[0] != disk["path"] {
		t.Errorf("disk = %v", disk)
	}
	nic := vm["nics"].([]any)[0].(map[string]any)
	want := map[string]any{"network": "lan", "ip_mode": "pool", "ip": "10.0.0.10", "external_ip": ""}
	for k, v := range want {
		if nic[k] != v {
			t.Errorf("nic[%s] = %v, want %v", k, nic[k], v)
		}
	}
	if mac, _ := nic["mac"].(string); len(mac) != 17 {
		t.Errorf("nic mac = %v", nic["mac"])
	}
	// JSON output is indented.
	if !strings.Contains(out, "\n  \"name\": \"web\"") {
		t.Errorf("not indented:\n%s", out)
	}
}

func TestNotFoundIsOneLineAndExit3(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"config", "show", "nope"},
		{"config", "show", "nope", "-o", "json"},
		{"disk", "chain", "nope", "vm1"},
		{"job", "show", "42"},
	} {
		out, errOut, code := e.run(args...)
		if code != cli.ExitNotFound {
			t.Errorf("%v: exit %d, want %d", args, code, cli.ExitNotFound)
		}
		if out != "" {
			t.Errorf("%v: stdout %q, want nothing", args, out)
		}
		if !strings.HasPrefix(errOut, "stagehand: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "not found") {
			t.Errorf("%v: stderr %q, want one line", args, errOut)
		}
	}
	_, errOut, _ := e.run("config", "show", "nope")
	if errOut != "stagehand: configuration \"nope\" not found\n" {
		t.Errorf("stderr = %q", errOut)
	}
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"config", "list"}, cli.ExitOK},
		{[]string{"config", "create", "web", "--vm", "a=tmpl"}, cli.ExitConflict},
		{[]string{"config", "show", "nope"}, cli.ExitNotFound},
		{[]string{"job", "cancel", "9"}, cli.ExitNotFound},
		{[]string{"config", "list", "-o", "yaml"}, cli.ExitUsage},
		{[]string{"config", "list", "extra"}, cli.ExitUsage},
		{[]string{"config", "lst"}, cli.ExitUsage},
		{[]string{"frobnicate"}, cli.ExitUsage},
		{[]string{"config", "show", "--colour"}, cli.ExitUsage},
		{[]string{"config", "set-ip", "web", "vm1", "eth0", "dhcp"}, cli.ExitUsage},
		{[]string{"config", "set-ip", "web", "vm1", "0", "10.0.0.300"}, cli.ExitUsage},
		{[]string{"config", "clone", "web", "w2", "--mode", "deep"}, cli.ExitUsage},
		{[]string{"config", "clone", "web", "w2", "--detach"}, cli.ExitUsage},
		{[]string{"network", "create", "n", "--subnet", "10.0.0.0/33", "--pool", "10.0.0.2-10.0.0.3"}, cli.ExitUsage},
		{[]string{"network", "create", "n", "--subnet", "10.1.0.0/24"}, cli.ExitUsage},
		{[]string{"network", "create", "n", "--subnet", "10.1.0.0/24", "--pool", "10.1.0.2"}, cli.ExitUsage},
		{[]string{"template", "import", "t2"}, cli.ExitUsage},
		{[]string{"template", "import", "t2", "--disk", "a.img", "--format", "vmdk"}, cli.ExitUsage},
		{[]string{"disk", "chain", "web"}, cli.ExitUsage},
		{[]string{"disk", "chain", "web", "vm1", "x"}, cli.ExitUsage},
		{[]string{"serve"}, cli.ExitUsage},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, errOut, code := e.run(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if code != 0 && (strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "Usage:")) {
				t.Errorf("stderr is not one line without usage: %q", errOut)
			}
		})
	}
}

// TestExitCodesOfRefusals: against a daemon that authenticates, a request
// without credentials or with a revoked token exits 7 (sign in), one the
// caller's role does not allow exits 8 (you may not), and an object the
// caller cannot see stays 3, like any object that is not there.
func TestExitCodesOfRefusals(t *testing.T) {
	l := apitest.New(t).Seed(t)
	srv, _ := apitest.ServeStrict(t, l)
	alice := l.User(t, "alice", false)
	if err := l.Store().Update(context.Background(), func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: alice.ID, WorkspaceID: ws.ID, Role: string(auth.RoleViewer)})
	}); err != nil {
		t.Fatal(err)
	}
	viewer := l.Token(t, "alice", apitest.TokenOptions{})
	bob := l.Token(t, "bob", apitest.TokenOptions{}) // a member of nothing
	revoked := l.Token(t, "alice", apitest.TokenOptions{Revoked: true})
	config := t.TempDir() // no kept session
	tests := []struct {
		name, token string
		args        []string
		code        int
	}{
		{"no credentials", "", []string{"config", "list"}, cli.ExitUnauthenticated},
		{"revoked token", revoked, []string{"config", "list"}, cli.ExitUnauthenticated},
		{"viewer deletes", viewer, []string{"config", "delete", "web"}, cli.ExitForbidden},
		{"user runs doctor", viewer, []string{"doctor"}, cli.ExitForbidden},
		{"viewer reads", viewer, []string{"config", "show", "web"}, cli.ExitOK},
		{"outsider reads", bob, []string{"config", "show", "web"}, cli.ExitNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errw bytes.Buffer
			code := cli.Run(context.Background(), tt.args, cli.Deps{
				Stdout: &out, Stderr: &errw,
				Getenv: func(k string) string {
					return map[string]string{"STAGEHAND_SERVER": srv.URL, "STAGEHAND_TOKEN": tt.token, "XDG_CONFIG_HOME": config, "USER": "tester"}[k]
				},
			})
			if code != tt.code {
				t.Fatalf("%v: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errw.String())
			}
			if code != 0 && strings.Count(errw.String(), "\n") != 1 {
				t.Errorf("stderr is not one line: %q", errw.String())
			}
		})
	}
	if _, err := l.GetConfig(context.Background(), "web"); err != nil {
		t.Errorf("a refused delete deleted web: %v", err)
	}
}

func TestVMFlagErrorsStopBeforeTheServer(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ vm, want string }{
		{"web=tmpl,foo=1", `unknown key "foo"`},
		{"web", "want VM=TEMPLATE"},
		{"web=tmpl,net=lan,ip=nope", `ip "nope" is not pool, dhcp or an IP address`},
	}
	for _, tt := range tests {
		before := e.calls.Load()
		out, errOut, code := e.run("config", "create", "new", "--vm", tt.vm)
		if code != cli.ExitUsage || out != "" {
			t.Errorf("--vm %s: exit %d stdout %q", tt.vm, code, out)
		}
		if !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("--vm %s: stderr %q, want one line with %q", tt.vm, errOut, tt.want)
		}
		if e.calls.Load() != before {
			t.Errorf("--vm %s: the daemon was called", tt.vm)
		}
	}
}

// TestVMRulesAreTheLabs: what the VMs must be together is judged by the
// daemon alone; the CLI shows its one-line refusal with exit code 2, and
// nothing is created.
func TestVMRulesAreTheLabs(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "at least one VM is required"},
		{[]string{"--vm", "a=tmpl", "--vm", "a=tmpl"}, `VM name "a" appears twice`},
		{[]string{"--vm", "a=tmpl,ip=10.0.0.5"}, `address "10.0.0.5" needs a network`},
	}
	for _, tt := range tests {
		before := e.calls.Load()
		out, errOut, code := e.run(append([]string{"config", "create", "new"}, tt.args...)...)
		if code != cli.ExitUsage || out != "" || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d stdout %q stderr %q, want exit 2 and one line with %q", tt.args, code, out, errOut, tt.want)
		}
		if e.calls.Load() == before {
			t.Errorf("%v: the daemon was not asked", tt.args)
		}
	}
	if out, _, _ := e.run("config", "list"); strings.Contains(out, "new") {
		t.Errorf("a refused configuration exists:\n%s", out)
	}
}

func TestConfigCreateSendsVMs(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run("config", "create", "db", "--vm", "pg=tmpl,net=lan,ip=10.0.0.50", "--vm", "cache=tmpl", "--description", "databases", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var c wire.Config
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	if c.Owner != "tester" || c.Description != "databases" || len(c.VMs) != 2 {
		t.Fatalf("config = %+v", c)
	}
	if n := c.VMs[0].NICs[0]; n.IP != "10.0.0.50" || n.IPMode != "manual" || len(c.VMs[1].NICs) != 0 {
		t.Errorf("vms = %+v", c.VMs)
	}
}

func TestTables(t *testing.T) {
	e := newEnv(t)
	if _, errOut, code := e.run("config", "clone", "web", "web2"); code != 0 {
		t.Fatalf("clone: %s", errOut)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"config", "list"}, []string{"NAME", "web2", "undeployed"}},
		{[]string{"config", "show", "web2"}, []string{"Name:", "web2", "10.0.0.10", "pool", "TOP LAYER"}},
		{[]string{"network", "show", "lan"}, []string{"10.0.0.10", "web/vm1/nic0, web2/vm1/nic0"}},
		{[]string{"network", "list"}, []string{"lan", "10.0.0.0/24", "1/90"}},
		{[]string{"template", "list"}, []string{"tmpl", "1 GiB", "disk"}},
		{[]string{"disk", "chain", "web2", "vm1"}, []string{"DEPTH", "FROZEN", "yes", "1 GiB", "tmpl"}},
		{[]string{"config", "set-ip", "web2", "vm1", "0", "10.0.0.60"}, []string{"manual", "10.0.0.60"}},
		{[]string{"config", "change-ips", "web2"}, []string{"web2"}},
	}
	for _, tt := range tests {
		out, errOut, code := e.run(tt.args...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", tt.args, code, errOut)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
}

func TestFullClone(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run("config", "clone", "web", "copy", "--mode", "full", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var c wire.Config
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Name != "copy" || len(c.VMs[0].Disks[0].Chain) != 1 {
		t.Fatalf("clone = %+v, %v", c, err)
	}
	if errOut != "" {
		t.Errorf("stderr is not a terminal, so no progress bar expected: %q", errOut)
	}
}

func TestFullCloneDetachAndCancel(t *testing.T) {
	e := newEnv(t)
	e.lab.Disks.Hold()
	out, errOut, code := e.run("config", "clone", "web", "copy", "--mode", "full", "--detach")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if id != "1" {
		t.Fatalf("detached output = %q, want the job id", out)
	}
	out, _, _ = e.run("job", "list")
	if !strings.Contains(out, "running") || !strings.Contains(out, "full-clone") {
		t.Errorf("job list:\n%s", out)
	}
	if _, errOut, code := e.run("job", "cancel", id); code != 0 {
		t.Fatalf("cancel: %d %s", code, errOut)
	}
	out, errOut, code = e.run("job", "wait", id)
	if code != cli.ExitCanceled || !strings.Contains(errOut, "canceled") || !strings.Contains(out, "canceled") {
		t.Fatalf("wait after cancel: exit %d stdout %q stderr %q", code, out, errOut)
	}
}

func TestConsolidateWaitsThenShowsChain(t *testing.T) {
	e := newEnv(t)
	out, errOut, code := e.run("disk", "consolidate", "web", "vm1", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 {
		t.Errorf("chain after consolidate should have one layer:\n%s", out)
	}
}

func TestDoctorExitsNonZeroWhenProblemsRemain(t *testing.T) {
	e := newEnv(t)
	if _, errOut, code := e.run("doctor"); code != 0 {
		t.Fatalf("clean doctor: exit %d %s", code, errOut)
	}
	orphan := e.lab.Orphan(t, "l-orphan.qcow2")
	e.lab.LoseLayer(t, "web", "vm1", 0)
	out, errOut, code := e.run("doctor")
	if code != cli.ExitFailure || !strings.Contains(out, "orphan-file") || !strings.Contains(out, "missing-layer") || !strings.Contains(errOut, "2 problem(s) remain") {
		t.Fatalf("doctor: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = e.run("doctor", "--repair", "-o", "json")
	if code != cli.ExitFailure || !strings.Contains(errOut, "1 problem(s) remain") {
		t.Fatalf("doctor --repair: exit %d %s", code, errOut)
	}
	var rep wire.DoctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report = %s, %v", out, err)
	}
	for _, p := range rep.Problems {
		if p.Repaired != (p.Subject == orphan) {
			t.Errorf("problem %+v: repaired %v, want only the orphan %s repaired", p, p.Repaired, orphan)
		}
	}
	// What remains is the lost layer: deleting its configuration settles it.
	if _, errOut, code := e.run("config", "delete", "web"); code != 0 {
		t.Fatalf("config delete: exit %d %s", code, errOut)
	}
	if _, errOut, code := e.run("doctor", "--repair"); code != 0 {
		t.Fatalf("doctor after repair: exit %d %s", code, errOut)
	}
}

func TestUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, errOut, code := runCLI("http://"+addr, "config", "list")
	if code != cli.ExitUnavailable || !strings.Contains(errOut, "cannot reach the stagehand server") {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	// --server wins over the environment.
	e := newEnv(t)
	if _, errOut, code := runCLI("http://"+addr, "--server", e.url, "config", "list"); code != 0 {
		t.Fatalf("--server: exit %d %s", code, errOut)
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	out, errOut, code := runCLI("http://127.0.0.1:1", "config", "--help")
	if code != 0 || !strings.Contains(out, "clone") || errOut != "" {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}
