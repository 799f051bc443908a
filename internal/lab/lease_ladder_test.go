package lab_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/lab/lease"
	"stagehand/internal/store"
	"stagehand/internal/webhook"
)

// hookReceiver is a webhook endpoint on 127.0.0.1 that keeps what it gets.
type hookReceiver struct {
	URL   string
	mu    sync.Mutex
	posts []hookPost
	delay time.Duration
}

type hookPost struct {
	Notice    lease.Notice
	Body      []byte
	Signature string
}

func newHookReceiver(t *testing.T, delay time.Duration) *hookReceiver {
	r := &hookReceiver{delay: delay}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var n lease.Notice
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("webhook body %q: %v", b, err)
		}
		r.mu.Lock()
		r.posts = append(r.posts, hookPost{Notice: n, Body: b, Signature: req.Header.Get(webhook.SignatureHeader)})
		r.mu.Unlock()
		select {
		case <-time.After(r.delay):
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/lease"
	return r
}

// waitFor waits until the receiver holds n posts and returns them.
func (r *hookReceiver) waitFor(t *testing.T, n int) []hookPost {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := append([]hookPost(nil), r.posts...)
		r.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("webhook got %d posts, want %d", len(got), n)
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ladderOpts runs the lab on the fake host with clock, the daemon ladder
// spec and a webhook sender allowed to reach the test's receiver.
func ladderOpts(t *testing.T, host *labtest.Host, clock *clock, spec string, hook lease.Webhook) func(*lab.Options) {
	ladder, err := lease.ParseLadder(spec)
	if err != nil {
		t.Fatal(err)
	}
	ladder.Webhook = hook
	return func(o *lab.Options) {
		host.Use(o)
		o.Now = clock.Now
		o.Leases = lab.LeasePolicy{Ladder: ladder}
		s := webhook.New(webhook.Options{AllowLoopback: true, Timeout: 200 * time.Millisecond, Backoff: 20 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		t.Cleanup(s.Close)
		o.Webhooks = s
	}
}

func (e *env) deployFor(name string, d time.Duration) {
	e.t.Helper()
	if _, err := e.svc.Deployments.Deploy(context.Background(), name, lab.DeployOptions{DeployLease: &d}); err != nil {
		e.t.Fatal(err)
	}
}

// ladderOf returns config's ladder state as `config show` has it.
func (e *env) ladderOf(name string) lab.LadderState {
	e.t.Helper()
	return e.get(name).Lease.Ladder
}

func (e *env) reaperEvents(prefix string) []string {
	e.t.Helper()
	evs, err := e.svc.Events.List(context.Background(), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Actor == lab.ActorReaper && strings.HasPrefix(ev.Action, prefix) {
			out = append(out, ev.Action+":"+ev.Subject+" "+ev.Detail)
		}
	}
	return out
}

// TestLeaseLadderEveryStepAcrossRestart walks a deployment down the whole
// ladder with an injected clock: warn an hour before the expiry (event and
// signed webhook), suspend at it (saved state, nothing running), undeploy a
// day later (saved state gone), archive a day after, delete a day after
// that; the daemon restarts after suspend, and the new one takes neither
// a step again nor one early.
func TestLeaseLadderEveryStepAcrossRestart(t *testing.T) {
	clock := newClock()
	host := labtest.NewHost()
	hook := newHookReceiver(t, 0)
	opts := ladderOpts(t, host, clock, "warn=1h,suspend,undeploy=1d,archive=2d,delete=3d", lease.Webhook{URL: hook.URL, Secret: "k3y"})
	e := newEnv(t, opts)
	e.template("base")
	e.config("web", lab.VMSpec{Name: "vm", Template: "base"})
	e.deployFor("web", 4*time.Hour)
	expires := clock.Now().Add(4 * time.Hour)
	vmID := vmIDOf(t, e, "web")
	stateFile := filepath.Join(e.dir, "state", "vm-"+strconv.FormatInt(vmID, 10)+".state")

	want := func(step, next string, nextAt time.Time) {
		t.Helper()
		s := e.ladderOf("web")
		if s.Policy != "daemon" || s.Step != step || s.Next != next || !s.NextAt.Equal(nextAt) || s.Cancelled {
			t.Errorf("ladder %+v, want step %q, next %q at %v", s, step, next, nextAt)
		}
	}
	want("", "warn", expires.Add(-time.Hour))
	if got := e.reap(); got != "" {
		t.Errorf("at deploy: reaper did %q", got)
	}
	clock.Advance(3*time.Hour - time.Second)
	if got := e.reap(); got != "" {
		t.Errorf("a second before the warning: reaper did %q", got)
	}
	clock.Advance(time.Second)
	if got := e.reap(); got != "lease-warn:web" {
		t.Errorf("at T-1h: reaper did %q", got)
	}
	if got := e.reap(); got != "" {
		t.Errorf("warned again: %q", got)
	}
	want("warn", "suspend", expires)
	posts := hook.waitFor(t, 1)
	n := posts[0].Notice
	if n.Event != "lease-warn" || n.Config != "web" || n.Step != "warn" || n.Workspace == "" ||
		!n.Expires.Equal(expires) || !n.At.Equal(clock.Now()) || n.Next != "suspend" || !n.NextAt.Equal(expires) {
		t.Errorf("warn notice %+v", n)
	}
	if posts[0].Signature != webhook.Sign("k3y", posts[0].Body) {
		t.Errorf("signature %q does not sign the body", posts[0].Signature)
	}

	clock.Advance(time.Hour)
	if got := e.reap(); got != "lease-suspend:web" {
		t.Errorf("at T: reaper did %q", got)
	}
	c := e.get("web")
	if c.State != store.StateUndeployed || c.VMs[0].State != lab.VMStateSaved {
		t.Errorf("suspended: %s, VM %s", c.State, c.VMs[0].State)
	}
	if _, err := os.Stat(stateFile); err != nil {
		t.Errorf("suspended without a state file: %v", err)
	}
	if left := host.Hypervisor.Running(); len(left) > 0 {
		t.Errorf("suspended but still running: %q", left)
	}
	want("suspend", "undeploy", expires.Add(24*time.Hour))
	rep, err := e.svc.Leases.Cleanup(context.Background(), lab.CleanupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 1 || rep.Items[0].Name != "web" || !strings.Contains(strings.Join(rep.Items[0].Reasons, ";"), "policy daemon): step suspend") ||
		!strings.Contains(strings.Join(rep.Items[0].Reasons, ";"), "next undeploy at "+expires.Add(24*time.Hour).Format(time.RFC3339)) {
		t.Errorf("cleanup view after suspend: %+v", rep.Items)
	}

	// The daemon restarts: the step is in the store.
	e.restart(opts)
	clock.Advance(24*time.Hour - time.Second)
	if got := e.reap(); got != "" {
		t.Errorf("after restart, before undeploy's time: reaper did %q", got)
	}
	want("suspend", "undeploy", expires.Add(24*time.Hour))
	clock.Advance(time.Second)
	if got := e.reap(); got != "lease-undeploy:web" {
		t.Errorf("at T+1d: reaper did %q", got)
	}
	if _, err := os.Stat(stateFile); !os.IsNotExist(err) {
		t.Errorf("saved state after the undeploy step: %v", err)
	}
	if c := e.get("web"); c.VMs[0].State == lab.VMStateSaved {
		t.Errorf("VM still saved after the undeploy step")
	}
	want("undeploy", "archive", expires.Add(48*time.Hour))
	e.snap("web", "before-archive")
	clock.Advance(24 * time.Hour)
	if got := e.reap(); got != "lease-archive:web" {
		t.Errorf("at T+2d: reaper did %q", got)
	}
	archive := lease.ArchiveName("web", expires)
	if a, err := e.svc.Archives.Get(context.Background(), archive); err != nil {
		t.Errorf("archive step: %v", err)
	} else if len(a.Snapshots) != 1 || a.Snapshots[0].Name != "before-archive" {
		t.Errorf("the archive step's archive carries snapshots %+v; want the configuration's one (the delete step follows)", a.Snapshots)
	}
	want("archive", "delete", expires.Add(72*time.Hour))
	clock.Advance(24 * time.Hour)
	if got := e.reap(); got != "lease-delete:web" {
		t.Errorf("at T+3d: reaper did %q", got)
	}
	if _, err := e.svc.Configs.Get(context.Background(), "web"); err == nil {
		t.Errorf("web still exists after the delete step")
	}
	if _, err := e.svc.Archives.Get(context.Background(), archive); err != nil {
		t.Errorf("the archive went with the configuration: %v", err)
	}
	if got := e.reap(); got != "" {
		t.Errorf("after the ladder: %q", got)
	}

	evs := e.reaperEvents("lease-")
	var steps []string
	for i, ev := range evs {
		step := []string{"warn", "suspend", "undeploy", "archive", "delete"}[min(i, 4)]
		if !strings.Contains(ev, "policy daemon: step "+step) {
			t.Errorf("event %d %q does not name the policy and step %s", i, ev, step)
		}
		steps = append(steps, strings.Fields(ev)[0])
	}
	if got, want := strings.Join(steps, " "), "lease-warn:web lease-suspend:web lease-undeploy:web lease-archive:web lease-delete:web"; got != want {
		t.Errorf("reaper's step events %q, want %q (one per step)", got, want)
	}
	var got []string
	for _, p := range hook.waitFor(t, 5) {
		got = append(got, p.Notice.Step)
	}
	if strings.Join(got, ",") != "warn,suspend,undeploy,archive,delete" {
		t.Errorf("webhook steps %v", got)
	}
	e.assertConsistent()
}

// TestLeaseLadderExtensionCancelsLaterSteps: extending the lease before
// each step cancels that step and the later ones, and no earlier one:
// before suspend the ladder starts again from the new expiry; after it the
// configuration stays as it is (suspended, or undeployed) and nothing more
// happens. The ladder is the workspace's, over the daemon's none.
func TestLeaseLadderExtensionCancelsLaterSteps(t *testing.T) {
	steps := []string{"warn", "suspend", "undeploy", "archive", "delete"}
	at := map[string]time.Duration{"warn": 3 * time.Hour, "suspend": 4 * time.Hour, "undeploy": 5 * time.Hour, "archive": 6 * time.Hour, "delete": 7 * time.Hour}
	for i, before := range steps {
		t.Run("before "+before, func(t *testing.T) {
			clock := newClock()
			host := labtest.NewHost()
			e := newEnv(t, ladderOpts(t, host, clock, "", lease.Webhook{}))
			e.template("base")
			e.config("web", lab.VMSpec{Name: "vm", Template: "base"})
			setWorkspaceLadder(t, e, "web", "warn=1h,suspend,undeploy=1h,archive=2h,delete=3h")
			e.deployFor("web", 4*time.Hour)
			start := clock.Now()
			// Take the steps before the one the extension comes before.
			for _, done := range steps[:i] {
				clock.Advance(start.Add(at[done]).Sub(clock.Now()))
				if got := e.reap(); got != "lease-"+done+":web" {
					t.Fatalf("at %s: reaper did %q", done, got)
				}
			}
			clock.Advance(start.Add(at[before] - time.Minute).Sub(clock.Now()))
			if got := e.reap(); got != "" {
				t.Fatalf("a minute before %s: reaper did %q", before, got)
			}
			four := 4 * time.Hour
			if _, err := e.svc.Leases.Set(context.Background(), "web", lab.LeaseChange{Deploy: &four}); err != nil {
				t.Fatal(err)
			}
			s := e.ladderOf("web")
			if !strings.HasPrefix(s.Policy, "workspace ") {
				t.Errorf("policy %q, want the workspace's", s.Policy)
			}
			stateBefore := e.get("web").State
			// Well past where the original ladder would have ended.
			clock.Advance(2 * time.Minute)
			if got := e.reap(); got != "" {
				t.Errorf("after extending before %s: reaper did %q at its time", before, got)
			}
			if i <= 1 {
				// Not suspended yet: a new ladder from the new expiry.
				newExpiry := start.Add(at[before] - time.Minute + four)
				if s.Step != "" || s.Next != "warn" || !s.NextAt.Equal(newExpiry.Add(-time.Hour)) || s.Cancelled {
					t.Errorf("extended before %s: ladder %+v, want warn again at %v", before, s, newExpiry.Add(-time.Hour))
				}
				clock.Advance(newExpiry.Add(-time.Hour).Sub(clock.Now()))
				if got := e.reap(); got != "lease-warn:web" {
					t.Errorf("new ladder: reaper did %q at the new warning time", got)
				}
				return
			}
			if !s.Cancelled || s.Step != steps[i-1] || s.Next != "" {
				t.Errorf("extended after suspend, before %s: ladder %+v, want %s and the rest cancelled", before, s, steps[i-1])
			}
			clock.Advance(30 * 24 * time.Hour)
			if got := e.reap(); got != "" {
				t.Errorf("a month after a cancelled ladder: reaper did %q", got)
			}
			if c := e.get("web"); c.State != stateBefore || c.State != store.StateUndeployed {
				t.Errorf("state %s, want it left %s", c.State, stateBefore)
			}
			if i == 2 { // extended while suspended: stays suspended
				if c := e.get("web"); c.VMs[0].State != lab.VMStateSaved {
					t.Errorf("suspended configuration lost its saved state: VM %s", c.VMs[0].State)
				}
			}
			if rep, err := e.svc.Leases.Cleanup(context.Background(), lab.CleanupOptions{}); err != nil || len(rep.Items) != 0 {
				t.Errorf("cleanup view lists a cancelled ladder: %+v, %v", rep, err)
			}
			// A new deploy starts a new ladder.
			e.deployFor("web", time.Hour)
			if s := e.ladderOf("web"); s.Step != "" || s.Cancelled || s.Next != "warn" {
				t.Errorf("after a new deploy: ladder %+v", s)
			}
		})
	}
}

// TestSlowWebhookDoesNotDelayTheReaper: a receiver that never answers costs
// the reaper's pass nothing: the post is the sender's, in the background.
func TestSlowWebhookDoesNotDelayTheReaper(t *testing.T) {
	clock := newClock()
	host := labtest.NewHost()
	hook := newHookReceiver(t, time.Hour)
	e := newEnv(t, ladderOpts(t, host, clock, "warn=1h,suspend", lease.Webhook{URL: hook.URL}))
	e.template("base")
	e.config("web", lab.VMSpec{Name: "vm", Template: "base"})
	e.deployFor("web", 2*time.Hour)
	clock.Advance(time.Hour)
	start := time.Now()
	if got := e.reap(); got != "lease-warn:web" {
		t.Fatalf("reaper did %q", got)
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("reaper pass took %s with a webhook receiver that never answers", d)
	}
	hook.waitFor(t, 1)
}

func vmIDOf(t *testing.T, e *env, config string) int64 {
	t.Helper()
	var id int64
	err := e.db.View(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err == nil {
			id = c.VMs[0].ID
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// setWorkspaceLadder gives config's workspace a lease policy, as the API's
// lease-policy route stores it.
func setWorkspaceLadder(t *testing.T, e *env, config, spec string) {
	t.Helper()
	l, err := lease.ParseLadder(spec)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := lease.EncodeLadder(l)
	if err != nil {
		t.Fatal(err)
	}
	err = e.db.Update(context.Background(), func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		return tx.LeasePolicies().Put(&store.LeasePolicy{WorkspaceID: c.WorkspaceID, Policy: doc})
	})
	if err != nil {
		t.Fatal(err)
	}
}
