package lab

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Chains that never get slow (issue 15 part 6). Every read that falls
// through a chain costs a lookup in each layer: at depth 30 a disk reads
// at about a third of the speed of depth 1. When a disk's physical chain
// passes a depth, the pass below writes one frozen "shortcut" layer that
// reads exactly as the run of frozen layers under the disk's top (checked
// with qemu-img compare), backed by the run's own parent, and moves every
// child of the run's top onto it: the file headers of children no VM reads
// are rewritten at once (qemu-img rebase -u, no data touched), running
// VMs are switched live (blockdev-reopen). The run is released like any
// layer once nothing refers to it.
//
// The records keep two depths apart. A layer's ParentID is always what
// its file's header names (the physical chain, which the doctor checks
// and deploys read); a shortcut records the run it stands for
// (ShortcutOf, ShortcutBottom) and how many layers of the clone history
// that is (ShortcutLayers), so the chain limit counts the logical depth.
//
// A frozen child a running VM reads cannot have its header rewritten (its
// file is open read-only by QEMU, which never shares the write
// permission): the VM is switched live, its record keeps naming the run,
// and the run is kept until a later pass, after the undeploy, rewrites it.

// DefaultShortcutDepth is the physical chain depth above which the daemon
// builds a shortcut (serve --shortcut-depth).
const DefaultShortcutDepth = 10

// DefaultShortcutInterval is how often the daemon's pass looks at the
// configurations of its host.
const DefaultShortcutInterval = time.Minute

// Shortcuts builds shortcut layers for deep chains (shortcut.go).
type Shortcuts struct{ *core }

// shortcutDisks is what the pass needs of the disk tool beyond DiskTool:
// *disk.QemuImg.
type shortcutDisks interface {
	// BuildShortcut writes at dst a read-only layer backed by parent that
	// reads as runTop, verified with qemu-img compare.
	BuildShortcut(ctx context.Context, runTop, parent, dst string) error
	// RebaseOnto makes child, backed by oldParent, name shortcut instead
	// (header only).
	RebaseOnto(ctx context.Context, child, oldParent, shortcut string) error
}

// backingSwitcher is what a live switch needs of a running VM:
// *hypervisor.VM.
type backingSwitcher interface {
	SwitchBacking(ctx context.Context, disk int, child, shortcut string) error
}

// ShortcutReport says what one pass over a configuration did.
type ShortcutReport struct {
	Config string
	// Built lists the shortcut layers made, Rebased the layer files whose
	// header now names a shortcut, Switched the running disks switched
	// live ("VM/disk"), Released the layer files released.
	Built    []ShortcutView
	Rebased  []string
	Switched []string
	Released []string
}

// ShortcutView is one shortcut layer and the run it stands for.
type ShortcutView struct {
	Path      string // absolute
	RunTop    string // absolute path of the run's top (empty once released)
	RunBottom string
	Layers    int // how many layers of clone history it stands for
}

// switchedVMs remembers the live switches made, by VM and child layer,
// so that a pass does not switch a running VM twice (its QEMU reads
// through the shortcut already while the record waits for the undeploy).
var switchedVMs = struct {
	sync.Mutex
	m map[[2]int64]int // (vm id, child layer id) → PID switched
}{m: map[[2]int64]int{}}

// markSwitched remembers that the QEMU pid of VM vmID is done with child.
func markSwitched(vmID, child int64, pid int) {
	switchedVMs.Lock()
	defer switchedVMs.Unlock()
	switchedVMs.m[[2]int64{vmID, child}] = pid
}

// logicalDepth is the depth of the chain from top in clone history: a
// shortcut counts as the layers it stands for.
func (idx layerIndex) logicalDepth(top int64) (int, error) {
	c, err := idx.chain(top)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range c {
		n += layerWeight(l)
	}
	return n, nil
}

func layerWeight(l store.Layer) int {
	if l.ShortcutOf != 0 && l.ShortcutLayers > 0 {
		return l.ShortcutLayers
	}
	return 1
}

// Pass runs the shortcut pass over configuration config now, with the
// daemon's depth (or DefaultShortcutDepth when the daemon's pass is off);
// vm, when set, limits it to that VM's disks. It waits for the
// configurations it touches to be free.
func (s Shortcuts) Pass(ctx context.Context, config, vm string) (*ShortcutReport, error) {
	depth := s.shortcutDepth
	if depth <= 0 {
		depth = DefaultShortcutDepth
	}
	return s.pass(ctx, config, vm, depth, false)
}

// RunLoop runs the pass over every configuration whose home is this host
// every interval until ctx ends (the daemon's background work; files are
// host-local, so each host does its own). A configuration another
// operation holds is skipped until the next round.
func (s Shortcuts) RunLoop(ctx context.Context, interval time.Duration) {
	if s.shortcutDepth <= 0 {
		return
	}
	if interval <= 0 {
		interval = DefaultShortcutInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round runs the pass once over every configuration of this host whose
// chains pass the daemon's depth, skipping busy ones.
func (s Shortcuts) Round(ctx context.Context) {
	var names []string
	err := s.store.View(ctx, func(tx store.Tx) error {
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		for i := range cs {
			if s.home(&cs[i]) == s.hostName {
				names = append(names, cs[i].Name)
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("shortcut pass: list configurations", "err", err)
		return
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		if s.locks.busy(name) {
			continue
		}
		if _, err := s.pass(ctx, name, "", s.shortcutDepth, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			s.log.Warn("shortcut pass failed", "config", name, "err", err)
		}
	}
}

// shortcutWork is one disk's chain as the pass sees it.
type shortcutWork struct {
	chain []store.Layer // top first
}

// readers maps each layer to the running disks that read it: the
// configurations not undeployed whose chains include it.
type diskReader struct {
	config   string
	vmID     int64
	vm       string
	disk     int // position in the VM's disks by index (the QEMU drive)
	position int // the layer's position in the chain (0: the top)
}

// pass does the work of Pass for one configuration. background passes
// skip configurations that are busy rather than wait for them.
func (s Shortcuts) pass(ctx context.Context, config, vmName string, depth int, background bool) (*ShortcutReport, error) {
	rep := &ShortcutReport{Config: config}
	sd, ok := s.disks.(shortcutDisks)
	if !ok {
		return nil, errdefs.Unavailable("shortcut %q: the disk tool cannot build shortcut layers", config)
	}
	// Each round moves one run top's children or builds one shortcut;
	// a chain needs at most a few (the bound stops a loop on a bug).
	for round := 0; round < 16; round++ {
		did, err := s.step(ctx, sd, config, vmName, depth, background, rep)
		if err != nil {
			return rep, fmt.Errorf("shortcut %q: %w", config, err)
		}
		if !did {
			break
		}
	}
	if len(rep.Built)+len(rep.Rebased)+len(rep.Switched) > 0 {
		s.events.record(ctx, ObjectConfig, "shortcut", config, fmt.Sprintf("%d shortcut layer(s) built, %d layer(s) rebased, %d running disk(s) switched, %d layer file(s) released",
			len(rep.Built), len(rep.Rebased), len(rep.Switched), len(rep.Released)))
	}
	return rep, nil
}

// shortcutPlan is what one step does: move the children of runTop onto
// shortcut (built first when build is set).
type shortcutPlan struct {
	runTop   store.Layer
	bottom   store.Layer
	parent   store.Layer
	layers   int // logical depth of the run
	build    bool
	shortcut store.Layer // when !build: the existing one
	locks    []string    // configurations reading through runTop
}

// step finds the first thing to do for config's disks and does it: move
// the children of a run top that already has a shortcut, or build one for
// a chain deeper than depth. It reports whether it did something.
func (s Shortcuts) step(ctx context.Context, sd shortcutDisks, config, vmName string, depth int, background bool, rep *ShortcutReport) (bool, error) {
	plan, err := s.planStep(ctx, config, vmName, depth, nil)
	if err != nil || plan == nil {
		return false, err
	}
	if background {
		for _, n := range plan.locks {
			if s.locks.busy(n) {
				return false, nil
			}
		}
	}
	unlock := s.locks.lock(plan.locks...)
	defer unlock()
	// Again under the locks: what was planned may have changed.
	if plan, err = s.planStep(ctx, config, vmName, depth, plan.locks); err != nil || plan == nil {
		return false, err
	}
	if plan.build {
		sc, err := s.buildShortcut(ctx, sd, config, plan)
		if err != nil {
			return false, err
		}
		plan.shortcut = *sc
		rep.Built = append(rep.Built, ShortcutView{Path: s.abs(sc.Path), RunTop: s.abs(plan.runTop.Path), RunBottom: s.abs(plan.bottom.Path), Layers: plan.layers})
	}
	moved, err := s.moveChildren(ctx, sd, config, plan, rep)
	return moved || plan.build, err
}

// planStep reads the records and decides the next step for config's
// disks (nil: nothing to do). held, when set, are the configurations
// locked: a plan needing others is dropped (the next step plans again).
func (s Shortcuts) planStep(ctx context.Context, config, vmName string, depth int, held []string) (*shortcutPlan, error) {
	var plan *shortcutPlan
	err := s.store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil {
			return err
		}
		if h := s.home(c); h != s.hostName {
			return errdefs.Conflict("configuration %q lives on host %q: its layers are there; run the pass on that host", config, h)
		}
		if vmName != "" && !slices.ContainsFunc(c.VMs, func(v store.VM) bool { return v.Name == vmName }) {
			return errdefs.NotFound("configuration %q has no VM %q", config, vmName)
		}
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		shortcutOf := map[int64]store.Layer{} // run top → its shortcut
		for _, l := range idx {
			if l.ShortcutOf != 0 {
				if cur, ok := shortcutOf[l.ShortcutOf]; !ok || l.ID < cur.ID {
					shortcutOf[l.ShortcutOf] = l
				}
			}
		}
		var chains [][]store.Layer
		for _, vm := range c.VMs {
			if vmName != "" && vm.Name != vmName {
				continue
			}
			for _, d := range vm.Disks {
				ch, err := idx.chain(d.TopLayerID)
				if err != nil {
					return err
				}
				chains = append(chains, ch)
			}
		}
		// First: a layer whose parent has a shortcut already (built for
		// another clone, or a child left for after an undeploy).
		for _, ch := range chains {
			for i := 0; i+1 < len(ch); i++ {
				if sc, ok := shortcutOf[ch[i+1].ID]; ok && sc.ID != ch[i].ID {
					p := planMove(idx, ch[i+1], sc)
					if s.worthMoving(tx, idx, p) {
						plan = p
						return s.lockSet(tx, idx, &plan, held)
					}
				}
			}
		}
		// Then: a chain that reads through more than depth layers gets a
		// shortcut for the run between its top and its base. A layer
		// waiting for its header (a running VM reads it) is read through
		// its parent's shortcut already.
		for _, ch := range chains {
			ch = effectiveChain(ch, idx, shortcutOf)
			if len(ch) <= depth || len(ch) < 4 {
				continue
			}
			if _, ok := shortcutOf[ch[1].ID]; ok {
				continue // built already; its children move when they can
			}
			run := ch[1 : len(ch)-1]
			p := &shortcutPlan{runTop: run[0], bottom: run[len(run)-1], parent: ch[len(ch)-1], build: true}
			for _, l := range run {
				if !l.Frozen {
					p = nil
					break
				}
				p.layers += layerWeight(l)
			}
			if p == nil {
				continue
			}
			plan = p
			return s.lockSet(tx, idx, &plan, held)
		}
		return nil
	})
	return plan, err
}

// planMove plans moving the children of runTop onto sc, an existing
// shortcut of it.
func planMove(idx layerIndex, runTop, sc store.Layer) *shortcutPlan {
	return &shortcutPlan{runTop: runTop, parent: idx[sc.ParentID], bottom: idx[sc.ShortcutBottom], layers: sc.ShortcutLayers, shortcut: sc}
}

// worthMoving reports whether some child of p.runTop can still move: one
// no running VM reads, or a running disk of this host not yet switched.
func (s Shortcuts) worthMoving(tx store.Tx, idx layerIndex, p *shortcutPlan) bool {
	readers, err := s.readers(tx, idx)
	if err != nil {
		return true // let the step report it
	}
	for _, l := range idx {
		if l.ParentID != p.runTop.ID || l.ID == p.shortcut.ID {
			continue
		}
		rs := readers[l.ID]
		if len(rs) == 0 {
			return true
		}
		for _, r := range rs {
			if s.switchable(r, l.ID) {
				return true
			}
		}
	}
	return false
}

// switchable reports whether r is a VM of this daemon not yet switched
// for child.
func (s Shortcuts) switchable(r diskReader, child int64) bool {
	v, ok := s.deploys.LiveVM(r.vmID)
	if !ok {
		return false
	}
	if _, ok := v.(backingSwitcher); !ok {
		return false
	}
	switchedVMs.Lock()
	defer switchedVMs.Unlock()
	return switchedVMs.m[[2]int64{r.vmID, child}] != v.PID()
}

// lockSet sets the plan's locks to the configurations whose chains go
// through its run top (those a move touches), or drops the plan (nil)
// when held is set and does not cover them: the next pass plans again.
func (s Shortcuts) lockSet(tx store.Tx, idx layerIndex, planp **shortcutPlan, held []string) error {
	plan := *planp
	cs, err := tx.Configs().List()
	if err != nil {
		return err
	}
	for _, c := range cs {
		for _, vm := range c.VMs {
			for _, d := range vm.Disks {
				ch, err := idx.chain(d.TopLayerID)
				if err != nil {
					return err
				}
				if slices.ContainsFunc(ch, func(l store.Layer) bool { return l.ID == plan.runTop.ID }) && !slices.Contains(plan.locks, c.Name) {
					plan.locks = append(plan.locks, c.Name)
				}
			}
		}
	}
	if held != nil {
		for _, n := range plan.locks {
			if !slices.Contains(held, n) {
				*planp = nil // a new reader appeared meanwhile
				return nil
			}
		}
	}
	return nil
}

// readers maps each layer id to the running disks reading it.
func (s Shortcuts) readers(tx store.Tx, idx layerIndex) (map[int64][]diskReader, error) {
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	out := map[int64][]diskReader{}
	for _, c := range cs {
		if c.State == store.StateUndeployed {
			continue
		}
		for _, vm := range c.VMs {
			disks := append([]store.Disk(nil), vm.Disks...)
			slices.SortFunc(disks, func(a, b store.Disk) int { return a.Index - b.Index })
			for di, d := range disks {
				ch, err := idx.chain(d.TopLayerID)
				if err != nil {
					return nil, err
				}
				for pos, l := range ch {
					out[l.ID] = append(out[l.ID], diskReader{config: c.Name, vmID: vm.ID, vm: vm.Name, disk: di, position: pos})
				}
			}
		}
	}
	return out, nil
}

// buildShortcut writes and records the shortcut of plan's run, journalled
// like a clone: the intent names the new file, which a failure or a crash
// before the commit removes.
func (s Shortcuts) buildShortcut(ctx context.Context, sd shortcutDisks, config string, p *shortcutPlan) (*store.Layer, error) {
	sc := store.Layer{Path: newLayerPath(), ParentID: p.parent.ID, Frozen: true, VirtualSize: p.runTop.VirtualSize,
		ShortcutOf: p.runTop.ID, ShortcutBottom: p.bottom.ID, ShortcutLayers: p.layers}
	op, err := s.journal.Begin(ctx, "shortcut", config, []string{sc.Path}, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*store.Layer, error) {
		return nil, s.journal.Fail(op, fmt.Errorf("build a shortcut for layers %s..%s: %w", p.bottom.Path, p.runTop.Path, err))
	}
	if err := s.journal.Step(ctx, op, "build"); err != nil {
		return fail(err)
	}
	if err := sd.BuildShortcut(ctx, s.abs(p.runTop.Path), s.abs(p.parent.Path), s.abs(sc.Path)); err != nil {
		return fail(err)
	}
	if err := s.journal.Step(ctx, op, "hash"); err != nil {
		return fail(err)
	}
	if sc.SHA256, sc.Size, err = s.hashFrozen(ctx, sc.Path); err != nil {
		return fail(err)
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return fail(err)
	}
	err = s.update(ctx, func(tx store.Tx) error {
		// The run must still be what was read: frozen layers never change,
		// but the run's top may have been released meanwhile.
		if _, err := tx.Layers().Get(p.runTop.ID); err != nil {
			return err
		}
		if err := tx.Layers().Create(&sc); err != nil {
			return err
		}
		if err := s.recordHeld(tx, sc.ID); err != nil {
			return err
		}
		return journal.Commit(tx, op, nil)
	})
	if err != nil {
		return fail(err)
	}
	if err := s.journal.Finish(op); err != nil {
		return nil, err
	}
	s.log.Info("shortcut layer recorded", "config", config, "layer", sc.Path, "run_top", p.runTop.Path, "run_bottom", p.bottom.Path, "layers", p.layers)
	return &sc, nil
}

// moveChildren moves every child of p.runTop onto p.shortcut: the files
// no running VM reads get their header rewritten, running disks of this
// host are switched live (a top's header with them). Then one transaction
// records the new parents and releases what nothing refers to any more.
// It is journalled (kind "shortcut-rebase") for the files it releases; a
// failure after some headers were rewritten leaves them naming the
// shortcut, which reads the same: the next pass records them.
func (s Shortcuts) moveChildren(ctx context.Context, sd shortcutDisks, config string, p *shortcutPlan, rep *ShortcutReport) (bool, error) {
	var children []store.Layer
	var readers map[int64][]diskReader
	err := s.store.View(ctx, func(tx store.Tx) error {
		idx, err := loadLayers(tx)
		if err != nil {
			return err
		}
		for _, l := range idx {
			if l.ParentID == p.runTop.ID && l.ID != p.shortcut.ID {
				children = append(children, l)
			}
		}
		readers, err = s.readers(tx, idx)
		return err
	})
	if err != nil {
		return false, err
	}
	slices.SortFunc(children, func(a, b store.Layer) int { return int(a.ID - b.ID) })
	op, err := s.journal.Begin(ctx, "shortcut-rebase", config, nil, nil)
	if err != nil {
		return false, err
	}
	shortcut, runTop := s.abs(p.shortcut.Path), s.abs(p.runTop.Path)
	var rebased []int64
	var did bool
	fail := func(err error) (bool, error) {
		return did, s.journal.Fail(op, fmt.Errorf("move the children of %s onto shortcut %s: %w", p.runTop.Path, p.shortcut.Path, err))
	}
	for _, child := range children {
		rs := readers[child.ID]
		if len(rs) == 0 {
			if err := s.journal.Step(ctx, op, "rebase"); err != nil {
				return fail(err)
			}
			info, err := s.disks.Info(ctx, s.abs(child.Path))
			if err != nil {
				return fail(err)
			}
			// A header already naming the shortcut was rewritten by a pass
			// that failed before recording it.
			if filepath.Clean(info.BackingFile) != filepath.Clean(shortcut) {
				if err := sd.RebaseOnto(ctx, s.abs(child.Path), runTop, shortcut); err != nil {
					return fail(err)
				}
			}
			rebased = append(rebased, child.ID)
			rep.Rebased = append(rep.Rebased, s.abs(child.Path))
			did = true
			continue
		}
		for _, r := range rs {
			if !s.switchable(r, child.ID) {
				continue
			}
			if err := s.journal.Step(ctx, op, "switch"); err != nil {
				return fail(err)
			}
			v, _ := s.deploys.LiveVM(r.vmID)
			if err := v.(backingSwitcher).SwitchBacking(ctx, r.disk, s.abs(child.Path), shortcut); err != nil {
				if errors.Is(err, errdefs.ErrUnavailable) {
					// A QEMU started by a version that did not name the
					// top's nodes (at start or at a live snapshot): not
					// tried again while this QEMU runs.
					s.log.Warn("running disk not switched: it moves at its next deploy", "config", r.config, "vm", r.vm, "disk", r.disk, "err", err)
					markSwitched(r.vmID, child.ID, v.PID())
					continue
				}
				return fail(err)
			}
			markSwitched(r.vmID, child.ID, v.PID())
			rep.Switched = append(rep.Switched, fmt.Sprintf("%s/%s/%d", r.config, r.vm, r.disk))
			did = true
			if r.position == 0 {
				rebased = append(rebased, child.ID)
				rep.Rebased = append(rep.Rebased, s.abs(child.Path))
			}
		}
	}
	if len(rebased) == 0 {
		s.journal.Forget(op)
		return did, nil
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return fail(err)
	}
	err = s.update(ctx, func(tx store.Tx) error {
		for _, id := range rebased {
			if err := tx.Layers().Rebase(id, p.shortcut.ID); err != nil {
				return err
			}
		}
		removed, err := releaseLayers(tx, []int64{p.runTop.ID})
		if err != nil {
			return err
		}
		return journal.Commit(tx, op, removed)
	})
	if err != nil {
		return fail(err)
	}
	for _, f := range op.RemoveFiles {
		rep.Released = append(rep.Released, s.abs(f))
	}
	s.log.Info("layers moved onto a shortcut", "config", config, "shortcut", p.shortcut.Path, "run_top", p.runTop.Path,
		"rebased", len(rebased), "released", len(op.RemoveFiles))
	return true, s.journal.Finish(op)
}

// effectiveChain is chain as reads go once every pending move is done:
// below a layer whose parent has a shortcut, the shortcut's chain.
func effectiveChain(chain []store.Layer, idx layerIndex, shortcutOf map[int64]store.Layer) []store.Layer {
	for i := 0; i+1 < len(chain); i++ {
		if sc, ok := shortcutOf[chain[i+1].ID]; ok && sc.ID != chain[i].ID {
			rest, err := idx.chain(sc.ID)
			if err != nil {
				return chain
			}
			return append(slices.Clone(chain[:i+1]), rest...)
		}
	}
	return chain
}

// shortcutRuns describes the shortcut layers of chain: the run each
// stands for, by the run's paths while they are recorded.
func shortcutRuns(idx layerIndex, chain []store.Layer, abs func(string) string) map[int64]*ShortcutView {
	out := map[int64]*ShortcutView{}
	name := func(id int64) string {
		if l, ok := idx[id]; ok {
			return abs(l.Path)
		}
		return fmt.Sprintf("layer %d (released)", id)
	}
	for _, l := range chain {
		if l.ShortcutOf != 0 {
			out[l.ID] = &ShortcutView{Path: abs(l.Path), RunTop: name(l.ShortcutOf), RunBottom: name(l.ShortcutBottom), Layers: l.ShortcutLayers}
		}
	}
	return out
}
