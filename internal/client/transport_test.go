package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// serveUnix serves h on a unix socket in a temporary directory (dir, when
// not empty) until the test ends, and returns the socket's path.
func serveUnix(t *testing.T, dir string, h http.Handler) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	sock := filepath.Join(dir, "stagehand.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestUnixSocket drives the real API over a unix socket with a token: the
// requests arrive with the token as a bearer credential and the socket's
// host, and no X-Stagehand-User header; a missing socket is unavailable,
// naming the socket.
func TestUnixSocket(t *testing.T) {
	l := apitest.New(t)
	_, h := apitest.ServeStrict(t, l)
	tok := l.AdminToken(t)
	var auth, host, user atomic.Value
	sock := serveUnix(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		host.Store(r.Host)
		user.Store(r.Header.Get("X-Stagehand-User"))
		h.ServeHTTP(w, r)
	}))
	c := client.New("unix://"+sock, client.WithToken(tok))
	if c.BaseURL() != "unix://"+sock {
		t.Errorf("BaseURL = %q", c.BaseURL())
	}
	ctx := context.Background()
	if err := c.Server().Health(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := c.Networks().Create(ctx, wire.NetworkRequest{Name: "lan", Subnet: "10.0.0.0/24", Pools: []string{"10.0.0.10-10.0.0.20"}})
	if err != nil || n.Name != "lan" {
		t.Fatalf("CreateNetwork over the socket = %+v, %v", n, err)
	}
	if _, err := c.Networks().Get(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("GetNetwork nope = %v, want not found", err)
	}
	if auth.Load() != "Bearer "+tok || host.Load() != "localhost" || user.Load() != "" {
		t.Errorf("request had Authorization %q, Host %q, X-Stagehand-User %q", auth.Load(), host.Load(), user.Load())
	}

	gone := client.New("unix://" + filepath.Join(t.TempDir(), "stagehand.sock"))
	if err := gone.Server().Health(ctx); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no socket there") {
		t.Errorf("missing socket: %v", err)
	}
}

// TestUnixSocketWithALongPath reaches a socket whose path is longer than a
// sockaddr holds (108 bytes).
func TestUnixSocketWithALongPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The server binds through its directory, as the daemon does.
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() }) // after the server's close, which unlinks through it
	short := filepath.Join("/proc/self/fd", strconv.Itoa(int(d.Fd())))
	serveUnix(t, short, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"ok"}`) }))
	sock := filepath.Join(dir, "stagehand.sock")
	if len(sock) <= 108 {
		t.Fatalf("socket path %d bytes: not long", len(sock))
	}
	if err := client.New("unix://" + sock).Server().Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestServerURLs(t *testing.T) {
	for _, bad := range []string{"ftp://host:21", "unix://relative/path", "https://host:1/some/path"} {
		if err := client.New(bad).Server().Health(context.Background()); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("New(%q).Health = %v, want invalid", bad, err)
		}
	}
}

// TestTLSPinOnFirstUse: a server whose certificate no CA vouches for is
// refused without a known_servers file; with one, its fingerprint is
// pinned on first use (reported once, written 0600) and accepted again;
// a different certificate at the same address is then refused with an
// error that names the file to edit, and the file keeps the first pin.
func TestTLSPinOnFirstUse(t *testing.T) {
	ctx := context.Background()
	health := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	first := httptest.NewTLSServer(health)
	addr := first.Listener.Addr().String()
	server := "https://" + addr

	if err := client.New(server).Server().Health(ctx); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without known servers: %v, want a refused certificate", err)
	}

	file := filepath.Join(t.TempDir(), "config", "stagehand", "known_servers")
	var trusted []string
	c := client.New(server, client.WithKnownServers(file, func(s, fp string) { trusted = append(trusted, s+" "+fp) }))
	if err := c.Server().Health(ctx); err != nil {
		t.Fatalf("first use: %v", err)
	}
	want := addr + " " + client.Fingerprint(first.Certificate().Raw)
	if len(trusted) != 1 || trusted[0] != want {
		t.Fatalf("trusted %q, want [%q]", trusted, want)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("known_servers: %v %v, want 0600", fi, err)
	}
	pinned, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(pinned), want+" ") {
		t.Errorf("known_servers = %q, want a line starting %q", pinned, want)
	}
	// A new client (a new CLI run) trusts the pin without asking again.
	if err := client.New(server, client.WithKnownServers(file, func(s, fp string) { trusted = append(trusted, s) })).Server().Health(ctx); err != nil || len(trusted) != 1 {
		t.Fatalf("second use: %v, trusted %q", err, trusted)
	}
	first.Close()

	// Another certificate at the same address.
	second := httptest.NewUnstartedServer(health)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	second.Listener.Close()
	second.Listener = ln
	second.TLS = &tls.Config{Certificates: []tls.Certificate{newCert(t)}}
	second.StartTLS()
	t.Cleanup(second.Close)
	if client.Fingerprint(second.Certificate().Raw) == client.Fingerprint(first.Certificate().Raw) {
		t.Fatal("the second server has the first one's certificate")
	}
	err = client.New(server, client.WithKnownServers(file, func(s, fp string) { trusted = append(trusted, s) })).Server().Health(ctx)
	var pe *client.PinError
	if !errors.As(err, &pe) || pe.File != file || pe.Server != addr ||
		pe.Got != client.Fingerprint(second.Certificate().Raw) || !strings.Contains(err.Error(), "delete the line of "+addr+" from "+file) {
		t.Fatalf("changed certificate: %v, want a pin error naming %s", err, file)
	}
	if after, _ := os.ReadFile(file); string(after) != string(pinned) || len(trusted) != 1 {
		t.Errorf("known_servers changed to %q (trusted %q)", after, trusted)
	}
}

// newCert is a fresh self-signed certificate for 127.0.0.1.
func newCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestVMConsoleOverSocketAndTLS attaches to a console over a unix socket
// and over TLS with a pinned certificate: the upgrade request carries the
// token, and bytes flow both ways.
func TestVMConsoleOverSocketAndTLS(t *testing.T) {
	echo := func(auth *atomic.Value) func(net.Conn, *http.Request) {
		return func(conn net.Conn, req *http.Request) {
			auth.Store(req.Header.Get("Authorization"))
			io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+wire.ConsoleProtocol+"\r\n\r\n")
			io.Copy(conn, conn)
		}
	}
	sock := filepath.Join(t.TempDir(), "stagehand.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(t.TempDir(), "known_servers")
	for _, tc := range []struct {
		name   string
		ln     net.Listener
		server string
	}{
		{"unix", uln, "unix://" + sock},
		{"tls", tls.NewListener(tln, &tls.Config{Certificates: []tls.Certificate{newCert(t)}}), "https://" + tln.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var auth atomic.Value
			rawServerOn(t, tc.ln, echo(&auth))
			conn, err := client.New(tc.server, client.WithToken("tok"), client.WithKnownServers(known, nil)).VMs().Console(context.Background(), "web", "vm1")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(conn, "ping")
			got := make([]byte, 4)
			if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			if auth.Load() != "Bearer tok" {
				t.Errorf("Authorization = %q", auth.Load())
			}
		})
	}
}
