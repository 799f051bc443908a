package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ladderHook is a webhook receiver listening on 127.0.0.1 inside the test's
// namespace, where the daemon runs.
type ladderHook struct {
	url   string
	mu    sync.Mutex
	posts []ladderNotice
}

type ladderNotice struct {
	Event     string    `json:"event"`
	Config    string    `json:"config"`
	Workspace string    `json:"workspace"`
	Step      string    `json:"step"`
	Policy    string    `json:"policy"`
	At        time.Time `json:"at"`
	Expires   time.Time `json:"expires"`
	signed    bool
}

func newLadderHook(t *testing.T, ns *netns, secret string) *ladderHook {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns.name, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h := &ladderHook{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n ladderNotice
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("webhook body %q: %v", b, err)
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(b)
		n.signed = r.Header.Get("X-Stagehand-Signature") == "sha256="+hex.EncodeToString(m.Sum(nil))
		h.mu.Lock()
		h.posts = append(h.posts, n)
		h.mu.Unlock()
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/lease"
	return h
}

func (h *ladderHook) steps() []ladderNotice {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ladderNotice(nil), h.posts...)
}

// TestLeaseLadderOnRealGuest walks a real TCG guest down a workspace's
// lease ladder measured in seconds: a warning (event and a signed webhook
// post to a receiver on 127.0.0.1), suspend at the expiry (a state file,
// no QEMU left), undeploy (state discarded), archive, delete; each step
// shows in config show and the event log as it happens.
func TestLeaseLadderOnRealGuest(t *testing.T) {
	t.Parallel() // own namespace, subnet and data dir
	requireVMs(t)
	guest := guestImages(t)
	ns := newNetns(t)
	data := t.TempDir()
	t.Cleanup(func() { killLeftovers(data) })
	const secret = "ladder-secret"
	hook := newLadderHook(t, ns, secret)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonArgv(t, data, ns.exec(binary, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
		"--reap-interval", "250ms", "--accel", "tcg", "--lease-webhook-allow-loopback"))
	d.wrap = ns.exec
	deployFixture(t, d, guest, "10.93.0.0/24", "10.93.0.10-10.93.0.50")
	d.ok("workspace", "lease-policy", "set", "main", "--ladder", "warn=12s,suspend,undeploy=6s,archive=12s,delete=20s",
		"--webhook", hook.url, "--webhook-secret-file", secretFile)
	d.ok("config", "create", "s", "--vm", "a=kguest,net=lan")

	type ladderJSON struct {
		Policy, Step, Next string
		Cancelled          bool
		NextAt             time.Time `json:"next_at"`
	}
	var c struct {
		State string `json:"state"`
		Lease struct {
			DeployExpires time.Time   `json:"deploy_expires"`
			Ladder        *ladderJSON `json:"ladder"`
		} `json:"lease"`
		VMs []struct {
			State string `json:"state"`
		} `json:"vms"`
	}
	d.json(&c, "config", "deploy", "s", "--deploy-lease", "15s")
	expires := c.Lease.DeployExpires
	d.json(&c, "config", "show", "s")
	if c.Lease.Ladder == nil || c.Lease.Ladder.Policy != "workspace default/main" || c.Lease.Ladder.Next != "warn" ||
		!c.Lease.Ladder.NextAt.Equal(expires.Add(-12*time.Second)) {
		t.Fatalf("config show after deploy: ladder %+v (expires %v)", c.Lease.Ladder, expires)
	}

	// waitStep polls config show until the ladder reached step.
	waitStep := func(step string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			c.Lease.Ladder = nil
			d.json(&c, "config", "show", "s")
			// The step is recorded as it starts; wait for what it does.
			if c.Lease.Ladder != nil && c.Lease.Ladder.Step == step && !strings.HasSuffix(c.State, "ing") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ladder step %q not reached (now %+v, state %s); events:\n%s", step, c.Lease.Ladder, c.State, d.ok("events"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitStep("warn", 20*time.Second)
	if c.State != "deployed" || c.Lease.Ladder.Next != "suspend" || !c.Lease.Ladder.NextAt.Equal(expires) {
		t.Errorf("after the warning: %s, ladder %+v", c.State, c.Lease.Ladder)
	}
	waitStep("suspend", 30*time.Second)
	if c.State != "undeployed" || c.VMs[0].State != "saved" || c.Lease.Ladder.Next != "undeploy" {
		t.Errorf("suspended: %s, VM %s, ladder %+v", c.State, c.VMs[0].State, c.Lease.Ladder)
	}
	states, _ := filepath.Glob(filepath.Join(data, "state", "*.state"))
	if len(states) != 1 {
		t.Errorf("suspended: state files %v, want one", states)
	}
	if pids := ns.qemuPIDs(t); len(pids) != 0 {
		t.Errorf("suspended: QEMU still running: %v", pids)
	}
	waitStep("undeploy", 30*time.Second)
	if states, _ := filepath.Glob(filepath.Join(data, "state", "*.state")); len(states) != 0 || c.VMs[0].State == "saved" {
		t.Errorf("undeploy step: state files %v, VM %s", states, c.VMs[0].State)
	}
	waitStep("archive", 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for out := d.ok("archive", "list"); !strings.Contains(out, "s-expired-"); out = d.ok("archive", "list") {
		if time.Now().After(deadline) {
			t.Fatalf("archive step: archive list:\n%s\nevents:\n%s", out, d.ok("events"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline = time.Now().Add(60 * time.Second)
	for d.run("config", "show", "s").code == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("s not deleted; events:\n%s", d.ok("events"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	var evs []struct {
		Actor, Action, Subject, Result, Detail string
	}
	d.json(&evs, "events")
	var got []string
	for _, e := range evs {
		if e.Actor == "reaper" && strings.HasPrefix(e.Action, "lease-") {
			got = append(got, e.Action+":"+e.Result)
			if !strings.Contains(e.Detail, "policy workspace default/main: step "+strings.TrimPrefix(e.Action, "lease-")) {
				t.Errorf("event %s does not name the policy and step: %q", e.Action, e.Detail)
			}
		}
	}
	if strings.Join(got, " ") != "lease-warn:ok lease-suspend:ok lease-undeploy:ok lease-archive:ok lease-delete:ok" {
		t.Errorf("reaper's ladder events: %v", got)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(hook.steps()) < 5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	var steps []string
	for _, n := range hook.steps() {
		steps = append(steps, n.Step)
		if !n.signed || n.Config != "s" || n.Workspace != "default/main" || n.Event != "lease-"+n.Step || !n.Expires.Equal(expires) {
			t.Errorf("webhook notice %+v (signed %v)", n, n.signed)
		}
	}
	if strings.Join(steps, ",") != "warn,suspend,undeploy,archive,delete" {
		t.Errorf("webhook steps %v", steps)
	}
	d.stop()
}
