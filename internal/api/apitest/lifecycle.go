package apitest

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// lifecycleState is the fake's library, archives and event log.
type lifecycleState struct {
	library  map[string]*lab.ConfigView
	archives map[string]*lab.ArchiveView
	events   []lab.EventView
	subs     []chan lab.EventView
}

// record appends an event (f.mu held). The fake does not see who asks:
// its events are anonymous.
func (f *Fake) record(ctx context.Context, object, action, subject string) {
	e := lab.EventView{ID: int64(len(f.life.events) + 1), At: time.Now().UTC(), Actor: lab.ActorAnonymous, Action: action, Object: object, Subject: subject, Result: lab.ResultOK}
	f.life.events = append(f.life.events, e)
	for _, ch := range f.life.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (f *Fake) ensureLife() {
	if f.life.library == nil {
		f.life.library = map[string]*lab.ConfigView{}
		f.life.archives = map[string]*lab.ArchiveView{}
	}
}

// SetLease changes a configuration's or library entry's lease.
func (f *Fake) SetLease(ctx context.Context, name string, ch lab.LeaseChange) (*lab.ConfigView, error) {
	if err := f.fail("SetLease"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	c, ok := f.configs[name]
	if !ok {
		if c, ok = f.life.library[name]; !ok {
			return nil, errdefs.NotFound("configuration %q not found", name)
		}
	}
	now := time.Now().UTC()
	if ch.Storage != nil {
		c.Lease.StorageExpires, c.Lease.ExpiredAt = time.Time{}, time.Time{}
		if *ch.Storage > 0 {
			c.Lease.StorageExpires = now.Add(*ch.Storage)
		}
	}
	if ch.Deploy != nil {
		c.Lease.DeployLease = *ch.Deploy
	}
	if ch.UndeployAction != "" {
		c.Lease.UndeployAction = ch.UndeployAction
	}
	f.record(ctx, lab.ObjectConfig, "lease", name)
	return clone(c), nil
}

// Capture copies a configuration into the library.
func (f *Fake) Capture(ctx context.Context, config, name string, _ lab.CreateOptions) (*lab.ConfigView, error) {
	if err := f.fail("Capture"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	if _, ok := f.life.library[name]; ok {
		return nil, errdefs.Conflict("configuration %q already exists", name)
	}
	if _, ok := f.configs[name]; ok {
		return nil, errdefs.Conflict("configuration %q already exists", name)
	}
	c, err := f.copyConfig(config, name, true)
	if err != nil {
		return nil, err
	}
	delete(f.configs, name)
	f.order = f.order[:len(f.order)-1]
	c.Kind = "library"
	f.life.library[name] = c
	f.record(ctx, lab.ObjectLibrary, "capture", name)
	return clone(c), nil
}

// Checkout makes a configuration from a library entry.
func (f *Fake) Checkout(ctx context.Context, entry, name string, _ lab.CreateOptions) (*lab.ConfigView, error) {
	if err := f.fail("Checkout"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	e, ok := f.life.library[entry]
	if !ok {
		return nil, errdefs.NotFound("library entry %q not found", entry)
	}
	if _, ok := f.configs[name]; ok {
		return nil, errdefs.Conflict("configuration %q already exists", name)
	}
	c := clone(e)
	c.Name, c.Kind = name, "config"
	f.configs[name] = c
	f.order = append(f.order, name)
	f.record(ctx, lab.ObjectConfig, "checkout", name)
	return clone(c), nil
}

// ListLibrary returns the library entries by name.
func (f *Fake) ListLibrary(ctx context.Context) ([]lab.ConfigView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	var out []lab.ConfigView
	for _, c := range f.life.library {
		out = append(out, *clone(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetLibraryEntry returns one entry.
func (f *Fake) GetLibraryEntry(ctx context.Context, name string) (*lab.ConfigView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	c, ok := f.life.library[name]
	if !ok {
		return nil, errdefs.NotFound("library entry %q not found", name)
	}
	return clone(c), nil
}

// DeleteLibraryEntry deletes one entry.
func (f *Fake) DeleteLibraryEntry(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	if _, ok := f.life.library[name]; !ok {
		return errdefs.NotFound("library entry %q not found", name)
	}
	delete(f.life.library, name)
	f.record(ctx, lab.ObjectLibrary, "delete", name)
	return nil
}

// StartArchive archives a configuration in a job.
func (f *Fake) StartArchive(ctx context.Context, config, name string, _ lab.CreateOptions) (jobs.Job, error) {
	if err := f.fail("StartArchive"); err != nil {
		return jobs.Job{}, err
	}
	f.mu.Lock()
	f.ensureLife()
	c, ok := f.configs[config]
	_, exists := f.life.archives[name]
	f.mu.Unlock()
	if !ok {
		return jobs.Job{}, errdefs.NotFound("configuration %q not found", config)
	}
	if exists {
		return jobs.Job{}, errdefs.Conflict("archive %q already exists", name)
	}
	return f.jobs.Start("archive", name, func(ctx context.Context, progress func(done, total int64)) error {
		if err := f.work(ctx, progress); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		a := &lab.ArchiveView{Name: name, Source: config, Dir: "/var/lib/stagehand/archive/" + name, Size: 1 << 20, CreatedAt: time.Now().UTC()}
		for _, vm := range c.VMs {
			av := lab.ArchiveVMView{Name: vm.Name, Template: vm.Template, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, NICs: vm.NICs}
			for _, d := range vm.Disks {
				av.Disks = append(av.Disks, lab.ArchiveDiskView{Index: d.Index, Path: a.Dir + fmt.Sprintf("/disks/%s-%d.qcow2", vm.Name, d.Index), VirtualSize: 1 << 30, Size: 1 << 19})
			}
			a.VMs = append(a.VMs, av)
		}
		f.life.archives[name] = a
		f.record(ctx, lab.ObjectArchive, "archive", name)
		return nil
	}), nil
}

// StartRestore makes a configuration from an archive in a job.
func (f *Fake) StartRestore(ctx context.Context, archive, config string, _ lab.CreateOptions) (jobs.Job, error) {
	f.mu.Lock()
	f.ensureLife()
	a, ok := f.life.archives[archive]
	_, exists := f.configs[config]
	f.mu.Unlock()
	if !ok {
		return jobs.Job{}, errdefs.NotFound("archive %q not found", archive)
	}
	if exists {
		return jobs.Job{}, errdefs.Conflict("configuration %q already exists", config)
	}
	return f.jobs.Start("restore", config, func(ctx context.Context, progress func(done, total int64)) error {
		if err := f.work(ctx, progress); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		c := &lab.ConfigView{Name: config, Kind: "config", State: stateUndeployed, CreatedAt: time.Now().UTC()}
		for _, vm := range a.VMs {
			v := lab.VMView{Name: vm.Name, Template: vm.Template, CPUs: vm.CPUs, MemoryMiB: vm.MemoryMiB, State: stateUndeployed, NICs: vm.NICs}
			for _, d := range vm.Disks {
				p := f.newLayerPath()
				v.Disks = append(v.Disks, lab.DiskView{Index: d.Index, Path: p, Chain: []string{p}})
			}
			c.VMs = append(c.VMs, v)
		}
		f.configs[config] = c
		f.order = append(f.order, config)
		f.record(ctx, lab.ObjectConfig, "restore", config)
		return nil
	}), nil
}

// StartExport writes a placeholder bundle at file in a job.
func (f *Fake) StartExport(ctx context.Context, archive, file string) (jobs.Job, error) {
	f.mu.Lock()
	f.ensureLife()
	_, ok := f.life.archives[archive]
	f.mu.Unlock()
	if !ok {
		return jobs.Job{}, errdefs.NotFound("archive %q not found", archive)
	}
	return f.jobs.Start("export", archive, func(ctx context.Context, progress func(done, total int64)) error {
		if err := f.work(ctx, progress); err != nil {
			return err
		}
		return os.WriteFile(file, []byte("fake bundle of "+archive+"\n"), 0o644)
	}), nil
}

// StartImport records an archive named spec.Name (or "imported") in a job.
func (f *Fake) StartImport(ctx context.Context, spec lab.ImportSpec) (jobs.Job, error) {
	if _, err := os.Stat(spec.File); err != nil {
		return jobs.Job{}, errdefs.Invalid("cannot read the bundle: %v", err)
	}
	name := spec.Name
	if name == "" {
		name = "imported"
	}
	return f.jobs.Start("import", name, func(ctx context.Context, progress func(done, total int64)) error {
		if err := f.work(ctx, progress); err != nil {
			return err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ensureLife()
		f.life.archives[name] = &lab.ArchiveView{Name: name, Source: "bundle " + spec.File, CreatedAt: time.Now().UTC()}
		f.record(ctx, lab.ObjectArchive, "import", name)
		return nil
	}), nil
}

// ListArchives returns the archives by name.
func (f *Fake) ListArchives(ctx context.Context) ([]lab.ArchiveView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	var out []lab.ArchiveView
	for _, a := range f.life.archives {
		out = append(out, *clone(a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// GetArchive returns one archive.
func (f *Fake) GetArchive(ctx context.Context, name string) (*lab.ArchiveView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	a, ok := f.life.archives[name]
	if !ok {
		return nil, errdefs.NotFound("archive %q not found", name)
	}
	return clone(a), nil
}

// DeleteArchive deletes one archive.
func (f *Fake) DeleteArchive(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	if _, ok := f.life.archives[name]; !ok {
		return errdefs.NotFound("archive %q not found", name)
	}
	delete(f.life.archives, name)
	f.record(ctx, lab.ObjectArchive, "delete", name)
	return nil
}

// SetArchiveLease sets an archive's storage lease.
func (f *Fake) SetArchiveLease(ctx context.Context, name string, storage time.Duration) (*lab.ArchiveView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensureLife()
	a, ok := f.life.archives[name]
	if !ok {
		return nil, errdefs.NotFound("archive %q not found", name)
	}
	a.Lease.StorageExpires = time.Time{}
	if storage > 0 {
		a.Lease.StorageExpires = time.Now().UTC().Add(storage)
	}
	return clone(a), nil
}

// Cleanup lists configurations whose storage lease ran out; applying
// deletes the undeployed ones.
func (f *Fake) Cleanup(ctx context.Context, opts lab.CleanupOptions) (*lab.CleanupReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rep := &lab.CleanupReport{Policy: lab.CleanupNotify, Grace: lab.DefaultGrace}
	now := time.Now()
	for _, name := range f.order {
		c := f.configs[name]
		if c.Lease.StorageExpires.IsZero() || now.Before(c.Lease.StorageExpires) {
			continue
		}
		it := lab.CleanupItem{Object: lab.ObjectConfig, Name: name, State: c.State, Reasons: []string{"storage lease expired"},
			Frees: 1 << 20, Deletable: c.State == stateUndeployed, Lease: c.Lease}
		if it.Deletable {
			rep.Frees += it.Frees
		}
		rep.Items = append(rep.Items, it)
	}
	if !opts.Apply || opts.DryRun {
		return rep, nil
	}
	rep.Applied = true
	for i := range rep.Items {
		it := &rep.Items[i]
		if !it.Deletable {
			continue
		}
		delete(f.configs, it.Name)
		for j, n := range f.order {
			if n == it.Name {
				f.order = append(f.order[:j], f.order[j+1:]...)
				break
			}
		}
		it.Deleted = true
		rep.Freed += it.Frees
	}
	return rep, nil
}

// ListEvents returns the fake's events after id after.
func (f *Fake) ListEvents(ctx context.Context, after int64, limit int) ([]lab.EventView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []lab.EventView
	for _, e := range f.life.events {
		if e.ID > after && (limit <= 0 || len(out) < limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

// SubscribeEvents returns the events recorded from now on.
func (f *Fake) SubscribeEvents() (<-chan lab.EventView, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan lab.EventView, 64)
	f.life.subs = append(f.life.subs, ch)
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, c := range f.life.subs {
			if c == ch {
				f.life.subs = append(f.life.subs[:i], f.life.subs[i+1:]...)
				close(ch)
				return
			}
		}
	}
}
