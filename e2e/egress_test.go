package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// egressJSON is config show's egress part.
type egressJSON struct {
	Egress *struct {
		Allow   []string `json:"allow"`
		Refused uint64   `json:"refused"`
		Counted bool     `json:"counted"`
	} `json:"egress"`
}

// A fenced deployment with an allow-list: the guest reaches the listed
// destination and not another port of the same host; config show lists
// the entries and counts each refused attempt; a daemon restart re-adopts
// the same rules and count; the undeploy writes an egress-refused event.
// Everything runs in the test's own namespaces: the daemon's, where the
// network's bridge is, and a client namespace on it serving two ports.
func TestEgressAllowList(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	guest := guestImages(t)
	ns := newNetns(t)
	client := newNetns(t)
	data := t.TempDir()
	d := startDaemonIn(t, ns, data)
	deployFixture(t, d, guest, "10.83.0.0/24", "10.83.0.10-10.83.0.60")
	d.ok("config", "create", "eg", "--vm", "a=kguest,net=lan")
	// Refused before anything starts, each naming what is wrong.
	d.fails(2, "block", "config", "deploy", "eg", "--fenced", "--fence-policy", "block", "--allow", "10.83.0.200")
	d.fails(2, "needs a fenced deployment", "config", "deploy", "eg", "--allow", "10.83.0.200")
	d.fails(2, `"10.83.0.200:0": port 0`, "config", "deploy", "eg", "--fenced", "--fence-policy", "out", "--allow", "10.83.0.200:0")
	d.fails(2, `protocol "icmp"`, "config", "deploy", "eg", "--fenced", "--fence-policy", "out", "--allow", "10.83.0.200:80/icmp")
	if st := d.config("eg").State; st != "undeployed" {
		t.Fatalf("refused deploys left state %s", st)
	}

	d.ok("config", "deploy", "eg", "--fenced", "--fence-policy", "out", "--allow", "10.83.0.200:8080/tcp")
	// The network's bridge exists once something is deployed on it.
	attachClient(t, ns, client, "lan", "10.83.0.200/24")
	serveHTTP(t, client) // :8080, allowed
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("other-port\n"), 0o644)
	argv := client.exec("busybox", "httpd", "-f", "-p", "8081", "-h", dir) // not allowed
	other := exec.Command(argv[0], argv[1:]...)
	if err := other.Start(); err != nil {
		t.Fatalf("busybox httpd: %v", err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	c := d.config("eg")
	internal := c.VMs[0].NICs[0].IP
	// Drive the guest from inside the fence (its QEMU runs there).
	fns := &netns{pid: vmPID(t, d, "eg", 0)}
	fns.waitGuest(t, internal, 90*time.Second)
	fetch := func(url string) map[string]string {
		t.Helper()
		kv, err := fns.guest(internal, "/fetch?url="+url)
		if err != nil {
			t.Fatalf("guest /fetch %s: %v", url, err)
		}
		return kv
	}
	if kv := fetch("http://10.83.0.200:8080/"); kv["fetch"] != "ok" {
		t.Errorf("allowed destination: %v", kv)
	}
	for range 2 {
		if kv := fetch("http://10.83.0.200:8081/"); kv["fetch"] == "ok" {
			t.Errorf("another port of the allowed host got through: %v", kv)
		}
	}
	show := func() egressJSON {
		t.Helper()
		var e egressJSON
		d.json(&e, "config", "show", "eg")
		if e.Egress == nil {
			t.Fatalf("config show has no egress")
		}
		return e
	}
	e := show()
	if !slices.Equal(e.Egress.Allow, []string{"10.83.0.200/32:8080/tcp"}) || !e.Egress.Counted || e.Egress.Refused != 2 {
		t.Errorf("config show egress = %+v; want the entry and 2 refused", *e.Egress)
	}
	out := d.ok("config", "show", "eg")
	if !strings.Contains(out, "10.83.0.200/32:8080/tcp (nothing else, DNS included)") || !strings.Contains(out, "2 connection attempts since deploy") {
		t.Errorf("config show table lacks the allow-list or the count:\n%s", out)
	}

	// A killed daemon's successor adopts the fence: the same rules, the
	// count goes on.
	pid := vmPID(t, d, "eg", 0)
	d.kill()
	d = startDaemonIn(t, ns, data)
	if p := vmPID(t, d, "eg", 0); p != pid {
		t.Errorf("VM PID %d → %d across the restart", pid, p)
	}
	if e := show(); e.Egress.Refused != 2 || !e.Egress.Counted {
		t.Errorf("after the restart: %+v; want 2 refused; daemon log:\n%s", *e.Egress, d.logTail(40))
	}
	if kv := fetch("http://10.83.0.200:8080/"); kv["fetch"] != "ok" {
		t.Errorf("allowed destination after the restart: %v", kv)
	}
	if kv := fetch("http://10.83.0.200:8081/"); kv["fetch"] == "ok" {
		t.Errorf("refused destination got through after the restart: %v", kv)
	}
	if e := show(); e.Egress.Refused != 3 {
		t.Errorf("after one more refusal: %+v; want 3", *e.Egress)
	}

	d.ok("config", "undeploy", "eg")
	var evs []struct{ Action, Subject, Detail string }
	d.json(&evs, "events")
	var got []string
	for _, ev := range evs {
		if ev.Action == "egress-refused" && ev.Subject == "eg" {
			got = append(got, ev.Detail)
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], "3 since deploy") || !strings.Contains(got[0], "10.83.0.200/32:8080/tcp") {
		t.Errorf("egress-refused events: %q; want one at undeploy with 3 since deploy", got)
	}
	var after egressJSON
	d.json(&after, "config", "show", "eg")
	if after.Egress != nil {
		t.Errorf("undeployed configuration still shows an allow-list: %+v", *after.Egress)
	}
}
