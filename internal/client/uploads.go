package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// Files go to the daemon in the request (uploads) and come back in the
// answer (downloads); see wire/uploads.go for the protocol. The daemon
// never reads or writes a path this machine names.

// TemplateUpload is a template import whose files are on this machine.
type TemplateUpload struct {
	Name        string
	Description string
	Format      string // "raw", "qcow2" or "" to detect
	CPUs        int
	MemoryMiB   int
	Cmdline     string
	Workspace   string
	Disks       []string // local paths, in disk order
	Kernel      string   // local path (optional)
	Initrd      string   // local path (optional)
	// UserData is the local path of the cloud-init user-data its VMs'
	// seeds carry (optional); NoSeed gives them no seed.
	UserData string
	NoSeed   bool
	// Progress, when set, is told the bytes of the files sent so far out
	// of their total (see Progress).
	Progress Progress
}

// Progress is told how far a transfer is: done bytes out of total (0 while
// unknown). It is called from the goroutine that moves the bytes, once per
// read (often: keep it cheap), and may be called concurrently with the
// caller's own code.
type Progress func(done, total int64)

// countingReader tells progress the bytes read through it, counted from
// base (the bytes of the files before it), out of total.
type countingReader struct {
	r              io.Reader
	base, n, total int64
	progress       Progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.progress(c.base+c.n, c.total)
	}
	return n, err
}

// counted returns r reporting to progress, or r itself when progress is nil.
func counted(r io.Reader, base, total int64, progress Progress) io.Reader {
	if progress == nil {
		return r
	}
	return &countingReader{r: r, base: base, total: total, progress: progress}
}

// localFile is a file to upload, opened once, with its size and sha256.
type localFile struct {
	f    *os.File
	name string // base name, sent with it
	size int64
	sum  string
}

// openLocal opens path, which must be a regular file, and hashes it; the
// file is left at its start, to be sent.
func openLocal(path string) (*localFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errdefs.Invalid("cannot read %s: %v", path, pathReason(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, errdefs.Invalid("%s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &localFile{f: f, name: filepath.Base(path), size: fi.Size(), sum: hex.EncodeToString(h.Sum(nil))}, nil
}

// pathReason drops the path from an *fs.PathError (the message names it).
func pathReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Upload imports a template from files on this machine: each is
// read once to hash it, then streamed to the daemon with its sha256, in
// one multipart request.
func (c Templates) Upload(ctx context.Context, req TemplateUpload) (*wire.Template, error) {
	// Refused here before files are read (the daemon refuses it too).
	switch req.Format {
	case "", "raw", "qcow2":
	default:
		return nil, errdefs.Invalid("template %q: format %q is not raw or qcow2", req.Name, req.Format)
	}
	type part struct {
		field string
		file  *localFile
	}
	var parts []part
	defer func() {
		for _, p := range parts {
			p.file.f.Close()
		}
	}()
	add := func(field, path string) error {
		if path == "" {
			return nil
		}
		lf, err := openLocal(path)
		if err != nil {
			return err
		}
		parts = append(parts, part{field, lf})
		return nil
	}
	for _, d := range req.Disks {
		if err := add(wire.PartDisk, d); err != nil {
			return nil, err
		}
	}
	if err := add(wire.PartKernel, req.Kernel); err != nil {
		return nil, err
	}
	if err := add(wire.PartInitrd, req.Initrd); err != nil {
		return nil, err
	}
	if err := add(wire.PartUserData, req.UserData); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("name", req.Name)
	for k, v := range map[string]string{"format": req.Format, "cmdline": req.Cmdline, "description": req.Description, "workspace": req.Workspace} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if req.CPUs != 0 {
		q.Set("cpus", strconv.Itoa(req.CPUs))
	}
	if req.MemoryMiB != 0 {
		q.Set("memory_mib", strconv.Itoa(req.MemoryMiB))
	}
	if req.NoSeed {
		q.Set("no_seed", "1")
	}
	var total int64
	for _, p := range parts {
		total += p.file.size
	}
	if req.Progress != nil {
		req.Progress(0, total)
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		var err error
		var sent int64 // bytes of the parts before this one
		for _, p := range parts {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.field, p.file.name))
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.FormatInt(p.file.size, 10))
			h.Set(wire.HeaderContentSHA256, p.file.sum)
			var w io.Writer
			if w, err = mw.CreatePart(h); err != nil {
				break
			}
			if _, err = io.Copy(w, counted(p.file.f, sent, total, req.Progress)); err != nil {
				break
			}
			sent += p.file.size
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close() // a server that answered early stops the writer
	var out wire.Template
	h := http.Header{}
	h.Set("Content-Type", mw.FormDataContentType())
	if err := c.t.send(ctx, http.MethodPost, path("templates", "upload"), q, h, pr, -1, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// BundleUpload is a bundle on this machine to import as an archive.
type BundleUpload struct {
	File         string            // local path of the bundle
	Name         string            // the new archive's name; "" keeps the bundle's
	MapNetwork   map[string]string // the bundle's networks renamed (old -> new)
	StorageLease string
	Workspace    string
	// Progress, when set, is told the bytes of the bundle sent so far (see
	// Progress).
	Progress Progress
}

// Upload sends a bundle on this machine to the daemon, which
// imports it as a new archive in a job.
func (c Archives) Upload(ctx context.Context, req BundleUpload) (*wire.Job, error) {
	lf, err := openLocal(req.File)
	if err != nil {
		return nil, err
	}
	defer lf.f.Close()
	q := url.Values{}
	for k, v := range map[string]string{"name": req.Name, "storage_lease": req.StorageLease, "workspace": req.Workspace} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for old, nw := range req.MapNetwork {
		q.Add("map_network", old+"="+nw)
	}
	h := http.Header{}
	h.Set("Content-Type", wire.ContentTypeBundle)
	h.Set(wire.HeaderContentSHA256, lf.sum)
	h.Set(wire.HeaderFileName, lf.name)
	if req.Progress != nil {
		req.Progress(0, lf.size)
	}
	var out wire.Job
	body := io.NopCloser(counted(lf.f, 0, lf.size, req.Progress))
	if err := c.t.send(ctx, http.MethodPost, path("archives", "upload"), q, h, body, lf.size, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Download writes archive's bundle, as the daemon streams it, to
// file on this machine, which must not exist: first into a private
// temporary file beside it (0600), which becomes file only once the
// whole bundle arrived and its sha256 equals the one the daemon sent
// last. On any failure, cancellation included, nothing is left. It
// returns the bundle's size.
func (c Archives) Download(ctx context.Context, archive, file string) (int64, error) {
	return c.DownloadProgress(ctx, archive, file, nil)
}

// DownloadProgress is DownloadBundle telling progress (when not nil)
// the bytes received so far, out of the answer's Content-Length (0 when the
// server streams without one, as it does for bundles: the caller may know
// the size better, e.g. the archive's).
func (c Archives) DownloadProgress(ctx context.Context, archive, file string, progress Progress) (n int64, err error) {
	if _, err := os.Lstat(file); err == nil {
		return 0, errdefs.Conflict("%s already exists", file)
	}
	dir := filepath.Dir(file)
	resp, err := c.t.get(ctx, path("archives", archive, "bundle"), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*.part")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return 0, err
	}
	h := sha256.New()
	total := max(resp.ContentLength, 0)
	if progress != nil {
		progress(0, total)
	}
	n, err = io.Copy(io.MultiWriter(tmp, h), counted(resp.Body, 0, total, progress))
	if err != nil {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		return n, errdefs.Unavailable("download of archive %q cut after %d bytes: %v", archive, n, err)
	}
	want := strings.ToLower(resp.Trailer.Get(wire.HeaderContentSHA256))
	if got := hex.EncodeToString(h.Sum(nil)); want != got {
		if want == "" {
			return n, errdefs.Unavailable("download of archive %q ended after %d bytes without its checksum: the export failed on the server", archive, n)
		}
		return n, errdefs.Invalid("download of archive %q: sha256 %s, the server says %s", archive, got, want)
	}
	if err := tmp.Sync(); err != nil {
		return n, err
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	// A hard link does not replace a file that appeared meanwhile.
	if err := os.Link(tmp.Name(), file); errors.Is(err, os.ErrExist) {
		return n, errdefs.Conflict("%s already exists", file)
	} else if err != nil {
		// A filesystem without hard links: rename, having looked.
		if _, lerr := os.Lstat(file); lerr == nil {
			return n, errdefs.Conflict("%s already exists", file)
		}
		if err := os.Rename(tmp.Name(), file); err != nil {
			return n, err
		}
	}
	os.Remove(tmp.Name())
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return n, nil
}
