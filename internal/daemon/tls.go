package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSDir holds, inside the data dir, the certificate the daemon makes at
// its first start when a non-loopback --listen has no --tls-cert.
const TLSDir = "tls"

// Files of the self-signed certificate in TLSDir.
const (
	selfSignedCert = "cert.pem"
	selfSignedKey  = "key.pem"
)

// selfSignedLifetime is long because clients pin the certificate, not a
// CA: a new one makes every client refuse the server until its pin is
// removed by hand.
const selfSignedLifetime = 10 * 365 * 24 * time.Hour

// Fingerprint is how the daemon's log and the client's known_servers file
// name a certificate: SHA256: and the hex SHA-256 of its DER bytes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// serverCertificate is the certificate of the TCP listener: the one given
// with --tls-cert/--tls-key, or the self-signed one in DATA/tls, made the
// first time it is needed.
func serverCertificate(cfg Config, dataDir, listenHost string, log *slog.Logger) (tls.Certificate, error) {
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		log.Info("TLS certificate", "cert", cfg.TLSCert, "fingerprint", Fingerprint(cert.Certificate[0]))
		return cert, nil
	}
	dir := filepath.Join(dataDir, TLSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS dir: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, selfSignedCert), filepath.Join(dir, selfSignedKey)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case err == nil:
		log.Info("TLS certificate: self-signed, made at the first start; clients pin it on first use",
			"cert", certPath, "fingerprint", Fingerprint(cert.Certificate[0]))
		return cert, nil
	case !errors.Is(err, fs.ErrNotExist):
		return tls.Certificate{}, fmt.Errorf("self-signed certificate in %s: %w (remove both files to make a new one; clients will then refuse it until their pin is removed)", dir, err)
	}
	cert, err = makeSelfSigned(certPath, keyPath, listenHost)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate in %s: %w", dir, err)
	}
	log.Warn("TLS certificate: made a self-signed one; clients pin it on first use, so compare this fingerprint with the one they print",
		"cert", certPath, "fingerprint", Fingerprint(cert.Certificate[0]))
	return cert, nil
}

// makeSelfSigned writes a new ECDSA P-256 key (0600) and a self-signed
// certificate for listenHost, the host's name and localhost.
func makeSelfSigned(certPath, keyPath, listenHost string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	hostname, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Stagehand"}, CommonName: "stagehand " + hostname},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	addName := func(name string) {
		if name == "" {
			return
		}
		if ip := net.ParseIP(name); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			return
		}
		for _, have := range tmpl.DNSNames {
			if have == name {
				return
			}
		}
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	for _, n := range []string{listenHost, hostname, "localhost", "127.0.0.1", "::1"} {
		addName(n)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	// The key first: a certificate without its key would be loaded as a
	// broken pair at the next start.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

// writeNew writes b to path, 0600, through a temporary file renamed into
// place so that a crash leaves no half-written file.
func writeNew(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
