package lab

import (
	"context"
	"errors"
	"fmt"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Spread deployments (`config deploy NAME --fenced --spread`, issue 13;
// lab/deploy/spread.go runs them). The home host places each VM on its
// own: its memory and vCPUs, the home first when it fits, else the host
// holding most of its chain (cluster.Place per VM, each placement taking
// its room before the next). A VM placed elsewhere has its tops moved
// there before the deploy, by the move's adoption scoped to that VM
// (adoptTops), and the old holder releases its copies (releaseVM); the
// store records the holder in store.VM.Host. Every undeploy, and every
// deploy that fails, gathers the tops back to the home, so an undeployed
// configuration is whole on its home again as every other operation
// (clone, snapshot, move, an unfenced deploy) expects; a gather that
// fails is retried by the next deploy, which gathers first.

// holders moves the tops of single VMs between hosts and knows which
// host holds them.
type holders struct{ s *core }

// VMPlacement is where a spread deploy placed one VM, and each host's
// verdict on it, best first.
type VMPlacement struct {
	VM       string
	Host     string
	Verdicts []cluster.Verdict
}

// deploySpread is Deploy with --spread (see above).
func (s Deployments) deploySpread(ctx context.Context, name string, opts DeployOptions) (*ConfigView, error) {
	switch {
	case !opts.Fenced:
		return nil, errdefs.Invalid("deploy %q: --spread needs --fenced: only a fenced configuration spans hosts (its fence joins them over VXLAN; unfenced networks stay on one host)", name)
	case opts.Host != "":
		return nil, errdefs.Invalid("deploy %q: --spread places each VM itself; it does not go with --host", name)
	case s.hostName == "":
		return nil, errdefs.Unavailable("deploy %q --spread: this daemon has no host name: there is no other host", name)
	}
	h := holders{s.core}
	if err := h.gather(ctx, name); err != nil {
		return nil, fmt.Errorf("deploy %q: %w", name, err)
	}
	// The other hosts must read the same home as this one (a
	// configuration made before hosts were recorded has none).
	if err := (moves{s.core}).claimHome(ctx, name); err != nil {
		return nil, fmt.Errorf("deploy %q: %w", name, err)
	}
	if err := (moves{s.core}).hashUnhashed(ctx, name); err != nil {
		return nil, err
	}
	placed, err := h.placeSpread(ctx, name)
	if err != nil {
		return nil, err
	}
	rollback := func(err error) (*ConfigView, error) {
		if gerr := h.gather(context.WithoutCancel(ctx), name); gerr != nil {
			err = fmt.Errorf("%w; and bringing its VMs' disks back: %v (the next deploy retries)", err, gerr)
		}
		return nil, err
	}
	for _, p := range placed.VMs {
		if p.Host == s.hostName {
			continue
		}
		if err := s.journal.Fault(ctx, "deploy", "spread-move"); err != nil {
			return rollback(fmt.Errorf("deploy %q: %w", name, err))
		}
		res, err := h.moveVM(ctx, name, p.VM, s.hostName, p.Host)
		if err != nil {
			return rollback(fmt.Errorf("deploy %q: VM %q to host %q: %w", name, p.VM, p.Host, err))
		}
		placed.Moved, placed.MovedBytes = true, placed.MovedBytes+res.Bytes
	}
	if err := (moves{s.core}).pullMissing(ctx, name); err != nil {
		return rollback(err)
	}
	if err := s.journal.Fault(ctx, "deploy", "spread-placed"); err != nil {
		return rollback(fmt.Errorf("deploy %q: %w", name, err))
	}
	view, err := s.deployHere(ctx, name, opts, moves{s.core}.stillFitsEach)
	if err != nil {
		return rollback(err)
	}
	view.Placement = placed
	return view, nil
}

// placeSpread places each VM of name (see above).
func (h holders) placeSpread(ctx context.Context, name string) (*Placement, error) {
	s := h.s
	placed := &Placement{Host: s.hostName}
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if home := s.home(c); home != s.hostName {
			return errdefs.Conflict("configuration %q lives on host %q; its home places its VMs", name, home)
		}
		cands, _, err := placementInputs(tx, c, s.sharedLayers, time.Now()) // heartbeats are wall-clock times
		if err != nil {
			return err
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		for _, vm := range c.VMs {
			frozen, _, err := chainOf(idx, &store.Config{Name: c.Name, VMs: []store.VM{vm}})
			if err != nil {
				return err
			}
			need := cluster.Need{Config: c.Name + "/" + vm.Name, MemoryMiB: vm.MemoryMiB, CPUs: vm.CPUs}
			for _, l := range frozen {
				need.Layers = append(need.Layers, cluster.LayerNeed{ID: l.ID, Size: l.Size})
			}
			d, err := cluster.Place(cands, need)
			if err != nil {
				return fmt.Errorf("VM %q: %w", vm.Name, err)
			}
			for _, v := range d.Verdicts {
				if v.Host == s.hostName && v.Fits {
					d.Host = s.hostName // the home first: nothing moves
				}
			}
			placed.VMs = append(placed.VMs, VMPlacement{VM: vm.Name, Host: d.Host, Verdicts: d.Verdicts})
			placed.Verdicts = append(placed.Verdicts, d.Verdicts...)
			for i := range cands {
				if cands[i].Name == d.Host {
					// The next VM sees this one's room taken and its
					// layers held there (pulled with it).
					cands[i].UsedMemoryMiB += vm.MemoryMiB
					cands[i].UsedCPUs += vm.CPUs
					for _, l := range frozen {
						cands[i].Held[l.ID] = true
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("place the VMs of %q: %w", name, err)
	}
	return placed, nil
}

// gather brings the tops of name's VMs held by other hosts back to this
// host, its home, when it is undeployed.
func (h holders) gather(ctx context.Context, name string) error {
	s := h.s
	var away []store.VM
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed || s.home(c) != s.hostName {
			return nil
		}
		for _, vm := range c.VMs {
			if vm.Host != "" && vm.Host != s.hostName {
				away = append(away, vm)
			}
		}
		return nil
	})
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, vm := range away {
		if _, err := h.moveVM(ctx, name, vm.Name, vm.Host, s.hostName); err != nil {
			errs = append(errs, fmt.Errorf("VM %q from host %q: %w", vm.Name, vm.Host, err))
		}
	}
	return errors.Join(errs...)
}

// moveVM moves the tops of name's VM vm from host from to host to, one
// of which is this one: to adopts them, then, once the store names to as
// their holder (an answer lost after to's commit is a move done), from
// releases its copies.
func (h holders) moveVM(ctx context.Context, name, vm, from, to string) (hostlink.AdoptResult, error) {
	s := h.s
	other := to
	if to == s.hostName {
		other = from
	}
	var peer []hostlink.Peer
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		peer, err = peers(tx, s.hostName, other)
		return err
	}); err != nil {
		return hostlink.AdoptResult{}, err
	}
	if s.link == nil || len(peer) == 0 {
		return hostlink.AdoptResult{}, errdefs.Unavailable("host %q: this daemon has no link to it", other)
	}
	var res hostlink.AdoptResult
	var aerr error
	if to == s.hostName {
		res, aerr = h.adoptTops(ctx, name, vm, from)
	} else {
		res, aerr = s.link.AdoptVM(ctx, peer[0], name, vm)
	}
	holder := ""
	if err := s.store.View(context.WithoutCancel(ctx), func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		v, err := deploy.VMNamed(c, vm)
		if err == nil {
			holder = h.holder(c, v)
		}
		return err
	}); err != nil {
		return res, errors.Join(aerr, err)
	}
	if holder != to {
		if aerr == nil {
			aerr = fmt.Errorf("host %q answered, but the store does not name it the holder", to)
		}
		return res, aerr
	}
	if aerr != nil {
		s.log.Warn("spread: the adopting host's answer was lost, but it committed", "config", name, "vm", vm, "to", to, "err", aerr)
	}
	var rerr error
	if from == s.hostName {
		rerr = h.releaseVM(context.WithoutCancel(ctx), name, vm, to)
	} else {
		rerr = s.link.ReleaseVM(context.WithoutCancel(ctx), peer[0], name, vm)
	}
	if rerr != nil {
		// Moved all the same: the copies left are the doctor's to find.
		s.log.Warn("spread: the old holder kept its copies of a VM's disks", "config", name, "vm", vm, "host", from, "err", rerr)
	}
	return res, nil
}

// opVMOut is the journal kind of a release of one VM's tops.
const opVMOut = "vm-out"

// releaseVM removes this host's copies of the tops (and saved state) of
// name's VM vm once the store names another holder.
func (h holders) releaseVM(ctx context.Context, name, vm, to string) error {
	s := h.s
	unlock := s.locks.lock(name)
	defer unlock()
	op, err := s.journal.Begin(ctx, opVMOut, name, nil, nil)
	if err != nil {
		return err
	}
	err = s.update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		part, err := h.part(c, vm)
		if err != nil {
			return err
		}
		if h := s.home(part); h == s.hostName || h != to {
			return errdefs.Conflict("VM %q of %q is held by host %q, not by %q", vm, name, h, to)
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		_, tops, err := chainOf(idx, part)
		if err != nil {
			return err
		}
		var paths []string
		for _, l := range tops {
			paths = append(paths, l.Path)
		}
		for _, st := range savedStates(part) {
			paths = append(paths, st.Path)
		}
		return journal.Commit(tx, op, paths)
	})
	if err != nil {
		return s.journal.Fail(op, fmt.Errorf("release VM %q of %q: %w", vm, name, err))
	}
	return s.journal.Finish(op)
}

// holder is the host holding the tops of c's VM v.
func (h holders) holder(c *store.Config, v *store.VM) string {
	s := h.s
	if v.Host != "" {
		return v.Host
	}
	return s.home(c)
}

// part is the part of c whose tops move: c itself (vm ""), or c with VM
// vm alone, its Host the VM's holder.
func (h holders) part(c *store.Config, vm string) (*store.Config, error) {
	if vm == "" {
		return c, nil
	}
	v, err := deploy.VMNamed(c, vm)
	if err != nil {
		return nil, err
	}
	part := *c
	part.VMs = []store.VM{*v}
	part.Host = h.holder(c, v)
	return &part, nil
}

// setHolder records, inside tx, this host as the holder of the tops of
// c's VM vm (of every VM when vm is "": the home).
func (h holders) setHolder(tx store.Tx, c *store.Config, vm string) error {
	s := h.s
	if vm == "" {
		c.Host = s.hostName
		return tx.Configs().Update(c)
	}
	v, err := deploy.VMNamed(c, vm)
	if err != nil {
		return err
	}
	v.Host = s.hostName
	if s.hostName == s.home(c) {
		v.Host = "" // back home
	}
	return tx.Configs().UpdateVM(v)
}

func vmSuffix(vm string) string {
	if vm == "" {
		return ""
	}
	return fmt.Sprintf(" (VM %q)", vm)
}

// AdoptVM takes VM vm of config from host from (hostlink.SpreadMember).
func (m moveEndpoints) AdoptVM(ctx context.Context, config, vm, from string) (hostlink.AdoptResult, error) {
	res, err := holders{m.core}.adoptTops(ctx, config, vm, from)
	if err != nil {
		return res, fmt.Errorf("adopt VM %q of %q from host %q: %w", vm, config, from, err)
	}
	return res, nil
}

// ReleaseVM removes this host's copies of VM vm, which from took.
func (m moveEndpoints) ReleaseVM(ctx context.Context, config, vm, from string) error {
	return holders{m.core}.releaseVM(ctx, config, vm, from)
}

// StartPart starts this host's part of config's spread deployment.
func (m moveEndpoints) StartPart(ctx context.Context, config, from string) error {
	return m.deploys.Parts().StartPart(ctx, config, from)
}

// StopPart stops this host's part of config's spread deployment, saving
// its VMs' states with saveState.
func (m moveEndpoints) StopPart(ctx context.Context, config, from string, saveState bool) error {
	return m.deploys.Parts().StopPart(ctx, config, from, saveState)
}

// spreadMembers are the member hosts of spread deployments, as the
// deployments reach them (deploy.Members), over the host link.
type spreadMembers struct{ s *core }

func (m spreadMembers) peer(ctx context.Context, host string) (hostlink.Peer, error) {
	var p []hostlink.Peer
	if err := m.s.store.View(ctx, func(tx store.Tx) error {
		var err error
		p, err = peers(tx, m.s.hostName, host)
		return err
	}); err != nil {
		return hostlink.Peer{}, err
	}
	if m.s.link == nil || len(p) == 0 {
		return hostlink.Peer{}, errdefs.Unavailable("host %q: this daemon has no link to it", host)
	}
	return p[0], nil
}

func (m spreadMembers) StartPart(ctx context.Context, host, config string) error {
	p, err := m.peer(ctx, host)
	if err != nil {
		return err
	}
	return m.s.link.StartPart(ctx, p, config)
}

func (m spreadMembers) StopPart(ctx context.Context, host, config string, saveState bool) error {
	p, err := m.peer(ctx, host)
	if err != nil {
		return err
	}
	return m.s.link.StopPart(ctx, p, config, saveState)
}

// spread says whether the view's VMs are on more than one host.
func (v *ConfigView) spread() bool {
	if v == nil {
		return false
	}
	for _, vm := range v.VMs {
		if vm.Host != v.Host {
			return true
		}
	}
	return false
}
