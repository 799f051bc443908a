package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/cluster"
	"stagehand/internal/store"
	"stagehand/internal/store/postgres"
)

// TestClusterEventsAndWork: `events --follow` through h2 prints, within a
// second, an event caused through h1 (PostgreSQL NOTIFY of its id, h2's
// relay), once; and a work item queued in the store for h3 is carried out
// by h3's worker, notified rather than polled, and by no other host.
func TestClusterEventsAndWork(t *testing.T) {
	c := newCluster(t, 3)
	h1, h2, h3 := c.host(1), c.host(2), c.host(3)

	// Follow through h2.
	argv := h2.wrap(binary, "--server", h2.url, "--token-file", h2.tokenFile(), "events", "--follow", "-o", "json")
	follow := exec.Command(argv[0], argv[1:]...)
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		follow.Process.Signal(syscall.SIGTERM) // timeout(1) passes it on to the CLI
		follow.Wait()
	})
	type seen struct {
		e  wire.Event
		at time.Time
	}
	lines := make(chan seen, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e wire.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				lines <- seen{e, time.Now()}
			}
		}
		close(lines)
	}()
	// The follower is subscribed once h2 answers a request of it: cause
	// events through h1 until one shows, then measure a fresh one.
	ready := false
	for i := 0; i < 50 && !ready; i++ {
		h1.ok("network", "create", fmt.Sprintf("warm%d", i),
			"--subnet", fmt.Sprintf("10.91.%d.0/24", i), "--pool", fmt.Sprintf("10.91.%d.10-10.91.%d.20", i, i))
		select {
		case <-lines:
			ready = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !ready {
		t.Fatalf("events --follow through h2 printed none of h1's events")
	}
	for drained := false; !drained; {
		select {
		case <-lines:
		case <-time.After(500 * time.Millisecond):
			drained = true
		}
	}

	before := time.Now()
	h1.ok("network", "create", "lan", "--subnet", "10.92.0.0/24", "--pool", "10.92.0.10-10.92.0.20")
	returned := time.Now()
	var got seen
	select {
	case got = <-lines:
	case <-time.After(time.Second):
		t.Fatalf("events --follow through h2 printed nothing within 1 s of h1's network create")
	}
	if got.e.Action != "create" || got.e.Subject != "lan" {
		t.Fatalf("events --follow through h2: %+v, want the create of lan", got.e)
	}
	t.Logf("h1's event printed by h2's follower %s after h1's command returned (%s after it started)",
		got.at.Sub(returned).Round(time.Millisecond), got.at.Sub(before).Round(time.Millisecond))
	select {
	case again := <-lines:
		t.Errorf("a second event after one network create: %+v", again.e)
	case <-time.After(500 * time.Millisecond):
	}

	// A work item for h3, queued in the store.
	ctx := context.Background()
	st, err := postgres.Open(ctx, c.pg.DSN(clusterStore), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := store.WorkItem{Kind: cluster.WorkPing, Subject: "e2e"}
	queued := time.Now()
	if err := st.Update(ctx, func(tx store.Tx) error {
		h, err := tx.Hosts().Get(h3.name)
		if err != nil {
			return err
		}
		w.HostID = h.ID
		return tx.Work().Enqueue(&w)
	}); err != nil {
		t.Fatal(err)
	}
	var done *store.WorkItem
	for deadline := time.Now().Add(cluster.WorkPoll / 2); ; {
		if err := st.View(ctx, func(tx store.Tx) (err error) { done, err = tx.Work().Get(w.ID); return err }); err != nil {
			t.Fatal(err)
		}
		if done.State == store.WorkDone || done.State == store.WorkFailed || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if done.State != store.WorkDone || done.Attempts != 1 {
		t.Fatalf("the ping for h3 within half a poll interval: %+v, want done after 1 attempt", done)
	}
	t.Logf("h3 carried out its work item %s after it was queued", done.DoneAt.Sub(queued).Round(time.Millisecond))
	mark := fmt.Sprintf(`msg="work done" work=%d `, w.ID)
	h3.waitLog(mark, 5*time.Second)
	for _, h := range []*clusterHost{h1, h2} {
		if strings.Contains(h.logTail(100000), mark) {
			t.Errorf("%s carried out h3's work item %d", h.name, w.ID)
		}
	}
}
