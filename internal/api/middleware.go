package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"stagehand/internal/api/wire"
)

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack hands the connection over (console upgrades); the handler then
// writes 101 itself, so that is the status logged.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// logRequests logs every request with its status and duration, and turns a
// panic into a logged 500. Reads that succeed are logged at debug level so
// that clients polling jobs do not flood the log.
func (h *Handler) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if rec.status == 0 {
					_ = writeJSON(rec, http.StatusInternalServerError, wire.Error{Error: "internal error (see the daemon log)", Kind: wire.KindInternal})
				}
			}
			_, route := h.mux.Handler(r) // the pattern, never the raw path: one series per route
			h.metrics.observe(route, rec.status, time.Since(start))
			level := slog.LevelInfo
			switch {
			case (r.Method == http.MethodGet || r.Method == http.MethodHead) && rec.status < 400:
				level = slog.LevelDebug
			case rec.status == StatusClientClosedRequest:
				level = slog.LevelDebug // the client went away: nothing to act on
			}
			h.log.Log(r.Context(), level, "request",
				"method", r.Method,
				"path", r.URL.RequestURI(),
				"status", rec.status,
				"bytes", rec.bytes,
				"duration", time.Since(start).Round(time.Microsecond),
				"remote", r.RemoteAddr)
		}()
		next.ServeHTTP(rec, r)
	})
}

// Limits bound what one client can hold of the daemon: time to send a
// request, time to take a response, idle connections, connections at once
// and idle console sessions.
type Limits struct {
	// HeaderTimeout bounds the request line and headers.
	HeaderTimeout time.Duration
	// BodyTimeout bounds a request's body, counted from the start of the
	// request. Bodies are JSON of at most maxBody bytes; a client that
	// trickles one is answered 408 and disconnected.
	BodyTimeout time.Duration
	// WriteTimeout bounds a response, counted from the end of its request
	// (a deploy answers once its VMs run). Streams (log follows, event
	// streams, long-polled job waits) have no overall bound; each of their
	// writes gets StreamWriteTimeout instead.
	WriteTimeout       time.Duration
	StreamWriteTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection between two requests.
	IdleTimeout time.Duration
	// MaxConns caps the connections served at once; further ones wait in
	// the listen backlog until one closes.
	MaxConns int
	// ConsoleIdle ends a console session in which no byte went either way
	// for that long, so that an abandoned one frees the VM's console.
	ConsoleIdle time.Duration
	// RecoveryWait bounds how long a state-changing request waits for the
	// daemon's recovery (see Handler.StartRecovery) before it is answered
	// 503 with Retry-After.
	RecoveryWait time.Duration
}

// DefaultLimits are the daemon's limits.
var DefaultLimits = Limits{
	HeaderTimeout:      10 * time.Second,
	BodyTimeout:        30 * time.Second,
	WriteTimeout:       5 * time.Minute,
	StreamWriteTimeout: time.Minute,
	IdleTimeout:        2 * time.Minute,
	MaxConns:           256,
	ConsoleIdle:        30 * time.Minute,
	RecoveryWait:       10 * time.Second,
}

// NewServer returns the http.Server of h with lim (which h also applies to
// request bodies, streams and consoles). Serve it on LimitListener(ln,
// lim.MaxConns). Call it before serving.
func NewServer(h *Handler, lim Limits, log *slog.Logger) *http.Server {
	h.limits = lim
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.HeaderTimeout,
		// No ReadTimeout: past it, net/http cancels the context of a
		// request still being served (a deploy). Bodies get their own
		// deadline in readBody instead.
		WriteTimeout: lim.WriteTimeout,
		IdleTimeout:  lim.IdleTimeout,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	srv.RegisterOnShutdown(h.Drain)
	return srv
}

// LimitListener accepts at most n connections at once from ln (n <= 0:
// no cap).
func LimitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, n)
}

// readBody reads a request's body whole, within limits.BodyTimeout of the
// request's start, before the handler runs; then it lifts the read
// deadline, so that a long handler is not cut off. A body that does not
// arrive in time is answered 408 and its connection closed.
func (h *Handler) readBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An upload's body is a file its handler streams (uploads.go).
		if r.Body == nil || r.Body == http.NoBody || h.limits.BodyTimeout <= 0 || isConsoleUpgrade(r) || isUpload(r) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(h.limits.BodyTimeout))
		// One byte more than maxBody, so that decode still says "too
		// large" rather than seeing a cut JSON value.
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		_ = rc.SetReadDeadline(time.Time{})
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				w.Header().Set("Connection", "close")
				_ = writeJSON(w, http.StatusRequestTimeout, wire.Error{
					Error: fmt.Sprintf("request body not received within %s", h.limits.BodyTimeout),
					Kind:  wire.KindInvalid,
				})
				return
			}
			w.Header().Set("Connection", "close")
			_ = writeJSON(w, http.StatusBadRequest, wire.Error{Error: fmt.Sprintf("read request body: %v", err), Kind: wire.KindInvalid})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// streamWriter replaces the server's write timeout for a streaming answer
// with a deadline per write: a stream may last as long as its client
// reads, but a client that stops reading is cut off.
type streamWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func newStreamWriter(w http.ResponseWriter, timeout time.Duration) *streamWriter {
	s := &streamWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
	_ = s.rc.SetWriteDeadline(time.Time{})
	return s
}

func (s *streamWriter) extend() { _ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) }

func (s *streamWriter) WriteHeader(code int) {
	s.extend()
	s.ResponseWriter.WriteHeader(code)
}

func (s *streamWriter) Write(b []byte) (int, error) {
	s.extend()
	return s.ResponseWriter.Write(b)
}

func (s *streamWriter) FlushError() error {
	s.extend()
	return s.rc.Flush()
}

func (s *streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// holdWrites makes a state-changing request wait while the daemon recovers
// the operations a previous run left half done; reads go through. The wait
// is bounded by the request's context and by limits.RecoveryWait, past
// which the answer is 503 with Retry-After.
func (h *Handler) holdWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		rec := h.recovery
		if rec == nil || rec.wait(r.Context(), h.limits.RecoveryWait) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(recoveryRetryAfter/time.Second)))
		_ = writeJSON(w, http.StatusServiceUnavailable, wire.Error{
			Error: fmt.Sprintf("the daemon is recovering interrupted operations (for %s); this request changes state and must wait: retry in a few seconds",
				time.Since(rec.began).Round(time.Second)),
			Kind: wire.KindUnavailable,
		})
	})
}

// hostCheck is the set of host names the API answers to. A browser
// tricked by DNS rebinding sends the attacker's name as Host, so any name
// not listed is refused; IP literals pass (rebinding needs a name).
type hostCheck struct {
	names map[string]bool // lower case, no port
}

func newHostCheck() *hostCheck {
	return &hostCheck{names: map[string]bool{"localhost": true}}
}

// SetAllowedHosts adds names (host or host:port; the daemon's --listen
// host and serve --allowed-host) to those the API answers to besides IP
// literals and localhost. Call it before serving.
func (h *Handler) SetAllowedHosts(names ...string) {
	for _, n := range names {
		if host, _, err := net.SplitHostPort(n); err == nil {
			n = host
		}
		n = strings.ToLower(strings.Trim(n, "[]"))
		if n != "" {
			h.hosts.names[n] = true
		}
	}
}

// allows reports whether a request's Host header names this server.
func (c *hostCheck) allows(hostport string) bool {
	if hostport == "" {
		return true // HTTP/1.0 without Host: no browser sends that
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	return net.ParseIP(host) != nil || c.names[host] || strings.HasSuffix(host, ".localhost")
}

// browserSafe refuses what a web page in the user's browser could make
// the browser send: a request under a host name that is not this
// server's (DNS rebinding, 421), a state-changing request from another
// origin (http.CrossOriginProtection: Sec-Fetch-Site, else Origin against
// Host; 403), and a console upgrade from another origin (403; an upgrade
// is a GET, which CrossOriginProtection lets through).
func (h *Handler) browserSafe(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = writeJSON(w, http.StatusForbidden, wire.Error{
			Error: fmt.Sprintf("cross-origin %s refused: a web page of another site may not change state here (Origin %q, Sec-Fetch-Site %q)",
				r.Method, r.Header.Get("Origin"), r.Header.Get("Sec-Fetch-Site")),
			Kind: wire.KindForbidden,
		})
	}))
	protected := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.hosts.allows(r.Host) {
			w.Header().Set("Connection", "close")
			_ = writeJSON(w, http.StatusMisdirectedRequest, wire.Error{
				Error: fmt.Sprintf("host %q is not a name of this server (a DNS rebinding attempt?); serve --allowed-host NAME allows it", printableHost(r.Host)),
				Kind:  wire.KindForbidden,
			})
			return
		}
		if isConsoleUpgrade(r) && crossOrigin(r) {
			_ = writeJSON(w, http.StatusForbidden, wire.Error{
				Error: fmt.Sprintf("console upgrade from origin %q refused: only the server's own origin may open a console", r.Header.Get("Origin")),
				Kind:  wire.KindForbidden,
			})
			return
		}
		protected.ServeHTTP(w, r)
	})
}

// crossOrigin reports whether a browser says r comes from another site
// or origin. Clients that are not browsers send neither header.
func crossOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// printableHost cuts a Host header for a message.
func printableHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "…"
	}
	return strings.ToValidUTF8(h, "?")
}
