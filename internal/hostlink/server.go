package hostlink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

// Layers is what a Server needs from the store: which file holds a frozen
// layer, and whether a top may leave this host.
type Layers interface {
	// FrozenByHash returns the path (relative to the data dir) and the
	// size of the frozen layer whose content hash is sha256, or an error
	// of kind not found.
	FrozenByHash(ctx context.Context, sha256 string) (relPath string, size int64, err error)
	// MovableTop returns the path of writable layer id when it may be
	// copied to another host: it is the top of a disk whose configuration
	// is not deployed (so nothing writes to it). Otherwise an error of
	// kind not found (no such top) or conflict (deployed).
	MovableTop(ctx context.Context, id int64) (relPath string, err error)
	// MovableState returns the path of VM id's saved state when it may
	// be copied to another host: its configuration is not deployed and
	// the VM's state is saved. Otherwise not found or conflict.
	MovableState(ctx context.Context, vmID int64) (relPath string, err error)
}

// Server answers other hosts' pulls: GET /internal/v1/layers/{sha256} and
// GET /internal/v1/tops/{id}, to callers holding a host credential only.
// It opens only the paths Layers names, under its data dir; nothing of
// the request is ever part of a path.
type Server struct {
	dataDir  string
	layers   Layers
	verifier Verifier
	log      *slog.Logger
	mux      *http.ServeMux
}

// NewServer returns the handler of the host endpoints over dataDir.
func NewServer(dataDir string, layers Layers, v Verifier, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{dataDir: dataDir, layers: layers, verifier: v, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET "+layersPath+"{sha256}", s.serveFrozen)
	s.mux.HandleFunc("GET "+topsPath+"{id}", s.serveTop)
	s.mux.HandleFunc("GET "+statesPath+"{id}", s.serveState)
	return s
}

// ServeHTTP authenticates the calling host, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, err := Authenticate(r.Context(), s.verifier, r)
	if err != nil {
		s.fail(w, r, "", err)
		return
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, host)))
}

// callerKey carries the authenticated host's name to the log lines of its
// request (never to a decision: those take it as an argument).
type callerKey struct{}

func caller(r *http.Request) string { s, _ := r.Context().Value(callerKey{}).(string); return s }

func (s *Server) serveFrozen(w http.ResponseWriter, r *http.Request) {
	sum := r.PathValue("sha256")
	if !ValidHash(sum) {
		s.fail(w, r, "", errdefs.Invalid("layer hash %q: want 64 lowercase hex digits", sum))
		return
	}
	rel, size, err := s.layers.FrozenByHash(r.Context(), sum)
	if err != nil {
		s.fail(w, r, "", fmt.Errorf("frozen layer sha256 %s: %w", sum, err))
		return
	}
	f, err := s.open(rel, size)
	if err != nil {
		s.fail(w, r, rel, fmt.Errorf("frozen layer sha256 %s: %w", sum, err))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set(digestHeader, encodeDigest(sum))
	// No hashing here: the puller verifies, and on plain TCP this copy is
	// a sendfile.
	n, err := io.Copy(w, io.LimitReader(f, size))
	s.log.Info("served frozen layer", "layer", rel, "sha256", sum, "to", caller(r), "bytes", n, "err", err)
}

func (s *Server) serveTop(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.fail(w, r, "", errdefs.Invalid("layer id %q: want a positive integer", r.PathValue("id")))
		return
	}
	rel, err := s.layers.MovableTop(r.Context(), id)
	if err != nil {
		s.fail(w, r, "", fmt.Errorf("top layer %d: %w", id, err))
		return
	}
	s.sendMovable(w, r, rel, id)
}

// serveState sends a VM's saved state as serveTop sends a top.
func (s *Server) serveState(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.fail(w, r, "", errdefs.Invalid("VM id %q: want a positive integer", r.PathValue("id")))
		return
	}
	rel, err := s.layers.MovableState(r.Context(), id)
	if err != nil {
		s.fail(w, r, "", fmt.Errorf("saved state of VM %d: %w", id, err))
		return
	}
	s.sendMovable(w, r, rel, id)
}

// sendMovable sends a file that may change between moves (a top, a saved
// state), hashed as it is sent.
func (s *Server) sendMovable(w http.ResponseWriter, r *http.Request, rel string, id int64) {
	f, err := s.open(rel, -1)
	if err != nil {
		s.fail(w, r, rel, fmt.Errorf("top layer %d: %w", id, err))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.fail(w, r, rel, fmt.Errorf("top layer %d: %w", id, err))
		return
	}
	// The hash comes after the body, as a trailer: the top is read once,
	// hashed as it is sent. It covers the bytes sent, which is what the
	// puller must check.
	w.Header().Set("Trailer", digestHeader)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(sizeHeader, strconv.FormatInt(st.Size(), 10))
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(f, st.Size()), make([]byte, hashChunk))
	if err == nil && n != st.Size() {
		err = fmt.Errorf("file shrank while sent: %d of %d bytes", n, st.Size())
	}
	if err != nil {
		s.log.Warn("serving top layer failed", "layer", rel, "id", id, "to", caller(r), "bytes", n, "err", err)
		// Abort the stream: without the trailer the puller refuses it.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(digestHeader, encodeDigest(hex.EncodeToString(h.Sum(nil))))
	s.log.Info("served top layer", "layer", rel, "id", id, "to", caller(r), "bytes", n)
}

// open opens rel, a path from the store, read-only under the data dir:
// the directories through os.Root (no escape by "..", an absolute path or
// a symbolic link), the file itself with O_NOFOLLOW. It must be a regular
// file, and of size want when want >= 0 (a frozen layer never changes, so
// another size means it was damaged).
func (s *Server) open(rel string, want int64) (*os.File, error) {
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("stored path %q is not inside the data dir", rel)
	}
	root, err := os.OpenRoot(s.dataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	defer root.Close()
	dir, err := root.Open(filepath.Dir(rel))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", rel, err)
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), filepath.Base(rel), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("layer %s: open: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(s.dataDir, rel))
	st, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("layer %s: %w", rel, err)
	case !st.Mode().IsRegular():
		f.Close()
		return nil, fmt.Errorf("layer %s: not a regular file (%s)", rel, st.Mode().Type())
	case want >= 0 && st.Size() != want:
		f.Close()
		return nil, errdefs.Conflict("layer %s: the file has %d bytes but was frozen with %d; it was damaged", rel, st.Size(), want)
	}
	return f, nil
}

// fail answers with err's kind as the status and its message as the body.
// An error of no kind (a broken file, a store that failed) is logged in
// full and answered with a short 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, layer string, err error) {
	status := http.StatusInternalServerError
	switch errdefs.Kind(err) {
	case errdefs.ErrUnauthenticated:
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="stagehand hosts"`)
	case errdefs.ErrNotFound:
		status = http.StatusNotFound
	case errdefs.ErrInvalid:
		status = http.StatusBadRequest
	case errdefs.ErrConflict:
		status = http.StatusConflict
	case errdefs.ErrUnavailable:
		status = http.StatusServiceUnavailable
	case errdefs.ErrForbidden:
		status = http.StatusForbidden
	}
	// A 404 or 409 is a normal answer (a puller asks its peers in turn);
	// a refused credential or a failure is worth an operator's look.
	level := slog.LevelWarn
	if status == http.StatusNotFound || status == http.StatusConflict {
		level = slog.LevelInfo
	}
	s.log.Log(r.Context(), level, "host link request refused", "path", r.URL.Path, "from", r.RemoteAddr, "host", caller(r), "layer", layer, "status", status, "err", err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		msg = "internal error serving the layer; see the serving host's log"
	}
	http.Error(w, msg, status)
}
