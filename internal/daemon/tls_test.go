package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"stagehand/internal/syncbuf"
)

func TestParseListen(t *testing.T) {
	for _, tt := range []struct {
		listen, network string
		loopback        bool
	}{
		{"127.0.0.1:7480", "tcp4", true},
		{"127.0.0.2:0", "tcp4", true},
		{"[::1]:7480", "tcp6", true},
		{"localhost:7480", "tcp", true},
		{"0.0.0.0:7480", "tcp4", false}, // IPv4 only, not dual stack
		{"[::]:7480", "tcp6", false},
		{":7480", "tcp", false},
		{"192.168.1.5:7480", "tcp4", false},
		{"lab.example:7480", "tcp", false}, // a name may resolve anywhere
	} {
		a, err := parseListen(tt.listen)
		if err != nil || a.network != tt.network || a.loopback != tt.loopback {
			t.Errorf("parseListen(%q) = %+v, %v; want network %s, loopback %v", tt.listen, a, err, tt.network, tt.loopback)
		}
	}
}

// TestSelfSignedCertificate makes the certificate of a non-loopback
// listener in DATA/tls (0700; key 0600) for the listen address, the host's
// name and localhost, and uses the same one at the next start.
func TestSelfSignedCertificate(t *testing.T) {
	data := t.TempDir()
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cert, err := serverCertificate(Config{}, data, "192.0.2.7", log)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	hostname, _ := os.Hostname()
	if !slices.Contains(leaf.DNSNames, hostname) || !slices.Contains(leaf.DNSNames, "localhost") ||
		!slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("192.0.2.7")) }) {
		t.Errorf("SANs %v %v, want 192.0.2.7, %s and localhost", leaf.DNSNames, leaf.IPAddresses, hostname)
	}
	for path, mode := range map[string]os.FileMode{
		filepath.Join(data, TLSDir):                 0o700 | os.ModeDir,
		filepath.Join(data, TLSDir, selfSignedKey):  0o600,
		filepath.Join(data, TLSDir, selfSignedCert): 0o600,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v %v, want %s", path, fi.Mode(), err, mode)
		}
	}
	fp := Fingerprint(cert.Certificate[0])
	if !strings.Contains(logs.String(), "fingerprint="+fp) {
		t.Errorf("the log does not show the fingerprint %s:\n%s", fp, logs)
	}
	again, err := serverCertificate(Config{}, data, "192.0.2.7", log)
	if err != nil || Fingerprint(again.Certificate[0]) != fp {
		t.Errorf("second start: %v, a new certificate", err)
	}
}

// TestServeTLSWithAGivenCertificate serves HTTPS on loopback when
// --tls-cert is given: a TLS client gets that certificate, whose
// fingerprint the log shows, and plain HTTP gets no answer.
func TestServeTLSWithAGivenCertificate(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	cert, err := makeSelfSigned(certFile, keyFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	d := runDaemon(t, slog.LevelInfo, func(c *Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	fp := Fingerprint(cert.Certificate[0])
	if !strings.Contains(d.logs.String(), "url=https://"+d.addr) || !strings.Contains(d.logs.String(), "fingerprint="+fp) {
		t.Errorf("log lacks the https URL or fingerprint %s:\n%s", fp, d.logs)
	}
	conn, err := tls.Dial("tcp", d.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	got := Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
	conn.Close()
	if got != fp {
		t.Errorf("served certificate %s, want %s", got, fp)
	}
	plain, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	io.WriteString(plain, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(plain)
	if strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Errorf("plain HTTP answered: %q", b)
	}
}
