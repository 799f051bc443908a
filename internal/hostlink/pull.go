package hostlink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

// maxConcurrentPulls bounds the pulls of one host at once, whatever the
// number of chains it fetches: a third stream would mostly compete with
// the other two for the same disk and link, and leave the guests' I/O
// less room.
const maxConcurrentPulls = 2

// ErrHashMismatch is a pulled file whose SHA-256 is not the one asked for
// (or, for a top, not the one its peer sent): the file is refused.
var ErrHashMismatch = errors.New("SHA-256 mismatch")

// Puller fetches layers from peers into this host's data dir. A daemon
// has one, so that its bound on concurrent pulls holds for the host.
type Puller struct {
	dataDir    string
	credential string
	log        *slog.Logger
	sem        chan struct{}

	mu      sync.Mutex
	clients map[Peer]*http.Client
}

// NewPuller returns a Puller writing under dataDir and presenting
// credential (this host's shh_… credential) to its peers.
func NewPuller(dataDir, credential string, log *slog.Logger) (*Puller, error) {
	if _, _, err := ParseCredential(credential); err != nil {
		return nil, errdefs.Invalid("host link: this host's credential: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Puller{dataDir: dataDir, credential: credential, log: log,
		sem: make(chan struct{}, maxConcurrentPulls), clients: map[Peer]*http.Client{}}, nil
}

// Close drops the idle connections to every peer.
func (p *Puller) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.clients {
		c.CloseIdleConnections()
		delete(p.clients, k)
	}
}

// client is the HTTP client of peer, one per peer so that connections
// are reused across the layers of a chain.
func (p *Puller) client(peer Peer) (*http.Client, error) {
	if _, err := checkPeerURL(peer); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[peer]
	if !ok {
		// No overall timeout: a 10 GiB layer takes as long as it takes;
		// the caller's context ends it.
		c = &http.Client{Transport: newTransport(peer),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		p.clients[peer] = c
	}
	return c, nil
}

// Pull fetches the frozen layer whose content hash is sum from peer into
// destRel (relative to the data dir), and returns the bytes moved. The
// file arrives in a temporary file beside destRel (0600; a missing
// directory is made 0700), hashed as it is written; a hash that differs
// or a short body is refused and the temporary file removed. The file is
// fsynced and renamed into place, never over an existing file.
func (p *Puller) Pull(ctx context.Context, peer Peer, sum, destRel string, progress Progress) (int64, error) {
	if !ValidHash(sum) {
		return 0, errdefs.Invalid("pull layer %s: hash %q: want 64 lowercase hex digits", destRel, sum)
	}
	n, _, err := p.fetch(ctx, peer, layersPath+sum, destRel, sum, -1, progress)
	return n, err
}

// PullTop fetches writable layer id from peer into destRel, as Pull does,
// when the peer says it may move (its configuration is not deployed). It
// returns the bytes moved and their SHA-256, checked against the hash the
// peer sent after the body.
func (p *Puller) PullTop(ctx context.Context, peer Peer, id int64, destRel string, progress Progress) (int64, string, error) {
	if id <= 0 {
		return 0, "", errdefs.Invalid("pull top %s: layer id %d: want a positive id", destRel, id)
	}
	return p.fetch(ctx, peer, topsPath+strconv.FormatInt(id, 10), destRel, "", -1, progress)
}

// fetch GETs urlPath from peer into destRel. wantSum is the expected
// SHA-256, or "" to take it from the response's trailer; wantSize, when
// >= 0, the expected size.
func (p *Puller) fetch(ctx context.Context, peer Peer, urlPath, destRel, wantSum string, wantSize int64, progress Progress) (n int64, sum string, err error) {
	what := fmt.Sprintf("pull %s from host %q", destRel, peer.Name)
	if !filepath.IsLocal(destRel) {
		return 0, "", errdefs.Invalid("%s: the destination must be a path inside the data dir", what)
	}
	c, err := p.client(peer)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", what, err)
	}
	dest := filepath.Join(p.dataDir, destRel)
	dir := filepath.Dir(dest)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, "", fmt.Errorf("%s: %w", what, err)
	}
	if _, err := os.Lstat(dest); err == nil {
		return 0, "", errdefs.Conflict("%s: %s already exists", what, dest)
	}

	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return 0, "", kindOfContext(fmt.Errorf("%s: waiting for a free pull slot: %w", what, ctx.Err()))
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer.URL, "/")+urlPath, nil)
	if err != nil {
		return 0, "", errdefs.Invalid("%s: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+p.credential)
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", kindOfContext(fmt.Errorf("%s: %w", what, ctx.Err()))
		}
		var pe *PinError
		if errors.As(err, &pe) {
			return 0, "", errdefs.Unavailable("%s: %w", what, pe)
		}
		return 0, "", errdefs.Unavailable("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if err := statusError(resp, peer); err != nil {
		return 0, "", fmt.Errorf("%s: %w", what, err)
	}

	total := resp.ContentLength
	if wantSum == "" {
		if total, err = strconv.ParseInt(resp.Header.Get(sizeHeader), 10, 64); err != nil {
			return 0, "", errdefs.Unavailable("%s: the peer sent no %s header", what, sizeHeader)
		}
	} else if got, ok := decodeDigest(resp.Header.Get(digestHeader)); ok && got != wantSum {
		return 0, "", errdefs.Unavailable("%s: the peer announces sha256 %s, not %s: %w", what, got, wantSum, ErrHashMismatch)
	}
	if wantSize >= 0 && total >= 0 && total != wantSize {
		return 0, "", errdefs.Unavailable("%s: the peer sends %d bytes, the layer has %d", what, total, wantSize)
	}

	// The name ends in .tmp: the journal removes such siblings of a file
	// it names when it rolls back (a crash in the middle of a pull).
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".pull-*.tmp")
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", what, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	w := &progressWriter{f: tmp, h: h, path: destRel, total: total, progress: progress}
	n, err = io.CopyBuffer(w, resp.Body, make([]byte, hashChunk))
	switch {
	case ctx.Err() != nil:
		return n, "", kindOfContext(fmt.Errorf("%s: after %d bytes: %w", what, n, ctx.Err()))
	case err != nil:
		return n, "", errdefs.Unavailable("%s: after %d of %d bytes: %w", what, n, total, err)
	case total >= 0 && n != total:
		return n, "", errdefs.Unavailable("%s: short body: %d of %d bytes", what, n, total)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if wantSum == "" {
		// The trailer is read only once the body is at its end.
		var ok bool
		if wantSum, ok = decodeDigest(resp.Trailer.Get(digestHeader)); !ok {
			return n, "", errdefs.Unavailable("%s: the peer sent no SHA-256 after the body (it stopped mid-stream)", what)
		}
	}
	if sum != wantSum {
		return n, "", errdefs.Unavailable("%s: the bytes received hash to %s, not %s: %w", what, sum, wantSum, ErrHashMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return n, "", fmt.Errorf("%s: fsync: %w", what, err)
	}
	if err := tmp.Close(); err != nil {
		return n, "", fmt.Errorf("%s: %w", what, err)
	}
	if err := renameNoReplace(tmp.Name(), dest); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return n, "", errdefs.Conflict("%s: %s appeared while it was pulled", what, dest)
		}
		return n, "", fmt.Errorf("%s: %w", what, err)
	}
	done = true
	// The rename is durable only once the directory is.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	p.log.Info("pulled layer", "layer", destRel, "from", peer.Name, "bytes", n, "sha256", sum)
	return n, sum, nil
}

// renameNoReplace renames old to new unless new exists, atomically, so a
// file some VM uses is never replaced under it.
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: a hard link fails
		// when new exists, just as atomically.
		if err = os.Link(old, new); err == nil {
			return os.Remove(old)
		}
		return err
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// statusError turns a refusal from peer into an error of the matching kind.
func statusError(resp *http.Response, peer Peer) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	switch resp.StatusCode {
	case http.StatusNotFound:
		return errdefs.NotFound("host %q answered 404: %s", peer.Name, msg)
	case http.StatusConflict:
		return errdefs.Conflict("host %q answered 409: %s", peer.Name, msg)
	case http.StatusUnauthorized:
		// Not our caller's 401: this host's own credential was refused,
		// which its operator fixes; to the user the peer is unavailable.
		return errdefs.Unavailable("host %q refused this host's credential (401): %s", peer.Name, msg)
	}
	return errdefs.Unavailable("host %q answered %s: %s", peer.Name, resp.Status, msg)
}

// progressWriter writes to the temporary file, hashes, and reports.
type progressWriter struct {
	f        *os.File
	h        hash.Hash
	path     string
	done     int64
	total    int64
	progress Progress
}

func (w *progressWriter) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.h.Write(b[:n])
	w.done += int64(n)
	if w.progress != nil {
		w.progress(w.path, w.done, w.total)
	}
	return n, err
}

// ChainOptions tunes PullChain.
type ChainOptions struct {
	// VerifyPresent hashes the frozen layers already present (reading
	// each whole) instead of trusting a file of the right size.
	VerifyPresent bool
	// Progress, when set, is told of every layer's bytes as they arrive.
	Progress Progress
}

// ChainResult says what PullChain moved.
type ChainResult struct {
	Pulled []LayerRef // the layers that were missing and now are here
	Bytes  int64      // bytes moved: the sum of their sizes
}

// PullChain makes every layer of want present under the data dir,
// pulling only those missing: a frozen layer by hash, a top by id. A
// frozen layer already present is trusted when its size matches (and its
// hash, with VerifyPresent); a top already present is a conflict. Each
// missing layer is asked of peers in order until one gives it; the error
// names every failure of every layer. On failure the tops pulled are
// removed; the frozen layers pulled stay, verified and shareable, so a
// retry moves less.
func (p *Puller) PullChain(ctx context.Context, peers []Peer, want []LayerRef, opts ChainOptions) (ChainResult, error) {
	var missing []LayerRef
	for _, l := range want {
		present, err := p.present(ctx, l, opts.VerifyPresent)
		if err != nil {
			return ChainResult{}, err
		}
		if !present {
			missing = append(missing, l)
		}
	}
	if len(missing) == 0 {
		return ChainResult{}, nil
	}
	if len(peers) == 0 {
		return ChainResult{}, errdefs.Unavailable("pull %d missing layers: no peer to pull them from", len(missing))
	}

	type outcome struct {
		n    int64
		errs []error
		ok   bool
	}
	out := make([]outcome, len(missing))
	var wg sync.WaitGroup
	for i, l := range missing {
		wg.Go(func() {
			for _, peer := range peers {
				var n int64
				var err error
				if l.Frozen {
					n, _, err = p.fetch(ctx, peer, l.fetchPath(), l.Path, l.SHA256, l.Size, opts.Progress)
				} else {
					size := int64(-1)
					if l.Size > 0 {
						size = l.Size
					}
					n, _, err = p.fetch(ctx, peer, l.fetchPath(), l.Path, "", size, opts.Progress)
				}
				if err == nil {
					out[i] = outcome{n: n, ok: true}
					return
				}
				out[i].errs = append(out[i].errs, err)
				if ctx.Err() != nil || errdefs.Kind(err) == errdefs.ErrConflict {
					return // no other peer can help
				}
			}
		})
	}
	wg.Wait()

	var res ChainResult
	var failures []string
	allNotFound := true
	for i, o := range out {
		if o.ok {
			res.Pulled = append(res.Pulled, missing[i])
			res.Bytes += o.n
			continue
		}
		for _, e := range o.errs {
			failures = append(failures, e.Error())
			if errdefs.Kind(e) != errdefs.ErrNotFound {
				allNotFound = false
			}
		}
	}
	if len(failures) == 0 {
		return res, nil
	}
	for _, l := range res.Pulled {
		if !l.Frozen {
			os.Remove(filepath.Join(p.dataDir, l.Path))
		}
	}
	msg := fmt.Sprintf("pull of %d missing layers failed: %s", len(missing), strings.Join(failures, "; "))
	switch {
	case ctx.Err() != nil:
		return ChainResult{}, fmt.Errorf("%w: %s", errdefs.ErrCanceled, msg)
	case allNotFound:
		return ChainResult{}, errdefs.NotFound("%s", msg)
	}
	return ChainResult{}, errdefs.Unavailable("%s", msg)
}

// present reports whether layer l is already here and may be trusted.
func (p *Puller) present(ctx context.Context, l LayerRef, verify bool) (bool, error) {
	switch {
	case !filepath.IsLocal(l.Path):
		return false, errdefs.Invalid("layer %q: the path must be inside the data dir", l.Path)
	case l.Frozen && !ValidHash(l.SHA256):
		return false, errdefs.Invalid("frozen layer %s: hash %q: want 64 lowercase hex digits", l.Path, l.SHA256)
	case !l.Frozen && l.ID <= 0:
		return false, errdefs.Invalid("top layer %s: id %d: want a positive id", l.Path, l.ID)
	}
	path := filepath.Join(p.dataDir, l.Path)
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("layer %s: %w", l.Path, err)
	case !l.Frozen:
		return false, errdefs.Conflict("top layer %s: a file is already there; a writable top lives on one host only", l.Path)
	case !st.Mode().IsRegular():
		return false, errdefs.Conflict("frozen layer %s: present but not a regular file (%s)", l.Path, st.Mode().Type())
	case st.Size() != l.Size:
		return false, errdefs.Conflict("frozen layer %s: present with %d bytes, but it has %d; remove the damaged file", l.Path, st.Size(), l.Size)
	}
	if verify {
		sum, _, err := HashFile(ctx, path)
		if err != nil {
			return false, err
		}
		if sum != l.SHA256 {
			return false, errdefs.Conflict("frozen layer %s: present, but its content hashes to %s, not %s; remove the damaged file: %w", l.Path, sum, l.SHA256, ErrHashMismatch)
		}
	}
	return true, nil
}
