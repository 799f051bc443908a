package labtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab"
)

// Hosts stands for the hosts of one installation in a test: each host's
// data dir and its lab's move endpoints. Link(host) is that host's
// lab.HostLink: it copies layer files between the data dirs as
// hostlink.Puller moves them between machines (a frozen layer verified by
// its hash, into a temporary file renamed into place) and calls the other
// labs' move endpoints in-process.
type Hosts struct {
	mu   sync.Mutex
	dirs map[string]string
	ends map[string]hostlink.Adopter
	// Pulls lists every file copied, as "HOST <- PEER PATH BYTES".
	Pulls []string
}

// Add makes host name, whose data dir is dir, known.
func (h *Hosts) Add(name, dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dirs == nil {
		h.dirs, h.ends = map[string]string{}, map[string]hostlink.Adopter{}
	}
	h.dirs[name] = dir
}

// Serve makes a the move endpoints of host name.
func (h *Hosts) Serve(name string, a hostlink.Adopter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ends[name] = a
}

// Link returns the link of host self.
func (h *Hosts) Link(self string) lab.HostLink { return link{h, self} }

type link struct {
	h    *Hosts
	self string
}

func (l link) end(peer string) (hostlink.Adopter, error) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	a, ok := l.h.ends[peer]
	if !ok {
		return nil, errdefs.Unavailable("host %q: not serving", peer)
	}
	return a, nil
}

func (l link) Adopt(ctx context.Context, peer hostlink.Peer, config string) (hostlink.AdoptResult, error) {
	a, err := l.end(peer.Name)
	if err != nil {
		return hostlink.AdoptResult{}, err
	}
	return a.Adopt(ctx, config, l.self)
}

func (l link) Deploy(ctx context.Context, peer hostlink.Peer, config string, req hostlink.DeployRequest) error {
	a, err := l.end(peer.Name)
	if err != nil {
		return err
	}
	return a.DeployHere(ctx, config, req)
}

// PullChain copies each layer of want missing from this host's data dir
// from the first peer that has it, as hostlink.Puller.PullChain does.
func (l link) PullChain(ctx context.Context, peers []hostlink.Peer, want []hostlink.LayerRef, _ hostlink.ChainOptions) (hostlink.ChainResult, error) {
	l.h.mu.Lock()
	dst := l.h.dirs[l.self]
	l.h.mu.Unlock()
	var res hostlink.ChainResult
	fail := func(err error) (hostlink.ChainResult, error) {
		for _, p := range res.Pulled {
			if !p.Frozen {
				os.Remove(filepath.Join(dst, p.Path))
			}
		}
		return hostlink.ChainResult{}, err
	}
	for _, ref := range want {
		if st, err := os.Stat(filepath.Join(dst, ref.Path)); err == nil {
			if ref.Frozen && st.Size() == ref.Size {
				continue
			}
			return fail(errdefs.Conflict("layer %s: a file is already there", ref.Path))
		}
		var n int64
		var err error = errdefs.NotFound("layer %s: no peer has it", ref.Path)
		for _, p := range peers {
			l.h.mu.Lock()
			src, ok := l.h.dirs[p.Name]
			l.h.mu.Unlock()
			if !ok {
				continue
			}
			if n, err = copyLayer(ctx, filepath.Join(src, ref.Path), filepath.Join(dst, ref.Path), ref); err == nil {
				l.h.mu.Lock()
				l.h.Pulls = append(l.h.Pulls, fmt.Sprintf("%s <- %s %s %d", l.self, p.Name, ref.Path, n))
				l.h.mu.Unlock()
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return fail(err)
			}
		}
		if err != nil {
			return fail(err)
		}
		res.Pulled = append(res.Pulled, ref)
		res.Bytes += n
	}
	return res, nil
}

// copyLayer copies src to dst through a temporary file, checking a frozen
// layer's hash and size.
func copyLayer(ctx context.Context, src, dst string, ref hostlink.LayerRef) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".pull-*.tmp")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	if ref.Frozen && (hex.EncodeToString(h.Sum(nil)) != ref.SHA256 || n != ref.Size) {
		return n, errdefs.Unavailable("layer %s: %w", ref.Path, hostlink.ErrHashMismatch)
	}
	return n, os.Rename(tmp.Name(), dst)
}
