package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"stagehand/internal/errdefs"
)

// unixHost is the host requests over the socket name: the socket is on
// this machine.
const unixHost = "localhost"

// target is where a Client's requests go, from its server URL.
type target struct {
	scheme string // unix, https or http
	socket string // the socket's path (unix)
	host   string // host:port (http, https)
}

// parseServer reads a server URL: unix:///path/to/stagehand.sock,
// https://host[:port], http://host[:port], or a bare host:port (http).
func parseServer(server string) (target, string, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	server = strings.TrimRight(server, "/")
	u, err := url.Parse(server)
	if err != nil {
		return target{}, server, errdefs.Invalid("server URL %q: %v", server, err)
	}
	switch u.Scheme {
	case "unix":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return target{}, server, errdefs.Invalid("server URL %q: a socket is unix:///absolute/path", server)
		}
		return target{scheme: "unix", socket: u.Path}, server, nil
	case "https", "http":
		if u.Host == "" || (u.Path != "" && u.Path != "/") {
			return target{}, server, errdefs.Invalid("server URL %q: want %s://host[:port]", server, u.Scheme)
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
		}
		return target{scheme: u.Scheme, host: net.JoinHostPort(u.Hostname(), port)}, server, nil
	}
	return target{}, server, errdefs.Invalid("server URL %q: the scheme is not unix://, https:// or http://", server)
}

// maxSocketPath is the longest path a sockaddr_un holds.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// dialSocket connects to the unix socket path; a path too long for a
// sockaddr is reached through /proc/self/fd of its directory.
func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	if len(path) <= maxSocketPath {
		return d.DialContext(ctx, "unix", path)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)))
}

// dialServer opens a connection to the server, TLS done for https, for
// what does not go through the http.Client (the console's upgrade).
func (c *transport) dialServer(ctx context.Context) (net.Conn, error) {
	switch c.target.scheme {
	case "unix":
		return dialSocket(ctx, c.target.socket)
	case "https":
		conf := c.tlsConfig()
		conf.NextProtos = []string{"http/1.1"} // an upgrade is HTTP/1.1
		d := tls.Dialer{Config: conf}
		return d.DialContext(ctx, "tcp", c.target.host)
	default:
		var d net.Dialer
		return d.DialContext(ctx, "tcp", c.target.host)
	}
}

// transport returns the http.Client of the client's target.
func (c *transport) httpClient() *http.Client {
	switch c.target.scheme {
	case "unix":
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialSocket(ctx, c.target.socket)
		}
		return &http.Client{Transport: tr}
	case "https":
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = c.tlsConfig()
		return &http.Client{Transport: tr}
	}
	return http.DefaultClient
}

// tlsConfig verifies the server's certificate against the system's CAs
// and, when that fails and the client has a known_servers file, against
// the fingerprint pinned there (pinning it on first use).
func (c *transport) tlsConfig() *tls.Config {
	host, _, _ := net.SplitHostPort(c.target.host)
	if c.pins == nil {
		return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return &tls.Config{
		ServerName: host,
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's: CA first, then the pin.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			opts := x509.VerifyOptions{DNSName: host, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err == nil {
				return nil
			}
			return c.pins.check(c.target.host, cs.PeerCertificates[0].Raw)
		},
	}
}

// Fingerprint names a certificate by the SHA-256 of its DER bytes, as the
// daemon logs it: SHA256:<hex>.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// PinError is a server whose certificate is not the one pinned for it.
type PinError struct {
	Server string // host:port
	Want   string // the pinned fingerprint
	Got    string // the certificate's
	File   string // the known_servers file that pins it
}

func (e *PinError) Error() string {
	return fmt.Sprintf("the certificate of %s has changed: it is %s, but %s pins %s. "+
		"This may be someone between you and the server. If the server's certificate was replaced on purpose, delete the line of %s from %s",
		e.Server, e.Got, e.File, e.Want, e.Server, e.File)
}

// knownServers is a file of pinned fingerprints, one "host:port SHA256:hex"
// line per server (# starts a comment).
type knownServers struct {
	file    string
	trusted func(server, fingerprint string)
	mu      sync.Mutex
}

// check accepts der for server when it matches the pinned fingerprint,
// pins it when none is pinned (trust on first use) and refuses it
// otherwise.
func (k *knownServers) check(server string, der []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	got := Fingerprint(der)
	want, err := k.lookup(server)
	if err != nil {
		return err
	}
	switch {
	case want == got:
		return nil
	case want != "":
		return &PinError{Server: server, Want: want, Got: got, File: k.file}
	}
	if err := k.add(server, got); err != nil {
		return err
	}
	if k.trusted != nil {
		k.trusted(server, got)
	}
	return nil
}

func (k *knownServers) lookup(server string) (string, error) {
	f, err := os.Open(k.file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("known servers: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && !strings.HasPrefix(fields[0], "#") && fields[0] == server {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("known servers %s: %w", k.file, err)
	}
	return "", nil
}

func (k *knownServers) add(server, fingerprint string) error {
	if err := os.MkdirAll(filepath.Dir(k.file), 0o700); err != nil {
		return fmt.Errorf("known servers: %w", err)
	}
	f, err := os.OpenFile(k.file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("known servers: %w", err)
	}
	_, werr := fmt.Fprintf(f, "%s %s %s\n", server, fingerprint, time.Now().UTC().Format(time.RFC3339))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("known servers %s: %w", k.file, werr)
	}
	return nil
}

// KnownServersFile is where the CLI keeps the fingerprints it pinned:
// known_servers in configDir/stagehand (configDir: $XDG_CONFIG_HOME, else
// $HOME/.config).
func KnownServersFile(getenv func(string) string) (string, error) {
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set: nowhere to keep known servers")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "stagehand", "known_servers"), nil
}
