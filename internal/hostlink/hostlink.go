// Package hostlink moves disk layers between the daemons of one installation: a frozen layer by its content hash, an undeployed writable top by its id.
// Daemons authenticate to each other with host credentials (shh_…) over TLS pinned to the peer's certificate fingerprint.
package hostlink

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"stagehand/internal/errdefs"
)

// Paths of the endpoints a Server answers and a Puller calls.
const (
	layersPath = "/internal/v1/layers/"
	topsPath   = "/internal/v1/tops/"
	statesPath = "/internal/v1/states/"
)

// digestHeader carries a body's SHA-256 (RFC 9530's Repr-Digest,
// "sha-256=:BASE64:"): a header for a frozen layer, whose hash is known
// before the first byte; a trailer for a top, hashed while it is sent.
const digestHeader = "Repr-Digest"

// sizeHeader carries a top's size: a response with a trailer is chunked,
// so it has no Content-Length.
const sizeHeader = "Stagehand-Layer-Size"

// Peer is another host's daemon, as the hosts table describes it.
type Peer struct {
	Name string // the host's name, for messages
	// URL is its advertise URL: https://host:port, or http://127.0.0.1:port
	// (tests only; see checkPeerURL).
	URL string
	// Fingerprint pins the peer's TLS certificate: "SHA256:" and the hex
	// SHA-256 of its DER bytes, as the daemon logs it. Required for https.
	Fingerprint string
}

// LayerRef is one layer of a chain a host wants to hold locally.
type LayerRef struct {
	// Path is relative to the data dir, the same on every host (a delta
	// names its parent by file name).
	Path string
	// SHA256 is a frozen layer's content hash (lowercase hex).
	SHA256 string
	// Size is the file's size in bytes; for a top, 0 means unknown.
	Size int64
	// Frozen layers are fetched by SHA256; a writable top by ID.
	Frozen bool
	// ID is the layer's id in the store, used to fetch a writable top
	// (which has no content hash: it changes whenever its VM runs).
	ID int64
	// State marks a VM's saved state (memory and devices) instead of a
	// layer: ID is then the VM's id, and it moves as a top does, with
	// the configuration it resumes.
	State bool
}

// fetchPath is the endpoint that serves l.
func (l LayerRef) fetchPath() string {
	switch {
	case l.Frozen:
		return layersPath + l.SHA256
	case l.State:
		return statesPath + strconv.FormatInt(l.ID, 10)
	}
	return topsPath + strconv.FormatInt(l.ID, 10)
}

// Progress is told, after each chunk written, how many bytes of the
// layer at path have arrived (done) out of total (-1 when unknown). A
// chain's layers arrive concurrently, so it may be called from several
// goroutines at once.
type Progress func(path string, done, total int64)

// ValidHash reports whether s is a SHA-256 as this package writes it: 64
// lowercase hex digits.
func ValidHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := range len(s) {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// hashChunk is the read size of HashFile and of the copies: large enough
// that a 10 GiB layer takes few system calls.
const hashChunk = 1 << 20

// HashFile returns the SHA-256 (lowercase hex) and the size of the file at
// path, read once from start to end. The daemon calls it when it freezes a
// layer, and stores the hash beside the layer's row.
func HashFile(ctx context.Context, path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, hashChunk))
	if err != nil {
		return "", 0, kindOfContext(fmt.Errorf("hash %s: %w", path, err))
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// kindOfContext gives err the kind canceled when a context ended it, so
// the API answers as for any canceled job rather than with a 500.
func kindOfContext(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", errdefs.ErrCanceled, err)
	}
	return err
}

// encodeDigest and decodeDigest convert between a hex SHA-256 and the
// Repr-Digest field value.
func encodeDigest(hexSum string) string {
	b, _ := hex.DecodeString(hexSum)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(b) + ":"
}

func decodeDigest(field string) (string, bool) {
	for _, member := range strings.Split(field, ",") {
		v, ok := strings.CutPrefix(strings.TrimSpace(member), "sha-256=:")
		if !ok || !strings.HasSuffix(v, ":") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(v, ":"))
		if err != nil || len(b) != sha256.Size {
			return "", false
		}
		return hex.EncodeToString(b), true
	}
	return "", false
}

// Fingerprint names a certificate as the daemon's log and the hosts table
// do: "SHA256:" and the hex SHA-256 of its DER bytes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// checkPeerURL accepts https, and plain http only to a loopback address.
// Why: every request carries this host's credential as a bearer token and
// every answer is a guest's disk; in clear text on a network anyone on the
// path could read both and then act as this host. Loopback traffic never
// leaves the kernel, so tests (two servers on 127.0.0.1) may skip TLS. The
// name "localhost" is not enough: it is whatever the resolver says.
func checkPeerURL(p Peer) (*url.URL, error) {
	u, err := url.Parse(p.URL)
	if err != nil || u.Host == "" {
		return nil, errdefs.Invalid("peer %q: URL %q: want https://host:port", p.Name, p.URL)
	}
	switch u.Scheme {
	case "https":
		if p.Fingerprint == "" {
			return nil, errdefs.Invalid("peer %q: no certificate fingerprint to pin (the hosts table has none); refusing to trust a system CA or the first certificate seen", p.Name)
		}
		return u, nil
	case "http":
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.IsLoopback() {
			return u, nil
		}
		return nil, errdefs.Invalid("peer %q: %s is plain http to a non-loopback address; host links need https (the credential and the disks would cross the network in clear)", p.Name, p.URL)
	}
	return nil, errdefs.Invalid("peer %q: URL %q: want https://host:port", p.Name, p.URL)
}

// PinError is a peer whose certificate is not the one the hosts table
// pins for it.
type PinError struct {
	Peer string // the host's name
	Want string // the pinned fingerprint
	Got  string // the certificate's
}

func (e *PinError) Error() string {
	return fmt.Sprintf("peer %q presented certificate %s, but the installation pins %s for it (someone in between, or its certificate was replaced: update the host's fingerprint)", e.Peer, e.Got, e.Want)
}

// ForwardTransport is the transport another host's API requests are
// forwarded over (api's gate): pinned as a pull's, but with no bound on
// the wait for the answer's headers, since a forwarded deploy answers
// once its VMs run and a job wait long-polls, and with HTTP/1.1 only,
// since a console is an HTTP/1.1 upgrade.
func ForwardTransport(p Peer) (*http.Transport, error) {
	if _, err := checkPeerURL(p); err != nil {
		return nil, err
	}
	tr := newTransport(p)
	tr.ResponseHeaderTimeout = 0
	// An unreachable peer is known in seconds (forward.go), not after
	// the wait a pull may afford.
	tr.DialContext = forwardDialer().DialContext
	tr.TLSHandshakeTimeout = ForwardDialTimeout
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConnsPerHost = 16
	return tr, nil
}

// newTransport is the transport to one peer: TLS verified only against
// the pinned fingerprint (no system CA, no trust on first use, no name
// check: the pin names exactly one certificate), no proxy.
func newTransport(p Peer) *http.Transport {
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would see the bearer credential of plain-http test links
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   maxConcurrentPulls,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		// The body is a qcow2 file: compression would cost CPU on both
		// ends and the hash is of the file's bytes as stored.
		DisableCompression: true,
	}
	want := p.Fingerprint
	tr.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is not verified against any CA: VerifyConnection
		// accepts exactly the pinned certificate and nothing else.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the peer sent no certificate")
			}
			if got := Fingerprint(cs.PeerCertificates[0].Raw); got != want {
				return &PinError{Peer: p.Name, Want: want, Got: got}
			}
			return nil
		},
	}
	return tr
}
