package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/store/postgres/pgtest"
)

type hostJSON struct {
	Name         string   `json:"name"`
	State        string   `json:"state"`
	Online       bool     `json:"online"`
	AdvertiseURL string   `json:"advertise_url"`
	MemoryMiB    int      `json:"memory_mib"`
	Deployed     []string `json:"deployed"`
}

// startHost runs a daemon named name in its own network namespace on
// the shared PostgreSQL database storeURL.
func startHost(t *testing.T, name, storeURL string, tokenFrom *daemon) *daemon {
	t.Helper()
	ns := newNetns(t)
	dir := t.TempDir()
	if tokenFrom != nil {
		// The administrator's token is in the shared store; the first
		// daemon wrote it to its data dir.
		if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(tokenFrom.token()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemonArgv(t, dir, ns.exec(binary, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--no-vms",
		"--store", storeURL, "--host-name", name, "--reap-interval", "1s"))
	d.wrap = ns.exec
	return d
}

// leads reports whether d's log says it took the reaper's lock, and how
// often it lost it.
func (d *daemon) leads() bool {
	b, _ := os.ReadFile(d.log)
	return bytes.Count(b, []byte(`msg=leading `)) > bytes.Count(b, []byte(`msg="no longer leading`))+bytes.Count(b, []byte(`msg="leadership lost`))
}

// TestTwoHostsOnePostgres: two daemons, each in its own network namespace
// (neither can reach the other's loopback), share one PostgreSQL server
// through its unix socket. Both answer `host list` with both hosts active
// and online; exactly one runs the reaper; a configuration created through
// daemon A is listed by daemon B; when A stops, B takes the reaper over
// within the offline threshold and, once A's heartbeats are older than it,
// lists A offline.
func TestTwoHostsOnePostgres(t *testing.T) {
	requireTools(t)
	srv, err := pgtest.Start(context.Background())
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(func() { srv.Stop() })
	url := srv.URL("postgres")

	a := startHost(t, "host-a", url, nil)
	b := startHost(t, "host-b", url, a)

	for _, d := range []*daemon{a, b} {
		var hs []hostJSON
		d.json(&hs, "host", "list")
		if len(hs) != 2 || hs[0].Name != "host-a" || hs[1].Name != "host-b" {
			t.Fatalf("host list through %s: %+v", d.url, hs)
		}
		for _, h := range hs {
			if h.State != "active" || !h.Online || h.MemoryMiB <= 0 || !strings.HasPrefix(h.AdvertiseURL, "http://127.0.0.1:") {
				t.Errorf("host list through %s: %+v, want active, online, with memory and its listen URL", d.url, h)
			}
		}
	}

	// Exactly one leads (a follower tries every heartbeat).
	deadline := time.Now().Add(cluster.OfflineAfter)
	for !a.leads() && !b.leads() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if a.leads() == b.leads() {
		t.Fatalf("leading: a %v, b %v; want exactly one\nA:\n%s\nB:\n%s", a.leads(), b.leads(), a.logTail(15), b.logTail(15))
	}
	leader, other, leaderName := a, b, "host-a"
	if b.leads() {
		leader, other, leaderName = b, a, "host-b"
	}

	// What one host makes, the other lists.
	img := makeImage(t, t.TempDir())
	a.ok("template", "import", "linux", "--disk", img, "--cpus", "1", "--memory", "256")
	a.ok("network", "create", "lan", "--subnet", "10.61.0.0/24", "--pool", "10.61.0.10-10.61.0.20")
	a.ok("config", "create", "web", "--vm", "app=linux,net=lan")
	if out := b.ok("config", "list"); !strings.Contains(out, "web") {
		t.Errorf("config list through host-b:\n%s\nwant web, made through host-a", out)
	}

	// The leader stops: the other takes over within the threshold.
	stopped := time.Now()
	leader.stop()
	for !other.leads() && time.Since(stopped) < cluster.OfflineAfter {
		time.Sleep(100 * time.Millisecond)
	}
	if !other.leads() {
		t.Fatalf("no takeover within %v of the leader stopping; last lines:\n%s", cluster.OfflineAfter, other.logTail(15))
	}
	t.Logf("the reaper moved to the other host %v after the leader stopped", time.Since(stopped).Round(100*time.Millisecond))

	// The stopped host goes offline in the other's list.
	var gone hostJSON
	for {
		var hs []hostJSON
		other.json(&hs, "host", "list")
		for _, h := range hs {
			if h.Name == leaderName {
				gone = h
			}
		}
		if !gone.Online || time.Since(stopped) > cluster.OfflineAfter+2*cluster.HeartbeatInterval {
			break
		}
		time.Sleep(time.Second)
	}
	if gone.Online {
		t.Errorf("%s still online %v after it stopped: %+v", gone.Name, time.Since(stopped).Round(time.Second), gone)
	}
	t.Logf("%s listed offline %v after it stopped", gone.Name, time.Since(stopped).Round(time.Second))
}
