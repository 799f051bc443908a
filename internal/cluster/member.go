package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// Member is this daemon's host in the store: registered at start, its
// LastSeen refreshed every HeartbeatInterval.
type Member struct {
	store    store.Store
	host     store.Host // as registered
	interval time.Duration
	log      *slog.Logger
}

// Join registers h (name, advertise URL, capacity) in st, marking it
// started and seen now, and returns the member that keeps it seen.
func Join(ctx context.Context, st store.Store, h store.Host, log *slog.Logger) (*Member, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Member{store: st, host: h, interval: HeartbeatInterval, log: log}
	now := time.Now()
	m.host.StartedAt, m.host.LastSeen = now, now
	if err := m.register(ctx); err != nil {
		return nil, err
	}
	log.Info("host registered", "host", m.host.Name, "advertise", m.host.AdvertiseURL, "state", m.host.State,
		"memory_mib", m.host.MemoryMiB, "cpus", m.host.CPUs)
	return m, nil
}

func (m *Member) register(ctx context.Context) error {
	h := m.host
	if err := m.store.Update(ctx, func(tx store.Tx) error { h = m.host; return tx.Hosts().Register(&h) }); err != nil {
		return fmt.Errorf("register host %q: %w", m.host.Name, err)
	}
	m.host = h
	return nil
}

// Host returns the host as registered.
func (m *Member) Host() store.Host { return m.host }

// Run heartbeats until ctx ends. A failed heartbeat is logged and tried
// again at the next tick; a host that vanished from the store (someone
// deleted its row) registers again.
func (m *Member) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("host heartbeat failed", "host", m.host.Name, "err", err)
		}
	}
}

// Heartbeat marks the host seen now.
func (m *Member) Heartbeat(ctx context.Context) error {
	now := time.Now()
	err := m.store.Update(ctx, func(tx store.Tx) error { return tx.Hosts().Touch(m.host.Name, now) })
	if errdefs.Kind(err) == errdefs.ErrNotFound {
		m.host.LastSeen = now
		return m.register(ctx)
	}
	if err != nil {
		return fmt.Errorf("heartbeat of host %q: %w", m.host.Name, err)
	}
	return nil
}
