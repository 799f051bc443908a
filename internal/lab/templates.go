package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// ImportTemplate converts each image into a frozen qcow2 base in the data
// dir and records the template. Kernel and initrd, when given, are copied.
// The source files are only read.
func (s *Service) ImportTemplate(ctx context.Context, spec TemplateSpec) (*TemplateView, error) {
	if err := checkName("template", spec.Name); err != nil {
		return nil, err
	}
	if len(spec.Disks) == 0 {
		return nil, errdefs.Invalid("template %q: at least one --disk is required", spec.Name)
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
	if (spec.Kernel == "") != (spec.Initrd == "") && spec.Initrd != "" {
		return nil, errdefs.Invalid("template %q: --initrd needs --kernel", spec.Name)
	}
	if spec.Kernel == "" && spec.Cmdline != "" {
		return nil, errdefs.Invalid("template %q: --cmdline needs --kernel", spec.Name)
	}
	for _, f := range append(append([]string(nil), spec.Disks...), spec.Kernel, spec.Initrd) {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			return nil, errdefs.Invalid("template %q: path %q must be absolute (the daemon reads it)", spec.Name, f)
		}
		st, err := os.Stat(f)
		if err != nil {
			return nil, errdefs.Invalid("template %q: cannot read %s: %v", spec.Name, f, errors.Unwrap(err))
		}
		if !st.Mode().IsRegular() {
			return nil, errdefs.Invalid("template %q: %s is not a regular file", spec.Name, f)
		}
	}

	unlock := s.locks.lock("template/" + spec.Name)
	defer unlock()
	if err := s.store.View(ctx, func(tx store.Tx) error {
		_, err := tx.GetTemplate(spec.Name)
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

	layerPaths := make([]string, len(spec.Disks))
	for i := range layerPaths {
		layerPaths[i] = newLayerPath()
	}
	created := append([]string(nil), layerPaths...)
	var kernel, initrd string
	if spec.Kernel != "" {
		kernel = filepath.Join(filesDir, "t-"+randomHex(6)+"-vmlinuz")
		created = append(created, kernel)
	}
	if spec.Initrd != "" {
		initrd = filepath.Join(filesDir, "t-"+randomHex(6)+"-initrd")
		created = append(created, initrd)
	}
	op, err := s.beginOp(ctx, "import", spec.Name, created, nil)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(spec.Disks))
	for i, src := range spec.Disks {
		if err := s.step(ctx, op, "convert"); err != nil {
			return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		size, err := s.disks.ImportBase(ctx, src, spec.Format, s.abs(layerPaths[i]))
		if err != nil {
			return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		sizes[i] = size
		if err := s.step(ctx, op, "freeze"); err != nil {
			return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if err := s.disks.SetReadOnly(s.abs(layerPaths[i]), true); err != nil {
			return nil, s.failOp(op, fmt.Errorf("import template %q: freeze base: %w", spec.Name, err))
		}
	}
	for _, cp := range [][2]string{{spec.Kernel, kernel}, {spec.Initrd, initrd}} {
		if cp[0] == "" {
			continue
		}
		if err := s.step(ctx, op, "copy-boot-file"); err != nil {
			return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
		if err := copyFile(cp[0], s.abs(cp[1])); err != nil {
			return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
		}
	}
	if err := s.step(ctx, op, "commit"); err != nil {
		return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
	}
	var view *TemplateView
	err = s.update(ctx, func(tx store.Tx) error {
		t := &store.Template{
			Name: spec.Name, Description: spec.Description, CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB,
			Kernel: kernel, Initrd: initrd, Cmdline: spec.Cmdline,
		}
		layers := make([]*store.Layer, len(layerPaths))
		for i, p := range layerPaths {
			layers[i] = &store.Layer{Path: p, Frozen: true, VirtualSize: sizes[i]}
			if err := tx.CreateLayer(layers[i]); err != nil {
				return err
			}
			t.LayerIDs = append(t.LayerIDs, layers[i].ID)
		}
		if err := tx.CreateTemplate(t); err != nil {
			return err
		}
		for _, l := range layers {
			l.TemplateID = t.ID
			if err := tx.UpdateLayer(l); err != nil {
				return err
			}
		}
		if err := commitOp(tx, op, nil); err != nil {
			return err
		}
		v, err := s.templateView(tx, t)
		view = v
		return err
	})
	if err != nil {
		return nil, s.failOp(op, fmt.Errorf("import template %q: %w", spec.Name, err))
	}
	s.finishOp(op)
	s.log.Info("template imported", "template", spec.Name, "disks", len(layerPaths))
	s.record(ctx, ObjectTemplate, "import", spec.Name, "")
	return view, nil
}

// ListTemplates returns every template.
func (s *Service) ListTemplates(ctx context.Context) ([]TemplateView, error) {
	var out []TemplateView
	err := s.store.View(ctx, func(tx store.Tx) error {
		ts, err := tx.ListTemplates()
		if err != nil {
			return err
		}
		for i := range ts {
			v, err := s.templateView(tx, &ts[i])
			if err != nil {
				return err
			}
			out = append(out, *v)
		}
		return nil
	})
	return out, err
}

// GetTemplate returns one template.
func (s *Service) GetTemplate(ctx context.Context, name string) (*TemplateView, error) {
	var out *TemplateView
	err := s.store.View(ctx, func(tx store.Tx) error {
		t, err := tx.GetTemplate(name)
		if err != nil {
			return err
		}
		out, err = s.templateView(tx, t)
		return err
	})
	return out, err
}

// DeleteTemplate deletes a template that no VM was made from. Its base
// layers go with it (they have no children, since every VM that builds on
// them came from the template).
func (s *Service) DeleteTemplate(ctx context.Context, name string) error {
	unlock := s.locks.lock("template/" + name)
	defer unlock()
	var op *store.Op
	err := s.update(ctx, func(tx store.Tx) error {
		t, err := tx.GetTemplate(name)
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
		if err := tx.DeleteTemplate(t.ID); err != nil {
			return err
		}
		for _, id := range t.LayerIDs {
			l, err := tx.GetLayer(id)
			if err != nil {
				return err
			}
			l.TemplateID = 0
			if err := tx.UpdateLayer(l); err != nil {
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
		if err := tx.CreateOp(op); err != nil {
			return err
		}
		return commitOp(tx, op, removed)
	})
	if err != nil {
		return fmt.Errorf("delete template %q: %w", name, err)
	}
	s.record(ctx, ObjectTemplate, "delete", name, "")
	return s.finishOp(op)
}

// templateUsers names the configurations with a VM made from template id.
func templateUsers(tx store.Tx, id int64) ([]string, error) {
	cs, err := tx.ListConfigs()
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

func (s *Service) templateView(tx store.Tx, t *store.Template) (*TemplateView, error) {
	v := &TemplateView{
		Name: t.Name, Description: t.Description, CPUs: t.CPUs, MemoryMiB: t.MemoryMiB,
		Cmdline: t.Cmdline, CreatedAt: t.CreatedAt,
	}
	if t.Kernel != "" {
		v.Kernel = s.abs(t.Kernel)
	}
	if t.Initrd != "" {
		v.Initrd = s.abs(t.Initrd)
	}
	for _, id := range t.LayerIDs {
		l, err := tx.GetLayer(id)
		if err != nil {
			return nil, err
		}
		v.Disks = append(v.Disks, LayerView{ID: l.ID, Path: s.abs(l.Path), Frozen: l.Frozen, VirtualSize: l.VirtualSize, Template: t.Name})
	}
	return v, nil
}

// copyFile copies src to dst (new file, 0644), fsynced; dst is removed on
// failure.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return errdefs.Invalid("cannot read %s: %v", src, errors.Unwrap(err))
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if _, err = io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Sync()
}
