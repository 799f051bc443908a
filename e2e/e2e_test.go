// Package e2e drives the built stagehand binary the way a user does: a real
// daemon on 127.0.0.1 with its own data dir, and CLI commands against it.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stagehand-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "stagehand")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/stagehand").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build stagehand: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is one `stagehand serve` process.
type daemon struct {
	t       *testing.T
	dataDir string
	url     string
	cmd     *exec.Cmd
	log     string
	// wrap turns a command's argv into the one to run (e.g. inside a
	// network namespace); nil runs it as is.
	wrap func(argv ...string) []string
}

func requireTools(t *testing.T) {
	t.Helper()
	for _, b := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install qemu-utils): %v", b, err)
		}
	}
}

// startDaemon runs serve on a free loopback port with env added.
func startDaemon(t *testing.T, dataDir string, env ...string) *daemon {
	t.Helper()
	return startDaemonArgv(t, dataDir, []string{binary, "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--no-vms"}, env...)
}

// startDaemonArgv runs the daemon with argv.
func startDaemonArgv(t *testing.T, dataDir string, argv []string, env ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, dataDir: dataDir, log: filepath.Join(dataDir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano()))}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() { d.kill() })
	d.waitReady(readyWait)
	return d
}

// readyWait bounds the wait for a daemon to accept writes: it listens at
// once, and its recovery of a killed run's operations takes seconds.
const readyWait = 30 * time.Second

var (
	servingRE   = regexp.MustCompile(`msg="stagehand serving" addr=(\S+)`)
	recoveredRE = regexp.MustCompile(`msg="recovery done; accepting writes"`)
)

// waitReady waits until the daemon logs its address and the end of its
// recovery (from then on it accepts writes; its log is readable from any
// network namespace, its address is not). On failure it says what it
// waited for and shows the last lines of the daemon's log.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	what := "its address"
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(d.log)
		if m := servingRE.FindSubmatch(b); m != nil {
			d.url = "http://" + string(m[1])
			what = "the end of its recovery (at " + d.url + ")"
			if recoveredRE.Match(b) {
				return
			}
		}
		if d.exited() {
			d.cmd.Wait()
			d.t.Fatalf("daemon exited (%v) before it was ready; last lines of %s:\n%s", d.cmd.ProcessState, d.log, d.logTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("daemon not ready: waited %s for %s; last lines of %s:\n%s", timeout, what, d.log, d.logTail(30))
}

// exited reports whether the daemon's process has ended (a zombie not yet
// waited for, or gone), without waiting for it: kill and stop do that.
func (d *daemon) exited() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		return true
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(after, "Z")
}

// logTail returns the last n lines of the daemon's log.
func (d *daemon) logTail(n int) string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *daemon) kill() {
	if d.cmd.Process != nil && d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
		d.cmd.Wait()
	}
}

// tokenFile is the file of the API token the daemon's first start made
// for the system administrator: every request over TCP needs a token.
func (d *daemon) tokenFile() string { return filepath.Join(d.dataDir, "admin.token") }

// token is the content of tokenFile.
func (d *daemon) token() string {
	d.t.Helper()
	b, err := os.ReadFile(d.tokenFile())
	if err != nil {
		d.t.Fatalf("admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// stop ends the daemon gracefully.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.t.Errorf("daemon did not stop on SIGTERM")
		d.kill()
	}
}

// waitLog waits until the daemon's log contains s.
func (d *daemon) waitLog(s string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(d.log)
		if bytes.Contains(b, []byte(s)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.t.Fatalf("daemon log never said %q within %s; last lines of %s:\n%s", s, timeout, d.log, d.logTail(30))
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs a CLI command against the daemon.
func (d *daemon) run(args ...string) result {
	d.t.Helper()
	argv := append([]string{binary, "--server", d.url, "--token-file", d.tokenFile()}, args...)
	if d.wrap != nil {
		argv = d.wrap(argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("run %v: %v", args, err)
	}
	return r
}

// ok runs a command that must succeed.
func (d *daemon) ok(args ...string) string {
	d.t.Helper()
	r := d.run(args...)
	if r.code != 0 {
		d.t.Fatalf("stagehand %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with code and a one-line error
// containing want.
func (d *daemon) fails(code int, want string, args ...string) {
	d.t.Helper()
	r := d.run(args...)
	if r.code != code {
		d.t.Errorf("stagehand %s: exit %d, want %d\n%s%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "stagehand: ") || !strings.Contains(lines[0], want) {
		d.t.Errorf("stagehand %s: stderr %q, want one line containing %q", strings.Join(args, " "), r.stderr, want)
	}
}

func (d *daemon) json(v any, args ...string) {
	d.t.Helper()
	out := d.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.t.Fatalf("stagehand %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

type configJSON struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Fenced bool   `json:"fenced"`
	VMs    []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Disks []struct {
			Path  string   `json:"path"`
			Chain []string `json:"chain"`
		} `json:"disks"`
		NICs []struct {
			Network    string `json:"network"`
			MAC        string `json:"mac"`
			IPMode     string `json:"ip_mode"`
			IP         string `json:"ip"`
			ExternalIP string `json:"external_ip"`
		} `json:"nics"`
	} `json:"vms"`
}

func (d *daemon) config(name string) configJSON {
	d.t.Helper()
	var c configJSON
	d.json(&c, "config", "show", name)
	return c
}

func makeImage(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "disk.qcow2")
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", p, "64M"},
		{"qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 1M", p},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	return p
}

func qemuIO(t *testing.T, path string, cmds ...string) string {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("qemu-io", append(args, path)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "failed") {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
	return string(out)
}

// TestCoreWorkflow walks the core of the CLI contract end to end.
func TestCoreWorkflow(t *testing.T) {
	requireTools(t)
	data := t.TempDir()
	d := startDaemon(t, data)
	img := makeImage(t, t.TempDir())

	d.ok("template", "import", "linux", "--disk", img, "--cpus", "2", "--memory", "512")
	d.ok("network", "create", "lan", "--subnet", "10.60.0.0/24", "--pool", "10.60.0.10-10.60.0.12")
	d.ok("config", "create", "web", "--vm", "app=linux,net=lan", "--vm", "db=linux,net=lan,ip=10.60.0.5")
	web := d.config("web")
	if web.Name != "web" || web.State != "undeployed" || len(web.VMs) != 2 {
		t.Fatalf("config show: %+v", web)
	}
	app := web.VMs[0]
	if len(app.Disks) != 1 || len(app.Disks[0].Chain) != 2 || app.Disks[0].Chain[0] != app.Disks[0].Path {
		t.Fatalf("app disk: %+v", app.Disks)
	}
	if app.NICs[0].Network != "lan" || app.NICs[0].IPMode != "pool" || app.NICs[0].IP != "10.60.0.10" || app.NICs[0].MAC == "" {
		t.Fatalf("app NIC: %+v", app.NICs[0])
	}
	if db := web.VMs[1].NICs[0]; db.IPMode != "manual" || db.IP != "10.60.0.5" {
		t.Fatalf("db NIC: %+v", db)
	}
	qemuIO(t, app.Disks[0].Path, "write -P 0xbb 1M 1M")

	d.ok("config", "clone", "web", "web-linked", "--mode", "linked")
	d.ok("config", "clone", "web", "web-full", "--mode", "full")
	linked, full := d.config("web-linked"), d.config("web-full")
	if got := len(linked.VMs[0].Disks[0].Chain); got != 3 {
		t.Errorf("linked clone chain %v, want 3 layers", linked.VMs[0].Disks[0].Chain)
	}
	if got := len(full.VMs[0].Disks[0].Chain); got != 1 {
		t.Errorf("full clone chain %v, want 1 layer", full.VMs[0].Disks[0].Chain)
	}
	for _, c := range []configJSON{linked, full} {
		for i := range c.VMs {
			if c.VMs[i].NICs[0].IP != web.VMs[i].NICs[0].IP || c.VMs[i].NICs[0].MAC == web.VMs[i].NICs[0].MAC {
				t.Errorf("%s/%s NIC %+v vs source %+v: want same IP, new MAC", c.Name, c.VMs[i].Name, c.VMs[i].NICs[0], web.VMs[i].NICs[0])
			}
		}
		qemuIO(t, c.VMs[0].Disks[0].Path, "read -P 0xaa 0 1M", "read -P 0xbb 1M 1M")
	}

	// disk chain: top → base with frozen flags.
	var chain []struct {
		Path   string `json:"path"`
		Frozen bool   `json:"frozen"`
	}
	d.json(&chain, "disk", "chain", "web-linked", "app")
	if len(chain) != 3 || chain[0].Frozen || !chain[1].Frozen || !chain[2].Frozen {
		t.Errorf("disk chain: %+v", chain)
	}
	if table := d.ok("disk", "chain", "web-linked", "app"); !strings.Contains(table, chain[0].Path) {
		t.Errorf("disk chain table lacks the top path:\n%s", table)
	}

	// Pool usage: the family holds the address.
	var nw struct {
		Usage []struct {
			IP      string `json:"ip"`
			Holders []struct {
				Config string `json:"config"`
				VM     string `json:"vm"`
			} `json:"holders"`
		} `json:"usage"`
	}
	d.json(&nw, "network", "show", "lan")
	for _, u := range nw.Usage {
		if len(u.Holders) != 3 {
			t.Errorf("%s held by %+v, want web, web-linked and web-full", u.IP, u.Holders)
		}
	}

	// Bad input: one line, non-zero, nothing changed.
	d.fails(3, "not found", "config", "show", "nope")
	d.fails(4, "already exists", "config", "create", "web", "--vm", "x=linux")
	d.fails(2, "not allowed", "config", "create", "a/b", "--vm", "x=linux")
	d.fails(2, "gateway", "config", "create", "bad", "--vm", "x=linux,net=lan,ip=10.60.0.1")
	d.fails(2, "outside subnet", "config", "create", "bad", "--vm", "x=linux,net=lan,ip=10.61.0.9")
	d.fails(4, "exhausted", "config", "create", "bad", "--vm", "x=linux,net=lan", "--vm", "y=linux,net=lan", "--vm", "z=linux,net=lan")
	d.fails(2, "", "template", "import", "t2", "--disk", filepath.Join(data, "stagehand.db"), "--format", "qcow2")
	d.fails(3, "not found", "config", "clone", "nope", "x")

	// Delete: addresses return only when the last family member is gone.
	d.ok("config", "delete", "web")
	d.ok("config", "delete", "web-full")
	d.json(&nw, "network", "show", "lan")
	if len(nw.Usage) != 2 {
		t.Errorf("after deleting web and web-full: usage %+v, want both addresses held by web-linked", nw.Usage)
	}
	d.ok("config", "delete", "web-linked")
	d.json(&nw, "network", "show", "lan")
	if len(nw.Usage) != 0 {
		t.Errorf("after deleting every member: usage %+v, want none", nw.Usage)
	}
	d.ok("doctor")
	files, _ := filepath.Glob(filepath.Join(data, "layers", "*"))
	if len(files) != 1 {
		t.Errorf("layers left: %v, want only the template base", files)
	}
	d.stop()
}

// TestKilledMidOperationRecovers SIGKILLs the daemon in the middle of each
// multi-step operation and checks that the restarted daemon either finished
// or rolled back the operation, with the doctor clean.
func TestKilledMidOperationRecovers(t *testing.T) {
	requireTools(t)
	cases := []struct {
		fault string   // OP:STEP where the daemon is killed
		args  []string // the command that is interrupted
		// exists is the configuration the command makes, or "" when it
		// deletes web; after recovery the command has happened either
		// fully or not at all.
		check func(t *testing.T, d *daemon)
	}{
		{"import:commit", []string{"template", "import", "t2", "--disk", "IMG"}, func(t *testing.T, d *daemon) {
			d.fails(3, "not found", "template", "show", "t2")
		}},
		{"create:commit", []string{"config", "create", "new", "--vm", "a=linux,net=lan", "--vm", "b=linux,net=lan"}, func(t *testing.T, d *daemon) {
			d.fails(3, "not found", "config", "show", "new")
		}},
		{"clone:clone-delta", []string{"config", "clone", "web", "new"}, func(t *testing.T, d *daemon) {
			d.fails(3, "not found", "config", "show", "new")
			// The source's frozen layer was unfrozen: it is writable again.
			c := d.config("web")
			st, err := os.Stat(c.VMs[0].Disks[0].Path)
			if err != nil || st.Mode().Perm()&0o200 == 0 {
				t.Errorf("source top %s not writable after rollback: %v %v", c.VMs[0].Disks[0].Path, st.Mode(), err)
			}
		}},
		{"full-clone:commit", []string{"config", "clone", "web", "new", "--mode", "full", "--detach"}, func(t *testing.T, d *daemon) {
			d.fails(3, "not found", "config", "show", "new")
		}},
		{"delete:remove-files", []string{"config", "delete", "web"}, func(t *testing.T, d *daemon) {
			d.fails(3, "not found", "config", "show", "web")
		}},
		{"consolidate:commit", []string{"disk", "consolidate", "web", "app", "--detach"}, func(t *testing.T, d *daemon) {
			if n := len(d.config("web").VMs[0].Disks[0].Chain); n != 2 {
				t.Errorf("interrupted consolidate changed the chain to %d layers", n)
			}
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.fault, ":", "-"), func(t *testing.T) {
			data := t.TempDir()
			img := makeImage(t, t.TempDir())
			d0 := startDaemon(t, data)
			d0.ok("template", "import", "linux", "--disk", img)
			d0.ok("network", "create", "lan", "--subnet", "10.61.0.0/24", "--pool", "10.61.0.10-10.61.0.20")
			d0.ok("config", "create", "web", "--vm", "app=linux,net=lan")
			qemuIO(t, d0.config("web").VMs[0].Disks[0].Path, "write -P 0x11 0 64k")
			d0.stop()

			// The same data dir under a daemon armed to pause mid-operation.
			d := startDaemon(t, data, "STAGEHAND_TEST_FAULT="+c.fault+"=pause")

			args := append([]string{"--server", d.url, "--token-file", d.tokenFile()}, c.args...)
			for i, a := range args {
				if a == "IMG" {
					args[i] = img
				}
			}
			cli := exec.Command(binary, args...)
			if err := cli.Start(); err != nil {
				t.Fatal(err)
			}
			d.waitLog("test fault: pausing", 30*time.Second)
			d.kill()
			cli.Wait()

			d2 := startDaemon(t, data)
			c.check(t, d2)
			if r := d2.run("doctor"); r.code != 0 {
				t.Errorf("doctor after recovery: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			// Nothing on disk that the store does not know, and the
			// survivors still read their data.
			if r := d2.run("config", "show", "web", "-o", "json"); r.code == 0 {
				qemuIO(t, d2.config("web").VMs[0].Disks[0].Path, "read -P 0x11 0 64k", "read -P 0xaa 64k 960k")
			}
			d2.stop()
		})
	}
}
