package daemon

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"stagehand/internal/errdefs"
)

// tcpAddress is a --listen address as the daemon reads it.
type tcpAddress struct {
	host     string
	network  string // tcp4 for an IPv4 literal, tcp6 for an IPv6 one, else tcp
	loopback bool
}

// parseListen reads --listen. Only localhost and loopback literals are
// loopback: any other name may resolve elsewhere, so it gets TLS.
func parseListen(listen string) (tcpAddress, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return tcpAddress{}, errdefs.Invalid("--listen %q is not host:port: %v", listen, err)
	}
	a := tcpAddress{host: host, network: "tcp", loopback: host == "localhost"}
	if ip := net.ParseIP(host); ip != nil {
		// A literal binds its own family only: with "tcp", 0.0.0.0 would
		// also bind every IPv6 address (dual stack).
		a.network = "tcp6"
		if ip.To4() != nil {
			a.network = "tcp4"
		}
		a.loopback = ip.IsLoopback()
	}
	return a, nil
}

// listenTCP listens on --listen. A loopback address serves plain HTTP: it
// is as local as the unix socket, reachable from this host only (requests
// over it still need a token once the API checks them). Any other address
// serves HTTPS only, with --tls-cert/--tls-key or a self-signed
// certificate (serverCertificate); so does loopback when --tls-cert is
// given. tlsConf is nil for plain HTTP.
func listenTCP(cfg Config, dataDir string, log *slog.Logger) (ln net.Listener, tlsConf *tls.Config, err error) {
	a, err := parseListen(cfg.Listen)
	if err != nil {
		return nil, nil, err
	}
	if a.loopback && cfg.TLSCert == "" {
		ln, err := net.Listen(a.network, cfg.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		return ln, nil, nil
	}
	cert, err := serverCertificate(cfg, dataDir, a.host, log)
	if err != nil {
		return nil, nil, err
	}
	ln, err = net.Listen(a.network, cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	switch {
	case a.host == "":
		log.Warn("listening on every IPv4 and IPv6 address (HTTPS)", "listen", cfg.Listen)
	case net.ParseIP(a.host) != nil && net.ParseIP(a.host).Equal(net.IPv4zero):
		log.Warn("listening on every IPv4 address only (HTTPS); for IPv6 too, --listen [::]:PORT", "listen", cfg.Listen)
	case net.ParseIP(a.host) != nil && net.ParseIP(a.host).Equal(net.IPv6unspecified):
		log.Warn("listening on every IPv6 address only (HTTPS)", "listen", cfg.Listen)
	}
	// HTTP/1.1 only: the console is an HTTP/1.1 upgrade.
	tlsConf = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	return ln, tlsConf, nil
}
