package jobs

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func waitAll(t *testing.T, m *Manager, js []Job) {
	t.Helper()
	for _, j := range js {
		if _, err := m.Wait(context.Background(), j.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// A manager keeps at most MaxFinished finished jobs, the newest, and every
// running one (L6: jobs 1..64 were all still listed, with no bound).
func TestFinishedJobsArePrunedByCount(t *testing.T) {
	m := NewManager()
	defer m.Close()
	m.SetRetention(Retention{MaxFinished: 5, MaxAge: time.Hour})
	release := make(chan struct{})
	var once sync.Once
	releaseRunning := func() { once.Do(func() { close(release) }) }
	defer releaseRunning() // before Close, which waits for it
	running := m.Start("slow", "kept", func(ctx context.Context, _ func(int64, int64)) error {
		<-release
		return nil
	})
	var js []Job
	for i := 0; i < 40; i++ {
		j := m.Start("quick", fmt.Sprint(i), func(context.Context, func(int64, int64)) error { return nil })
		waitAll(t, m, []Job{j})
		js = append(js, j)
	}
	list := m.List()
	if len(list) != 6 {
		t.Fatalf("%d jobs listed, want the running one and the 5 newest finished", len(list))
	}
	if list[0].ID != running.ID || list[0].State != Running {
		t.Errorf("first listed %+v, want the running job %s", list[0], running.ID)
	}
	for i, j := range list[1:] {
		if want := js[35+i].ID; j.ID != want {
			t.Errorf("listed %s at %d, want %s (newest finished, oldest first)", j.ID, i+1, want)
		}
	}
	if _, err := m.Get(js[0].ID); err == nil {
		t.Error("the oldest finished job is still readable")
	}
	releaseRunning()
	if j, err := m.Wait(context.Background(), running.ID); err != nil || j.State != Succeeded {
		t.Errorf("running job after release: %+v %v", j, err)
	}
}

// Finished jobs older than MaxAge are forgotten; a Wait that started
// before the prune still gets the job's final snapshot.
func TestFinishedJobsArePrunedByAge(t *testing.T) {
	m := NewManager()
	defer m.Close()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.mu.Lock()
	m.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m.mu.Unlock()
	m.SetRetention(Retention{MaxFinished: 100, MaxAge: time.Hour})
	old := m.Start("quick", "old", func(context.Context, func(int64, int64)) error { return nil })
	waitAll(t, m, []Job{old})
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	fresh := m.Start("quick", "fresh", func(context.Context, func(int64, int64)) error { return nil })
	waitAll(t, m, []Job{fresh})
	list := m.List()
	if len(list) != 1 || list[0].ID != fresh.ID {
		t.Fatalf("listed %+v, want only the fresh job", list)
	}

	m.SetRetention(Retention{MaxFinished: 0, MaxAge: time.Hour})
	gate := make(chan struct{})
	j := m.Start("gated", "x", func(context.Context, func(int64, int64)) error { <-gate; return fmt.Errorf("boom") })
	done := make(chan Job)
	go func() {
		got, _ := m.Wait(context.Background(), j.ID)
		done <- got
	}()
	time.Sleep(10 * time.Millisecond)
	close(gate)
	if got := <-done; got.State != Failed || got.Error != "boom" {
		t.Errorf("Wait on a job pruned as it ended: %+v, want its failed snapshot", got)
	}
}
