package sqlstore

import (
	"fmt"
	"time"

	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

const hostCols = "id, name, advertise_url, state, memory_mib, cpus, started_at, last_seen, created_at, secret_hash, cert_fingerprint, underlay"

func scanHost(s Scanner) (store.Host, error) {
	var (
		h                        store.Host
		started, seen, createdAt int64
	)
	err := s.Scan(&h.ID, &h.Name, &h.AdvertiseURL, &h.State, &h.MemoryMiB, &h.CPUs, &started, &seen, &createdAt, &h.SecretHash, &h.CertFingerprint, &h.Underlay)
	h.StartedAt, h.LastSeen, h.CreatedAt = fromNanos(started), fromNanos(seen), fromNanos(createdAt)
	h.SecretHash = orNil(h.SecretHash)
	return h, err
}

// Register inserts the host or updates the one of that name in one
// statement, so that two daemons registering the same name at once do not
// race between a read and a write.
func (t hosts) Register(h *store.Host) error {
	if h.Name == "" {
		return errdefs.Invalid("host: no name")
	}
	started, seen, created := stamp(h.StartedAt), stamp(h.LastSeen), now()
	type result struct {
		id      int64
		state   string
		created int64
	}
	r, err := queryOne(t.db, func(s Scanner) (result, error) {
		var r result
		err := s.Scan(&r.id, &r.state, &r.created)
		return r, err
	}, `INSERT INTO hosts (name, advertise_url, state, memory_mib, cpus, started_at, last_seen, created_at,
			secret_hash, cert_fingerprint, underlay)
		VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET advertise_url = excluded.advertise_url, memory_mib = excluded.memory_mib,
			cpus = excluded.cpus, started_at = excluded.started_at, last_seen = excluded.last_seen,
			secret_hash = excluded.secret_hash, cert_fingerprint = excluded.cert_fingerprint, underlay = excluded.underlay,
			state = CASE hosts.state WHEN 'removed' THEN 'active' ELSE hosts.state END
		RETURNING id, state, created_at`,
		h.Name, h.AdvertiseURL, h.MemoryMiB, h.CPUs, started.UnixNano(), seen.UnixNano(), created.UnixNano(),
		blob(h.SecretHash), h.CertFingerprint, h.Underlay)
	if err != nil {
		return fmt.Errorf("register host %q: %w", h.Name, err)
	}
	h.ID, h.State, h.CreatedAt = r.id, r.state, fromNanos(r.created)
	h.StartedAt, h.LastSeen = started.UTC(), seen.UTC()
	return nil
}

func (t hosts) Get(name string) (*store.Host, error) {
	h, err := queryOne(t.db, scanHost, "SELECT "+hostCols+" FROM hosts WHERE name = ?", name)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("host %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("get host %q: %w", name, err)
	}
	return &h, nil
}

func (t hosts) List() ([]store.Host, error) {
	hs, err := queryAll(t.db, scanHost, "SELECT "+hostCols+" FROM hosts ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return hs, nil
}

func (t hosts) Touch(name string, at time.Time) error {
	found, err := t.changeOne("UPDATE hosts SET last_seen = ? WHERE name = ?", at.UnixNano(), name)
	switch {
	case err != nil:
		return fmt.Errorf("heartbeat of host %q: %w", name, err)
	case !found:
		return errdefs.NotFound("host %q not found", name)
	}
	return nil
}

func (t hosts) SetState(name, state string) error {
	if !store.ValidHostState(state) {
		return errdefs.Invalid("host %q: state %q is not active, draining or removed", name, state)
	}
	found, err := t.changeOne("UPDATE hosts SET state = ? WHERE name = ?", state, name)
	switch {
	case err != nil:
		return fmt.Errorf("set state of host %q: %w", name, err)
	case !found:
		return errdefs.NotFound("host %q not found", name)
	}
	return nil
}

var secretHashQuery = hot("SELECT secret_hash FROM hosts WHERE name = ?")

func (t hosts) SecretHash(name string) ([]byte, error) {
	var sum []byte
	err := t.c.Row(secretHashQuery, name).Scan(&sum)
	switch {
	case t.d.NoRows(err):
		return nil, errdefs.NotFound("host %q not found", name)
	case err != nil:
		return nil, fmt.Errorf("secret hash of host %q: %w", name, err)
	}
	return orNil(sum), nil
}
