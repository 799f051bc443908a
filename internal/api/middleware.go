package api

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

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
			level := slog.LevelInfo
			if (r.Method == http.MethodGet || r.Method == http.MethodHead) && rec.status < 400 {
				level = slog.LevelDebug
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
