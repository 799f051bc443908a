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
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/ipam"
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
	if err := checkHostPath(file, "the daemon writes it"); err != nil {
		return jobs.Job{}, fmt.Errorf("export %q: %w", name, err)
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
		s.touch(ctx, ObjectArchive, name)
		s.record(ctx, ObjectArchive, "export", name, "to "+file)
		return nil
	}), nil
}

func (s *Service) writeBundleFile(ctx context.Context, op *store.Op, tmp, file string, raw []byte, m *manifest, dir string, progress func(done, total int64)) error {
	if err := s.step(ctx, op, "write"); err != nil {
		return err
	}
	// Private to root like the archive it carries: the user who asked
	// for it can be given it (chown, chmod) on purpose.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
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
	// StorageLease is the archive's storage lease from its import: nil
	// means the daemon's default (LeasePolicy.DefaultStorage), 0 never.
	StorageLease *time.Duration
}

// StartImport checks a bundle's manifest and starts a job that imports it
// as a new archive (see the top of this file).
func (s *Service) StartImport(ctx context.Context, spec ImportSpec) (jobs.Job, error) {
	if err := checkHostPath(spec.File, "the daemon reads it"); err != nil {
		return jobs.Job{}, fmt.Errorf("import: %w", err)
	}
	if err := checkLeaseLength("storage", spec.StorageLease); err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	head, err := readBundleHead(spec.File)
	if err != nil {
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	started := false
	defer func() {
		if !started {
			head.file.Close()
		}
	}()
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
			return errdefs.Conflict("archive %q already exists; import the bundle under another name", m.Name)
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
	// The bundle holds every file whole (sparse members are refused), so
	// the archive needs what the manifest says, which is at most the
	// bundle's size.
	if err := disk.CheckSpace(s.life.archiveDir, m.size()); err != nil {
		unlock()
		return jobs.Job{}, fmt.Errorf("import %s: %w", spec.File, err)
	}
	dirName := "a-" + randomHex(8)
	dir := filepath.Join(s.life.archiveDir, dirName)
	tmp := disk.TempPath(dir)
	op, err := s.beginOp(ctx, "archive-import", m.Name, []string{dirEntry(tmp), dirEntry(dir)}, nil)
	if err != nil {
		unlock()
		return jobs.Job{}, err
	}
	started = true
	return s.jobs.StartFrom(ctx, "import", m.Name, func(ctx context.Context, progress func(done, total int64)) error {
		defer unlock()
		defer head.file.Close()
		fail := func(err error) error {
			return s.failOp(op, fmt.Errorf("import %s: %w", spec.File, err))
		}
		if err := s.extractBundle(ctx, op, head, m, tmp, dir, progress); err != nil {
			return fail(err)
		}
		err := s.store.Update(ctx, func(tx store.Tx) error {
			a := &store.Archive{Name: m.Name, Source: "bundle " + spec.File, Dir: dirName, Manifest: raw, Size: m.size()}
			if err := tx.CreateArchive(a); err != nil {
				return err
			}
			if err := s.leases.started(tx, archiveLease(a.ID), spec.StorageLease); err != nil {
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

// bundleHead is what readBundleHead found: the manifest, checked, and
// the bundle, open.
type bundleHead struct {
	raw      []byte // manifest.json as in the bundle
	manifest *manifest
	size     int64    // of the bundle file
	file     *os.File // the bundle, the only descriptor it is read through
}

// readBundleHead opens the bundle at file once (a regular file, see
// disk.OpenSource: a FIFO cannot block the request) and reads and checks
// its manifest. The caller closes head.file. Every problem is of kind
// invalid.
func readBundleHead(file string) (*bundleHead, error) {
	f, fi, err := disk.OpenSource(file)
	if err != nil {
		return nil, err
	}
	head, err := parseBundleHead(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	head.file = f
	return head, nil
}

// parseBundleHead reads and checks the manifest at the start of r, a
// bundle of size bytes: its checksum entry, its format and version, its
// shape, and that the files it lists fit in the bundle.
func parseBundleHead(r io.Reader, size int64) (*bundleHead, error) {
	counted := &countingReader{r: r}
	tr := tar.NewReader(counted)
	raw, err := readSmallEntry(tr, counted, bundleManifest)
	if err != nil {
		return nil, err
	}
	sumText, err := readSmallEntry(tr, counted, bundleManifestSum)
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
	// Each file is stored whole in the bundle, so together they cannot be
	// larger than it: a manifest saying otherwise announces an expansion.
	if total := m.size(); total > size {
		return nil, errdefs.Invalid("the manifest lists %d bytes of files, more than the bundle's %d", total, size)
	}
	return &bundleHead{raw: raw, manifest: &m, size: size}, nil
}

// readSmallEntry reads entry want (the manifest or its checksum), which
// must come next in tr; counted is the reader under tr.
func readSmallEntry(tr *tar.Reader, counted *countingReader, want string) ([]byte, error) {
	h, err := tr.Next()
	if err != nil {
		return nil, errdefs.Invalid("not a Stagehand bundle (no %s): %v", want, err)
	}
	if h.Name != want {
		return nil, errdefs.Invalid("not a Stagehand bundle: entry %q where %s should be", h.Name, want)
	}
	if err := checkPlainEntry(h); err != nil {
		return nil, err
	}
	if h.Size > maxManifest {
		return nil, errdefs.Invalid("%s is %d bytes, more than %d", want, h.Size, maxManifest)
	}
	start := counted.n
	b, err := io.ReadAll(io.LimitReader(tr, maxManifest+1))
	if err != nil {
		return nil, errdefs.Invalid("%s: %v (truncated bundle?)", want, err)
	}
	if err := checkConsumed(h, int64(len(b)), counted.n-start); err != nil {
		return nil, err
	}
	return b, nil
}

// checkPlainEntry refuses a bundle entry that is not a plain regular
// file. Above all a sparse one (old GNU sparse, or PAX GNU.sparse.*
// records): Go's tar reader expands it, so a few KiB of bundle would
// become as many zeroes as its header says. Stagehand never writes one.
func checkPlainEntry(h *tar.Header) error {
	if h.Typeflag == tar.TypeGNUSparse {
		return errdefs.Invalid("%q is a sparse member, which a Stagehand bundle never holds", h.Name)
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return errdefs.Invalid("%q is a sparse member (%s), which a Stagehand bundle never holds", h.Name, k)
		}
	}
	if h.Typeflag != tar.TypeReg {
		return errdefs.Invalid("%q is not a regular file entry (type %q)", h.Name, h.Typeflag)
	}
	return nil
}

// checkConsumed checks that an entry's read bytes came one for one from
// the bundle: got bytes were read out of consumed bytes of the file, and
// both must be the header's size. Whatever expansion the tar reader may
// do, it cannot pass this.
func checkConsumed(h *tar.Header, got, consumed int64) error {
	if got != h.Size || consumed != h.Size {
		return errdefs.Invalid("%q: %d bytes read from %d bytes of the bundle, its header says %d", h.Name, got, consumed, h.Size)
	}
	return nil
}

// checkManifest checks a manifest from outside: known format and version,
// valid names, unique VMs, templates, networks and files, file paths of
// the one allowed shape, hex checksums, boot files of a sane size, disk
// and NIC indexes 0..n-1 once each, kernel command lines, network
// parameters and addresses that parse, references that resolve.
func checkManifest(m *manifest) error {
	if m.Format != archiveFormat || m.Version != archiveVersion {
		return fmt.Errorf("format %q version %d, want %q version %d", m.Format, m.Version, archiveFormat, archiveVersion)
	}
	if err := checkName("archive", m.Name); err != nil {
		return err
	}
	// The same rules as the text a user types: these end up in tables.
	for _, f := range []struct {
		field, text string
		max         int
	}{{"description", m.Description, MaxDescription}, {"owner", m.Owner, MaxOwner}, {"source", m.Source, MaxDescription}} {
		if err := checkText(f.field, f.text, f.max); err != nil {
			return err
		}
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
		if nets[n.Name] {
			return fmt.Errorf("network %q appears twice", n.Name)
		}
		nets[n.Name] = true
		if _, err := ipam.ParseNetwork(n.Subnet, n.Gateway, n.Pools, n.DNS); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
	}
	tmpls := map[string]bool{}
	for _, t := range m.Templates {
		if err := checkName("template", t.Name); err != nil {
			return err
		}
		if tmpls[t.Name] {
			return fmt.Errorf("template %q appears twice", t.Name)
		}
		if t.CPUs < 1 || t.CPUs > 64 || t.MemoryMiB < 16 || t.MemoryMiB > 1<<20 {
			return fmt.Errorf("template %q: hardware out of range", t.Name)
		}
		if err := checkCmdline(t.Cmdline); err != nil {
			return fmt.Errorf("template %q: %w", t.Name, err)
		}
		if t.Kernel == nil && (t.Initrd != nil || t.Cmdline != "") {
			return fmt.Errorf("template %q: an initrd or a command line without a kernel", t.Name)
		}
		for _, f := range []*manifestFile{t.Kernel, t.Initrd} {
			if f != nil && (f.Size > maxBootFile || f.Size == 0) {
				return fmt.Errorf("template %q: boot file %q of %d bytes (want 1..%d)", t.Name, f.Path, f.Size, int64(maxBootFile))
			}
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
		if len(vm.Disks) == 0 {
			return fmt.Errorf("VM %q has no disk", vm.Name)
		}
		diskIdx := make([]bool, len(vm.Disks))
		for _, d := range vm.Disks {
			if d.Index < 0 || d.Index >= len(vm.Disks) || diskIdx[d.Index] {
				return fmt.Errorf("VM %q: disk index %d out of 0..%d or used twice", vm.Name, d.Index, len(vm.Disks)-1)
			}
			diskIdx[d.Index] = true
			if d.VirtualSize <= 0 {
				return fmt.Errorf("VM %q disk %d: virtual size %d", vm.Name, d.Index, d.VirtualSize)
			}
		}
		nicIdx := make([]bool, len(vm.NICs))
		for _, n := range vm.NICs {
			if n.Index < 0 || n.Index >= len(vm.NICs) || nicIdx[n.Index] {
				return fmt.Errorf("VM %q: NIC index %d out of 0..%d or used twice", vm.Name, n.Index, len(vm.NICs)-1)
			}
			nicIdx[n.Index] = true
			if n.IP != "" {
				if a, err := netip.ParseAddr(n.IP); err != nil || !a.Is4() {
					return fmt.Errorf("VM %q NIC %d: address %q is not an IPv4 address", vm.Name, n.Index, n.IP)
				}
			}
			if n.MAC != "" {
				if _, err := net.ParseMAC(n.MAC); err != nil {
					return fmt.Errorf("VM %q NIC %d: MAC %q: %v", vm.Name, n.Index, n.MAC, err)
				}
			}
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
			return errdefs.Invalid("network mapping %s=%s: the bundle has no network %q", old, nw, old)
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

// extractBundle streams the bundle's files into the directory tmp,
// checking each against the manifest, checks the disks are standalone
// qcow2 images, and renames tmp to final.
func (s *Service) extractBundle(ctx context.Context, op *store.Op, head *bundleHead, m *manifest, tmp, final string, progress func(done, total int64)) error {
	if err := s.step(ctx, op, "extract"); err != nil {
		return err
	}
	// The same descriptor the manifest was read from, from its start.
	if _, err := head.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	counted := &countingReader{r: head.file}
	progress(0, head.size)
	tr := tar.NewReader(counted)
	// The manifest again: the file must not have changed since it was
	// checked.
	raw, err := readSmallEntry(tr, counted, bundleManifest)
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, head.raw) {
		return errdefs.Invalid("the bundle changed while it was being imported")
	}
	if _, err := readSmallEntry(tr, counted, bundleManifestSum); err != nil {
		return err
	}
	expect := map[string]*manifestFile{}
	for _, mf := range m.files() {
		expect[mf.Path] = mf
	}
	if err := makeArchiveDir(tmp); err != nil {
		return err
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
		if err := checkPlainEntry(h); err != nil {
			return err
		}
		if h.Size != mf.Size {
			return errdefs.Invalid("%s: %d bytes in the bundle, the manifest says %d", h.Name, h.Size, mf.Size)
		}
		start := counted.n
		n, err := s.extractEntry(ctx, tr, filepath.Join(tmp, mf.Path), mf, buf, func() { progress(counted.n, head.size) })
		if err != nil {
			return err
		}
		if err := checkConsumed(h, n, counted.n-start); err != nil {
			return err
		}
	}
	if len(expect) > 0 {
		var missing []string
		for p := range expect {
			missing = append(missing, p)
		}
		sort.Strings(missing)
		return errdefs.Invalid("the bundle lacks %s (truncated?)", strings.Join(missing, ", "))
	}
	for _, vm := range m.VMs {
		for _, d := range vm.Disks {
			if err := s.step(ctx, op, "check"); err != nil {
				return err
			}
			if err := s.checkArchivedDisk(ctx, filepath.Join(tmp, d.File.Path), d); err != nil {
				return fmt.Errorf("VM %q disk %d: %w", vm.Name, d.Index, err)
			}
		}
	}
	if err := writeManifestFile(tmp, m); err != nil {
		return err
	}
	if err := s.step(ctx, op, "commit"); err != nil {
		return err
	}
	if err := publishArchiveDir(tmp, final); err != nil {
		return err
	}
	progress(head.size, head.size)
	return nil
}

// extractEntry writes the current entry of tr to dst (0600 while written,
// 0400 once checked) and returns the bytes read.
func (s *Service) extractEntry(ctx context.Context, tr *tar.Reader, dst string, mf *manifestFile, buf []byte, progress func()) (int64, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	h := sha256.New()
	// Never more than the manifest says, whatever the reader yields.
	n, err := copyHashing(ctx, out, io.LimitReader(tr, mf.Size+1), h, buf, func(int64) { progress() })
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return n, errdefs.Invalid("%s: the bundle is truncated", mf.Path)
		}
		return n, fmt.Errorf("%s: %w", mf.Path, err)
	}
	if n != mf.Size {
		return n, errdefs.Invalid("%s: %d bytes, the manifest says %d (truncated bundle?)", mf.Path, n, mf.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != mf.SHA256 {
		return n, errdefs.Invalid("%s: sha256 %s, the manifest says %s: the bundle is damaged", mf.Path, got, mf.SHA256)
	}
	if err := out.Sync(); err != nil {
		return n, err
	}
	if err := out.Close(); err != nil {
		return n, err
	}
	return n, os.Chmod(dst, 0o400)
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
