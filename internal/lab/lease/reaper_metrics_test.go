package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"stagehand/internal/metrics"
	"stagehand/internal/store"
)

// scriptedLab holds fixed leases and fails the undeploys it is told to.
type scriptedLab struct {
	items       []Leased
	undeployErr error
	marked      []string
}

func (l *scriptedLab) Leased(context.Context) ([]Leased, error)     { return l.items, nil }
func (l *scriptedLab) Undeploy(context.Context, string, bool) error { return l.undeployErr }
func (l *scriptedLab) Delete(context.Context, string, string) error { return nil }
func (l *scriptedLab) MarkExpired(_ context.Context, _, name string, _ time.Time) (bool, error) {
	l.marked = append(l.marked, name)
	return true, nil
}
func (l *scriptedLab) SetDeployExpires(context.Context, string, string, bool, time.Time) error {
	return nil
}
func (l *scriptedLab) Record(context.Context, string, string, string, string) {}
func (l *scriptedLab) PruneEvents(context.Context, time.Time) error           { return nil }
func (l *scriptedLab) ClaimStep(context.Context, string, func(Leased) (store.Lease, bool)) (bool, error) {
	return false, nil
}
func (l *scriptedLab) DiscardState(context.Context, string) error                   { return nil }
func (l *scriptedLab) Archive(context.Context, string, string) error                { return nil }
func (l *scriptedLab) RecordFailure(context.Context, string, string, string, error) {}

// TestReaperCountsItsActions: each action a pass carries out is counted
// under its name and outcome, a failed one as an error.
func TestReaperCountsItsActions(t *testing.T) {
	now := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	lab := &scriptedLab{
		items: []Leased{
			{Object: ObjectConfig, Name: "old", State: store.StateUndeployed, Lease: store.Lease{StorageExpires: now.Add(-time.Minute)}},
			{Object: ObjectConfig, Name: "busy", State: store.StateDeployed, Lease: store.Lease{DeployExpires: now.Add(-time.Minute)}},
		},
		undeployErr: errors.New("qemu did not stop"),
	}
	p, err := Policy{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := NewReaper(lab, p, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	counter := func(action, outcome string) float64 {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(metrics.Recorded()...)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "stagehand_reaper_actions_total" && labelsAre(m.GetLabel(), "action", action, "outcome", outcome) {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	markBefore, undeployBefore := counter(ReapMarkExpired, metrics.OutcomeOK), counter(ReapUndeploy, metrics.OutcomeError)
	if _, err := r.Reap(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counter(ReapMarkExpired, metrics.OutcomeOK) - markBefore; got != 1 {
		t.Errorf("mark-expired/ok went up by %v, want 1", got)
	}
	if got := counter(ReapUndeploy, metrics.OutcomeError) - undeployBefore; got != 1 {
		t.Errorf("undeploy/error went up by %v, want 1", got)
	}
}

// labelsAre reports whether ls are exactly the name, value pairs kv.
func labelsAre(ls []*dto.LabelPair, kv ...string) bool {
	if len(ls)*2 != len(kv) {
		return false
	}
	for i, l := range ls {
		if l.GetName() != kv[2*i] || l.GetValue() != kv[2*i+1] {
			return false
		}
	}
	return true
}
