// Package doctor compares the lab's store with the files in its data dir
// and archive storage, one checker per concern (journal, layers, leftovers,
// addresses, archives), and with repair fixes what is safe to fix.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Report lists what disagrees between the store and the disk.
type Report struct {
	Problems []Problem
	Checked  int // layers checked
	// ImageChecks is how many of them qemu-img check read; the others
	// were unchanged since they last passed (or are in use by a guest).
	ImageChecks int
	// Accel is the accelerator VMs run with ("kvm" or "tcg") and
	// AccelReason why it was chosen.
	Accel       string
	AccelReason string
}

// Problem kinds found by the doctor.
const (
	ProblemMissingLayer   = "missing-layer"
	ProblemOrphanFile     = "orphan-file"
	ProblemWrongBacking   = "wrong-backing"
	ProblemWritableFrozen = "writable-frozen"
	ProblemReadOnlyTop    = "read-only-writable-layer"
	ProblemCheckFailed    = "check-failed"
	ProblemUnheldIP       = "unheld-ip"
	ProblemSplitFamily    = "ip-held-twice"
	ProblemUnfinishedOp   = "unfinished-operation"
	ProblemUnreferenced   = "unreferenced-layer"
	// ProblemTempFile is a temporary file or directory (".NAME.tmp") no
	// operation is writing: what an interrupted run left.
	ProblemTempFile = "temporary-file"
	// ProblemLayerMode is a layer other users may read (layers are 0600
	// while writable, 0400 frozen).
	ProblemLayerMode = "layer-mode"
)

// Problem is one finding of the doctor.
type Problem struct {
	Kind     string
	Subject  string // a path, an address or a name
	Detail   string
	Repaired bool
	// Repairable says whether --repair can fix it safely.
	Repairable bool
}

// Disks is what the doctor needs of the disk tool.
type Disks interface {
	// SetReadOnly makes the file read-only (0400) or writable (0600).
	SetReadOnly(path string, readOnly bool) error
	Info(ctx context.Context, path string) (disk.Info, error)
	Check(ctx context.Context, path string) error
}

// Lab is what only the lab knows or may do: which subjects its running
// operations hold, and the repairs that follow its rules.
type Lab interface {
	// Busy reports whether an operation of this process still runs on
	// subject (the journal entry is not a leftover).
	Busy(subject string) bool
	// Settle rolls op forward (committed) or back and clears its journal
	// entry. It returns the files it could not remove, and whether
	// clearing the entry failed.
	Settle(op *store.Op) ([]journal.FileFailure, error)
	// ReleaseLayer deletes an unreferenced layer (and the parents it
	// leaves unreferenced) and its files.
	ReleaseLayer(ctx context.Context, id int64) error
	// ReleaseAddress gives back an allocation nothing carries.
	ReleaseAddress(ctx context.Context, a store.Allocation) error
	// Accel describes the accelerator: the choice and why.
	Accel() (accel, reason string)
	// PID is the QEMU process of VM id that this daemon runs, 0 for none.
	PID(vmID int64) int
}

// Config is what a Doctor is built from.
type Config struct {
	Store    store.Store
	Disks    Disks
	Lab      Lab
	DataDir  string   // absolute
	FileDirs []string // the data dir's directories of store files, relative
	// StateDir and SnapshotDir (relative) hold saved states: the VMs'
	// (vm-ID.state, instant copies' shared as hard links) and the
	// snapshots'. "" skips the states check.
	StateDir, SnapshotDir string
	ArchiveDir            string // absolute
	Log                   *slog.Logger
	// Elsewhere, when set, names the layers whose files live on other
	// hosts (by id): they are not looked for here. Nil: every layer's
	// file is in this data dir (one host, or shared layers).
	Elsewhere func(tx store.Tx) (map[int64]bool, error)
	// Host is this daemon's host: the journal entries of other hosts are
	// theirs to settle.
	Host string
}

// Doctor runs one check at a time and remembers the layers that passed.
type Doctor struct {
	cfg Config

	mu      sync.Mutex
	flights map[bool]*flight // by repair: the run callers join
	run     sync.Mutex       // held by the one run in progress
	passed  map[string]layerStamp
}

// New returns a Doctor over cfg.
func New(cfg Config) *Doctor {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Doctor{cfg: cfg, flights: map[bool]*flight{}}
}

// flight is one doctor run and the callers waiting for it.
type flight struct {
	done    chan struct{}
	waiters int  // callers that asked for this run
	started bool // the run has its turn
	report  *Report
	err     error
}

// Run compares the store with the files in the data dir and reports
// every disagreement: unfinished operations, missing layers, orphan and
// temporary files, wrong backing files, wrong file modes, qemu-img check
// failures, unreferenced layers, addresses held by nobody or by two
// families, and damaged or orphan archives. With repair it fixes what is
// safe to fix: it finishes or rolls back operations, fixes file modes,
// removes orphan and temporary files and unreferenced layers, and releases
// unheld addresses. It never deletes data something refers to.
//
// One run happens at a time: a caller arriving while a run of the same
// kind (check or repair) is running or queued gets that run's report, so
// repeated requests cost one run. A layer whose file has not changed since
// it last passed (same inode, size, mtime and ctime) is not read by
// qemu-img again; the report says how many were.
func (dr *Doctor) Run(ctx context.Context, repair bool) (*Report, error) {
	dr.mu.Lock()
	f := dr.flights[repair]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		dr.flights[repair] = f
		// The run is shared: it must not end when the first caller
		// goes away.
		go dr.fly(context.WithoutCancel(ctx), repair, f)
	}
	f.waiters++
	dr.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		r := *f.report
		r.Problems = append([]Problem(nil), f.report.Problems...)
		return &r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Pending describes the run of this kind callers may join: how many
// asked for it and whether it has its turn (ok is false when none is).
func (dr *Doctor) Pending(repair bool) (callers int, started, ok bool) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	f := dr.flights[repair]
	if f == nil {
		return 0, false, false
	}
	return f.waiters, f.started, true
}

func (dr *Doctor) fly(ctx context.Context, repair bool, f *flight) {
	dr.run.Lock()
	defer dr.run.Unlock()
	dr.mu.Lock()
	f.started = true
	dr.mu.Unlock()
	start := time.Now()
	f.report, f.err = dr.once(ctx, repair)
	dr.mu.Lock()
	delete(dr.flights, repair)
	waiters := f.waiters
	dr.mu.Unlock()
	close(f.done)
	if f.err == nil {
		dr.cfg.Log.Info("doctor ran", "repair", repair, "callers", waiters, "layers", f.report.Checked,
			"image_checks", f.report.ImageChecks, "problems", len(f.report.Problems), "duration", time.Since(start))
	}
}

// layerStamp identifies a layer file's content cheaply. Any write changes
// mtime and ctime; a replaced file has another inode.
type layerStamp struct {
	ino, size    int64
	mtime, ctime int64  // nanoseconds
	backing      string // what qemu-img info said when it passed
}

func stampOf(st os.FileInfo) (layerStamp, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return layerStamp{}, false
	}
	return layerStamp{
		ino: int64(sys.Ino), size: st.Size(),
		mtime: sys.Mtim.Nano(), ctime: sys.Ctim.Nano(),
	}, true
}

// passedBacking returns the backing file recorded when path last passed,
// if the file is unchanged since.
func (dr *Doctor) passedBacking(path string, now layerStamp) (string, bool) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	was, ok := dr.passed[path]
	if !ok {
		return "", false
	}
	now.backing = was.backing
	if now != was {
		delete(dr.passed, path)
		return "", false
	}
	return was.backing, true
}

func (dr *Doctor) remember(path string, st layerStamp) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.passed == nil {
		dr.passed = map[string]layerStamp{}
	}
	dr.passed[path] = st
}

// forgetExcept drops what it remembers of layers no longer in the store.
func (dr *Doctor) forgetExcept(keep map[string]bool) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	for p := range dr.passed {
		if !keep[p] {
			delete(dr.passed, p)
		}
	}
}

// run is the state of one run, shared by its checkers.
type run struct {
	dr     *Doctor
	ctx    context.Context
	repair bool
	r      *Report
	// reported holds paths already named in a problem, so that a later
	// checker does not report them twice.
	reported map[string]bool

	ops      []store.Op
	inFlight map[string]bool // files of journalled operations
	// snapshots keep their layers as a child or a disk's top would.
	snapshots []store.Snapshot
	// elsewhere are the layers whose files live on other hosts.
	elsewhere map[int64]bool
	layers    []store.Layer
	configs   []store.Config
	networks  []store.Network
	allocs    map[int64][]store.Allocation
}

func (d *run) add(p Problem) *Problem {
	d.r.Problems = append(d.r.Problems, p)
	return &d.r.Problems[len(d.r.Problems)-1]
}

// once runs every checker, in an order where each one's repairs cannot
// hide the next one's findings: the journal first (its files would show
// up as orphans), then layers, leftovers, addresses, archives.
func (dr *Doctor) once(ctx context.Context, repair bool) (*Report, error) {
	d := &run{dr: dr, ctx: ctx, repair: repair, r: &Report{}, reported: map[string]bool{}}
	d.r.Accel, d.r.AccelReason = dr.cfg.Lab.Accel() // "probing" while the daemon probes
	if err := d.load(); err != nil {
		return nil, err
	}
	for _, check := range []func() error{d.checkJournal, d.checkLayers, d.checkShortcuts, d.checkLeftovers, d.checkStates, d.checkAddresses, d.checkArchives, d.checkRuntime} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return d.r, nil
}

// load reads the journal and the records the checkers compare with.
func (d *run) load() error {
	d.inFlight = map[string]bool{}
	d.allocs = map[int64][]store.Allocation{}
	return d.dr.cfg.Store.View(d.ctx, func(tx store.Tx) error {
		var err error
		if d.ops, err = tx.Ops().List(); err != nil {
			return err
		}
		for _, op := range d.ops {
			for _, f := range opFiles(op) {
				d.inFlight[f] = true
			}
		}
		if d.layers, err = tx.Layers().List(); err != nil {
			return err
		}
		if d.dr.cfg.Elsewhere != nil {
			if d.elsewhere, err = d.dr.cfg.Elsewhere(tx); err != nil {
				return err
			}
		}
		if d.configs, err = tx.Configs().List(); err != nil {
			return err
		}
		if d.snapshots, err = tx.Snapshots().List(0); err != nil {
			return err
		}
		if d.networks, err = tx.Networks().List(); err != nil {
			return err
		}
		for _, n := range d.networks {
			if d.allocs[n.ID], err = tx.Allocations().List(n.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// opFiles lists every file a journal entry names.
func opFiles(op store.Op) []string {
	return append(append(append([]string(nil), op.CreatedFiles...), op.FrozenFiles...), op.RemoveFiles...)
}

// abs turns a data-dir-relative path into an absolute one, as the lab
// does. Archive files, outside the data dir, are journalled absolute.
func (dr *Doctor) abs(rel string) string { return journal.Abs(dr.cfg.DataDir, rel) }

// rel turns an absolute path inside the data dir into a relative one.
func (dr *Doctor) rel(abs string) string { return journal.Rel(dr.cfg.DataDir, abs) }

// checkJournal reports operations an earlier run left unfinished, and with
// repair rolls them forward (committed) or back. An entry is always
// cleared by a repair: a file that cannot be removed is reported on its
// own, so that one bad path cannot keep the entry forever (L1).
func (d *run) checkJournal() error {
	lab := d.dr.cfg.Lab
	for _, op := range d.ops {
		if lab.Busy(op.Subject) || op.Host != "" && op.Host != d.dr.cfg.Host {
			continue
		}
		p := d.add(Problem{Kind: ProblemUnfinishedOp, Subject: op.Kind + " " + op.Subject, Repairable: true,
			Detail: fmt.Sprintf("journal entry %d (committed=%v) left by an interrupted run", op.ID, op.Committed)})
		if !d.repair {
			continue
		}
		failed, err := lab.Settle(&op)
		p.Repaired = err == nil
		switch {
		case err != nil:
			p.Detail += "; clearing it failed: " + err.Error()
		case len(failed) > 0:
			p.Detail += fmt.Sprintf("; cleared, but %d file(s) could not be removed (listed below)", len(failed))
			errs := make([]error, len(failed))
			for i, f := range failed {
				errs[i] = f.Err
			}
			d.dr.cfg.Log.Warn("doctor cleared a journal entry whose files it could not all remove", "op", op.Kind, "subject", op.Subject, "err", errors.Join(errs...))
		}
		for _, f := range failed {
			d.reported[f.Path] = true
			d.add(Problem{Kind: ProblemOrphanFile, Subject: f.Path,
				Detail: fmt.Sprintf("made by the interrupted %s %s, could not be removed: %v", op.Kind, op.Subject, f.Err)})
		}
	}
	return nil
}
