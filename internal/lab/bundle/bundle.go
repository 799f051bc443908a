package bundle

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
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
)

// A bundle is an archive as one tar file, to carry it to another server.
//
//	manifest.json         the archive's manifest (VMs, NICs, networks,
//	                      template hardware, size and sha256 of each file)
//	manifest.json.sha256  the sha256 of manifest.json, in hex
//	disks/vmI-diskJ.qcow2 each disk, a compressed standalone qcow2
//	                      (version 2: its current top, and beside it
//	                      -base.qcow2 and -sK.qcow2, the snapshots'
//	                      layers, compressed deltas on one another)
//	boot/tN-kernel, ...   the templates' boot files
//	states/vmI-sK.state   version 2: the saved states of snapshots taken
//	                      with state
//
// The disks are already compressed (archives store them so), so writing
// one is a streaming copy with a checksum check, as fast as tar itself.
// Reading one checks the manifest (its checksum, its shape, that its
// files fit in the bundle) before anything is written, then streams each
// file into a directory while hashing it. Anything else (a flipped byte,
// a truncated file, an edited manifest, an extra or missing entry, a
// sparse member) is refused with an error of kind invalid.

// manifestSumName is the entry holding the manifest's checksum.
const manifestSumName = "manifest.json.sha256"

// maxManifest bounds the manifest read before anything is checked.
const maxManifest = 4 << 20

// CopyBuffer is the buffer of archive and bundle copies: large enough that
// the per-call overhead vanishes next to the hashing.
const CopyBuffer = 1 << 20

// Write writes the bundle of the archive in dir, whose manifest is raw (m
// decoded), to w. Each file's size and checksum are checked on the way, so
// a damaged archive is not exported.
func Write(ctx context.Context, w io.Writer, raw []byte, m *Manifest, dir string, progress func(done, total int64)) error {
	return WriteFrom(ctx, w, raw, m, func(mf *File) (io.ReadCloser, error) {
		return os.Open(filepath.Join(dir, mf.Path))
	}, progress)
}

// WriteFrom is Write with each of the manifest's files read from what open
// returns for it (a file opened earlier, say).
func WriteFrom(ctx context.Context, w io.Writer, raw []byte, m *Manifest, open func(*File) (io.ReadCloser, error), progress func(done, total int64)) error {
	total := m.Size()
	progress(0, total)
	tw := tar.NewWriter(w)
	sum := sha256.Sum256(raw)
	for _, e := range []struct {
		name string
		data []byte
	}{{ManifestName, raw}, {manifestSumName, []byte(hex.EncodeToString(sum[:]) + "\n")}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: m.CreatedAt, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	buf := make([]byte, CopyBuffer)
	var done int64
	for _, mf := range m.Files() {
		in, err := open(mf)
		if err != nil {
			return fmt.Errorf("archive file %s: %w", mf.Path, err)
		}
		err = writeEntry(ctx, tw, in, mf, m, buf, func(n int64) { progress(done+n, total) })
		in.Close()
		if err != nil {
			return err
		}
		done += mf.Size
	}
	return tw.Close()
}

func writeEntry(ctx context.Context, tw *tar.Writer, in io.Reader, mf *File, m *Manifest, buf []byte, progress func(int64)) error {
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

// Head is what ReadHead found: the manifest, its shape checked, and the
// bundle, open.
type Head struct {
	Raw      []byte // manifest.json as in the bundle
	Manifest *Manifest
	Size     int64    // of the bundle file
	File     *os.File // the bundle, the only descriptor it is read through
}

// ReadHead opens the bundle at file once (a regular file, see
// disk.OpenSource: a FIFO cannot block the request) and reads and checks
// its manifest (see ParseHead). The caller closes head.File. Every problem
// is of kind invalid.
func ReadHead(file string, rules func(*Manifest) error) (*Head, error) {
	f, _, err := disk.OpenSource(file)
	if err != nil {
		return nil, err
	}
	head, err := ReadHeadFrom(f, rules)
	if err != nil {
		f.Close()
		return nil, err
	}
	return head, nil
}

// ReadHeadFrom is ReadHead of a bundle already open (from its start; a
// regular file), which becomes head.File. It does not close f.
func ReadHeadFrom(f *os.File, rules func(*Manifest) error) (*Head, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errdefs.Invalid("the bundle is not a regular file")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	head, err := ParseHead(f, fi.Size(), rules)
	if err != nil {
		return nil, err
	}
	head.File = f
	return head, nil
}

// ParseHead reads and checks the manifest at the start of r, a bundle of
// size bytes: its checksum entry, its format and version, its shape
// (Check), the reader's rules for what it holds (names, hardware, network
// parameters: the server's, not the format's), and that the files it
// lists fit in the bundle. Every problem is of kind invalid.
func ParseHead(r io.Reader, size int64, rules func(*Manifest) error) (*Head, error) {
	counted := &countingReader{r: r}
	tr := tar.NewReader(counted)
	raw, err := readSmallEntry(tr, counted, ManifestName)
	if err != nil {
		return nil, err
	}
	sumText, err := readSmallEntry(tr, counted, manifestSumName)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	if strings.TrimSpace(string(sumText)) != hex.EncodeToString(sum[:]) {
		return nil, errdefs.Invalid("the manifest does not match its checksum: the bundle is damaged or was edited")
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, errdefs.Invalid("the manifest is not valid: %v", err)
	}
	if err := Check(&m); err != nil {
		return nil, errdefs.Invalid("the manifest is not valid: %w", err)
	}
	if err := rules(&m); err != nil {
		return nil, errdefs.Invalid("the manifest is not valid: %w", err)
	}
	// Each file is stored whole in the bundle, so together they cannot be
	// larger than it: a manifest saying otherwise announces an expansion.
	if total := m.Size(); total > size {
		return nil, errdefs.Invalid("the manifest lists %d bytes of files, more than the bundle's %d", total, size)
	}
	return &Head{Raw: raw, Manifest: &m, Size: size}, nil
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

// Extract streams the files of the bundle head was read from (head.File,
// from its start again) into dir, which holds the empty subdirectories
// disks, boot and states: each file 0600 while written, 0400 once its
// size and checksum equal the manifest's (head.Manifest, whose paths and
// sizes the caller may not change). The manifest must not have changed
// since ParseHead, and the bundle must hold every file the manifest lists
// and nothing else.
func Extract(ctx context.Context, head *Head, dir string, progress func(done, total int64)) error {
	// The same descriptor the manifest was read from, from its start.
	if _, err := head.File.Seek(0, io.SeekStart); err != nil {
		return err
	}
	counted := &countingReader{r: head.File}
	progress(0, head.Size)
	tr := tar.NewReader(counted)
	// The manifest again: the file must not have changed since it was
	// checked.
	raw, err := readSmallEntry(tr, counted, ManifestName)
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, head.Raw) {
		return errdefs.Invalid("the bundle changed while it was being imported")
	}
	if _, err := readSmallEntry(tr, counted, manifestSumName); err != nil {
		return err
	}
	expect := map[string]*File{}
	for _, mf := range head.Manifest.Files() {
		expect[mf.Path] = mf
	}
	buf := make([]byte, CopyBuffer)
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
		n, err := extractEntry(ctx, tr, filepath.Join(dir, mf.Path), mf, buf, func() { progress(counted.n, head.Size) })
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
	return nil
}

// extractEntry writes the current entry of tr to dst (0600 while written,
// 0400 once checked) and returns the bytes read.
func extractEntry(ctx context.Context, tr *tar.Reader, dst string, mf *File, buf []byte, progress func()) (int64, error) {
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
