package hostlink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
)

// run runs a qemu tool and fails the test with its output.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// layer is one qcow2 file of a test chain.
type layer struct {
	rel  string // relative to the data dir
	sum  string
	size int64
}

// makeChain writes a real qcow2 chain base ← mid ← top under dir/layers,
// each with data of its own (qemu-io writes a pattern), and returns it
// base first. Deltas name their parent by file name, as the daemon's do.
func makeChain(t testing.TB, dataDir, prefix string) []layer {
	t.Helper()
	dir := filepath.Join(dataDir, "layers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	names := []string{prefix + "-base.qcow2", prefix + "-mid.qcow2", prefix + "-top.qcow2"}
	for i, n := range names {
		p := filepath.Join(dir, n)
		if i == 0 {
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", p, "64M")
		} else {
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", names[i-1], "-F", "qcow2", p)
		}
		run(t, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0x%x %dM 1M", 0x5a+i, i), p)
	}
	var out []layer
	for _, n := range names {
		out = append(out, describe(t, dataDir, "layers/"+n))
	}
	return out
}

func describe(t testing.TB, dataDir, rel string) layer {
	t.Helper()
	sum, size, err := hostlink.HashFile(context.Background(), filepath.Join(dataDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return layer{rel: rel, sum: sum, size: size}
}

// catalog is the serving host's store, at the interface hostlink defines.
type catalog struct {
	mu     sync.Mutex
	frozen map[string]layer // by hash
	tops   map[int64]string // id → path
	moving map[int64]bool   // tops whose configuration is undeployed
}

func newCatalog() *catalog {
	return &catalog{frozen: map[string]layer{}, tops: map[int64]string{}, moving: map[int64]bool{}}
}

func (c *catalog) FrozenByHash(_ context.Context, sum string) (string, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.frozen[sum]
	if !ok {
		return "", 0, errdefs.NotFound("no frozen layer with sha256 %s", sum)
	}
	return l.rel, l.size, nil
}

func (c *catalog) MovableTop(_ context.Context, id int64) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rel, ok := c.tops[id]
	switch {
	case !ok:
		return "", errdefs.NotFound("no top layer %d", id)
	case !c.moving[id]:
		return "", errdefs.Conflict("top layer %d: its configuration is deployed", id)
	}
	return rel, nil
}

// MovableState: the tests' saved states are none.
func (c *catalog) MovableState(_ context.Context, id int64) (string, error) {
	return "", errdefs.NotFound("no saved state of VM %d", id)
}

// hosts is the installation's hosts table: each host's secret hash.
type hosts map[string][]byte

func (h hosts) HostSecretHash(_ context.Context, name string) ([]byte, error) {
	if sum, ok := h[name]; ok {
		return sum, nil
	}
	return nil, errdefs.NotFound("host %q", name)
}

// site is one host: a data dir, its catalog, its server on 127.0.0.1 and
// its puller.
type site struct {
	name    string
	dataDir string
	cat     *catalog
	srv     *httptest.Server
	puller  *hostlink.Puller
	cred    string
}

func newSite(t testing.TB, name string, table hosts, wrap func(http.Handler) http.Handler) *site {
	t.Helper()
	cred, hash, err := hostlink.NewCredential(name)
	if err != nil {
		t.Fatal(err)
	}
	table[name] = hash
	s := &site{name: name, dataDir: t.TempDir(), cat: newCatalog(), cred: cred}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var h http.Handler = hostlink.NewServer(s.dataDir, s.cat, table, log)
	if wrap != nil {
		h = wrap(h)
	}
	s.srv = httptest.NewServer(h)
	t.Cleanup(s.srv.Close)
	s.puller, err = hostlink.NewPuller(s.dataDir, cred, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.puller.Close)
	return s
}

func (s *site) peer() hostlink.Peer { return hostlink.Peer{Name: s.name, URL: s.srv.URL} }

func (s *site) freeze(l layer) {
	s.cat.mu.Lock()
	defer s.cat.mu.Unlock()
	s.cat.frozen[l.sum] = l
}

// copyFile puts src's file at dst's same relative path, as if dst had
// pulled it before.
func copyFile(t testing.TB, src, dst, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "--sparse=always", filepath.Join(src, rel), filepath.Join(dst, rel))
}

// entries lists a directory's names (temporary files included).
func entries(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// TestPullChainMovesOnlyMissingLayers: host B holds the base of A's chain;
// deploying there pulls the mid layer and the (undeployed) top only,
// from A after C (which has none of it) said 404, bytes moved = their
// sizes, and the chain on B is a valid qcow2 chain equal to A's.
func TestPullChainMovesOnlyMissingLayers(t *testing.T) {
	table := hosts{}
	a, b, c := newSite(t, "a", table, nil), newSite(t, "b", table, nil), newSite(t, "c", table, nil)
	chain := makeChain(t, a.dataDir, "web")
	base, mid, top := chain[0], chain[1], chain[2]
	a.freeze(base)
	a.freeze(mid)
	a.cat.tops[7], a.cat.moving[7] = top.rel, true
	copyFile(t, a.dataDir, b.dataDir, base.rel)

	var progressed atomic.Int64
	want := []hostlink.LayerRef{
		{Path: base.rel, SHA256: base.sum, Size: base.size, Frozen: true},
		{Path: mid.rel, SHA256: mid.sum, Size: mid.size, Frozen: true},
		{Path: top.rel, ID: 7, Size: top.size},
	}
	res, err := b.puller.PullChain(context.Background(), []hostlink.Peer{c.peer(), a.peer()}, want, hostlink.ChainOptions{
		VerifyPresent: true,
		Progress:      func(_ string, done, _ int64) { progressed.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pulled) != 2 || res.Pulled[0].Path != mid.rel || res.Pulled[1].Path != top.rel {
		t.Fatalf("pulled %+v, want the mid layer and the top only", res.Pulled)
	}
	if res.Bytes != mid.size+top.size {
		t.Fatalf("moved %d bytes, want %d (mid %d + top %d)", res.Bytes, mid.size+top.size, mid.size, top.size)
	}
	if progressed.Load() == 0 {
		t.Error("progress was never reported")
	}
	for _, l := range chain {
		if got := describe(t, b.dataDir, l.rel); got != l {
			t.Errorf("%s on b: %+v, want %+v", l.rel, got, l)
		}
	}
	run(t, "qemu-img", "check", "-q", filepath.Join(b.dataDir, top.rel))
	run(t, "qemu-img", "compare", "-q", filepath.Join(a.dataDir, top.rel), filepath.Join(b.dataDir, top.rel))
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 3 {
		t.Errorf("b's layers dir holds %v, want the 3 layers and no temporary file", names)
	}

	// A second pull of the same chain moves nothing.
	res, err = b.puller.PullChain(context.Background(), []hostlink.Peer{a.peer()}, want[:2], hostlink.ChainOptions{})
	if err != nil || len(res.Pulled) != 0 || res.Bytes != 0 {
		t.Fatalf("second pull: %+v, %v; want nothing moved", res, err)
	}
}

// TestPullChainNamesEveryFailure: no peer has the layer; the error is of
// kind not found and names the hash and each peer that was asked.
func TestPullChainNamesEveryFailure(t *testing.T) {
	table := hosts{}
	a, b, c := newSite(t, "a", table, nil), newSite(t, "b", table, nil), newSite(t, "c", table, nil)
	l := makeChain(t, a.dataDir, "x")[0] // a has the file but never froze it
	_, err := b.puller.PullChain(context.Background(), []hostlink.Peer{a.peer(), c.peer()},
		[]hostlink.LayerRef{{Path: l.rel, SHA256: l.sum, Size: l.size, Frozen: true}}, hostlink.ChainOptions{})
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	for _, s := range []string{`host "a" answered 404`, `host "c" answered 404`, l.sum} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after a failed pull", names)
	}
}

// TestTamperedLayerRefused: A's file is damaged (same size) after its hash
// was recorded; B refuses what arrives and keeps nothing.
func TestTamperedLayerRefused(t *testing.T) {
	table := hosts{}
	a, b := newSite(t, "a", table, nil), newSite(t, "b", table, nil)
	l := makeChain(t, a.dataDir, "t")[0]
	a.freeze(l)
	f, err := os.OpenFile(filepath.Join(a.dataDir, l.rel), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tampered"), l.size/2); err != nil {
		t.Fatal(err)
	}
	f.Close()

	n, err := b.puller.Pull(context.Background(), a.peer(), l.sum, l.rel, nil)
	if !errors.Is(err, hostlink.ErrHashMismatch) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("pull of a tampered layer: %d bytes, err %v; want a hash mismatch of kind unavailable", n, err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after a refused pull", names)
	}

	// A truncated file is refused by A itself: a frozen layer has one size.
	if err := os.Truncate(filepath.Join(a.dataDir, l.rel), l.size-4096); err != nil {
		t.Fatal(err)
	}
	if _, err := b.puller.Pull(context.Background(), a.peer(), l.sum, l.rel, nil); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("pull of a truncated layer: %v; want the peer's 409 naming the damage", err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after a refused pull", names)
	}
}

// TestShortBodyRefused: a peer that announces the whole length and stops
// halfway leaves nothing behind.
func TestShortBodyRefused(t *testing.T) {
	table := hosts{}
	a := newSite(t, "a", table, nil)
	l := makeChain(t, a.dataDir, "s")[0]
	data, err := os.ReadFile(filepath.Join(a.dataDir, l.rel))
	if err != nil {
		t.Fatal(err)
	}
	half := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(data))
		buf.Write(data[:len(data)/2])
		buf.Flush()
	}))
	t.Cleanup(half.Close)
	b := newSite(t, "b", table, nil)
	n, err := b.puller.Pull(context.Background(), hostlink.Peer{Name: "half", URL: half.URL}, l.sum, l.rel, nil)
	if !errors.Is(err, errdefs.ErrUnavailable) || n >= l.size {
		t.Fatalf("short body: %d bytes, err %v; want unavailable", n, err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after a short body", names)
	}
}

// TestCredentialRefused: no credential, a wrong secret, an unknown host
// and a user's API token all get 401 from the server, and a puller with
// a wrong credential writes nothing.
func TestCredentialRefused(t *testing.T) {
	table := hosts{}
	a := newSite(t, "a", table, nil)
	l := makeChain(t, a.dataDir, "c")[0]
	a.freeze(l)
	wrong, _, _ := hostlink.NewCredential("b") // b's name, another secret
	stranger, _, _ := hostlink.NewCredential("z")
	for name, auth := range map[string]string{
		"none":         "",
		"wrong secret": "Bearer " + wrong,
		"unknown host": "Bearer " + stranger,
		"API token":    "Bearer sht_abcdefghijkl_" + strings.Repeat("A", 43),
		"not bearer":   "Basic " + wrong,
	} {
		req, _ := http.NewRequest("GET", a.srv.URL+"/internal/v1/layers/"+l.sum, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(body) > 500 {
			t.Errorf("%s: %s, %d bytes of body; want 401 and a short message", name, resp.Status, len(body))
		}
	}

	b := newSite(t, "b", table, nil)
	table["b"] = hostlink.HashSecret([]byte("not b's secret"))
	_, err := b.puller.Pull(context.Background(), a.peer(), l.sum, l.rel, nil)
	if err == nil || !strings.Contains(err.Error(), "(401)") {
		t.Fatalf("pull with a revoked credential: %v; want the 401 named", err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after a refused pull", names)
	}
}

// TestCredentialParsing: the credential splits on its fixed-length tail,
// so host names with "_" work, and anything else is refused unechoed.
func TestCredentialParsing(t *testing.T) {
	for _, host := range []string{"a", "rack_2.example", "h-" + strings.Repeat("x", 200)} {
		cred, sum, err := hostlink.NewCredential(host)
		if err != nil {
			t.Fatal(err)
		}
		got, secret, err := hostlink.ParseCredential(cred)
		if err != nil || got != host || string(hostlink.HashSecret(secret)) != string(sum) {
			t.Errorf("%q: parsed %q, %v", host, got, err)
		}
	}
	for _, bad := range []string{"", "shh_", "shh_a_short", "sht_a_" + strings.Repeat("A", 43), "shh__" + strings.Repeat("A", 43), "shh_a b_" + strings.Repeat("A", 43)} {
		if _, _, err := hostlink.ParseCredential(bad); !errors.Is(err, errdefs.ErrUnauthenticated) || (len(bad) > 8 && strings.Contains(err.Error(), bad)) {
			t.Errorf("%q: %v; want unauthenticated, not echoed", bad, err)
		}
	}
	if _, _, err := hostlink.NewCredential("has space"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("a host name with a space: %v", err)
	}
}

// TestUnknownHashIsNamed404: a hash no layer has is a 404 that names it.
func TestUnknownHashIsNamed404(t *testing.T) {
	table := hosts{}
	a, b := newSite(t, "a", table, nil), newSite(t, "b", table, nil)
	sum := strings.Repeat("ab", 32)
	_, err := b.puller.Pull(context.Background(), a.peer(), sum, "layers/nope.qcow2", nil)
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), sum) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown hash: %v; want a 404 naming %s", err, sum)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v", names)
	}
}

// TestCancelMidPull: the context ends after the first chunk arrived; the
// pull stops with kind canceled and no temporary file stays.
func TestCancelMidPull(t *testing.T) {
	table := hosts{}
	a, b := newSite(t, "a", table, nil), newSite(t, "b", table, nil)
	p := filepath.Join(a.dataDir, "layers", "big.qcow2")
	os.MkdirAll(filepath.Dir(p), 0o700)
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", p, "64M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 32M", p)
	l := describe(t, a.dataDir, "layers/big.qcow2")
	a.freeze(l)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen int64
	n, err := b.puller.Pull(ctx, a.peer(), l.sum, l.rel, func(_ string, done, _ int64) { seen = done; cancel() })
	if !errors.Is(err, errdefs.ErrCanceled) || seen == 0 || n >= l.size {
		t.Fatalf("canceled pull: %d of %d bytes (progress saw %d), err %v; want kind canceled mid-way", n, l.size, seen, err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after a canceled pull", names)
	}
}

// TestTopServedOnlyWhenMovable: a deployed configuration's top is a 409;
// once undeployed it moves, with the hash its server computed.
func TestTopServedOnlyWhenMovable(t *testing.T) {
	table := hosts{}
	a, b := newSite(t, "a", table, nil), newSite(t, "b", table, nil)
	top := makeChain(t, a.dataDir, "m")[2]
	a.cat.tops[3] = top.rel

	_, _, err := b.puller.PullTop(context.Background(), a.peer(), 3, top.rel, nil)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "deployed") {
		t.Fatalf("deployed top: %v; want a conflict saying it is deployed", err)
	}
	if _, _, err := b.puller.PullTop(context.Background(), a.peer(), 4, top.rel, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown top: %v; want not found", err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v", names)
	}

	a.cat.mu.Lock()
	a.cat.moving[3] = true
	a.cat.mu.Unlock()
	n, sum, err := b.puller.PullTop(context.Background(), a.peer(), 3, top.rel, nil)
	if err != nil || n != top.size || sum != top.sum {
		t.Fatalf("movable top: %d bytes, sha256 %s, %v; want %d bytes, %s", n, sum, err, top.size, top.sum)
	}
}

// TestServerOpensOnlyRegularFilesInside: a stored path that is a symbolic
// link (even to a real layer) or leaves the data dir is never served.
func TestServerOpensOnlyRegularFilesInside(t *testing.T) {
	table := hosts{}
	a, b := newSite(t, "a", table, nil), newSite(t, "b", table, nil)
	l := makeChain(t, a.dataDir, "r")[0]
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("not a layer"), 0o600)
	if err := os.Symlink(filepath.Join(a.dataDir, l.rel), filepath.Join(a.dataDir, "layers", "link.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(a.dataDir, "escape")); err != nil {
		t.Fatal(err)
	}
	for i, rel := range []string{"layers/link.qcow2", "../" + filepath.Base(filepath.Dir(outside)) + "/secret", "escape/secret", filepath.Join(a.dataDir, l.rel)} {
		sum := strings.Repeat(strconv.Itoa(i), 64)
		a.freeze(layer{rel: rel, sum: sum, size: l.size})
		if _, err := b.puller.Pull(context.Background(), a.peer(), sum, "layers/got.qcow2", nil); err == nil || !strings.Contains(err.Error(), "500") {
			t.Errorf("stored path %q: %v; want a 500 and nothing served", rel, err)
		}
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v", names)
	}
}

// TestTLSPinning: over TLS the pinned fingerprint is the only trust: the
// right one passes, a wrong one is refused before any byte is written,
// none at all is refused, and plain http leaves loopback never.
func TestTLSPinning(t *testing.T) {
	table := hosts{}
	a, b := newSite(t, "a", table, nil), newSite(t, "b", table, nil)
	l := makeChain(t, a.dataDir, "p")[0]
	a.freeze(l)
	tlsSrv := httptest.NewUnstartedServer(a.srv.Config.Handler)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	right := hostlink.Fingerprint(tlsSrv.Certificate().Raw)
	wrong := "SHA256:" + strings.Repeat("0", 64)

	_, err := b.puller.Pull(context.Background(), hostlink.Peer{Name: "a", URL: tlsSrv.URL, Fingerprint: wrong}, l.sum, l.rel, nil)
	var pe *hostlink.PinError
	if !errors.As(err, &pe) || pe.Got != right || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("wrong pin: %v; want a PinError naming %s", err, right)
	}
	if _, err := b.puller.Pull(context.Background(), hostlink.Peer{Name: "a", URL: tlsSrv.URL}, l.sum, l.rel, nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("no pin: %v; want invalid", err)
	}
	// Refused before any connection: this address is never dialled.
	if _, err := b.puller.Pull(context.Background(), hostlink.Peer{Name: "far", URL: "http://192.0.2.1:1"}, l.sum, l.rel, nil); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "https") {
		t.Fatalf("plain http off loopback: %v; want invalid", err)
	}
	if names := entries(t, filepath.Join(b.dataDir, "layers")); len(names) != 0 {
		t.Errorf("b's layers dir holds %v after refused pulls", names)
	}
	n, err := b.puller.Pull(context.Background(), hostlink.Peer{Name: "a", URL: tlsSrv.URL, Fingerprint: right}, l.sum, l.rel, nil)
	if err != nil || n != l.size {
		t.Fatalf("right pin: %d bytes, %v", n, err)
	}
	if got := describe(t, b.dataDir, l.rel); got != l {
		t.Fatalf("pulled over TLS: %+v, want %+v", got, l)
	}
}

// TestAtMostTwoPullsAtOnce: five missing layers, from two chains pulled
// at once, are never more than two requests in flight.
func TestAtMostTwoPullsAtOnce(t *testing.T) {
	table := hosts{}
	var inFlight, most atomic.Int64
	a := newSite(t, "a", table, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			now := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := most.Load()
				if now <= m || most.CompareAndSwap(m, now) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond) // long enough for the others to pile up
			h.ServeHTTP(w, r)
		})
	})
	b := newSite(t, "b", table, nil)
	var refs [][]hostlink.LayerRef
	for i := range 2 {
		var chain []hostlink.LayerRef
		for j, l := range makeChain(t, a.dataDir, fmt.Sprintf("c%d", i)) {
			if i == 1 && j == 2 {
				break // 3 + 2 layers
			}
			a.freeze(l)
			chain = append(chain, hostlink.LayerRef{Path: l.rel, SHA256: l.sum, Size: l.size, Frozen: true})
		}
		refs = append(refs, chain)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(refs))
	for i, want := range refs {
		wg.Go(func() {
			_, errs[i] = b.puller.PullChain(context.Background(), []hostlink.Peer{a.peer()}, want, hostlink.ChainOptions{})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := most.Load(); got != 2 {
		t.Fatalf("at most %d pulls were in flight at once, want 2", got)
	}
}
