package lab

import (
	"context"
	"errors"
	"fmt"
	"os"

	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/store"
)

// A template that boots a kernel has boot files (kernel, initrd) under
// DATA/files. They never change after import, so they are content-
// addressed like frozen layers: their hashes are recorded with the
// template, a host serves them by hash on the same endpoint as frozen
// layers, and a host that lacks them (it adopts a configuration, or
// deploys one whose template was imported elsewhere) pulls them by hash
// with the frozen layers, journalled with them.

// hashBootFiles records the content hashes and sizes of t's boot files,
// which are already in place under the data dir.
func (s *core) hashBootFiles(ctx context.Context, t *store.Template) error {
	var err error
	if t.Kernel != "" {
		if t.KernelSHA256, t.KernelSize, err = hostlink.HashFile(ctx, s.abs(t.Kernel)); err != nil {
			return fmt.Errorf("template %q: kernel: %w", t.Name, err)
		}
	}
	if t.Initrd != "" {
		if t.InitrdSHA256, t.InitrdSize, err = hostlink.HashFile(ctx, s.abs(t.Initrd)); err != nil {
			return fmt.Errorf("template %q: initrd: %w", t.Name, err)
		}
	}
	return nil
}

// missingBootFiles returns, as frozen refs to pull by hash, the boot
// files of c's templates that are not on this host. A file that is here
// is trusted when its size is the recorded one, as a frozen layer is
// (the pull verified it, or the import made it); a missing one without a
// recorded hash (a template imported before hashes were recorded) cannot
// be pulled, and refuses the operation.
func (s moves) missingBootFiles(tx store.Tx, c *store.Config) ([]hostlink.LayerRef, error) {
	var out []hostlink.LayerRef
	seen := map[int64]bool{}
	for _, vm := range c.VMs {
		if seen[vm.TemplateID] {
			continue
		}
		seen[vm.TemplateID] = true
		t, err := tx.Templates().GetByID(vm.TemplateID)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, f := range []struct {
			what, path, sum string
			size            int64
		}{{"kernel", t.Kernel, t.KernelSHA256, t.KernelSize}, {"initrd", t.Initrd, t.InitrdSHA256, t.InitrdSize}} {
			if f.path == "" {
				continue
			}
			st, err := os.Lstat(s.abs(f.path))
			switch {
			case errors.Is(err, os.ErrNotExist) && !hostlink.ValidHash(f.sum):
				return nil, errdefs.Unavailable("VM %q boots template %q's %s %s, which is not on this host and has no content hash to pull it by (the template was imported before hashes were recorded): import the template again", vm.Name, t.Name, f.what, f.path)
			case errors.Is(err, os.ErrNotExist):
				out = append(out, hostlink.LayerRef{Path: f.path, SHA256: f.sum, Size: f.size, Frozen: true})
			case err != nil:
				return nil, fmt.Errorf("template %q: %s: %w", t.Name, f.what, err)
			case hostlink.ValidHash(f.sum) && (!st.Mode().IsRegular() || st.Size() != f.size):
				return nil, errdefs.Conflict("template %q: %s %s on this host (%s, %d bytes) is not the %d-byte file it was imported as; it was damaged", t.Name, f.what, f.path, st.Mode(), st.Size(), f.size)
			}
		}
	}
	return out, nil
}

// bootPeers are the hosts a boot file is asked of, in turn: the given
// ones (the home, the holders of the chain's layers) first, then every
// other host (which answers 404 when it lacks the file).
func bootPeers(tx store.Tx, self string, first []hostlink.Peer) ([]hostlink.Peer, error) {
	hs, err := tx.Hosts().List()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(first)+len(hs))
	for _, p := range first {
		names = append(names, p.Name)
	}
	for _, h := range hs {
		if h.State != store.HostRemoved {
			names = append(names, h.Name)
		}
	}
	return peers(tx, self, names...)
}

// pullBootFiles pulls p's missing boot files, verified by hash, and
// returns the bytes moved.
func (s moves) pullBootFiles(ctx context.Context, p *pullPlan) (int64, error) {
	if len(p.boot) == 0 {
		return 0, nil
	}
	r, err := s.link.PullChain(ctx, p.bootBy, p.boot, hostlink.ChainOptions{})
	if err != nil {
		return 0, fmt.Errorf("pull boot files: %w", err)
	}
	for _, ref := range p.boot {
		// Read-only, as the importing host wrote it.
		if err := os.Chmod(s.abs(ref.Path), 0o400); err != nil {
			return r.Bytes, fmt.Errorf("pulled boot file %s: %w", ref.Path, err)
		}
	}
	return r.Bytes, nil
}
