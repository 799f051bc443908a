package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"stagehand/internal/metrics"
)

// TestJobDurationsAreRecorded: a job's run, from its start to its end on
// the manager's clock, is observed under its kind and end state.
func TestJobDurationsAreRecorded(t *testing.T) {
	const kind = "metrics-test"
	m := NewManager()
	defer m.Close()
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	m.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	for _, fail := range []bool{false, true} {
		j := m.Start(kind, "x", func(ctx context.Context, progress func(done, total int64)) error {
			mu.Lock()
			clock = clock.Add(3 * time.Second) // the job's work takes 3 s
			mu.Unlock()
			if fail {
				return errors.New("disk full")
			}
			return nil
		})
		if _, err := m.Wait(context.Background(), j.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, outcome := range []string{Succeeded, Failed} {
		count, sum := jobSeries(t, kind, outcome)
		if count != 1 || sum != 3 {
			t.Errorf("%s/%s: %d observations summing %vs, want 1 of 3s", kind, outcome, count, sum)
		}
	}
}

// jobSeries reads the job duration histogram's series for kind and outcome.
func jobSeries(t *testing.T, kind, outcome string) (uint64, float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.Recorded()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "stagehand_job_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["outcome"] == outcome {
				return s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}
