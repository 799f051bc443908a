package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

// recoveryRetryAfter is the Retry-After of a write refused while the
// daemon recovers.
const recoveryRetryAfter = 5 * time.Second

// Daemon describes the process serving the API, for GET /status.
type Daemon struct {
	Version   string
	Started   time.Time
	StoreKind string // "sqlite"
	StorePath string
}

// SetDaemon sets what GET /status says about the daemon. Call it before
// serving.
func (h *Handler) SetDaemon(d Daemon) { h.status.daemon = d }

// recovery is the daemon's recovery of interrupted operations, which runs
// while the API already answers reads.
type recovery struct {
	began time.Time
	done  chan struct{}
	mu    sync.Mutex
	err   error
}

// wait reports whether recovery is done, waiting up to max (and while ctx
// lasts) for it.
func (r *recovery) wait(ctx context.Context, max time.Duration) bool {
	select {
	case <-r.done:
		return true
	default:
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-r.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// state reports whether writes are accepted (always without a recovery),
// and the error of a recovery that did not undo everything.
func (r *recovery) state() (done bool, err error) {
	if r == nil {
		return true, nil
	}
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return true, r.err
	default:
		return false, nil
	}
}

// StartRecovery holds every state-changing request (anything but GET, HEAD
// and OPTIONS) until the returned finish is called with the recovery's
// outcome; reads are served meanwhile. Without it, writes are accepted at
// once. Call it before serving.
func (h *Handler) StartRecovery() (finish func(error)) {
	r := &recovery{began: time.Now(), done: make(chan struct{})}
	h.recovery = r
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			close(r.done)
		})
	}
}

// statusHandler serves the daemon's health, readiness and status.
type statusHandler struct {
	*env
	lab    Checks
	daemon Daemon // see Handler.SetDaemon
}

// register adds the status routes. /healthz answers as soon as the daemon
// listens, /readyz once it accepts writes (recovery done); both are
// public, for probes that hold no credentials.
func (h *statusHandler) register(r *router) {
	p := wire.APIPrefix
	r.public("GET /healthz", h.health)
	r.public("GET "+p+"/healthz", h.health)
	r.public("GET /readyz", h.ready)
	r.public("GET "+p+"/readyz", h.ready)
	r.route("GET "+p+"/status", auth.StatusRead, noObject, h.status)
}

func (h *statusHandler) health(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
}

// ready answers GET /readyz: 200 once the daemon accepts writes, 503 while
// it still recovers.
func (h *statusHandler) ready(w http.ResponseWriter, r *http.Request) error {
	if ok, _ := h.recovery.state(); !ok {
		w.Header().Set("Retry-After", "1")
		return errdefs.Unavailable("recovering interrupted operations (for %s)", time.Since(h.recovery.began).Round(time.Second))
	}
	return writeJSON(w, http.StatusOK, wire.Ready{Status: "ready"})
}

// status answers GET /status: version, uptime, accelerator, store, data
// dir, counts and recovery.
func (h *statusHandler) status(w http.ResponseWriter, r *http.Request) error {
	v, err := h.lab.Status(r.Context())
	if err != nil {
		return err
	}
	s := statusToWire(v, h.daemon, time.Now())
	done, rerr := h.recovery.state()
	s.Recovered = done
	if rerr != nil {
		s.RecoveryError = rerr.Error()
	}
	return writeJSON(w, http.StatusOK, s)
}

func statusToWire(v *lab.StatusView, d Daemon, now time.Time) wire.Status {
	s := wire.Status{
		Version:   d.Version,
		StartedAt: d.Started,
		Store:     wire.Store{Kind: d.StoreKind, Path: d.StorePath},
		DataDir:   v.DataDir,
		Counts: wire.Counts{
			Templates:      v.Templates,
			Networks:       v.Networks,
			Configs:        v.Configs,
			LibraryEntries: v.LibraryEntries,
			Deployed:       v.Deployed,
			RunningVMs:     v.RunningVMs,
		},
		Accel: wire.Accel{Reason: v.Accel.Reason, Cached: v.Accel.Cached},
	}
	if !d.Started.IsZero() {
		s.UptimeSeconds = seconds(now.Sub(d.Started))
	}
	if v.Accel.Ready() {
		s.Accel.State, s.Accel.Accel = wire.AccelReady, v.Accel.Accel
		s.Accel.ProbeSeconds = seconds(v.Accel.Took)
	} else {
		s.Accel.State = wire.AccelProbing
		s.Accel.ProbingSeconds = seconds(now.Sub(v.Accel.Since))
	}
	return s
}

// seconds rounds d to milliseconds, as seconds.
func seconds(d time.Duration) float64 {
	f, _ := strconv.ParseFloat(fmt.Sprintf("%.3f", d.Seconds()), 64)
	return f
}
