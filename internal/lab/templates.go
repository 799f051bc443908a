package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"unicode"
	"unicode/utf8"

	"stagehand/internal/auth"
	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/access"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// ImportTemplate converts each image into a frozen qcow2 base in the data
// dir and records the template. Kernel and initrd, when given, are copied.
// The images and boot files are uploads (Uploads.Receive) or, for the
// system administrator on the unix socket only, files under an import
// directory (see sources.go). Each is opened once, as a regular file, and
// read only through that descriptor, so a path swapped or turned into a
// FIFO meanwhile changes nothing. Import closes the uploads it is given.
func (s Templates) Import(ctx context.Context, spec TemplateSpec) (*TemplateView, error) {
	defer closeUploads(spec)
	if err := CheckName("template", spec.Name); err != nil {
		return nil, err
	}
	switch {
	case len(spec.Disks) == 0 && len(spec.DiskUploads) == 0:
		return nil, errdefs.Invalid("template %q: at least one disk is required", spec.Name)
	case len(spec.Disks) > 0 && len(spec.DiskUploads) > 0,
		spec.Kernel != "" && spec.KernelUpload != nil, spec.Initrd != "" && spec.InitrdUpload != nil:
		return nil, errdefs.Invalid("template %q: give each file as a path or as an upload, not both", spec.Name)
	}
	switch spec.Format {
	case "", "raw", "qcow2":
	default:
		return nil, errdefs.Invalid("template %q: format %q is not raw or qcow2", spec.Name, spec.Format)
	}
	if spec.CPUs == 0 {
		spec.CPUs = 1
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 256
	}
	if spec.CPUs < 1 || spec.CPUs > 64 {
		return nil, errdefs.Invalid("template %q: cpus %d out of range 1..64", spec.Name, spec.CPUs)
	}
	if spec.MemoryMiB < 16 || spec.MemoryMiB > 1<<20 {
		return nil, errdefs.Invalid("template %q: memory %d MiB out of range 16..1048576", spec.Name, spec.MemoryMiB)
	}
	hasKernel := spec.Kernel != "" || spec.KernelUpload != nil
	hasInitrd := spec.Initrd != "" || spec.InitrdUpload != nil
	if hasInitrd && !hasKernel {
		return nil, errdefs.Invalid("template %q: an initrd needs a kernel", spec.Name)
	}
	if !hasKernel && spec.Cmdline != "" {
		return nil, errdefs.Invalid("template %q: a kernel command line needs a kernel", spec.Name)
	}
	if err := checkCmdline(spec.Cmdline); err != nil {
		return nil, fmt.Errorf("template %q: %w", spec.Name, err)
	}
	if err := checkText("description", spec.Description, MaxDescription); err != nil {
		return nil, fmt.Errorf("template %q: %w", spec.Name, err)
	}
	userData, err := readUserData(spec)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", spec.Name, err)
	}
	// Every source is opened now, once, and read only through these
	// descriptors until the import ends.
	disks, err := s.openSources(ctx, spec.Disks, spec.DiskUploads, "a template disk")
	defer closeSources(disks)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", spec.Name, err)
	}
	var boot []bootSource
	defer func() {
		for _, b := range boot {
			b.in.close()
		}
	}()
	for _, b := range []struct {
		path   string
		up     *Upload
		suffix string
	}{{spec.Kernel, spec.KernelUpload, "vmlinuz"}, {spec.Initrd, spec.InitrdUpload, "initrd"}} {
		if b.path == "" && b.up == nil {
			continue
		}
		srcs, err := s.openSources(ctx, nonEmpty(b.path), nonNil(b.up), "a template's "+b.suffix)
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", spec.Name, err)
		}
		in := srcs[0]
		boot = append(boot, bootSource{in: in, size: in.size, dst: filepath.Join(filesDir, "t-"+journal.RandomHex(6)+"-"+b.suffix)})
		if err := checkBootSize(in.name, in.size); err != nil {
			return nil, fmt.Errorf("template %q: %w", spec.Name, err)
		}
	}

	place, err := s.placer.place(ctx, auth.TemplateCreate, access.KindTemplate, spec.Workspace, 0)
	if err != nil {
		return nil, fmt.Errorf("import template %q: %w", spec.Name, err)
	}
	unlock := s.locks.lock("template/" + spec.Name)
	defer unlock()
	if err := s.store.View(ctx, func(tx store.Tx) error {
		_, err := tx.Templates().Get(spec.Name)
		if err == nil {
			return errdefs.Conflict("template %q already exists", spec.Name)
		}
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil {
		return nil, err
	}

	// Every file the import may create, temporary ones included, is in
	// the journal before it exists.
	layerPaths := make([]string, len(disks))
	var created []string
	for i := range layerPaths {
		layerPaths[i] = newLayerPath()
		created = append(created, layerPaths[i], disk.ImportCopyPath(layerPaths[i]))
	}
	var kernel, initrd string
	for i, b := range boot {
		created = append(created, b.dst, disk.TempPath(b.dst))
		if i == 0 {
			kernel = b.dst
		} else {
			initrd = b.dst
		}
	}
	op, err := s.journal.Begin(ctx, "import", spec.Name, created, nil)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(disks))
	sums, fileSizes := make([]string, len(disks)), make([]int64, len(disks))
	for i, src := range disks {
		if err := s.journal.Step(ctx, op, "convert"); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		size, err := s.disks.ImportFile(ctx, src.f, src.name, src.private, spec.Format, s.abs(layerPaths[i]))
		if err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		sizes[i] = size
		if err := s.journal.Step(ctx, op, "freeze"); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if err := s.disks.SetReadOnly(s.abs(layerPaths[i]), true); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: freeze base: %w", spec.Name, err))
		}
		if err := s.journal.Step(ctx, op, "hash"); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if sums[i], fileSizes[i], err = s.hashFrozen(ctx, layerPaths[i]); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
	}
	for _, b := range boot {
		if err := s.journal.Step(ctx, op, "copy-boot-file"); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if err := disk.CheckSpace(s.abs(filesDir), b.size); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if err := copyOpenFile(ctx, b.in.f, b.size, s.abs(b.dst), 0o400); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
	}
	// The boot files' hashes, by which a host lacking them pulls them.
	hashed := store.Template{Name: spec.Name, Kernel: kernel, Initrd: initrd}
	if len(boot) > 0 {
		if err := syncDirs(s.abs(filesDir)); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if err := s.hashBootFiles(ctx, &hashed); err != nil {
			return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
	}
	if err := s.journal.Step(ctx, op, "commit"); err != nil {
		return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
	}
	var view *TemplateView
	err = s.update(ctx, func(tx store.Tx) error {
		t := &store.Template{
			Name: spec.Name, Description: spec.Description, CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB,
			Kernel: kernel, Initrd: initrd, Cmdline: spec.Cmdline, UserData: userData, NoSeed: spec.NoSeed,
			KernelSHA256: hashed.KernelSHA256, KernelSize: hashed.KernelSize, InitrdSHA256: hashed.InitrdSHA256, InitrdSize: hashed.InitrdSize,
			WorkspaceID: place.WorkspaceID, OwnerID: place.OwnerID,
		}
		layers := make([]*store.Layer, len(layerPaths))
		for i, p := range layerPaths {
			layers[i] = &store.Layer{Path: p, Frozen: true, VirtualSize: sizes[i], SHA256: sums[i], Size: fileSizes[i]}
			if err := tx.Layers().Create(layers[i]); err != nil {
				return err
			}
			if err := s.recordHeld(tx, layers[i].ID); err != nil {
				return err
			}
			t.LayerIDs = append(t.LayerIDs, layers[i].ID)
		}
		if err := tx.Templates().Create(t); err != nil {
			return err
		}
		for _, l := range layers {
			l.TemplateID = t.ID
			if err := tx.Layers().Update(l); err != nil {
				return err
			}
		}
		if err := journal.Commit(tx, op, nil); err != nil {
			return err
		}
		v, err := s.views.template(tx, t)
		view = v
		return err
	})
	if err != nil {
		return nil, s.journal.Fail(op, fmt.Errorf("import template %q: %w", spec.Name, err))
	}
	s.journal.Finish(op)
	s.log.Info("template imported", "template", spec.Name, "disks", len(layerPaths))
	s.events.record(ctx, ObjectTemplate, "import", spec.Name, "")
	return view, nil
}

// bootSource is a kernel or initrd being imported: the open source, its
// size, and where it goes (relative to the data dir).
type bootSource struct {
	in   source
	size int64
	dst  string
}

// openSources opens the files an import reads: each path with
// openHostSource (what says what it is for), or each upload as it is.
func (s *core) openSources(ctx context.Context, paths []string, uploads []*Upload, what string) ([]source, error) {
	var out []source
	for _, p := range paths {
		f, size, err := s.openHostSource(ctx, p, what)
		if err != nil {
			return out, err
		}
		out = append(out, source{name: p, f: f, size: size, owned: true})
	}
	for _, u := range uploads {
		if u == nil {
			return out, errdefs.Invalid("%s: an empty upload", what)
		}
		out = append(out, u.source())
	}
	return out, nil
}

func closeSources(srcs []source) {
	for _, src := range srcs {
		src.close()
	}
}

// closeUploads removes the uploads of spec, once the import is over.
func closeUploads(spec TemplateSpec) {
	for _, u := range append(append([]*Upload(nil), spec.DiskUploads...), spec.KernelUpload, spec.InitrdUpload, spec.UserDataUpload) {
		if u != nil {
			u.Close()
		}
	}
}

func nonEmpty(p string) []string {
	if p == "" {
		return nil
	}
	return []string{p}
}

func nonNil(u *Upload) []*Upload {
	if u == nil {
		return nil
	}
	return []*Upload{u}
}

// maxBootFile bounds a kernel or initrd, imported or in a bundle: real
// ones are tens of MiB; an initrd of a live system a few hundred.
const maxBootFile = 1 << 30

// checkBootSize refuses an empty or oversized kernel or initrd.
func checkBootSize(name string, size int64) error {
	switch {
	case size == 0:
		return errdefs.Invalid("%q is empty", name)
	case size > maxBootFile:
		return errdefs.Invalid("%q is %d bytes, more than the %d a kernel or initrd may be", name, size, int64(maxBootFile))
	}
	return nil
}

// maxPath and maxCmdline bound strings that reach the kernel (paths) and
// QEMU (the kernel command line, which Linux caps at a few KiB anyway).
const (
	maxPath    = 4096
	maxCmdline = 4096
)

// checkHostPath accepts an absolute path on the daemon's host, without
// NUL or control characters (a NUL cannot reach a system call, so such a
// path could be journaled but never removed), at most maxPath bytes.
// why says what the daemon does with it.
func checkHostPath(p, why string) error {
	switch {
	case len(p) > maxPath:
		return errdefs.Invalid("path of %d bytes is longer than %d", len(p), maxPath)
	case hasControl(p):
		return errdefs.Invalid("path %q holds a NUL or control character", p)
	case !filepath.IsAbs(p):
		return errdefs.Invalid("path %q must be absolute (%s)", p, why)
	}
	return nil
}

// checkCmdline accepts a kernel command line: printable, at most
// maxCmdline bytes. A NUL would make starting QEMU fail; other control
// characters have no place in it.
func checkCmdline(c string) error {
	switch {
	case len(c) > maxCmdline:
		return errdefs.Invalid("kernel command line of %d bytes is longer than %d", len(c), maxCmdline)
	case hasControl(c):
		return errdefs.Invalid("kernel command line %q holds a NUL or control character", c)
	}
	return nil
}

// hasControl reports whether s holds a C0 or C1 control character (NUL,
// newline, escape, ...) or is not valid UTF-8.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// copyOpenFile copies size bytes of the open source in to dst (absolute,
// not existing) through disk.TempPath(dst), honouring ctx, and leaves it with
// mode perm. On failure neither name is left.
func copyOpenFile(ctx context.Context, in *os.File, size int64, dst string, perm os.FileMode) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("copy to %s: %w", dst, os.ErrExist)
	}
	tmp := disk.TempPath(dst)
	if err := disk.CopySource(ctx, in, size, tmp, perm, true); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// copyFile copies the file at src to dst as copyOpenFile does, refusing
// anything but a regular file of at most limit bytes.
func copyFile(ctx context.Context, src, dst string, perm os.FileMode, limit int64) error {
	in, fi, err := disk.OpenSource(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi.Size() > limit {
		return errdefs.Invalid("%s is %d bytes, more than %d", src, fi.Size(), limit)
	}
	return copyOpenFile(ctx, in, fi.Size(), dst, perm)
}

// ListTemplates returns the templates the caller may see.
func (s Templates) List(ctx context.Context) ([]TemplateView, error) { return s.ListIn(ctx, "") }

// ListIn returns the templates the caller may see in workspace ("ws" or
// "org/ws"; "" every workspace).
func (s Templates) ListIn(ctx context.Context, workspace string) ([]TemplateView, error) {
	sc, err := s.access.Scope(ctx, access.KindTemplate)
	if err != nil {
		return nil, err
	}
	return viewIn(ctx, s.store, func(tx store.Tx) ([]TemplateView, error) {
		ts, err := listTemplates(tx, sc)
		if err == nil {
			ts, err = inWorkspace(tx, workspace, ts, func(t *store.Template) int64 { return t.WorkspaceID })
		}
		if err != nil {
			return nil, err
		}
		return viewsOf(ts, func(t *store.Template) (*TemplateView, error) { return s.views.template(tx, t) })
	})
}

// GetTemplate returns one template.
func (s Templates) Get(ctx context.Context, name string) (*TemplateView, error) {
	return viewIn(ctx, s.store, func(tx store.Tx) (*TemplateView, error) {
		t, err := tx.Templates().Get(name)
		if err != nil {
			return nil, err
		}
		return s.views.template(tx, t)
	})
}

// DeleteTemplate deletes a template that no VM was made from. Its base
// layers go with it (they have no children, since every VM that builds on
// them came from the template).
func (s Templates) Delete(ctx context.Context, name string) error {
	unlock := s.locks.lock("template/" + name)
	defer unlock()
	var op *store.Op
	err := s.update(ctx, func(tx store.Tx) error {
		t, err := tx.Templates().Get(name)
		if err != nil {
			return err
		}
		users, err := templateUsers(tx, t.ID)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errdefs.Conflict("template %q is in use by configuration(s) %v; delete them first", name, users)
		}
		if err := tx.Templates().Delete(t.ID); err != nil {
			return err
		}
		for _, id := range t.LayerIDs {
			l, err := tx.Layers().Get(id)
			if err != nil {
				return err
			}
			l.TemplateID = 0
			if err := tx.Layers().Update(l); err != nil {
				return err
			}
		}
		removed, err := releaseLayers(tx, t.LayerIDs)
		if err != nil {
			return err
		}
		for _, f := range []string{t.Kernel, t.Initrd} {
			if f != "" {
				removed = append(removed, f)
			}
		}
		op = &store.Op{Kind: "delete-template", Subject: name}
		if err := tx.Ops().Create(op); err != nil {
			return err
		}
		return journal.Commit(tx, op, removed)
	})
	if err != nil {
		return fmt.Errorf("delete template %q: %w", name, err)
	}
	s.events.record(ctx, ObjectTemplate, "delete", name, "")
	return s.journal.Finish(op)
}

// templateUsers names the configurations with a VM made from template id.
func templateUsers(tx store.Tx, id int64) ([]string, error) {
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range cs {
		for _, v := range c.VMs {
			if v.TemplateID == id {
				names = append(names, c.Name)
				break
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

func (vs views) template(tx store.Tx, t *store.Template) (*TemplateView, error) {
	v := &TemplateView{
		Name: t.Name, Description: t.Description, CPUs: t.CPUs, MemoryMiB: t.MemoryMiB,
		Cmdline: t.Cmdline, CreatedAt: t.CreatedAt, Seed: !t.NoSeed, UserDataBytes: len(t.UserData),
	}
	v.Workspace, v.Owner = owned(access.NewNames(tx), t.WorkspaceID, t.OwnerID, "")
	if t.Kernel != "" {
		v.Kernel = vs.abs(t.Kernel)
	}
	if t.Initrd != "" {
		v.Initrd = vs.abs(t.Initrd)
	}
	for _, id := range t.LayerIDs {
		l, err := tx.Layers().Get(id)
		if err != nil {
			return nil, err
		}
		v.Disks = append(v.Disks, LayerView{ID: l.ID, Path: vs.abs(l.Path), Frozen: l.Frozen, VirtualSize: l.VirtualSize, Template: t.Name})
	}
	return v, nil
}
