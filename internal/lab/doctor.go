package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/store"
)

// Problem kinds found by the checkers in this file (the others are in
// types.go).
const (
	// ProblemTempFile is a temporary file or directory (".NAME.tmp") no
	// operation is writing: what an interrupted run left.
	ProblemTempFile = "temporary-file"
	// ProblemLayerMode is a layer other users may read (layers are 0600
	// while writable, 0400 frozen).
	ProblemLayerMode = "layer-mode"
)

// Doctor compares the store with the files in the data dir and reports
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
func (s *Service) Doctor(ctx context.Context, repair bool) (*DoctorReport, error) {
	d := &s.doctor
	d.mu.Lock()
	if d.flights == nil {
		d.flights = map[bool]*doctorFlight{}
	}
	f := d.flights[repair]
	if f == nil {
		f = &doctorFlight{done: make(chan struct{})}
		d.flights[repair] = f
		// The run is shared: it must not end when the first caller
		// goes away.
		go s.runDoctor(context.WithoutCancel(ctx), repair, f)
	}
	f.waiters++
	d.mu.Unlock()
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

// doctorState serialises doctor runs and remembers the layers that passed.
type doctorState struct {
	mu      sync.Mutex
	flights map[bool]*doctorFlight // by repair: the run callers join
	run     sync.Mutex             // held by the one run in progress
	passed  map[string]layerStamp  // absolute path → the file when it last passed
}

// doctorFlight is one doctor run and the callers waiting for it.
type doctorFlight struct {
	done    chan struct{}
	waiters int  // callers that asked for this run (tests watch it)
	started bool // the run has its turn (tests watch it)
	report  *DoctorReport
	err     error
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

func (s *Service) runDoctor(ctx context.Context, repair bool, f *doctorFlight) {
	d := &s.doctor
	d.run.Lock()
	defer d.run.Unlock()
	d.mu.Lock()
	f.started = true
	d.mu.Unlock()
	start := time.Now()
	f.report, f.err = s.doctorOnce(ctx, repair)
	d.mu.Lock()
	delete(d.flights, repair)
	waiters := f.waiters
	d.mu.Unlock()
	close(f.done)
	if f.err == nil {
		s.log.Info("doctor ran", "repair", repair, "callers", waiters, "layers", f.report.Checked,
			"image_checks", f.report.ImageChecks, "problems", len(f.report.Problems), "duration", time.Since(start))
	}
}

// doctorRun is the state of one run, shared by its checkers.
type doctorRun struct {
	s      *Service
	ctx    context.Context
	repair bool
	r      *DoctorReport
	// reported holds paths already named in a problem, so that a later
	// checker does not report them twice.
	reported map[string]bool

	ops      []store.Op
	inFlight map[string]bool // files of journalled operations
	layers   []store.Layer
	configs  []store.Config
	networks []store.Network
	allocs   map[int64][]store.Allocation
}

func (d *doctorRun) add(p Problem) *Problem {
	d.r.Problems = append(d.r.Problems, p)
	return &d.r.Problems[len(d.r.Problems)-1]
}

// doctorOnce runs every checker, in an order where each one's repairs
// cannot hide the next one's findings: the journal first (its files would
// show up as orphans), then layers, leftovers, addresses, archives.
func (s *Service) doctorOnce(ctx context.Context, repair bool) (*DoctorReport, error) {
	d := &doctorRun{s: s, ctx: ctx, repair: repair, r: &DoctorReport{}, reported: map[string]bool{}}
	d.r.Accel, d.r.AccelReason = s.accelNow() // "probing" while the daemon probes
	if err := d.load(); err != nil {
		return nil, err
	}
	for _, check := range []func() error{d.checkJournal, d.checkLayers, d.checkLeftovers, d.checkAddresses, d.checkArchives} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return d.r, nil
}

// load reads the journal and the records the checkers compare with.
func (d *doctorRun) load() error {
	d.inFlight = map[string]bool{}
	d.allocs = map[int64][]store.Allocation{}
	return d.s.store.View(d.ctx, func(tx store.Tx) error {
		var err error
		if d.ops, err = tx.ListOps(); err != nil {
			return err
		}
		for _, op := range d.ops {
			for _, f := range opFiles(op) {
				d.inFlight[f] = true
			}
		}
		if d.layers, err = tx.ListLayers(); err != nil {
			return err
		}
		if d.configs, err = tx.ListConfigs(); err != nil {
			return err
		}
		if d.networks, err = tx.ListNetworks(); err != nil {
			return err
		}
		for _, n := range d.networks {
			if d.allocs[n.ID], err = tx.ListAllocations(n.ID); err != nil {
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

// checkJournal reports operations an earlier run left unfinished, and with
// repair rolls them forward (committed) or back. An entry is always
// cleared by a repair: a file that cannot be removed is reported on its
// own, so that one bad path cannot keep the entry forever (L1).
func (d *doctorRun) checkJournal() error {
	for _, op := range d.ops {
		if d.s.opRunning(op) {
			continue
		}
		p := d.add(Problem{Kind: ProblemUnfinishedOp, Subject: op.Kind + " " + op.Subject, Repairable: true,
			Detail: fmt.Sprintf("journal entry %d (committed=%v) left by an interrupted run", op.ID, op.Committed)})
		if !d.repair {
			continue
		}
		var failed []fileFailure
		if op.Committed {
			failed = d.s.releaseFiles(&op)
		} else {
			failed = d.s.undoFiles(&op)
		}
		err := d.s.forgetOp(&op)
		p.Repaired = err == nil
		switch {
		case err != nil:
			p.Detail += "; clearing it failed: " + err.Error()
		case len(failed) > 0:
			p.Detail += fmt.Sprintf("; cleared, but %d file(s) could not be removed (listed below)", len(failed))
			d.s.log.Warn("doctor cleared a journal entry whose files it could not all remove", "op", op.Kind, "subject", op.Subject, "err", joinFailures(failed))
		}
		for _, f := range failed {
			d.reported[f.path] = true
			d.add(Problem{Kind: ProblemOrphanFile, Subject: f.path,
				Detail: fmt.Sprintf("made by the interrupted %s %s, could not be removed: %v", op.Kind, op.Subject, f.err)})
		}
	}
	return nil
}

// checkLayers compares each layer record with its file: present, mode,
// backing file, qemu-img check, and referenced by something.
func (d *doctorRun) checkLayers() error {
	s := d.s
	idx := layerIndex{}
	children := map[int64]int{}
	for _, l := range d.layers {
		idx[l.ID] = l
		if l.ParentID != 0 {
			children[l.ParentID]++
		}
	}
	tops := map[int64]bool{}
	inUse := map[int64]bool{} // tops a running QEMU holds open for writing
	for _, c := range d.configs {
		for _, v := range c.VMs {
			for _, dk := range v.Disks {
				tops[dk.TopLayerID] = true
				if c.State != store.StateUndeployed {
					inUse[dk.TopLayerID] = true
				}
			}
		}
	}
	seen := map[string]bool{}
	var images []imageJob
	var present []store.Layer
	for _, l := range d.layers {
		if d.inFlight[l.Path] {
			continue
		}
		d.r.Checked++
		path := s.abs(l.Path)
		seen[path] = true
		d.reported[path] = true
		st, err := os.Stat(path)
		if err != nil {
			d.add(Problem{Kind: ProblemMissingLayer, Subject: path, Detail: err.Error()})
			continue
		}
		d.checkMode(l, path, st)
		want := ""
		if l.ParentID != 0 {
			want = s.abs(idx[l.ParentID].Path)
		}
		images = append(images, imageJob{path: path, st: st, want: want, inUse: inUse[l.ID]})
		present = append(present, l)
	}
	for _, res := range d.checkImages(images) {
		if res.read {
			d.r.ImageChecks++
		}
		if res.problem != nil {
			d.add(*res.problem)
		}
	}
	// Releasing a layer removes files: only once every image is read.
	for _, l := range present {
		if l.TemplateID == 0 && children[l.ID] == 0 && !tops[l.ID] {
			p := d.add(Problem{Kind: ProblemUnreferenced, Subject: s.abs(l.Path), Detail: "no disk, child or template refers to it", Repairable: true})
			if d.repair {
				p.Repaired = s.releaseUnreferenced(d.ctx, l.ID) == nil
			}
		}
	}
	s.doctor.forgetExcept(seen)
	return nil
}

// checkMode reports a layer file whose mode does not match its record: a
// frozen layer must not be writable, a writable one must be, and no layer
// may be read by other users (it holds guest data).
func (d *doctorRun) checkMode(l store.Layer, path string, st os.FileInfo) {
	perm := st.Mode().Perm()
	var p *Problem
	switch writable := perm&0o222 != 0; {
	case l.Frozen && writable:
		p = d.add(Problem{Kind: ProblemWritableFrozen, Subject: path, Detail: "frozen layer has write permission " + perm.String(), Repairable: true})
	case !l.Frozen && !writable:
		p = d.add(Problem{Kind: ProblemReadOnlyTop, Subject: path, Detail: "writable layer is read-only on disk", Repairable: true})
	case perm&0o077 != 0:
		p = d.add(Problem{Kind: ProblemLayerMode, Subject: path, Detail: "other users may read the layer (mode " + perm.String() + ")", Repairable: true})
	default:
		return
	}
	if d.repair {
		p.Repaired = d.s.disks.SetReadOnly(path, l.Frozen) == nil
	}
}

// imageJob is one layer file whose image the doctor reads.
type imageJob struct {
	path  string
	st    os.FileInfo
	want  string // the backing file the store implies
	inUse bool   // the top layer of a running guest
}

type imageResult struct {
	read    bool // qemu-img check read it
	problem *Problem
}

// checkImages runs checkImage on every job, a few at a time: each is
// mostly the start of a qemu-img process, which a second CPU halves.
func (d *doctorRun) checkImages(jobs []imageJob) []imageResult {
	out := make([]imageResult, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(runtime.NumCPU(), 1), 4, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = d.checkImage(jobs[i])
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// backingReader is implemented by a DiskTool that reads a layer's backing
// file without starting a process (disk.QemuImg).
type backingReader interface {
	BackingFile(ctx context.Context, path string) (string, error)
}

// checkImage compares the layer's backing file with the store's and runs
// qemu-img check on it, unless the file is unchanged since it last passed
// both. A running guest's top layer cannot be checked consistently
// (qemu-img refuses the write lock QEMU holds): it is checked once the
// configuration is undeployed.
func (d *doctorRun) checkImage(j imageJob) imageResult {
	failed := func(err error) imageResult {
		return imageResult{problem: &Problem{Kind: ProblemCheckFailed, Subject: j.path, Detail: err.Error()}}
	}
	stamp, stamped := stampOf(j.st)
	backing, known := d.s.doctor.passedBacking(j.path, stamp)
	if !known {
		var err error
		if br, ok := d.s.disks.(backingReader); ok {
			backing, err = br.BackingFile(d.ctx, j.path)
		} else {
			var info disk.Info
			info, err = d.s.disks.Info(d.ctx, j.path)
			backing = info.BackingFile
		}
		if err != nil {
			return failed(err)
		}
	}
	if filepath.Clean(backing) != filepath.Clean(j.want) && !(j.want == "" && backing == "") {
		return imageResult{problem: &Problem{Kind: ProblemWrongBacking, Subject: j.path,
			Detail: fmt.Sprintf("backing file is %q, the store says %q", backing, j.want)}}
	}
	if known || j.inUse {
		return imageResult{}
	}
	if err := d.s.disks.Check(d.ctx, j.path); err != nil {
		r := failed(err)
		r.read = true
		return r
	}
	if stamped {
		stamp.backing = backing
		d.s.doctor.remember(j.path, stamp)
	}
	return imageResult{read: true}
}

// passedBacking returns the backing file recorded when path last passed,
// if the file is unchanged since.
func (ds *doctorState) passedBacking(path string, now layerStamp) (string, bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	was, ok := ds.passed[path]
	if !ok {
		return "", false
	}
	now.backing = was.backing
	if now != was {
		delete(ds.passed, path)
		return "", false
	}
	return was.backing, true
}

func (ds *doctorState) remember(path string, st layerStamp) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.passed == nil {
		ds.passed = map[string]layerStamp{}
	}
	ds.passed[path] = st
}

// forgetExcept drops what it remembers of layers no longer in the store.
func (ds *doctorState) forgetExcept(keep map[string]bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for p := range ds.passed {
		if !keep[p] {
			delete(ds.passed, p)
		}
	}
}

// checkLeftovers reports files in the layers and files directories that
// the store does not know: temporary files of interrupted writes
// (".NAME.tmp") and orphans.
func (d *doctorRun) checkLeftovers() error {
	var entries []fs.DirEntry
	var paths []string
	for _, dir := range []string{layersDir, filesDir} {
		es, err := os.ReadDir(d.s.abs(dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range es {
			entries = append(entries, e)
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	// Read what the store and journal know after listing: an operation
	// journals its files before making them, so any file listed above
	// that belongs to one is known by now.
	known, err := d.s.knownFiles(d.ctx)
	if err != nil {
		return err
	}
	for i, rel := range paths {
		if known[rel] || d.reported[d.s.abs(rel)] {
			continue
		}
		d.leftover(d.s.abs(rel), entries[i].IsDir(), "file is not in the store")
	}
	return nil
}

// leftover reports (and with repair removes) a file nothing refers to:
// a temporary one, or an orphan.
func (d *doctorRun) leftover(path string, isDir bool, orphanDetail string) {
	p := Problem{Kind: ProblemOrphanFile, Subject: path, Detail: orphanDetail, Repairable: true}
	if disk.IsTempName(filepath.Base(path)) {
		p.Kind, p.Detail = ProblemTempFile, "temporary file no operation is writing (left by an interrupted run)"
	}
	pp := d.add(p)
	d.reported[path] = true
	if !d.repair {
		return
	}
	remove := os.Remove
	if isDir && p.Kind == ProblemTempFile {
		remove = os.RemoveAll // a half-written directory (an archive's)
	}
	err := remove(path)
	pp.Repaired = err == nil || gone(err)
}

// knownFiles returns every data-dir file the store refers to (layers,
// template boot files) and every file the journal names, relative to the
// data dir where it is inside it.
func (s *Service) knownFiles(ctx context.Context) (map[string]bool, error) {
	known := map[string]bool{}
	err := s.store.View(ctx, func(tx store.Tx) error {
		ls, err := tx.ListLayers()
		if err != nil {
			return err
		}
		for _, l := range ls {
			known[l.Path] = true
		}
		ts, err := tx.ListTemplates()
		if err != nil {
			return err
		}
		for _, t := range ts {
			known[t.Kernel], known[t.Initrd] = true, true
		}
		ops, err := tx.ListOps()
		if err != nil {
			return err
		}
		for _, op := range ops {
			for _, f := range opFiles(op) {
				known[f] = true
				known[s.rel(s.abs(f))] = true
			}
		}
		return nil
	})
	return known, err
}

// checkAddresses checks that every internal allocation is carried by at
// least one NIC, every external one is mapped by a fenced NIC, and every
// NIC's address is its allocation's.
func (d *doctorRun) checkAddresses() error {
	s := d.s
	carried := map[int64]int{}
	mapped := map[int64]bool{} // external allocations a fenced NIC uses
	type addrKey struct {
		network int64
		ip      netip.Addr
	}
	byAddr := map[addrKey]map[int64]bool{} // allocation ids seen on NICs per address
	for _, c := range d.configs {
		for _, v := range c.VMs {
			for _, n := range v.NICs {
				if n.ExternalAllocationID != 0 {
					mapped[n.ExternalAllocationID] = true
				}
				if !n.IP.IsValid() {
					continue
				}
				carried[n.AllocationID]++
				key := addrKey{n.NetworkID, n.IP}
				if byAddr[key] == nil {
					byAddr[key] = map[int64]bool{}
				}
				byAddr[key][n.AllocationID] = true
			}
		}
	}
	for _, nw := range d.networks {
		for _, a := range d.allocs[nw.ID] {
			if a.Kind == store.AllocExternal && !mapped[a.ID] {
				p := d.add(Problem{Kind: ProblemUnheldIP, Subject: a.IP.String(), Detail: fmt.Sprintf("external address on network %q is held (%s) but no fenced NIC maps it", nw.Name, a.Holder), Repairable: true})
				if d.repair {
					id := a.ID
					p.Repaired = s.update(d.ctx, func(tx store.Tx) error { return tx.DeleteAllocation(id) }) == nil
					s.alloc.Forget()
				}
				continue
			}
			if a.Kind != store.AllocInternal || carried[a.ID] > 0 {
				continue
			}
			p := d.add(Problem{Kind: ProblemUnheldIP, Subject: a.IP.String(), Detail: fmt.Sprintf("address on network %q is allocated but no NIC carries it", nw.Name), Repairable: true})
			if d.repair {
				p.Repaired = s.update(d.ctx, func(tx store.Tx) error { return s.releaseAllocations(tx, []int64{a.ID}) }) == nil
			}
		}
	}
	keys := make([]addrKey, 0, len(byAddr))
	for k := range byAddr {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].network != keys[j].network {
			return keys[i].network < keys[j].network
		}
		return keys[i].ip.Less(keys[j].ip)
	})
	for _, k := range keys {
		ids := byAddr[k]
		switch {
		case ids[0]:
			d.add(Problem{Kind: ProblemSplitFamily, Subject: k.ip.String(), Detail: "a NIC carries the address without an allocation"})
		case len(ids) > 1:
			d.add(Problem{Kind: ProblemSplitFamily, Subject: k.ip.String(), Detail: fmt.Sprintf("address is carried under %d different allocations (two families)", len(ids))})
		}
	}
	return nil
}

// opRunning reports whether op belongs to an operation of this process that
// is still running (its subject is locked).
func (s *Service) opRunning(op store.Op) bool {
	s.locks.mu.Lock()
	defer s.locks.mu.Unlock()
	_, ok := s.locks.locks[op.Subject]
	if !ok {
		_, ok = s.locks.locks["template/"+op.Subject]
	}
	return ok
}

// releaseUnreferenced deletes an unreferenced layer (and the parents it
// leaves unreferenced) and its files.
func (s *Service) releaseUnreferenced(ctx context.Context, id int64) error {
	op := &store.Op{Kind: "release", Subject: fmt.Sprint(id)}
	err := s.update(ctx, func(tx store.Tx) error {
		removed, err := releaseLayers(tx, []int64{id})
		if err != nil {
			return err
		}
		if err := tx.CreateOp(op); err != nil {
			return err
		}
		return commitOp(tx, op, removed)
	})
	if err != nil {
		return err
	}
	return s.finishOp(op)
}
