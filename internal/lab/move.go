package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Moving an undeployed configuration to another host (docs/decisions.md,
// "the move protocol"). The old home A journals a "move-out" entry, asks
// the new home B to adopt the configuration, and once the store names B
// as the home deletes its own copies of the tops. B journals a "move-in"
// entry naming every file it will pull (the tops, the frozen layers and
// template boot files it lacks), pulls them by content hash (tops from A only), and in one
// transaction makes itself the home and records the frozen layers it now
// holds. configs.host is the one truth: before B's commit A's tops are the
// configuration's, after it B's; a crash of either leaves its entry, and
// its recovery rolls it back (B: removes what it pulled) or forward (A:
// deletes its tops once the store names another home).

// moves owns moving configurations between hosts: the move protocol, the
// pulls by content hash (layers and template boot files) and placement.
type moves struct{ *core }

// Journal kinds and the fault hook's operation of a move.
const (
	opMoveOut = "move-out"
	opMoveIn  = "move-in"
	opPull    = "pull"
	faultMove = "move"
)

// Move moves the undeployed configuration name to host (see above). A
// deployed configuration does not move: undeploy it first, or drain its
// host (which saves and resumes what runs).
func (s Deployments) Move(ctx context.Context, name, host string) (*ConfigView, error) {
	if host == "" {
		return nil, errdefs.Invalid("move %q: name the host to move it to", name)
	}
	if s.hostName == "" {
		return nil, errdefs.Unavailable("move %q: this daemon has no host name: there is no other host to move to", name)
	}
	if _, err := (moves{s.core}).moveTo(ctx, name, host); err != nil {
		return nil, err
	}
	return Configs{s.core}.Get(ctx, name)
}

// moveTo moves name from this host, its home, to target and returns what
// target pulled. Moving to the home is no change.
func (s moves) moveTo(ctx context.Context, name, target string) (hostlink.AdoptResult, error) {
	if err := s.hashUnhashed(ctx, name); err != nil {
		return hostlink.AdoptResult{}, err
	}
	unlock := s.locks.lock(name)
	defer unlock()
	var peer []hostlink.Peer
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("configuration %q is %s; only an undeployed configuration moves: undeploy it first (`stagehand config undeploy %s --save-state` keeps what runs), or `stagehand host drain %s` moves what runs there",
				name, c.State, name, s.home(c))
		}
		if err := checkKind(c, store.KindConfig, "move it"); err != nil {
			return err
		}
		if home := s.home(c); home != s.hostName {
			return errdefs.Conflict("configuration %q lives on host %q, not on this one (%q); its home host moves it", name, home, s.hostName)
		}
		h, err := tx.Hosts().Get(target)
		if err != nil {
			return err
		}
		switch {
		case h.State != store.HostActive:
			return errdefs.Unavailable("host %q is %s: nothing moves there", target, h.State)
		case cluster.Offline(*h, time.Now()): // heartbeats are wall-clock times
			return errdefs.Unavailable("host %q is offline (last seen %s)", target, h.LastSeen.UTC().Format("2006-01-02 15:04:05Z"))
		}
		peer, err = peers(tx, s.hostName, target)
		return err
	})
	if err != nil || target == s.hostName {
		return hostlink.AdoptResult{}, wrapMove(name, target, err)
	}
	if s.sharedLayers {
		// Every host sees the same files: the move is the record alone.
		err := s.update(ctx, func(tx store.Tx) error {
			if err := s.journal.Fault(ctx, faultMove, "commit"); err != nil {
				return err
			}
			c, err := loadUndeployed(tx, name, "move it")
			if err != nil {
				return err
			}
			c.Host = target
			return tx.Configs().Update(c.Config)
		})
		if err == nil {
			s.movedEvent(ctx, name, s.hostName, target, hostlink.AdoptResult{})
		}
		return hostlink.AdoptResult{}, wrapMove(name, target, err)
	}
	if s.link == nil || len(peer) == 0 {
		return hostlink.AdoptResult{}, errdefs.Unavailable("move %q to host %q: this daemon has no link to other hosts", name, target)
	}
	if err := s.claimHome(ctx, name); err != nil {
		return hostlink.AdoptResult{}, wrapMove(name, target, err)
	}
	op, err := s.journal.Begin(ctx, opMoveOut, name, nil, nil)
	if err != nil {
		return hostlink.AdoptResult{}, err
	}
	var res hostlink.AdoptResult
	aerr := s.journal.Fault(ctx, faultMove, "adopt")
	if aerr == nil {
		res, aerr = s.link.Adopt(ctx, peer[0], name)
	}
	// Whatever the answer, the store says which host is the home now: an
	// answer lost after the adopter's commit is a move done.
	moved, err := s.releaseTops(context.WithoutCancel(ctx), op, name)
	switch {
	case err != nil:
		// The entry stays: recovery finishes it from the store's answer.
		return res, wrapMove(name, target, errors.Join(aerr, err))
	case !moved:
		if aerr == nil {
			aerr = fmt.Errorf("host %q answered, but the store does not name it the home", target)
		}
		return res, s.journal.Fail(op, wrapMove(name, target, aerr))
	}
	if aerr != nil {
		s.log.Warn("move: the adopting host's answer was lost, but it committed", "config", name, "to", target, "err", aerr)
	}
	if err := s.journal.Finish(op); err != nil {
		s.log.Warn("move: old tops left; recovery or doctor removes them", "config", name, "err", err)
	}
	s.log.Info("configuration moved", "config", name, "from", s.hostName, "to", target, "bytes", res.Bytes, "frozen_layers", res.Frozen, "tops", res.Tops)
	return res, nil
}

// claimHome records this host as the home of a configuration that has
// none (made before hosts were recorded), so that the adopter knows whose
// tops it takes.
func (s moves) claimHome(ctx context.Context, name string) error {
	return s.update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil || c.Host != "" {
			return err
		}
		c.Host = s.hostName
		return tx.Configs().Update(c)
	})
}

// releaseTops commits op when the store names another host as name's
// home: this host's copies of its tops are then released (Finish removes
// them). It reports whether the configuration moved.
func (s moves) releaseTops(ctx context.Context, op *store.Op, name string) (bool, error) {
	moved := false
	err := s.update(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if s.home(c) == s.hostName {
			return nil
		}
		moved = true
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		_, tops, err := chainOf(idx, c)
		if err != nil {
			return err
		}
		paths := make([]string, len(tops))
		for i, l := range tops {
			paths[i] = l.Path
		}
		for _, st := range savedStates(c) {
			paths = append(paths, st.Path) // moved with the tops
		}
		return journal.Commit(tx, op, paths)
	})
	return moved, err
}

// recoverMoves settles the move-out entries a crash left: the store's
// home decides whether the move happened (commit, so that the journal's
// recovery removes the old tops) or not (forget: nothing was changed
// here). Call it before the journal's recovery, which would forget them.
func (s moves) recoverMoves(ctx context.Context) error {
	var ops []store.Op
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		ops, err = tx.Ops().List()
		return err
	}); err != nil {
		return fmt.Errorf("recover moves: %w", err)
	}
	var errs []error
	for i := range ops {
		op := &ops[i]
		if op.Kind != opMoveOut || op.Committed || !s.journal.Mine(op) {
			continue
		}
		moved, err := s.releaseTops(ctx, op, op.Subject)
		if errors.Is(err, errdefs.ErrNotFound) {
			err = s.journal.Forget(op) // the configuration is gone
		} else if err == nil && !moved {
			err = s.journal.Forget(op)
		}
		s.log.Info("recover: settled an interrupted move", "config", op.Subject, "moved", moved, "err", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pullPlan is what this host lacks of a configuration's chain.
type pullPlan struct {
	from     string              // the home the tops come from ("" for none)
	missing  []store.Layer       // frozen layers to pull
	present  []store.Layer       // frozen layers whose files are here but not recorded held
	tops     []store.Layer       // writable tops to pull (a move only)
	states   []hostlink.LayerRef // saved VM states to pull (a move only)
	topIDs   []int64             // the tops the plan was made for, checked at commit
	frozenBy []hostlink.Peer     // who may give the frozen layers: the home first
	topsBy   []hostlink.Peer     // the home alone
	boot     []hostlink.LayerRef // boot files of its templates to pull by hash
	bootBy   []hostlink.Peer     // who may give them: frozenBy, then every host
	created  []string            // every file the pulls make
}

// planPull reads, inside tx, what this host must pull of c's chain: the
// frozen layers it does not hold and, with withTops, the tops.
func (s moves) planPull(tx store.Tx, c *store.Config, withTops bool) (*pullPlan, error) {
	self, err := tx.Hosts().Get(s.hostName)
	if err != nil {
		return nil, fmt.Errorf("this host %q: %w", s.hostName, err)
	}
	idx, err := loadLayers(tx)
	if err != nil {
		return nil, err
	}
	frozen, tops, err := chainOf(idx, c)
	if err != nil {
		return nil, err
	}
	held, err := tx.HostLayers().OfHost(self.ID)
	if err != nil {
		return nil, err
	}
	p := &pullPlan{from: s.home(c)}
	if p.boot, err = s.missingBootFiles(tx, c); err != nil {
		return nil, err
	}
	holders := []string{p.from}
	for _, l := range frozen {
		if slices.Contains(held, l.ID) {
			continue
		}
		if st, err := os.Stat(s.abs(l.Path)); err == nil && st.Size() == l.Size && l.Size > 0 {
			// Here already (a copy older than the records of who holds
			// what): the pull trusts it as PullChain would, and it is
			// not this operation's to remove on a rollback.
			p.present = append(p.present, l)
			continue
		}
		if !hostlink.ValidHash(l.SHA256) {
			return nil, errdefs.Conflict("frozen layer %s has no content hash yet: a deploy on a host that holds it hashes it", l.Path)
		}
		p.missing = append(p.missing, l)
		p.created = append(p.created, l.Path)
		hs, err := tx.HostLayers().Holders(l.ID)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			holders = append(holders, h.Name)
		}
	}
	if p.frozenBy, err = peers(tx, s.hostName, holders...); err != nil {
		return nil, err
	}
	for _, b := range p.boot {
		p.created = append(p.created, b.Path)
	}
	if len(p.boot) > 0 {
		if p.bootBy, err = bootPeers(tx, s.hostName, p.frozenBy); err != nil {
			return nil, err
		}
	}
	if withTops {
		p.tops = tops
		for _, l := range tops {
			p.topIDs = append(p.topIDs, l.ID)
			p.created = append(p.created, l.Path)
		}
		p.states = savedStates(c)
		for _, st := range p.states {
			p.created = append(p.created, st.Path)
		}
		if p.topsBy, err = peers(tx, s.hostName, p.from); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// pull fetches what p lacks and returns the bytes moved and the counts.
func (s moves) pull(ctx context.Context, p *pullPlan) (hostlink.AdoptResult, error) {
	var res hostlink.AdoptResult
	if s.link == nil && (len(p.missing) > 0 || len(p.tops) > 0 || len(p.boot) > 0) {
		return res, errdefs.Unavailable("%d layers and %d boot files are on other hosts, and this daemon has no link to them", len(p.missing)+len(p.tops), len(p.boot))
	}
	if err := s.journal.Fault(ctx, faultMove, "pull-layers"); err != nil {
		return res, err
	}
	if len(p.missing) > 0 {
		refs := make([]hostlink.LayerRef, len(p.missing))
		for i, l := range p.missing {
			refs[i] = hostlink.LayerRef{Path: l.Path, SHA256: l.SHA256, Size: l.Size, Frozen: true, ID: l.ID}
		}
		r, err := s.link.PullChain(ctx, p.frozenBy, refs, hostlink.ChainOptions{})
		if err != nil {
			return res, err
		}
		res.Bytes += r.Bytes
		res.Frozen = len(r.Pulled)
		for _, l := range p.missing {
			// A pull writes a private file; a frozen layer is read-only
			// here as on the host it came from.
			if err := s.disks.SetReadOnly(s.abs(l.Path), true); err != nil {
				return res, fmt.Errorf("freeze pulled layer %s: %w", l.Path, err)
			}
		}
	}
	n, err := s.pullBootFiles(ctx, p)
	res.Bytes += n
	if err != nil {
		return res, err
	}
	if err := s.journal.Fault(ctx, faultMove, "pull-tops"); err != nil {
		return res, err
	}
	if len(p.tops) > 0 {
		refs := make([]hostlink.LayerRef, len(p.tops))
		for i, l := range p.tops {
			refs[i] = hostlink.LayerRef{Path: l.Path, ID: l.ID}
		}
		r, err := s.link.PullChain(ctx, p.topsBy, refs, hostlink.ChainOptions{})
		if err != nil {
			return res, err
		}
		res.Bytes += r.Bytes
		res.Tops = len(r.Pulled)
	}
	if len(p.states) > 0 {
		// Saved by an undeploy --save-state (a drain's): the new home
		// resumes them.
		r, err := s.link.PullChain(ctx, p.topsBy, p.states, hostlink.ChainOptions{})
		if err != nil {
			return res, fmt.Errorf("pull saved VM states: %w", err)
		}
		res.Bytes += r.Bytes
	}
	return res, nil
}

// savedStates are the saved VM states of c's VMs, which move with its
// tops.
func savedStates(c *store.Config) []hostlink.LayerRef {
	var out []hostlink.LayerRef
	for _, vm := range c.VMs {
		if vm.State == VMStateSaved {
			out = append(out, hostlink.LayerRef{Path: deploy.StateFile(vm.ID), ID: vm.ID, State: true})
		}
	}
	return out
}

// Adopt makes this host the home of the undeployed configuration name,
// whose home is from: it pulls the tops from there and the frozen layers
// it lacks from any host holding them, then records itself as the home
// and the holder of those layers in one transaction (see above).
func (m moveEndpoints) Adopt(ctx context.Context, name, from string) (hostlink.AdoptResult, error) {
	res, err := moves{m.core}.adopt(ctx, name, from)
	if err != nil {
		return res, fmt.Errorf("adopt %q from host %q: %w", name, from, err)
	}
	return res, nil
}

func (s moves) adopt(ctx context.Context, name, from string) (hostlink.AdoptResult, error) {
	return holders{s.core}.adoptTops(ctx, name, "", from)
}

// adoptTops makes this host the holder of the tops of name's VM vm ("":
// of every VM, the configuration's home), whose holder is from: it pulls
// them with the frozen layers it lacks and commits the new holder.
func (h holders) adoptTops(ctx context.Context, name, vm, from string) (hostlink.AdoptResult, error) {
	s := moves{h.s}
	if from == "" || from == s.hostName {
		return hostlink.AdoptResult{}, errdefs.Invalid("a host adopts from another host")
	}
	unlock := s.locks.lock(name)
	defer unlock()
	// scope is what moves of c, checked to be held by from.
	scope := func(tx store.Tx) (loadedConfig, *store.Config, error) {
		c, err := loadUndeployed(tx, name, "move it")
		if err != nil {
			return c, nil, err
		}
		part, err := h.part(c.Config, vm)
		if err != nil {
			return c, nil, err
		}
		if holder := s.home(part); holder != from {
			return c, nil, errdefs.Conflict("configuration %q%s lives on host %q, not on %q", name, vmSuffix(vm), holder, from)
		}
		return c, part, nil
	}
	var plan *pullPlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		_, part, err := scope(tx)
		if err != nil {
			return err
		}
		plan, err = s.planPull(tx, part, true)
		return err
	})
	if err != nil {
		return hostlink.AdoptResult{}, err
	}
	op, err := s.journal.Begin(ctx, opMoveIn, name, plan.created, nil)
	if err != nil {
		return hostlink.AdoptResult{}, err
	}
	res, err := s.pull(ctx, plan)
	if err == nil {
		err = s.journal.Fault(ctx, faultMove, "commit")
	}
	if err == nil {
		err = s.update(ctx, func(tx store.Tx) error {
			c, part, err := scope(tx)
			if err != nil {
				return err
			}
			idx, err := loadLayers(tx)
			if err != nil {
				return err
			}
			_, tops, err := chainOf(idx, part)
			if err != nil {
				return err
			}
			for _, l := range tops {
				if !slices.Contains(plan.topIDs, l.ID) {
					return errdefs.Conflict("configuration %q: its disks changed during the move (top %s)", name, l.Path)
				}
			}
			if err := h.setHolder(tx, c.Config, vm); err != nil {
				return err
			}
			for _, l := range append(append([]store.Layer(nil), plan.missing...), plan.present...) {
				if err := s.recordHeld(tx, l.ID); err != nil {
					return err
				}
			}
			return journal.Commit(tx, op, nil)
		})
	}
	if err != nil {
		return res, s.journal.Fail(op, err)
	}
	s.journal.Finish(op)
	attrs := []any{"config", name}
	if vm != "" { // one VM of a spread deployment
		attrs = append(attrs, "vm", vm)
	}
	s.log.Info("configuration adopted", append(attrs, "from", from, "bytes", res.Bytes, "frozen_layers", res.Frozen, "tops", res.Tops)...)
	if vm == "" {
		s.movedEvent(ctx, name, from, s.hostName, res)
	}
	return res, nil
}

// pullMissing makes every frozen layer of name's chain present on this
// host, its home, before a deploy: pulled by content hash from the hosts
// holding them (a chain made elsewhere, or a host that lost a file).
func (s moves) pullMissing(ctx context.Context, name string) error {
	if s.sharedLayers || s.hostName == "" {
		return nil
	}
	unlock := s.locks.lock(name)
	defer unlock()
	var plan *pullPlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		if _, err := tx.Hosts().Get(s.hostName); errors.Is(err, errdefs.ErrNotFound) {
			return nil // not registered (a tool's lab): nothing is recorded
		}
		plan, err = s.planPull(tx, c, false)
		return err
	})
	if err != nil || plan == nil || len(plan.missing)+len(plan.present)+len(plan.boot) == 0 {
		return err
	}
	op, err := s.journal.Begin(ctx, opPull, name, plan.created, nil)
	if err != nil {
		return err
	}
	res, err := s.pull(ctx, plan)
	if err == nil {
		err = s.update(ctx, func(tx store.Tx) error {
			for _, l := range append(append([]store.Layer(nil), plan.missing...), plan.present...) {
				if err := s.recordHeld(tx, l.ID); err != nil {
					return err
				}
			}
			return journal.Commit(tx, op, nil)
		})
	}
	if err != nil {
		return s.journal.Fail(op, fmt.Errorf("deploy %q: pull its frozen layers: %w", name, err))
	}
	s.journal.Finish(op)
	if res.Bytes > 0 {
		s.log.Info("pulled missing frozen layers", "config", name, "bytes", res.Bytes, "frozen_layers", res.Frozen)
	}
	return nil
}

// home is the host holding c's tops: its recorded host, or this one for a
// configuration made before hosts were recorded.
func (s *core) home(c *store.Config) string {
	if c.Host == "" {
		return s.hostName
	}
	return c.Host
}

func (s moves) movedEvent(ctx context.Context, name, from, to string, res hostlink.AdoptResult) {
	s.events.record(ctx, ObjectConfig, "move", name,
		fmt.Sprintf("from host %s to %s: pulled %d bytes (%d frozen layers, %d tops)", from, to, res.Bytes, res.Frozen, res.Tops))
}

func wrapMove(name, target string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("move %q to host %q: %w", name, target, err)
}
