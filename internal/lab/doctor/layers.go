package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"stagehand/internal/disk"
	"stagehand/internal/store"
)

// checkLayers compares each layer record with its file: present, mode,
// backing file, qemu-img check, and referenced by something.
func (d *run) checkLayers() error {
	idx := map[int64]store.Layer{}
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
	inSnapshot := map[int64]string{} // layer → a snapshot naming it
	for _, sn := range d.snapshots {
		for _, sd := range sn.Disks {
			inSnapshot[sd.LayerID] = sn.Name
		}
	}
	seen := map[string]bool{}
	var images []imageJob
	var present []store.Layer
	for _, l := range d.layers {
		if d.inFlight[l.Path] || d.elsewhere[l.ID] {
			continue
		}
		d.r.Checked++
		path := d.dr.abs(l.Path)
		seen[path] = true
		d.reported[path] = true
		st, err := os.Stat(path)
		if err != nil {
			detail := err.Error()
			if name, ok := inSnapshot[l.ID]; ok {
				detail = fmt.Sprintf("layer of snapshot %q: %s", name, detail)
			}
			d.add(Problem{Kind: ProblemMissingLayer, Subject: path, Detail: detail})
			continue
		}
		d.checkMode(l, path, st)
		want := ""
		if l.ParentID != 0 {
			want = d.dr.abs(idx[l.ParentID].Path)
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
		if l.TemplateID == 0 && children[l.ID] == 0 && !tops[l.ID] && inSnapshot[l.ID] == "" {
			if l.ShortcutOf != 0 && children[l.ShortcutOf] > 0 {
				// A pass interrupted between rewriting headers and
				// recording them: those files may name it already.
				d.add(Problem{Kind: ProblemUnreferenced, Subject: d.dr.abs(l.Path), Detail: "shortcut layer no record refers to yet; the next shortcut pass moves its run's children onto it"})
				continue
			}
			p := d.add(Problem{Kind: ProblemUnreferenced, Subject: d.dr.abs(l.Path), Detail: "no disk, child or template refers to it", Repairable: true})
			if d.repair {
				p.Repaired = d.dr.cfg.Lab.ReleaseLayer(d.ctx, l.ID) == nil
			}
		}
	}
	d.dr.forgetExcept(seen)
	return nil
}

// checkMode reports a layer file whose mode does not match its record: a
// frozen layer must not be writable, a writable one must be, and no layer
// may be read by other users (it holds guest data).
func (d *run) checkMode(l store.Layer, path string, st os.FileInfo) {
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
		p.Repaired = d.dr.cfg.Disks.SetReadOnly(path, l.Frozen) == nil
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
func (d *run) checkImages(jobs []imageJob) []imageResult {
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

// backingReader is implemented by a disk tool that reads a layer's backing
// file without starting a process (disk.QemuImg).
type backingReader interface {
	BackingFile(ctx context.Context, path string) (string, error)
}

// checkImage compares the layer's backing file with the store's and runs
// qemu-img check on it, unless the file is unchanged since it last passed
// both. A running guest's top layer cannot be checked consistently
// (qemu-img refuses the write lock QEMU holds): it is checked once the
// configuration is undeployed.
func (d *run) checkImage(j imageJob) imageResult {
	failed := func(err error) imageResult {
		return imageResult{problem: &Problem{Kind: ProblemCheckFailed, Subject: j.path, Detail: err.Error()}}
	}
	stamp, stamped := stampOf(j.st)
	backing, known := d.dr.passedBacking(j.path, stamp)
	if !known {
		var err error
		if br, ok := d.dr.cfg.Disks.(backingReader); ok {
			backing, err = br.BackingFile(d.ctx, j.path)
		} else {
			var info disk.Info
			info, err = d.dr.cfg.Disks.Info(d.ctx, j.path)
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
	if err := d.dr.cfg.Disks.Check(d.ctx, j.path); err != nil {
		r := failed(err)
		r.read = true
		return r
	}
	if stamped {
		stamp.backing = backing
		d.dr.remember(j.path, stamp)
	}
	return imageResult{read: true}
}
