package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stagehand/internal/store"
	"stagehand/internal/store/postgres"
)

// workStore is a store to run workers on, with its listener (nil on
// SQLite).
type workStore struct {
	store.Store
	listener store.Listener
	dsn      string
}

// workStores returns a fresh SQLite store and, when a PostgreSQL server
// runs, a fresh PostgreSQL database.
func workStores(t *testing.T) map[string]workStore {
	stores := map[string]workStore{"sqlite": {Store: openSQLite(t)}}
	if server != nil {
		dsn := server.Database(t)
		pg, err := postgres.Open(context.Background(), dsn, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		stores["postgres"] = workStore{Store: pg, listener: pg, dsn: dsn}
	}
	return stores
}

func registerHost(t *testing.T, st store.Store, name string) store.Host {
	t.Helper()
	h := store.Host{Name: name, AdvertiseURL: "https://" + name}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.Hosts().Register(&h) }); err != nil {
		t.Fatal(err)
	}
	return h
}

func enqueue(t *testing.T, st store.Store, items ...*store.WorkItem) {
	t.Helper()
	if err := st.Update(context.Background(), func(tx store.Tx) error {
		for _, w := range items {
			if err := tx.Work().Enqueue(w); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitFinished waits until every item is done or failed and returns them.
func waitFinished(t *testing.T, st store.Store, within time.Duration, ids ...int64) []store.WorkItem {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got []store.WorkItem
		if err := st.View(context.Background(), func(tx store.Tx) error {
			got = nil
			for _, id := range ids {
				w, err := tx.Work().Get(id)
				if err != nil {
					return err
				}
				if w.State == store.WorkQueued || w.State == store.WorkClaimed {
					return nil
				}
				got = append(got, *w)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) == len(ids) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("work %v not finished within %s", ids, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkerCarriesOutItsHostsWork: a worker runs the handler of each of
// its host's items, finishes them done or failed (a handler's error, a
// panic, a kind with no handler), leaves other hosts' items alone, and
// requeues at start what its host's last daemon claimed and never
// finished. On PostgreSQL a new item wakes it by notification: done well
// within the poll interval.
func TestWorkerCarriesOutItsHostsWork(t *testing.T) {
	for name, st := range workStores(t) {
		t.Run(name, func(t *testing.T) {
			a, b := registerHost(t, st, "host-a"), registerHost(t, st, "host-b")
			// host-a's last daemon claimed this one and died.
			orphan := &store.WorkItem{HostID: a.ID, Kind: "echo", Subject: "orphan"}
			enqueue(t, st, orphan)
			if err := st.Update(context.Background(), func(tx store.Tx) error {
				_, err := tx.Work().Claim(a.ID, time.Now().Add(-time.Hour))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			items := []*store.WorkItem{
				{HostID: a.ID, Kind: "echo", Subject: "web", Payload: []byte("hello")},
				{HostID: a.ID, Kind: "fail", Subject: "db"},
				{HostID: a.ID, Kind: "panic", Subject: "x"},
				{HostID: a.ID, Kind: "unknown", Subject: "y"},
				{HostID: b.ID, Kind: "echo", Subject: "elsewhere"},
			}
			enqueue(t, st, items...)

			w := NewWorker(st, st.listener, a.ID, testLog(t))
			w.poll = time.Hour // only notifications and Wake
			var mu sync.Mutex
			seen := map[string]string{}
			w.Handle("echo", func(ctx context.Context, item store.WorkItem) error {
				mu.Lock()
				seen[item.Subject] = string(item.Payload)
				mu.Unlock()
				return nil
			})
			w.Handle("fail", func(context.Context, store.WorkItem) error { return errors.New("disk gone") })
			w.Handle("panic", func(context.Context, store.WorkItem) error { panic("boom") })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); w.Run(ctx) }()
			defer func() { cancel(); <-done }()

			got := waitFinished(t, st, 5*time.Second, orphan.ID, items[0].ID, items[1].ID, items[2].ID, items[3].ID)
			wantStates := []string{store.WorkDone, store.WorkDone, store.WorkFailed, store.WorkFailed, store.WorkFailed}
			wantErrs := []string{"", "", "disk gone", "handler panicked: boom", `this host has no handler for work of kind "unknown"`}
			for i, g := range got {
				if g.State != wantStates[i] || g.Error != wantErrs[i] {
					t.Errorf("item %s: %s %q, want %s %q", g.Subject, g.State, g.Error, wantStates[i], wantErrs[i])
				}
			}
			if got[0].Attempts != 2 {
				t.Errorf("the orphan: %d attempts, want 2 (requeued at start)", got[0].Attempts)
			}
			mu.Lock()
			if seen["web"] != "hello" || seen["orphan"] != "" || len(seen) != 2 {
				t.Errorf("handled %v", seen)
			}
			mu.Unlock()

			// A new item: notified on PostgreSQL, woken on SQLite.
			if st.listener != nil {
				waitListening(t, st.dsn)
			}
			late := &store.WorkItem{HostID: a.ID, Kind: "echo", Subject: "late"}
			start := time.Now()
			enqueue(t, st, late)
			if st.listener == nil {
				w.Wake()
			}
			waitFinished(t, st, 2*time.Second, late.ID)
			t.Logf("enqueue to done: %s", time.Since(start).Round(time.Millisecond))

			var other *store.WorkItem
			if err := st.View(context.Background(), func(tx store.Tx) (err error) { other, err = tx.Work().Get(items[4].ID); return err }); err != nil {
				t.Fatal(err)
			}
			if other.State != store.WorkQueued {
				t.Errorf("host-b's item is %s, want queued", other.State)
			}
		})
	}
}

// TestWorkersOfOneHostRace: two workers of one host, woken together on 50
// items, carry out each exactly once.
func TestWorkersOfOneHostRace(t *testing.T) {
	for name, st := range workStores(t) {
		t.Run(name, func(t *testing.T) {
			h := registerHost(t, st, "host-a")
			var (
				mu    sync.Mutex
				count = map[int64]int{}
				by    = map[string]int{}
			)
			workers := []*Worker{NewWorker(st, st.listener, h.ID, testLog(t)), NewWorker(st, st.listener, h.ID, testLog(t))}
			for i, w := range workers {
				who := fmt.Sprint("worker-", i)
				w.Handle("count", func(ctx context.Context, item store.WorkItem) error {
					mu.Lock()
					count[item.ID]++
					by[who]++
					mu.Unlock()
					time.Sleep(time.Millisecond) // let the other claim meanwhile
					return nil
				})
			}
			items := make([]*store.WorkItem, 50)
			ids := make([]int64, len(items))
			for i := range items {
				items[i] = &store.WorkItem{HostID: h.ID, Kind: "count", Subject: fmt.Sprint(i)}
			}
			enqueue(t, st, items...)
			for i := range items {
				ids[i] = items[i].ID
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, w := range workers {
				wg.Add(1)
				go func() { defer wg.Done(); w.Run(ctx) }()
			}
			defer func() { cancel(); wg.Wait() }()
			got := waitFinished(t, st, 20*time.Second, ids...)
			for _, g := range got {
				if g.State != store.WorkDone || g.Attempts != 1 {
					t.Errorf("item %d: %s after %d attempts", g.ID, g.State, g.Attempts)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if count[id] != 1 {
					t.Errorf("item %d carried out %d times", id, count[id])
				}
			}
			t.Logf("items per worker: %v", by)
		})
	}
}

// waitListening waits until a store listener's connection to the
// database dsn has run LISTEN.
func waitListening(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND application_name = 'stagehand listener' AND query LIKE 'LISTEN%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("no listener in 5 s")
}
