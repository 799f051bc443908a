package lab_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

var errInjected = errors.New("injected failure")

// faults fails the k-th step (counting from 1) of operation kind op.
type faults struct {
	mu    sync.Mutex
	op    string
	k     int
	seen  int
	steps []string
}

func (f *faults) hook(op, step string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op != f.op {
		return nil
	}
	f.seen++
	f.steps = append(f.steps, step)
	if f.seen == f.k {
		return errInjected
	}
	return nil
}

func (f *faults) arm(op string, k int) {
	f.mu.Lock()
	f.op, f.k, f.seen, f.steps = op, k, 0, nil
	f.mu.Unlock()
}

// TestEveryStepRollsBack fails each step of each multi-step operation in
// turn and checks that the operation reports the failure, that the state is
// exactly as before, and that the doctor finds nothing.
func TestEveryStepRollsBack(t *testing.T) {
	type operation struct {
		kind string
		run  func(e *env) error
	}
	ops := []operation{
		{"import", func(e *env) error {
			_, err := e.svc.Templates.Import(context.Background(), lab.TemplateSpec{Name: "t2", Disks: []string{makeImage(t, 8), makeImage(t, 8)}})
			return err
		}},
		{"create", func(e *env) error {
			_, err := e.svc.Configs.Create(context.Background(), lab.ConfigSpec{Name: "new", VMs: []lab.VMSpec{
				{Name: "v1", Template: "base", Network: "lan"}, {Name: "v2", Template: "base", Network: "lan"}}})
			return err
		}},
		{"clone", func(e *env) error {
			_, err := e.svc.Configs.LinkedClone(context.Background(), "a", "new", lab.CreateOptions{})
			return err
		}},
		{"full-clone", func(e *env) error {
			j, err := e.svc.Configs.StartFullClone(context.Background(), "a", "new", lab.CreateOptions{})
			if err != nil {
				return err
			}
			j, _ = e.jobs.Wait(context.Background(), j.ID)
			if j.State != jobs.Succeeded {
				return fmt.Errorf("%s: %s", j.State, j.Error)
			}
			return nil
		}},
		{"delete", func(e *env) error { return e.svc.Configs.Delete(context.Background(), "a") }},
		{"move", moveAcross},
		{"deploy", spreadAcross}, // a spread deploy: its steps on both hosts
		{"consolidate", func(e *env) error {
			j, err := e.svc.Configs.StartConsolidate(context.Background(), "a", "vm1", 0)
			if err != nil {
				return err
			}
			j, _ = e.jobs.Wait(context.Background(), j.ID)
			if j.State != jobs.Succeeded {
				return fmt.Errorf("%s: %s", j.State, j.Error)
			}
			return nil
		}},
	}
	for _, op := range ops {
		t.Run(op.kind, func(t *testing.T) {
			rollsBackAtEveryStep(t, op.kind, func(e *env) {
				e.template("base")
				e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
				e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base", Network: "lan"})
				qemuIO(t, top(e.get("a"), "vm1"), "write -P 9 0 4k") // so clones freeze
			}, op.run, (*env).snapshot)
		})
	}
	everyDeployStepRollsBack(t)
}

// rollsBackAtEveryStep fails the first step of the operation kind that
// run starts, then the second, and so on until run gets through, each
// time on a fresh env prepared by setup: each failure must be reported,
// leave state(e) as it was (a failed "remove-files" leaves its files to
// Recover) and leave nothing for the doctor.
func rollsBackAtEveryStep(t *testing.T, kind string, setup func(e *env), run func(e *env) error, state func(e *env) string) {
	t.Helper()
	f := &faults{}
	for k := 1; ; k++ {
		e := newEnv(t, func(o *lab.Options) { o.FailAt = f.hook })
		setup(e)
		before := state(e)
		f.arm(kind, k)
		err := run(e)
		f.mu.Lock()
		seen, steps := f.seen, f.steps
		f.mu.Unlock()
		if seen < k {
			// Fewer than k steps: the operation ran to the end.
			if err != nil {
				t.Fatalf("unfailed run: %v", err)
			}
			if k == 1 {
				t.Fatal("operation has no steps")
			}
			t.Logf("%s: %d steps, each failure rolled back: %v", kind, k-1, steps)
			e.assertConsistent()
			return
		}
		if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
			t.Fatalf("step %d (%s): error %v, want the injected failure", k, steps[k-1], err)
		}
		if steps[k-1] == "remove-files" {
			// The records are gone and the files are queued in the
			// journal: a restart (Recover) removes them.
			if err := e.svc.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
		} else if after := state(e); after != before {
			t.Errorf("step %d (%s) left changes:\nbefore %s\nafter  %s", k, steps[k-1], before, after)
		}
		e.assertConsistent()
	}
}
