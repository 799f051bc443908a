package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/cli"
	"stagehand/internal/client"
	"stagehand/internal/daemon"
	"stagehand/internal/syncbuf"
)

// TestServeAndShutdown runs the daemon with the real store and disk tool on
// a free port, drives it with the CLI, then stops it as SIGTERM would.
func TestServeAndShutdown(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	// A data dir made by serve, and one that others could read: both end
	// up readable by root only.
	dir := filepath.Join(t.TempDir(), "new", "data")
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logs := &syncbuf.Buffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(ctx, []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"},
			deps(nil, &bytes.Buffer{}, logs, func(string) string { return "" }))
	}()

	addr := waitReady(t, logs, exited, 5*time.Second)

	run := func(args ...string) (string, string, int) {
		var out, errw bytes.Buffer
		code := cli.Run(context.Background(), append([]string{"--server", "http://" + addr, "--token-file", filepath.Join(dir, daemon.AdminTokenFile)}, args...),
			deps(nil, &out, &errw, func(string) string { return "" }))
		return out.String(), errw.String(), code
	}
	if out, errOut, code := run("network", "create", "lan", "--subnet", "10.77.0.0/24", "--pool", "10.77.0.10-10.77.0.20", "-o", "json"); code != 0 || !strings.Contains(out, `"subnet": "10.77.0.0/24"`) {
		t.Fatalf("network create: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code := run("config", "show", "nope"); code != cli.ExitNotFound || errOut != "stagehand: configuration \"nope\" not found\n" {
		t.Fatalf("config show nope: exit %d %q", code, errOut)
	}
	// Without --server, the CLI finds the daemon's socket in the data dir.
	var out, errw bytes.Buffer
	if code := cli.Run(context.Background(), []string{"network", "list"}, deps(nil, &out, &errw, func(k string) string {
		if k == "STAGEHAND_DATA_DIR" {
			return dir
		}
		return ""
	})); code != 0 || !strings.Contains(out.String(), "lan") {
		t.Errorf("network list over the default socket: exit %d\n%s%s", code, out.String(), errw.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "stagehand.db")); err != nil {
		t.Errorf("store file: %v", err)
	}
	wantDir := dataDirMode(t)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != wantDir {
		t.Errorf("data dir made by serve: %v %v, want %v", fi.Mode(), err, wantDir)
	}
	// The same binary on a data dir others can read: serve narrows it.
	sctx, sstop := context.WithCancel(context.Background())
	sexited := make(chan int, 1)
	slogs := &syncbuf.Buffer{}
	go func() {
		sexited <- cli.Run(sctx, []string{"serve", "--data-dir", shared, "--listen", "127.0.0.1:0", "--no-vms"},
			deps(nil, &bytes.Buffer{}, slogs, func(string) string { return "" }))
	}()
	waitReady(t, slogs, sexited, 5*time.Second)
	sstop()
	<-sexited
	if fi, err := os.Stat(shared); err != nil || fi.Mode().Perm() != wantDir {
		t.Errorf("shared data dir after serve: %v %v, want %v", fi.Mode(), err, wantDir)
	}

	stop()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("serve exit %d after shutdown:\n%s", code, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no stop log:\n%s", logs)
	}
	// The daemon is gone: the CLI says so, naming where it looked.
	if _, errOut, code := run("config", "list"); code != cli.ExitUnavailable ||
		!strings.Contains(errOut, "cannot reach the stagehand server at http://"+addr+": no daemon is listening there") {
		t.Errorf("after shutdown: exit %d, want %d: %s", code, cli.ExitUnavailable, errOut)
	}
}

func TestServeRefusesABusyAddress(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	first := &syncbuf.Buffer{}
	ctx, stop := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(ctx, []string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"},
			deps(nil, &bytes.Buffer{}, first, func(string) string { return "" }))
	}()
	t.Cleanup(func() { stop(); <-exited })
	addr := waitReady(t, first, exited, 5*time.Second)
	var errw syncbuf.Buffer
	code := cli.Run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--listen", addr},
		deps(nil, &bytes.Buffer{}, &errw, func(string) string { return "" }))
	if code == 0 || !strings.Contains(errw.String(), "stagehand: listen on "+addr) {
		t.Fatalf("second daemon: exit %d\n%s", code, errw.String())
	}
}

// TestSocketNamesAgree: the CLI looks for the socket where the daemon
// makes it.
func TestSocketNamesAgree(t *testing.T) {
	if cli.SocketFile != daemon.SocketFile {
		t.Errorf("the CLI looks for %s, the daemon makes %s", cli.SocketFile, daemon.SocketFile)
	}
}

// serveAddrRE finds the daemon's address in its log.
var serveAddrRE = regexp.MustCompile(`msg="stagehand serving" addr=(\S+)`)

// waitReady waits up to timeout for the daemon writing logs to listen and
// accept writes (GET /readyz), and returns its address. On failure it says
// what it waited for and shows the last lines of the daemon's log.
func waitReady(t *testing.T, logs *syncbuf.Buffer, exited <-chan int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var addr string
	var last error
	for time.Now().Before(deadline) {
		select {
		case code := <-exited:
			t.Fatalf("serve exited with %d before it was ready; last lines of its log:\n%s", code, logTail(logs.String(), 30))
		default:
		}
		if addr == "" {
			if m := serveAddrRE.FindStringSubmatch(logs.String()); m != nil {
				addr = m[1]
			}
		}
		if addr != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			last = client.New(addr).Server().Ready(ctx)
			cancel()
			if last == nil {
				return addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	what := "to log its address"
	if addr != "" {
		what = fmt.Sprintf("at %s to be ready (last answer: %v)", addr, last)
	}
	t.Fatalf("waited %s for the daemon %s; last lines of its log:\n%s", timeout, what, logTail(logs.String(), 30))
	return ""
}

// logTail returns the last n lines of log.
func logTail(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestServeAnswersWhileProbing starts the daemon with an accelerator probe
// that never decides (STAGEHAND_TEST_PROBE=hang: whether this host's KVM
// hangs, fails at once or works, the probe hangs) and shows the API
// (health, status, a write, the doctor) answering within a second of the
// start, status and doctor saying "probing", and that stopping the daemon
// stops the probe without caching anything.
func TestServeAnswersWhileProbing(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logs := &syncbuf.Buffer{}
	exited := make(chan int, 1)
	began := time.Now()
	go func() {
		exited <- cli.Run(ctx, []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--probe-timeout", "60s"},
			deps(nil, &bytes.Buffer{}, logs, func(k string) string {
				if k == "STAGEHAND_TEST_PROBE" {
					return "hang"
				}
				return ""
			}))
	}()
	var addr string
	for addr == "" && time.Since(began) < 5*time.Second {
		if m := serveAddrRE.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("no address logged within 5s; log:\n%s", logTail(logs.String(), 30))
	}
	hc := &http.Client{Timeout: time.Second}
	var healthAt time.Duration
	for {
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				healthAt = time.Since(began)
				break
			}
		}
		if time.Since(began) > 5*time.Second {
			t.Fatalf("/healthz did not answer within 5s (%v); log:\n%s", err, logTail(logs.String(), 30))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("/healthz answered %s after the start", healthAt.Round(time.Millisecond))
	if !strings.Contains(logs.String(), "test probe armed (STAGEHAND_TEST_PROBE=hang)") {
		t.Errorf("the test probe is not announced in the log:\n%s", logTail(logs.String(), 30))
	}
	if healthAt > time.Second {
		t.Errorf("/healthz answered %s after the start, want within 1s", healthAt.Round(time.Millisecond))
	}

	run := func(args ...string) (string, string, int) {
		var out, errw bytes.Buffer
		code := cli.Run(context.Background(), append([]string{"--server", "http://" + addr, "--token-file", filepath.Join(dir, daemon.AdminTokenFile)}, args...),
			deps(nil, &out, &errw, func(string) string { return "" }))
		return out.String(), errw.String(), code
	}
	out, errOut, code := run("status", "-o", "json")
	statusAt := time.Since(began)
	var st wire.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("status answered %s after the start: %+v", statusAt.Round(time.Millisecond), st.Accel)
	if statusAt > time.Second {
		t.Errorf("status answered %s after the start, want within 1s", statusAt.Round(time.Millisecond))
	}
	if st.Accel.State != wire.AccelProbing || st.Accel.Accel != "" {
		t.Errorf("status accel = %+v, want probing", st.Accel)
	}
	if st.DataDir != dir || st.Store.Kind != "sqlite" || st.Store.Path != filepath.Join(dir, "stagehand.db") || st.Version == "" {
		t.Errorf("status = %+v", st)
	}
	out, _, code = run("status")
	if code != 0 || !regexp.MustCompile(`Accelerator:\s+probing for \d+s \(probing whether a guest boots under KVM\)`).MatchString(out) {
		t.Errorf("status table: exit %d\n%s", code, out)
	}
	// Reads and writes are served while the probe runs; the doctor shows it.
	if out, errOut, code := run("network", "create", "lan", "--subnet", "10.78.0.0/24", "--pool", "10.78.0.10-10.78.0.20"); code != 0 {
		t.Fatalf("network create while probing: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = run("doctor")
	if !strings.Contains(out, "accelerator: probing (probing whether a guest boots under KVM, for ") {
		t.Errorf("doctor while probing:\n%s", out)
	}
	// The probe really hangs: well past the answers above it still runs.
	time.Sleep(time.Until(began.Add(2 * time.Second)))
	out, _, _ = run("status", "-o", "json")
	if json.Unmarshal([]byte(out), &st) != nil || st.Accel.State != wire.AccelProbing || st.Accel.ProbingSeconds < 1.5 {
		t.Errorf("status 2s after the start: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "accel-probe.json")); !os.IsNotExist(err) {
		t.Errorf("probe cache written before the probe decided: %v", err)
	}

	stop()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("serve exit %d:\n%s", code, logTail(logs.String(), 30))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop:\n%s", logTail(logs.String(), 30))
	}
	if _, err := os.Stat(filepath.Join(dir, "accel-probe.json")); !os.IsNotExist(err) {
		t.Errorf("a stopped probe was cached: %v", err)
	}
}

// TestServeHelpListsTheFlags runs `stagehand serve --help` through the CLI
// as a user does: the serve command main builds lists every flag of the
// daemon with its default, beside the CLI's global ones.
func TestServeHelpListsTheFlags(t *testing.T) {
	var out, errw bytes.Buffer
	code := cli.Run(context.Background(), []string{"serve", "--help"}, deps(nil, &out, &errw, func(string) string { return "" }))
	if code != 0 {
		t.Fatalf("serve --help: exit %d: %s", code, errw.String())
	}
	for _, want := range []string{
		`--data-dir string`, `(default "` + cli.DefaultDataDir + `")`, "--listen string", "--tls-cert string", "--tls-key string",
		"--chain-limit int", "--log-level string", `--accel string`, "--probe-kernel string", "--probe-initrd string",
		"--probe-timeout duration", "--no-vms", "--archive-dir string", `--default-storage-lease string`,
		`--default-deploy-lease string`, `--cleanup-policy string`, `(default "7d")`, "--reap-interval duration",
		"--server string", "-o, --output string",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("serve --help lacks %q:\n%s", want, out.String())
		}
	}
	// A bad flag value is a usage error, before anything is started.
	errw.Reset()
	code = cli.Run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--accel", "xen"}, deps(nil, &out, &errw, func(string) string { return "" }))
	if code != cli.ExitUsage || errw.String() != "stagehand: --accel \"xen\" is not auto, kvm or tcg; see 'stagehand serve --help'\n" {
		t.Errorf("serve --accel xen: exit %d %q", code, errw.String())
	}
}

// dataDirMode is the mode serve gives its data directory: 0700, or 0710
// when the host has the socket's group "stagehand" (its members must pass
// through the directory to reach the socket; a Debian package install
// makes the group, so a machine that ran the package test has it).
func dataDirMode(t *testing.T) os.FileMode {
	t.Helper()
	if _, err := user.LookupGroup("stagehand"); err == nil {
		return 0o710
	}
	return 0o700
}
