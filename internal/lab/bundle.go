package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"stagehand/internal/errdefs"
	"stagehand/internal/jobs"
	"stagehand/internal/store"
)

// Bundles: an archive as one tar file, to carry it to another server.
//
//	manifest.json         the archive's manifest (VMs, NICs, networks,
//	                      template hardware, size and sha256 of each file)
//	manifest.json.sha256  the sha256 of manifest.json, in hex
//	disks/vmI-diskJ.qcow2 each disk, a compressed standalone qcow2
//	boot/tN-kernel, ...   the templates' boot files
//
// The disks are already compressed (archives store them so), so exporting
// is a streaming copy with a checksum check, as fast as tar itself.
// Importing checks the manifest (its checksum, its shape, that its networks
// exist here, that the name is free) before anything is written, then
// streams each file into a new archive directory while hashing it, and
// creates the archive record only when every file is present, complete and
// equal to its checksum, and every disk is a standalone qcow2. Anything
// else (a flipped byte, a truncated file, an edited manifest, an extra or
// missing entry) fails the import, and the directory is removed: nothing is
// left behind.

// Entry names of a bundle.
const (
	bundleManifest    = "manifest.json"
	bundleManifestSum = "manifest.json.sha256"
)

// maxManifest bounds the manifest read before anything is checked.
const maxManifest = 4 << 20

// bundlePathRE is the only shape of a file path in a manifest: no
// directories but disks/ and boot/, no "..".
var bundlePathRE = regexp.MustCompile(`^(disks/vm[0-9]+-disk[0-9]+\.qcow2|boot/t[0-9]+-(kernel|initrd))$`)

// StartExport starts a job that writes archive name as a bundle at file, an
// absolute path on the daemon's host that must not exist yet. The bundle
// appears under its name only when complete; each file's checksum is
// checked on the way, so a damaged archive is not exported.
func (s *Service) StartExport(ctx context.Context, name, file string) (jobs.Job, error) {
	if !filepath.IsAbs(file) {
		return jobs.Job{}, errdefs.Invalid("export %q: path %q must be absolute (the daemon writes it)", name, file)
	}
	file = filepath.Clean(file)
	if _, err := os.Lstat(file); err == nil {
		return jobs.Job{}, errdefs.Conflict("export %q: %s already exists", name, file)
	}
	if st, err := os.Stat(filepath.Dir(file)); err != nil || !st.IsDir() {
		return jobs.Job{}, errdefs.Invalid("export %q: directory %s does not exist", name, filepath.Dir(file))
	}
	unlock := s.locks.lock(name)
	var a *store.Archive
	err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		a, err = tx.GetArchive(name)
		return err
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
	}
	m, err := parseManifest(a.Manifest)
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
	}
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+"."+randomHex(6)+".tmp")
	op, err := s.beginOp(ctx, "export", name, []string{tmp}, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	dir := s.archiveDirOf(a)
	return s.jobs.StartFrom(ctx, "export", name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		if err := s.writeBundleFile(ctx, op, tmp, file, a.Manifest, m, dir, progress); err != nil {
			return s.failOp(op, fmt.Errorf("export %q to %s: %w", name, file, err))
		}
		s.finishOp(op) // the temporary name is gone: nothing to undo
		s.log.Info("archive exported", "archive", name, "file", file, "bytes", m.size())
		s.record(ctx, ObjectArchive, "export", name, "to "+file)
		return nil
	}), nil
}

func (s *Service) writeBundleFile(ctx context.Context, op *store.Op, tmp, file string, raw []byte, m *manifest, dir string, progress func(done, total int64)) error {
	if err := s.step(ctx, op, "write"); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := writeBundle(ctx, f, raw, m, dir, progress); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := s.step(ctx, op, "publish"); err != nil {
		return err
	}
	if _, err := os.Lstat(file); err == nil {
		return errdefs.Conflict("%s appeared meanwhile", file)
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	return syncDirs(filepath.Dir(file))
}

// writeBundle writes the bundle of the archive in dir to w.
func writeBundle(ctx context.Context, w io.Writer, raw []byte, m *manifest, dir string, progress func(done, total int64)) error {
	total := m.size()
	progress(0, total)
	tw := tar.NewWriter(w)
	sum := sha256.Sum256(raw)
	for _, e := range []struct {
		name string
		data []byte
	}{{bundleManifest, raw}, {bundleManifestSum, []byte(hex.EncodeToString(sum[:]) + "\n")}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: m.CreatedAt, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	buf := make([]byte, copyBuffer)
	var done int64
	for _, mf := range m.files() {
		if err := writeBundleEntry(ctx, tw, filepath.Join(dir, mf.Path), mf, m, buf, func(n int64) { progress(done+n, total) }); err != nil {
			return err
		}
		done += mf.Size
	}
	return tw.Close()
}

func writeBundleEntry(ctx context.Context, tw *tar.Writer, src string, mf *manifestFile, m *manifest, buf []byte, progress func(int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("archive file %s: %w", mf.Path, err)
	}
	defer in.Close()
	if err := tw.WriteHeader(&tar.Header{Name: mf.Path, Mode: 0o444, Size: mf.Size, ModTime: m.CreatedAt, Format: tar.FormatPAX}); err != nil {
		return err
	}
	h := sha256.New()
	n, err := copyHashing(ctx, tw, in, h, buf, progress)
	if err != nil {
		return fmt.Errorf("archive file %s: %w", mf.Path, err)
	}
	if n != mf.Size {
		return fmt.Errorf("archive file %s: %d bytes, the manifest says %d; the archive is damaged", mf.Path, n, mf.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != mf.SHA256 {
		return fmt.Errorf("archive file %s: sha256 %s, the manifest says %s; the archive is damaged", mf.Path, got, mf.SHA256)
	}
	return nil
}

// copyHashing copies src to dst through h, in buf-sized reads, honouring
// ctx, and reports the bytes copied so far.
func copyHashing(ctx context.Context, dst io.Writer, src io.Reader, h hash.Hash, buf []byte, progress func(int64)) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := io.ReadFull(src, buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, err := dst.Write(buf[:k]); err != nil {
				return n, err
			}
			n += int64(k)
			progress(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// ImportSpec is the input of StartImport.
type ImportSpec struct {
	File string // absolute path of the bundle on the daemon's host
	Name string // the new archive's name; "" keeps the bundle's
	// MapNetwork maps the bundle's network names to this server's; networks
	// not in it keep their names.
	MapNetwork map[string]string
}

// StartImport checks a bundle's manifest and starts a job that imports it
// as a new archive (see the top of this file).
func (s *Service) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	if !filepath.IsAbs(spec.File) {
		return jobs.Job{}, errdefs.Invalid("import %q: path must be absolute (the daemon reads it)", spec.File)
	}
	head, err := readBundleHead(spec.File)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	m := head.manifest
	if spec.Name != "" {
		m.Name = spec.Name
	}
	if err := checkName("archive", m.Name); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	if err := mapNetworks(m, spec.MapNetwork); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	unlock := s.locks.lock(m.Name)
	err = s.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetArchive(m.Name); err == nil {
			return errdefs.Conflict("archive %q already exists; import it under another name (--name)", m.Name)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
		return checkNetworksExist(tx, m)
	})
	if err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	dirName := "a-" + randomHex(8)
	dir := filepath.Join(s.life.archiveDir, dirName)
	op, err := s.beginOp(ctx, "archive-import", m.Name, []string{dirEntry(dir)}, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	return s.jobs.StartFrom(ctx, "import", m.Name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		fail := func(err error) error {
			return s.failOp(op, fmt.Errorf("import %s: %w", spec.File, err))
		}
		if err := s.extractBundle(ctx, op, spec.File, head, m, dir, progress); err != nil {
			return fail(err)
		}
		err := s.store.Update(ctx, func(tx store.Tx) error {
			a := &store.Archive{Name: m.Name, Source: "bundle " + spec.File, Dir: dirName, Manifest: raw, Size: m.size()}
			if err := tx.CreateArchive(a); err != nil {
				return err
			}
			return commitOp(tx, op, nil)
		})
		if err != nil {
			return fail(err)
		}
		s.finishOp(op)
		s.log.Info("archive imported", "archive", m.Name, "file", spec.File, "bytes", m.size())
		s.record(ctx, ObjectArchive, "import", m.Name, "from "+spec.File)
		return nil
	}), nil
}

// bundleHead is what readBundleHead found: the manifest, checked.
type bundleHead struct {
	raw      []byte // manifest.json as in the bundle
	manifest *manifest
	size     int64 // of the bundle file
}

// readBundleHead reads and checks the manifest of the bundle at file: its
// checksum entry, its format and version, and its shape. Every problem is
// of kind invalid.
func readBundleHead(file string) (*bundleHead, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, errdefs.Invalid("cannot read the bundle: %v", errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errdefs.Invalid("the bundle is not a regular file")
	}
	tr := tar.NewReader(f)
	raw, err := readSmallEntry(tr, bundleManifest)
	if err != nil {
		return nil, err
	}
	sumText, err := readSmallEntry(tr, bundleManifestSum)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if strings.TrimSpace(string(sumText)) != hex.EncodeToString(sum[:]) {
		return nil, errdefs.Invalid("the manifest does not match its checksum: the bundle is damaged or was edited")
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, errdefs.Invalid("the manifest is not valid: %v", err)
	}
	if err := checkManifest(&m); err != nil {
		return nil, errdefs.Invalid("the manifest is not valid: %w", err)
	}
	return &bundleHead{raw: raw, manifest: &m, size: st.Size()}, nil
}

func readSmallEntry(tr *tar.Reader, want string) ([]byte, error) {
	h, err := tr.Next()
	if err != nil {
		return nil, errdefs.Invalid("not a Stagehand bundle (no %s): %v", want, err)
	}
	if h.Name != want || h.Typeflag != tar.TypeReg {
		return nil, errdefs.Invalid("not a Stagehand bundle: entry %q where %s should be", h.Name, want)
	}
	if h.Size > maxManifest {
		return nil, errdefs.Invalid("%s is %d bytes, more than %d", want, h.Size, maxManifest)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, errdefs.Invalid("%s: %v (truncated bundle?)", want, err)
	}
	return b, nil
}

// checkManifest checks a manifest from outside: known format and version,
// valid names, unique VMs and files, file paths of the one allowed shape,
// hex checksums, references that resolve.
func checkManifest(m *manifest) error {
	if m.Format != archiveFormat || m.Version != archiveVersion {
		return fmt.Errorf("format %q version %d, want %q version %d", m.Format, m.Version, archiveFormat, archiveVersion)
	}
	if err := checkName("archive", m.Name); err != nil {
		return err
	}
	if len(m.VMs) == 0 {
		return fmt.Errorf("no VMs")
	}
	seenFile := map[string]bool{}
	for _, f := range m.files() {
		if !bundlePathRE.MatchString(f.Path) || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("file path %q is not allowed", f.Path)
		}
		if seenFile[f.Path] {
			return fmt.Errorf("file %q appears twice", f.Path)
		}
		seenFile[f.Path] = true
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("file %q: checksum %q is not a sha256", f.Path, f.SHA256)
		}
		if f.Size < 0 {
			return fmt.Errorf("file %q: negative size", f.Path)
		}
	}
	nets := map[string]bool{}
	for _, n := range m.Networks {
		if err := checkName("network", n.Name); err != nil {
			return err
		}
		nets[n.Name] = true
	}
	tmpls := map[string]bool{}
	for _, t := range m.Templates {
		if err := checkName("template", t.Name); err != nil {
			return err
		}
		if t.CPUs < 1 || t.CPUs > 64 || t.MemoryMiB < 16 || t.MemoryMiB > 1<<20 {
			return fmt.Errorf("template %q: hardware out of range", t.Name)
		}
		tmpls[t.Name] = true
	}
	seenVM := map[string]bool{}
	for _, vm := range m.VMs {
		if err := checkName("VM", vm.Name); err != nil {
			return err
		}
		if seenVM[vm.Name] {
			return fmt.Errorf("VM %q appears twice", vm.Name)
		}
		seenVM[vm.Name] = true
		if !tmpls[vm.Template] {
			return fmt.Errorf("VM %q: template %q is not in the manifest", vm.Name, vm.Template)
		}
		if vm.CPUs < 1 || vm.CPUs > 64 || vm.MemoryMiB < 16 || vm.MemoryMiB > 1<<20 {
			return fmt.Errorf("VM %q: hardware out of range", vm.Name)
		}
		for _, d := range vm.Disks {
			if d.VirtualSize <= 0 {
				return fmt.Errorf("VM %q disk %d: virtual size %d", vm.Name, d.Index, d.VirtualSize)
			}
		}
		for _, n := range vm.NICs {
			if !nets[n.Network] {
				return fmt.Errorf("VM %q NIC %d: network %q is not in the manifest", vm.Name, n.Index, n.Network)
			}
			switch n.IPMode {
			case store.IPModePool, store.IPModeManual, store.IPModeDHCP:
			default:
				return fmt.Errorf("VM %q NIC %d: IP mode %q", vm.Name, n.Index, n.IPMode)
			}
		}
	}
	return nil
}

// mapNetworks renames the manifest's networks by mapping (old -> new).
func mapNetworks(m *manifest, mapping map[string]string) error {
	known := map[string]bool{}
	for _, n := range m.Networks {
		known[n.Name] = true
	}
	for old, nw := range mapping {
		if !known[old] {
			return errdefs.Invalid("--map-network %s=%s: the bundle has no network %q", old, nw, old)
		}
		if err := checkName("network", nw); err != nil {
			return err
		}
	}
	rename := func(name string) string {
		if nw, ok := mapping[name]; ok {
			return nw
		}
		return name
	}
	seen := map[string]bool{}
	var nets []manifestNetwork
	for _, n := range m.Networks {
		n.Name = rename(n.Name)
		if !seen[n.Name] { // two networks mapped onto one
			seen[n.Name] = true
			nets = append(nets, n)
		}
	}
	m.Networks = nets
	for i := range m.VMs {
		for j := range m.VMs[i].NICs {
			m.VMs[i].NICs[j].Network = rename(m.VMs[i].NICs[j].Network)
		}
	}
	return nil
}

// extractBundle streams the bundle's files into dir, checking each against
// the manifest, then checks the disks are standalone qcow2 images.
func (s *Service) extractBundle(ctx context.Context, op *store.Op, file string, head *bundleHead, m *manifest, dir string, progress func(done, total int64)) error {
	if err := s.step(ctx, op, "extract"); err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	counted := &countingReader{r: f}
	progress(0, head.size)
	tr := tar.NewReader(counted)
	// The manifest again: the file must not have changed since it was
	// checked.
	raw, err := readSmallEntry(tr, bundleManifest)
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, head.raw) {
		return errdefs.Invalid("the bundle changed while it was being imported")
	}
	if _, err := readSmallEntry(tr, bundleManifestSum); err != nil {
		return err
	}
	expect := map[string]*manifestFile{}
	for _, mf := range m.files() {
		expect[mf.Path] = mf
	}
	for _, sub := range []string{"disks", "boot"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	buf := make([]byte, copyBuffer)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errdefs.Invalid("the bundle is damaged or truncated: %v", err)
		}
		mf, ok := expect[h.Name]
		if !ok {
			return errdefs.Invalid("the bundle holds %q, which the manifest does not list (or lists once)", h.Name)
		}
		delete(expect, h.Name)
		if h.Typeflag != tar.TypeReg || h.Size != mf.Size {
			return errdefs.Invalid("%s: %d bytes in the bundle, the manifest says %d", h.Name, h.Size, mf.Size)
		}
		if err := s.extractEntry(ctx, tr, filepath.Join(dir, mf.Path), mf, buf, func() { progress(counted.n, head.size) }); err != nil {
			return err
		}
	}
	if len(expect) > 0 {
		var missing []string
		for p := range expect {
			missing = append(missing, p)
		}
		return errdefs.Invalid("the bundle lacks %s (truncated?)", strings.Join(missing, ", "))
	}
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			if err := s.step(ctx, op, "check"); err != nil {
				return err
			}
			if err := s.checkArchivedDisk(ctx, filepath.Join(dir, d.File.Path), d); err != nil {
				return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
		}
	}
	if err := writeManifestFile(dir, m); err != nil {
		return err
	}
	if err := s.step(ctx, op, "commit"); err != nil {
		return err
	}
	progress(head.size, head.size)
	return syncDirs(dir, filepath.Join(dir, "disks"), filepath.Join(dir, "boot"), filepath.Dir(dir))
}

func (s *Service) extractEntry(ctx context.Context, tr *tar.Reader, dst string, mf *manifestFile, buf []byte, progress func()) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	n, err := copyHashing(ctx, out, tr, h, buf, func(int64) { progress() })
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return errdefs.Invalid("%s: the bundle is truncated", mf.Path)
		}
		return fmt.Errorf("%s: %w", mf.Path, err)
	}
	if n != mf.Size {
		return errdefs.Invalid("%s: %d bytes, the manifest says %d (truncated bundle?)", mf.Path, n, mf.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != mf.SHA256 {
		return errdefs.Invalid("%s: sha256 %s, the manifest says %s: the bundle is damaged", mf.Path, got, mf.SHA256)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, 0o444)
}

// checkArchivedDisk refuses a disk from outside that would read other
// files, or whose size differs from the manifest's.
func (s *Service) checkArchivedDisk(ctx context.Context, p string, d manifestDisk) error {
	if ad, ok := s.disks.(archiveDisks); ok {
		if err := ad.CheckStandalone(ctx, p); err != nil {
			return errdefs.Invalid("%s: %v", d.File.Path, err)
		}
	}
	info, err := s.disks.Info(ctx, p)
	if err != nil {
		return errdefs.Invalid("%s: %v", d.File.Path, err)
	}
	if info.Format != "qcow2" || info.BackingFile != "" {
		return errdefs.Invalid("%s: not a standalone qcow2 image", d.File.Path)
	}
	if info.VirtualSize != d.VirtualSize {
		return errdefs.Invalid("%s: virtual size %d, the manifest says %d", d.File.Path, info.VirtualSize, d.VirtualSize)
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
