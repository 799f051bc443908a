package lab

import (
	"context"
	"fmt"
	"time"

	"stagehand/internal/console"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/events"
	"stagehand/internal/store"
)

// The deployment part of the Service API; internal/lab/deploy runs it.

// DeployOptions are the options of Deploy.
type DeployOptions struct {
	Fenced      bool
	FencePolicy string // "block", "out" or "in-out" (default)
	// Allow is the egress allow-list of a fenced deploy (see
	// deploy.CheckAllow): the VMs open connections only to these.
	Allow []string
	// DeployLease is this deployment's lease, which becomes the
	// configuration's setting for later deploys: nil keeps its setting,
	// 0 means none.
	DeployLease *time.Duration
	// Host, when set, is the only host placement considers (--host);
	// Explain returns every host's verdict in the view (--explain).
	Host    string
	Explain bool
	// Spread lets a fenced deploy place its VMs on several hosts
	// (spread.go).
	Spread bool
}

// VM actions of VMAction.
const (
	VMActionStop  = deploy.VMActionStop
	VMActionStart = deploy.VMActionStart
	VMActionReset = deploy.VMActionReset
)

// VM states beyond the configuration states.
const (
	VMStateRunning = deploy.VMStateRunning
	VMStateStopped = deploy.VMStateStopped
	VMStateSaved   = deploy.VMStateSaved
)

// Deploy starts the VMs of an undeployed configuration (see
// deploy.Deployments.Deploy) with its deployment lease, written in the
// transaction that marks it deployed. Its VMs, vCPUs and memory are
// checked against its owner's and its workspace's quotas in the
// transaction that marks it deploying. With other hosts it runs on the
// configuration's home host and asks placement where it runs: there, or
// on another host it moves to first (placement.go, move.go); no host that
// fits is an error naming every host's verdict.
func (s Deployments) Deploy(ctx context.Context, name string, opts DeployOptions) (*ConfigView, error) {
	policy, err := deploy.CheckPolicy(name, opts.Fenced, opts.FencePolicy)
	if err != nil {
		return nil, err
	}
	opts.FencePolicy = policy
	if _, err := deploy.CheckAllow(name, opts.Fenced, policy, opts.Allow); err != nil {
		return nil, err
	}
	if err := checkLeaseLength("deployment", opts.DeployLease); err != nil {
		return nil, fmt.Errorf("deploy %q: %w", name, err)
	}
	if opts.Spread {
		return s.deploySpread(ctx, name, opts)
	}
	var placed *Placement
	mv := moves{s.core}
	if mv.placing(opts.Host, opts.Explain) {
		d, err := mv.place(ctx, name, opts.Host)
		if err != nil {
			return nil, err
		}
		placed = &Placement{Host: d.Host, Verdicts: d.Verdicts}
		if d.Host != s.hostName {
			return s.deployElsewhere(ctx, name, opts, placed)
		}
		if err := mv.pullMissing(ctx, name); err != nil {
			return nil, err
		}
		if err := s.journal.Fault(ctx, "deploy", "placed"); err != nil {
			return nil, err
		}
	}
	var recheck func(store.Tx, *store.Config) error
	if placed != nil {
		recheck = mv.stillFits
	}
	view, err := s.deployHere(ctx, name, opts, recheck)
	if err != nil {
		return nil, err
	}
	if opts.Explain {
		view.Placement = placed
	}
	return view, nil
}

// deployHere deploys name on this host with its deployment lease
// (opts checked by Deploy). recheck, when placement chose where the VMs
// run, checks again in the transaction that marks it deploying that
// their hosts still have room (moves.stillFits, moves.stillFitsEach).
func (s Deployments) deployHere(ctx context.Context, name string, opts DeployOptions, recheck func(store.Tx, *store.Config) error) (*ConfigView, error) {
	lease := func(tx store.Tx, id int64) error { return s.leases.deployed(tx, id, opts.DeployLease) }
	admit := deployQuota
	if recheck != nil {
		admit = func(tx store.Tx, c *store.Config) error {
			if err := deployQuota(tx, c); err != nil {
				return err
			}
			return recheck(tx, c)
		}
	}
	return s.committed(lease, func(commit func(store.Tx, *store.Config) error) error {
		return s.deploys.Deploy(ctx, name, deploy.Options{
			Fenced: opts.Fenced, FencePolicy: opts.FencePolicy, Allow: opts.Allow,
			Admit:  admit,
			Commit: commit,
		})
	})
}

// deployElsewhere moves name to the host placement chose and has that
// host deploy it; the view is read from the store once it has.
func (s Deployments) deployElsewhere(ctx context.Context, name string, opts DeployOptions, placed *Placement) (*ConfigView, error) {
	res, err := moves{s.core}.moveTo(ctx, name, placed.Host)
	if err != nil {
		return nil, fmt.Errorf("deploy %q on host %q: %w", name, placed.Host, err)
	}
	placed.Moved, placed.MovedBytes = true, res.Bytes
	var peer []hostlink.Peer
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		peer, err = peers(tx, s.hostName, placed.Host)
		return err
	}); err != nil {
		return nil, err
	}
	if s.link == nil || len(peer) == 0 {
		return nil, errdefs.Unavailable("deploy %q: moved to host %q, but this daemon cannot reach it to deploy; deploy it again (it runs there now)", name, placed.Host)
	}
	err = s.link.Deploy(ctx, peer[0], name, hostlink.DeployRequest{Fenced: opts.Fenced, FencePolicy: opts.FencePolicy, Allow: opts.Allow, DeployLease: opts.DeployLease})
	if err != nil {
		return nil, fmt.Errorf("deploy %q: moved to host %q, which failed to deploy it: %w", name, placed.Host, err)
	}
	view, err := Configs{s.core}.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if opts.Explain || placed.Moved {
		view.Placement = placed
	}
	return view, nil
}

// MoveEndpoints is this host's side of a move, which the host endpoints
// serve (hostlink.Server.ServeMoves).
func (s *Service) MoveEndpoints() hostlink.Adopter { return moveEndpoints{s.core} }

type moveEndpoints struct{ *core }

// DeployHere deploys name, whose home this host now is, here.
func (m moveEndpoints) DeployHere(ctx context.Context, name string, req hostlink.DeployRequest) error {
	_, err := Deployments{m.core}.Deploy(ctx, name, DeployOptions{
		Fenced: req.Fenced, FencePolicy: req.FencePolicy, Allow: req.Allow, DeployLease: req.DeployLease, Host: m.hostName,
	})
	return err
}

// Undeploy powers off or saves every VM and removes the deployment's
// plumbing (see deploy.Deployments.Undeploy); its lease ends with it.
func (s Deployments) Undeploy(ctx context.Context, name string, saveState bool) (*ConfigView, error) {
	view, err := s.committed(s.leases.undeployed, func(commit func(store.Tx, *store.Config) error) error {
		return s.deploys.Undeploy(ctx, name, saveState, commit)
	})
	if err != nil || !view.spread() {
		return view, err
	}
	// A spread deployment's VMs come home with their disks (spread.go);
	// one that cannot yet is gathered by the next deploy.
	if err := (holders{s.core}).gather(ctx, name); err != nil {
		s.log.Warn("undeploy: VMs' disks stay on other hosts until the next deploy", "config", name, "err", err)
	}
	return Configs{s.core}.Get(ctx, name)
}

// committed runs op (a deploy or undeploy) with the commit hook it calls
// in the transaction that marks the configuration deployed or undeployed:
// there lease writes the change of its deployment lease and the view is
// read. It returns that view with what the running daemon knows.
func (s Deployments) committed(lease func(tx store.Tx, configID int64) error, op func(commit func(store.Tx, *store.Config) error) error) (*ConfigView, error) {
	var view *ConfigView
	err := op(func(tx store.Tx, c *store.Config) error {
		if err := lease(tx, c.ID); err != nil {
			return err
		}
		var err error
		view, err = s.views.config(tx, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.views.withRuntime(view), nil
}

// VMAction stops (ACPI power-off), starts or resets one VM of a deployed
// configuration.
func (s Deployments) VMAction(ctx context.Context, config, vmName, action string) (*ConfigView, error) {
	if err := s.deploys.VMAction(ctx, config, vmName, action); err != nil {
		return nil, err
	}
	return Configs{s.core}.Get(ctx, config)
}

// VMConsole returns the serial console hub of a running VM (see
// deploy.Consoles.Serial).
func (s Deployments) VMConsole(ctx context.Context, config, vmName string) (*console.Hub, error) {
	return s.deploys.Consoles().Serial(ctx, config, vmName)
}

// VMConsoleSocket returns the unix socket of a running VM's serial
// console, where QEMU listens.
func (s Deployments) VMConsoleSocket(ctx context.Context, config, vmName string) (string, error) {
	return s.deploys.Consoles().SerialSocket(ctx, config, vmName)
}

// VMVNC returns the unix socket of a running VM's VNC server.
func (s Deployments) VMVNC(ctx context.Context, config, vmName string) (string, error) {
	return s.deploys.Consoles().VNC(ctx, config, vmName)
}

// VMScreen returns a PNG of a running VM's screen and when it was taken
// (at most one screendump per VM every deploy.ScreenEvery).
func (s Deployments) VMScreen(ctx context.Context, config, vmName string) ([]byte, time.Time, error) {
	return s.deploys.Consoles().Screen(ctx, config, vmName)
}

// VMSendKeys presses key chords ("ctrl-alt-del") on a running VM.
func (s Deployments) VMSendKeys(ctx context.Context, config, vmName string, chords []string) error {
	return s.deploys.Consoles().SendKeys(ctx, config, vmName, chords)
}

// VMTypeText types ASCII text on a running VM's keyboard (US layout).
func (s Deployments) VMTypeText(ctx context.Context, config, vmName, text string) error {
	return s.deploys.Consoles().TypeText(ctx, config, vmName, text)
}

// VMLog returns the path of a VM's serial console log (kept across runs).
func (s Deployments) VMLog(ctx context.Context, config, vmName string) (string, error) {
	return s.deploys.Consoles().SerialLog(ctx, config, vmName)
}

// withRuntime adds what only the running daemon knows (PIDs, saved
// states) to a view.
func (vs views) withRuntime(v *ConfigView) *ConfigView {
	if v == nil {
		return nil
	}
	for i := range v.VMs {
		vm := &v.VMs[i]
		vm.PID = vs.deploys.PID(vm.id)
		vm.HasSavedState = vs.deploys.HasSavedState(vm.id)
	}
	return v
}

// deployLab is what deployments ask of the lab: its transactions, locks,
// rules, accelerator, fault hook and event log.
type deployLab struct{ s *core }

func (l deployLab) Update(ctx context.Context, fn func(store.Tx) error) error {
	return l.s.update(ctx, fn)
}

func (l deployLab) Lock(name string) func() { return l.s.locks.lock(name) }

// WaitAccel returns the accelerator VMs start with, waiting for the probe
// when it still runs (bounded by ctx, and by the probe's own timeout).
func (l deployLab) WaitAccel(ctx context.Context, what, name string) (string, error) {
	st := l.s.accel.Status()
	if st.Ready() {
		return st.Accel, nil
	}
	l.s.log.Info(what+" waits for the accelerator probe", "config", name, "probing_for", time.Since(st.Since).Round(time.Millisecond))
	st, err := l.s.accel.Wait(ctx)
	if err != nil {
		return "", errdefs.Unavailable("%s %q: the accelerator is still being probed (for %s): %w",
			what, name, time.Since(st.Since).Round(time.Second), err)
	}
	return st.Accel, nil
}

func (l deployLab) Fault(ctx context.Context, op, step string) error {
	return l.s.journal.Fault(ctx, op, step)
}

func (l deployLab) Deployable(c *store.Config) error {
	return checkKind(c, store.KindConfig, "deploy it (check it out into a configuration first)")
}

func (l deployLab) Record(ctx context.Context, e events.Event) { l.s.events.Record(ctx, e) }
