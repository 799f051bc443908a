package lab_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
)

// deployEnv is an env whose lab runs deployments on a fake host, with
// configuration "a": vm1 and vm2 on network lan.
func deployEnv(t *testing.T, f *faults) (*env, *labtest.Host) {
	t.Helper()
	host := labtest.NewHost()
	e := newEnv(t, func(o *lab.Options) {
		host.Use(o)
		if f != nil {
			o.FailAt = f.hook
		}
	})
	e.template("base")
	e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
	e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base", Network: "lan"})
	host.Calls.Take()
	return e, host
}

func (e *env) assertNothingDeployed(host *labtest.Host, what string) {
	e.t.Helper()
	if left := host.Leftovers(); len(left) > 0 {
		e.t.Errorf("%s left on the host: %q", what, left)
	}
	if c := e.get("a"); c.State != "undeployed" {
		e.t.Errorf("%s: configuration is %s, want undeployed", what, c.State)
	}
}

// The transcripts of a deploy of "a" that succeeds: what the lab asks of
// the host, in order.
var (
	deployCalls = []string{
		"seg ensure lan 10.2.0.1/24 dhcp=10.2.0.31-10.2.0.254",
		"seg reserve lan mac1 10.2.0.10",
		"seg create-tap tap1 lan",
		"seg reserve lan mac2 10.2.0.11",
		"seg create-tap tap2 lan",
		"hv start vm1 cpus=1 mem=256 accel=tcg disks=1 nics=[tap1] netns=- resume=-",
		"hv start vm2 cpus=1 mem=256 accel=tcg disks=1 nics=[tap2] netns=- resume=-",
	}
	fencedDeployCalls = []string{
		"seg ensure lan 10.2.0.1/24 dhcp=10.2.0.31-10.2.0.254",
		"fence setup c1 policy=out lan[10.2.0.10=10.2.0.12,10.2.0.11=10.2.0.13]",
		"fence create-tap c1 tap1 lan",
		"fence create-tap c1 tap2 lan",
		"hv start vm1 cpus=1 mem=256 accel=tcg disks=1 nics=[tap1] netns=c1 resume=-",
		"hv start vm2 cpus=1 mem=256 accel=tcg disks=1 nics=[tap2] netns=c1 resume=-",
	}
)

// everyDeployStepRollsBack fails each step of deploy, deploy --fenced and
// undeploy (with and without --save-state) in turn, and interrupts each
// step of a deploy with a restart: each leaves nothing on the host, the
// store as before, and the fake host's transcript says what was undone.
func everyDeployStepRollsBack(t *testing.T) {
	deploys := []struct {
		name  string
		opts  lab.DeployOptions
		calls []string
	}{
		{"deploy", lab.DeployOptions{}, deployCalls},
		{"deploy-fenced", lab.DeployOptions{Fenced: true, FencePolicy: "out"}, fencedDeployCalls},
	}
	for _, d := range deploys {
		t.Run(d.name, func(t *testing.T) {
			f := &faults{}
			for k := 1; ; k++ {
				e, host := deployEnv(t, f)
				before := e.snapshot()
				f.arm("deploy", k)
				_, err := e.svc.Deployments.Deploy(context.Background(), "a", d.opts)
				f.mu.Lock()
				seen, steps := f.seen, f.steps
				f.mu.Unlock()
				calls := host.Calls.Take()
				if seen < k {
					if err != nil {
						t.Fatalf("unfailed deploy: %v", err)
					}
					if diff := cmp.Diff(d.calls, calls); diff != "" {
						t.Errorf("deploy calls (-want +got):\n%s", diff)
					}
					if got := host.Hypervisor.Running(); !cmp.Equal(got, []string{"vm1", "vm2"}) {
						t.Errorf("running after deploy: %v", got)
					}
					t.Logf("%s: %d steps, each failure rolled back: %v", d.name, k-1, steps)
					return
				}
				if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
					t.Fatalf("step %d (%s): error %v, want the injected failure", k, steps[k-1], err)
				}
				if strings.Contains(err.Error(), "rollback incomplete") {
					t.Errorf("step %d (%s): %v", k, steps[k-1], err)
				}
				e.assertNothingDeployed(host, "step "+steps[k-1])
				if after := e.snapshot(); after != before {
					t.Errorf("step %d (%s) left changes:\nbefore %s\nafter  %s", k, steps[k-1], before, after)
				}
				if c := e.get("a"); !strings.Contains(c.LastError, errInjected.Error()) {
					t.Errorf("step %d (%s): last error %q, want the failure", k, steps[k-1], c.LastError)
				}
				assertUndone(t, steps[k-1], calls)
				e.assertConsistent()
			}
		})
		t.Run(d.name+"-restart", func(t *testing.T) {
			for k := 1; ; k++ {
				reached, release := make(chan string, 1), make(chan struct{})
				seen := 0
				hook := func(op, step string) error {
					if op != "deploy" {
						return nil
					}
					if seen++; seen == k {
						reached <- step
						<-release // the daemon "dies" here
						return errInjected
					}
					return nil
				}
				host := labtest.NewHost()
				e := newEnv(t, func(o *lab.Options) { host.Use(o); o.FailAt = hook })
				e.template("base")
				e.network("lan", "10.2.0.0/24", "10.2.0.10-10.2.0.30")
				e.config("a", lab.VMSpec{Name: "vm1", Template: "base", Network: "lan"}, lab.VMSpec{Name: "vm2", Template: "base", Network: "lan"})
				before := e.snapshot()
				done := make(chan error, 1)
				go func() {
					_, err := e.svc.Deployments.Deploy(context.Background(), "a", d.opts)
					done <- err
				}()
				var step string
				select {
				case step = <-reached:
				case err := <-done:
					if err != nil {
						t.Fatalf("unfailed deploy: %v", err)
					}
					t.Logf("%s: a restart at each of %d steps rolled back", d.name, k-1)
					return
				}
				host.Restart()
				e2 := *e
				e2.restart(host.Use)
				e2.assertNothingDeployed(host, "restart at "+step)
				if after := e2.snapshot(); after != before {
					t.Errorf("restart at step %d (%s) left changes:\nbefore %s\nafter  %s", k, step, before, after)
				}
				if c := e2.get("a"); !strings.Contains(c.LastError, "interrupted by a daemon restart") {
					t.Errorf("restart at %s: last error %q", step, c.LastError)
				}
				e2.assertConsistent()
				// The first daemon is dead in real life; here it wakes
				// up and fails: its rollback must not disturb anything.
				close(release)
				if err := <-done; !errors.Is(err, errInjected) {
					t.Errorf("interrupted deploy: %v", err)
				}
				e2.assertNothingDeployed(host, "the old daemon's rollback")
			}
		})
	}
	for _, save := range []bool{true, false} {
		name := "undeploy"
		if save {
			name = "undeploy-save-state"
		}
		t.Run(name, func(t *testing.T) {
			f := &faults{}
			for k := 1; ; k++ {
				e, host := deployEnv(t, f)
				ctx := context.Background()
				if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
					t.Fatal(err)
				}
				host.Calls.Take()
				f.arm("undeploy", k)
				_, err := e.svc.Deployments.Undeploy(ctx, "a", save)
				f.mu.Lock()
				seen, steps := f.seen, f.steps
				f.mu.Unlock()
				f.arm("", 0)
				if seen < k {
					if err != nil {
						t.Fatalf("unfailed undeploy: %v", err)
					}
					t.Logf("%s: %d steps, each failure left a configuration to undeploy again: %v", name, k-1, steps)
					return
				}
				if err == nil || !strings.Contains(err.Error(), errInjected.Error()) {
					t.Fatalf("step %d (%s): error %v, want the injected failure", k, steps[k-1], err)
				}
				if c := e.get("a"); c.State != "failed" || !strings.Contains(c.LastError, errInjected.Error()) {
					t.Errorf("step %d (%s): configuration %s (%q), want failed with the error", k, steps[k-1], c.State, c.LastError)
				}
				host.Calls.Take()
				// Undeploy again: it finishes, and keeps what was saved.
				v, err := e.svc.Deployments.Undeploy(ctx, "a", save)
				if err != nil {
					t.Fatalf("step %d (%s): undeploy again: %v", k, steps[k-1], err)
				}
				e.assertNothingDeployed(host, "step "+steps[k-1])
				for _, vm := range v.VMs {
					want := "undeployed"
					if save {
						want = "saved"
					}
					if vm.State != want || vm.HasSavedState != save {
						t.Errorf("step %d (%s): VM %s is %s (saved state %v), want %s", k, steps[k-1], vm.Name, vm.State, vm.HasSavedState, want)
					}
				}
				// The next deploy resumes every saved VM.
				host.Calls.Take()
				if _, err := e.svc.Deployments.Deploy(ctx, "a", lab.DeployOptions{}); err != nil {
					t.Fatal(err)
				}
				want := append([]string(nil), deployCalls...)
				if save {
					want[5] = strings.Replace(want[5], "resume=-", "resume=vm-1.state", 1)
					want[6] = strings.Replace(want[6], "resume=-", "resume=vm-2.state", 1)
				}
				got := host.Calls.Take()
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("step %d (%s): redeploy calls (-want +got):\n%s", k, steps[k-1], diff)
				}
				e.assertConsistent()
			}
		})
	}
	t.Run("vm-start-fails", func(t *testing.T) {
		e, host := deployEnv(t, nil)
		host.Calls.Fail = func(line string) error {
			if strings.HasPrefix(line, "hv start vm2 ") {
				return errInjected
			}
			return nil
		}
		before := e.snapshot()
		if _, err := e.svc.Deployments.Deploy(context.Background(), "a", lab.DeployOptions{}); !errors.Is(err, errInjected) {
			t.Fatalf("deploy: %v, want the failed start", err)
		}
		want := append(append([]string(nil), deployCalls...),
			"vm kill vm1",
			"seg delete-tap tap2",
			"seg unreserve lan mac2",
			"seg delete-tap tap1",
			"seg unreserve lan mac1",
		)
		if diff := cmp.Diff(want, host.Calls.Take()); diff != "" {
			t.Errorf("calls (-want +got):\n%s", diff)
		}
		e.assertNothingDeployed(host, "a failed start")
		if after := e.snapshot(); after != before {
			t.Errorf("a failed start left changes:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// assertUndone checks a failed deploy's transcript: every tap,
// reservation, fence and VM it made is undone, newest first, after the
// last step that was done.
func assertUndone(t *testing.T, step string, calls []string) {
	t.Helper()
	inverse := map[string]string{
		"seg reserve":      "seg unreserve",
		"seg create-tap":   "seg delete-tap",
		"fence setup":      "fence teardown",
		"hv start":         "vm kill",
		"fence create-tap": "", // goes with its fence
		"seg ensure":       "", // a segment stays
	}
	var want []string
	i := 0
	for ; i < len(calls); i++ {
		w := strings.Fields(calls[i])
		inv, ok := inverse[w[0]+" "+w[1]]
		if !ok {
			break // the first undo
		}
		if inv == "" {
			continue
		}
		switch w[0] + " " + w[1] {
		case "seg reserve":
			want = append(want, inv+" "+w[2]+" "+w[3])
		case "fence setup", "hv start", "seg create-tap":
			want = append(want, inv+" "+w[2])
		}
	}
	for l, r := 0, len(want)-1; l < r; l, r = l+1, r-1 {
		want[l], want[r] = want[r], want[l]
	}
	// The VMs are killed one after the other, but the transcript sorts
	// them (labtest.Calls.Take).
	for l := 0; l < len(want); {
		r := l + 1
		for r < len(want) && strings.HasPrefix(want[l], "vm kill ") && strings.HasPrefix(want[r], "vm kill ") {
			r++
		}
		sort.Strings(want[l:r])
		l = r
	}
	if diff := cmp.Diff(want, calls[i:], cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("failed at %s: undo calls (-want +got):\n%s\nall calls: %q", step, diff, calls)
	}
}

// TestDeployRefusesABadFencePolicy checks the lab's fence policy rules, the
// only ones (the API and CLI pass the policy on): a policy without a
// fence, or an unknown one, is invalid input in the domain's words, and
// nothing reaches the host.
func TestDeployRefusesABadFencePolicy(t *testing.T) {
	e, host := deployEnv(t, nil)
	for _, c := range []struct {
		opts lab.DeployOptions
		want string
	}{
		{lab.DeployOptions{FencePolicy: "out"}, `deploy "a": a fence policy needs a fenced deployment`},
		{lab.DeployOptions{Fenced: true, FencePolicy: "open"}, `deploy "a": fence policy "open": want block, out or in-out`},
	} {
		_, err := e.svc.Deployments.Deploy(context.Background(), "a", c.opts)
		if !errors.Is(err, errdefs.ErrInvalid) || err.Error() != c.want {
			t.Errorf("deploy %+v: %v, want invalid: %s", c.opts, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "--") {
			t.Errorf("deploy %+v: %q speaks CLI flags", c.opts, err)
		}
	}
	if calls := host.Calls.Take(); len(calls) > 0 {
		t.Errorf("refused deploys called the host: %q", calls)
	}
	e.assertNothingDeployed(host, "refused deploys")
}

// TestRestartReadoptsDeployments restarts the daemon under a deployed
// configuration, unfenced and fenced: the new one adopts the running VMs
// and the fence and serves DHCP again, without starting anything; one
// whose VM died meanwhile is failed with the reason; an undeploy after the
// restart leaves nothing.
func TestRestartReadoptsDeployments(t *testing.T) {
	for _, c := range []struct {
		name  string
		opts  lab.DeployOptions
		calls []string
	}{
		{"unfenced", lab.DeployOptions{}, []string{
			"hv adopt vm1",
			"hv adopt vm2",
			"seg ensure lan 10.2.0.1/24 dhcp=10.2.0.31-10.2.0.254",
			"seg reserve lan mac1 10.2.0.10",
			"seg reserve lan mac2 10.2.0.11",
		}},
		{"fenced", lab.DeployOptions{Fenced: true}, []string{
			"hv adopt vm1",
			"hv adopt vm2",
			"seg ensure lan 10.2.0.1/24 dhcp=10.2.0.31-10.2.0.254",
			"fence adopt c1 policy=in-out lan[10.2.0.10=10.2.0.12,10.2.0.11=10.2.0.13]",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			e, host := deployEnv(t, nil)
			if _, err := e.svc.Deployments.Deploy(ctx, "a", c.opts); err != nil {
				t.Fatal(err)
			}
			host.Calls.Take()
			host.Restart()
			e.restart(host.Use)
			if diff := cmp.Diff(c.calls, host.Calls.Take()); diff != "" {
				t.Errorf("recovery calls (-want +got):\n%s", diff)
			}
			v := e.get("a")
			if v.State != "deployed" || v.VMs[0].PID == 0 || v.VMs[1].PID == 0 {
				t.Errorf("after the restart: %s, PIDs %d %d", v.State, v.VMs[0].PID, v.VMs[1].PID)
			}

			// A VM that dies while the daemon is down is reported. The
			// daemon dies first: a VM that died under a live daemon is
			// that daemon's to record (stopped), which is another case.
			host.Restart()
			host.Hypervisor.Crash("vm2")
			e.restart(host.Use)
			host.Calls.Take()
			if v := e.get("a"); v.State != "failed" || !strings.Contains(v.LastError, "lost while the daemon was down") {
				t.Errorf("after losing vm2: %s (%q)", v.State, v.LastError)
			}
			if _, err := e.svc.Deployments.Undeploy(ctx, "a", false); err != nil {
				t.Fatal(err)
			}
			e.assertNothingDeployed(host, "undeploy after a restart")
		})
	}
}
