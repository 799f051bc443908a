package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"stagehand/internal/auth"
	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab/journal"
	"stagehand/internal/store"
)

// Files the daemon imports (template disks and boot files, bundles) come
// from one of two places, and never from a path a remote caller names:
//
//   - an upload: the caller sends the bytes, which Uploads.Receive streams
//     into a private file in DATA/uploads (checksummed, size-limited,
//     journalled, so a crash or a client that goes away leaves nothing);
//   - a path on the daemon's host, which only the system administrator on
//     the unix socket may name, and only under a directory given with
//     serve --import-dir (Options.ImportDirs). The file is opened once
//     (disk.OpenSource: no symlink as its last component, no FIFO or
//     device), and the real path of what was opened, not the name given,
//     must be under one of them.
//
// A context without an identity is the system itself (recovery, the lab's
// own tests): it may name any path, as before.

// DefaultMaxUpload bounds each uploaded file when Options.MaxUpload is 0.
const DefaultMaxUpload int64 = 64 << 30

// ErrTooLarge is wrapped by the error of an upload larger than the limit
// (an ErrInvalid): the api answers it with 413.
var ErrTooLarge = errors.New("upload too large")

// uploadsDir holds the uploads being received or used (relative to the
// data dir).
const uploadsDir = "uploads"

// resolveImportDirs makes each import directory absolute and resolves its
// symbolic links once, at start, so the real path of an opened file can be
// compared with it.
func resolveImportDirs(dirs []string) (resolved, names []string, err error) {
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, nil, fmt.Errorf("import dir %q: %w", d, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, nil, fmt.Errorf("import dir %q: %w", d, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, nil, fmt.Errorf("import dir %q: %w", d, err)
		}
		if !fi.IsDir() {
			return nil, nil, fmt.Errorf("import dir %q: not a directory", d)
		}
		resolved = append(resolved, real)
		names = append(names, abs, real)
	}
	return resolved, names, nil
}

// under reports whether path is dir or inside it (both clean and absolute).
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// mayNamePaths refuses, as errdefs.ErrForbidden, a caller who may not name
// files on the daemon's host: anyone but the system administrator on the
// unix socket, and everyone when no import directory is configured. what
// says what the path is for. The system (no identity) may.
func (s *core) mayNamePaths(ctx context.Context, what string) error {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return nil
	}
	if !id.SystemAdmin || id.Via != auth.ViaUnixPeer {
		return errdefs.Forbidden("%s names a file on the server, which only the system administrator on the unix socket may do: upload the file instead", what)
	}
	if len(s.importDirs) == 0 {
		return errdefs.Forbidden("%s names a file on the server, but the server has no import directory (serve --import-dir DIR): upload the file instead", what)
	}
	return nil
}

// openHostSource opens a file on the daemon's host that ctx's caller
// named, as a source to import (see the top of this file): the caller must
// be allowed to name paths, the file is opened once as a regular file, and
// what was opened must lie under an import directory. The caller closes it.
func (s *core) openHostSource(ctx context.Context, path, what string) (*os.File, int64, error) {
	if err := s.mayNamePaths(ctx, what); err != nil {
		return nil, 0, err
	}
	if err := checkHostPath(path, "the daemon reads it"); err != nil {
		return nil, 0, err
	}
	_, restricted := auth.FromContext(ctx)
	if restricted && !underAny(filepath.Clean(path), s.importNames) {
		// Refused before anything is opened: a wrong path costs no open.
		return nil, 0, errdefs.Forbidden("%q is not under an import directory (%s)", path, strings.Join(s.importDirs, ", "))
	}
	f, fi, err := disk.OpenSource(path)
	if err != nil {
		return nil, 0, err
	}
	if restricted {
		// The name checked above may lead elsewhere (a symlinked
		// directory): what counts is the file the descriptor is.
		real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
		if err != nil || !underAny(real, s.importDirs) {
			f.Close()
			return nil, 0, errdefs.Forbidden("%q is not under an import directory (%s): it is %s", path, strings.Join(s.importDirs, ", "), real)
		}
	}
	return f, fi.Size(), nil
}

// underAny reports whether the clean absolute path p is under one of dirs.
func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if under(p, d) {
			return true
		}
	}
	return false
}

// Uploads receives the files callers send, for the imports that use them.
type Uploads struct{ *core }

// Limit is the largest file Receive accepts, in bytes.
func (s Uploads) Limit() int64 { return s.maxUpload }

// Upload is a file a caller sent, kept in DATA/uploads, private to the
// daemon, until Close removes it. Import and StartImport read it through
// the descriptor Receive wrote it with.
type Upload struct {
	Name   string // the caller's base name of it, for messages
	Size   int64
	SHA256 string // hex

	file    *os.File
	op      *store.Op
	journal *journal.Journal
	unlock  func()
	once    sync.Once
}

// Close removes the upload and its journal entry. It may be called more
// than once.
func (u *Upload) Close() {
	u.once.Do(func() {
		u.file.Close()
		if failed := u.journal.UndoFiles(u.op); len(failed) == 0 {
			u.journal.Forget(u.op)
		}
		u.unlock()
	})
}

// Receive streams r, the file the caller calls name, into a new private
// file in DATA/uploads and returns it once it is complete: at most Limit
// bytes, exactly size bytes when size >= 0 (a size announced before the
// bytes), and of sha256 want (hex). A file larger than the limit is
// refused as an ErrInvalid wrapping ErrTooLarge; a checksum or length
// that does not match, as an ErrInvalid. On any failure, ctx cancelled
// (the client went away) included, nothing is left. The file is written
// under its journalled temporary name (disk.TempPath), so a crash leaves
// nothing either once recovered. Blocks of zeroes become holes.
func (s Uploads) Receive(ctx context.Context, name string, r io.Reader, size int64, want string) (*Upload, error) {
	name = filepath.Base(name)
	if name == "." || name == "/" || name == "" {
		name = "upload"
	}
	if err := checkText("file name", name, 255); err != nil {
		return nil, err
	}
	want = strings.ToLower(strings.TrimSpace(want))
	if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
		return nil, errdefs.Invalid("upload %q: its sha256 must be given (64 hex digits, header X-Content-SHA256), not %q", name, want)
	}
	if size > s.maxUpload {
		return nil, errdefs.Invalid("upload %q: %d bytes is more than the %d an upload may be: %w", name, size, s.maxUpload, ErrTooLarge)
	}
	dir := s.abs(uploadsDir)
	if size > 0 {
		if err := disk.CheckSpace(dir, size); err != nil {
			return nil, fmt.Errorf("upload %q: %w", name, err)
		}
	}
	id := "u-" + journal.RandomHex(8)
	final := filepath.Join(uploadsDir, id)
	subject := uploadsDir + "/" + id
	unlock := s.locks.lock(subject) // doctor leaves it alone while it is used
	op, err := s.journal.Begin(ctx, "upload", subject, []string{final}, nil)
	if err != nil {
		unlock()
		return nil, err
	}
	u := &Upload{Name: name, op: op, journal: s.journal, unlock: unlock}
	path := disk.TempPath(s.abs(final))
	u.file, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		u.file = nil
		s.journal.UndoFiles(op)
		s.journal.Forget(op)
		unlock()
		return nil, fmt.Errorf("upload %q: %w", name, err)
	}
	n, got, err := receive(ctx, u.file, r, s.maxUpload)
	switch {
	case err == nil && size >= 0 && n != size:
		err = errdefs.Invalid("upload %q: %d bytes received, %d announced", name, n, size)
	case err == nil && got != want:
		err = errdefs.Invalid("upload %q: sha256 of the %d bytes received is %s, not %s as announced: the file changed or was damaged on the way", name, n, got, want)
	case errors.Is(err, ErrTooLarge):
		err = errdefs.Invalid("upload %q: more than the %d bytes an upload may be: %w", name, s.maxUpload, err)
	case errors.Is(err, syscall.ENOSPC):
		err = errdefs.Unavailable("upload %q: the data directory is full: %w", name, err)
	case err != nil && ctx.Err() != nil:
		err = fmt.Errorf("upload %q: %w", name, ctx.Err())
	case err != nil:
		err = fmt.Errorf("upload %q: %w", name, err)
	}
	if err != nil {
		u.Close()
		s.log.Info("upload refused", "file", name, "bytes", n, "err", err)
		return nil, err
	}
	u.Size, u.SHA256 = n, got
	s.log.Info("upload received", "file", name, "bytes", n, "sha256", got)
	return u, nil
}

// uploadChunk is what Receive reads before it looks at ctx again.
const uploadChunk = 1 << 20

// receive copies r into f (empty) while hashing it, at most limit bytes
// (more is ErrTooLarge), honouring ctx between chunks; a chunk of zeroes
// is skipped, leaving a hole. It returns the bytes and their sha256.
func receive(ctx context.Context, f *os.File, r io.Reader, limit int64) (int64, string, error) {
	h := sha256.New()
	buf := make([]byte, uploadChunk)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, "", err
		}
		k, rerr := io.ReadFull(r, buf)
		if k > 0 {
			if n+int64(k) > limit {
				return n, "", ErrTooLarge
			}
			h.Write(buf[:k])
			if !allZero(buf[:k]) {
				if _, err := f.WriteAt(buf[:k], n); err != nil {
					return n, "", err
				}
			}
			n += int64(k)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return n, "", rerr
		}
	}
	if err := f.Truncate(n); err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// source is one file an import reads, open: an upload, or a path on the
// daemon's host opened once by openHostSource.
type source struct {
	name    string // for messages: the path, or the upload's name
	f       *os.File
	size    int64
	private bool // an upload: only the daemon can change it
	owned   bool // opened here: closed by close
}

func (src source) close() {
	if src.owned {
		src.f.Close()
	}
}

func (u *Upload) source() source {
	return source{name: u.Name, f: u.file, size: u.Size, private: true}
}
