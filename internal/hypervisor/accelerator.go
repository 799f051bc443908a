package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// States of an Accelerator.
const (
	AccelProbing = "probing" // the probe runs; Wait blocks
	AccelReady   = "ready"   // Accel and Reason are final
)

// DefaultProbeTimeout bounds the boot of the probe guest: a KVM that hangs
// silently costs this much once, then TCG is chosen (and cached).
const DefaultProbeTimeout = 30 * time.Second

// probeGrace is how long past its timeout a probe may take to clean up
// (kill its QEMU) before the Accelerator stops waiting for it.
const probeGrace = 15 * time.Second

// AccelStatus is where the choice of accelerator stands.
type AccelStatus struct {
	State  string    // AccelProbing or AccelReady
	Accel  string    // AccelKVM or AccelTCG once ready
	Reason string    // why Accel was chosen, or what the probe does
	Since  time.Time // when the probe began (zero when nothing was probed)
	Took   time.Duration
	Cached bool // the result was read from the probe cache
}

// Ready reports whether the choice is made.
func (s AccelStatus) Ready() bool { return s.State == AccelReady }

// ProbeFunc decides between KVM and TCG. It honours ctx (whose deadline is
// the probe's timeout). An error means it could not decide; the
// Accelerator then falls back to TCG without caching that.
type ProbeFunc func(ctx context.Context) (accel, reason string, err error)

// AccelConfig configures a probing Accelerator.
type AccelConfig struct {
	// Probe decides; see BootProbe for the real one.
	Probe ProbeFunc
	// Timeout bounds Probe; past it (and a grace to clean up) the choice
	// is TCG. 0 means DefaultProbeTimeout.
	Timeout time.Duration
	// CacheFile keeps the result across restarts, under Key; empty
	// disables the cache.
	CacheFile string
	// Key identifies what the result depends on (see HostProbeKey); a
	// cached result under another key is probed again. Nil means no cache.
	Key func(ctx context.Context) (ProbeKey, error)
	Log *slog.Logger
}

// Accelerator is the daemon's choice of accelerator for VMs. The probe
// that makes it can take long (a KVM guest that never boots), so it runs
// in the background: Status answers at once, Wait blocks until the choice
// is made. It is safe for concurrent use.
type Accelerator struct {
	mu     sync.Mutex
	status AccelStatus
	ready  chan struct{} // closed when status is final

	cancel context.CancelFunc
	done   chan struct{} // closed when the probe goroutine has returned
}

// FixedAccelerator returns an Accelerator that is ready at once with accel.
func FixedAccelerator(accel, reason string) *Accelerator {
	a := &Accelerator{
		status: AccelStatus{State: AccelReady, Accel: accel, Reason: reason},
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		cancel: func() {},
	}
	close(a.ready)
	close(a.done)
	return a
}

// StartAccelerator begins choosing in the background and returns at once:
// from the cache when its key still matches, else by running the probe.
// Close stops a probe still running.
func StartAccelerator(cfg AccelConfig) *Accelerator {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultProbeTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Accelerator{
		status: AccelStatus{State: AccelProbing, Reason: "probing whether a guest boots under KVM", Since: time.Now()},
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		cancel: cancel,
	}
	go func() {
		defer close(a.done)
		a.choose(ctx, cfg)
	}()
	return a
}

// Status returns the choice, or that it is still being probed.
func (a *Accelerator) Status() AccelStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Wait returns the choice once it is made, or ctx's error.
func (a *Accelerator) Wait(ctx context.Context) (AccelStatus, error) {
	select {
	case <-a.ready:
		return a.Status(), nil
	case <-ctx.Done():
		return a.Status(), ctx.Err()
	}
}

// Close stops a probe in progress (its QEMU is killed) and waits for it.
// A status still probing becomes TCG, "probe stopped".
func (a *Accelerator) Close() {
	a.cancel()
	<-a.done
}

func (a *Accelerator) finish(s AccelStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status.State == AccelReady {
		return
	}
	s.State, s.Since = AccelReady, a.status.Since
	if !s.Since.IsZero() && s.Took == 0 {
		s.Took = time.Since(s.Since)
	}
	a.status = s
	close(a.ready)
}

// choose reads the cache or probes, and caches what the probe decided.
func (a *Accelerator) choose(ctx context.Context, cfg AccelConfig) {
	log := cfg.Log
	var key ProbeKey
	useCache := cfg.CacheFile != "" && cfg.Key != nil
	if useCache {
		kctx, kcancel := context.WithTimeout(ctx, 10*time.Second)
		k, err := cfg.Key(kctx)
		kcancel()
		if err != nil {
			log.Warn("accelerator probe cache not used: cannot tell what the result depends on", "err", err)
			useCache = false
		} else {
			key = k
			if c, err := readProbeCache(cfg.CacheFile); err != nil {
				log.Warn("accelerator probe cache unreadable; probing again", "file", cfg.CacheFile, "err", err)
			} else if c != nil && c.Key == key {
				log.Info("accelerator from the probe cache", "accel", c.Accel, "reason", c.Reason, "file", cfg.CacheFile)
				a.finish(AccelStatus{
					Accel:  c.Accel,
					Reason: fmt.Sprintf("%s (probed %s, cached in %s; delete it to probe again)", c.Reason, c.ProbedAt.Local().Format("2006-01-02 15:04"), cfg.CacheFile),
					Cached: true,
				})
				return
			} else if c != nil {
				log.Info("accelerator probe cache is for another host state; probing again", "cached", c.Key, "now", key)
			}
		}
	}

	log.Info("accelerator probe started", "timeout", cfg.Timeout)
	began := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, cfg.Timeout)
	defer pcancel()
	type result struct {
		accel, reason string
		err           error
	}
	out := make(chan result, 1)
	go func() {
		accel, reason, err := cfg.Probe(pctx)
		out <- result{accel, reason, err}
	}()
	bound := time.NewTimer(cfg.Timeout + probeGrace)
	defer bound.Stop()
	var r result
	select {
	case r = <-out:
	case <-bound.C:
		// The probe ignores its deadline: stop waiting for it (its
		// context is cancelled) and run with TCG.
		r.err = fmt.Errorf("probe did not return within %s", cfg.Timeout+probeGrace)
	}
	took := time.Since(began)
	switch {
	case ctx.Err() != nil:
		// Stopped by Close: the outcome proves nothing about the host.
		a.finish(AccelStatus{Accel: AccelTCG, Reason: "accelerator probe stopped before it decided"})
		return
	case r.err == nil && r.accel != AccelKVM && r.accel != AccelTCG:
		r.err = fmt.Errorf("probe answered unknown accelerator %q", r.accel)
	}
	if r.err != nil {
		if errors.Is(r.err, context.DeadlineExceeded) {
			r.err = fmt.Errorf("no answer within %s: %w", cfg.Timeout, r.err)
		}
		log.Warn("accelerator probe failed; using TCG", "err", r.err, "took", took.Round(time.Millisecond))
		a.finish(AccelStatus{Accel: AccelTCG, Reason: fmt.Sprintf("accelerator probe failed (%v); using TCG", r.err), Took: took})
		return
	}
	log.Info("accelerator chosen", "accel", r.accel, "reason", r.reason, "took", took.Round(time.Millisecond))
	if useCache {
		c := probeCache{Key: key, Accel: r.accel, Reason: r.reason, ProbedAt: time.Now().UTC()}
		if err := writeProbeCache(cfg.CacheFile, c); err != nil {
			log.Warn("accelerator probe result not cached", "file", cfg.CacheFile, "err", err)
		}
	}
	a.finish(AccelStatus{Accel: r.accel, Reason: r.reason, Took: took})
}
