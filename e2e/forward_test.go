package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestForwardToHomeHost: two hosts on one PostgreSQL, each in its own
// namespace, talking HTTPS over the underlay. A configuration created
// through host 1 lives there; `config show`, `config deploy`, `vm log`
// and `vm console` sent to host 2 run on host 1: the guest's QEMU is in
// host 1's namespace, none in host 2's. With host 1's daemon killed, host
// 2 answers 503 naming host 1 and when it was last seen.
func TestForwardToHomeHost(t *testing.T) {
	c := newCluster(t, 2)
	guest := guestImages(t)
	h1, h2 := c.host(1), c.host(2)
	deployFixture(t, h1.daemon, guest, "10.75.0.0/24", "10.75.0.10-10.75.0.50")
	h1.ok("config", "create", "web", "--vm", "a=kguest,net=lan")

	if got := h2.config("web"); got.Name != "web" || len(got.VMs) != 1 {
		t.Fatalf("config show through h2: %+v", got)
	}
	h2.ok("config", "deploy", "web")
	if pids := h1.ns.qemuPIDs(t); len(pids) != 1 {
		t.Errorf("QEMU processes in h1's namespace: %v, want 1", pids)
	}
	if pids := h2.ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("QEMU processes in h2's namespace: %v, want none", pids)
	}

	// The serial log, read through h2, is the one h1's QEMU writes.
	deadline := time.Now().Add(120 * time.Second)
	var log string
	for time.Now().Before(deadline) && !strings.Contains(log, "STAGEHAND-IP eth0 ") {
		log = h2.ok("vm", "log", "web", "a")
		time.Sleep(time.Second)
	}
	if !strings.Contains(log, "STAGEHAND-IP eth0 ") {
		t.Fatalf("vm log through h2 lacks the guest's address line:\n%s", log)
	}
	// The console through h2: a websocket upgrade proxied to h1.
	argv := h2.wrap(binary, "--server", h2.url, "--token-file", h2.tokenFile(), "vm", "console", "web", "a")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader("\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("vm console through h2: %v\n%s", err, out)
	}

	c.kill9(1)
	deadline = time.Now().Add(30 * time.Second)
	var r result
	for time.Now().Before(deadline) {
		if r = h2.run("vm", "log", "web", "a"); strings.Contains(r.stderr, "offline") {
			break
		}
		time.Sleep(time.Second)
	}
	if r.code == 0 || !strings.Contains(r.stderr, `host "h1" is offline (last seen `) {
		t.Fatalf("vm log through h2 with h1 killed: exit %d\n%s%s\nwant a 503 naming h1 and when it was last seen", r.code, r.stdout, r.stderr)
	}
}
