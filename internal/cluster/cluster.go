// Package cluster is what the daemons sharing one store agree on, with no
// consensus code of their own: each host registers in the store's hosts
// table and heartbeats (Member), is offline once its heartbeat is older
// than OfflineAfter, and the loops that must run once per installation
// (the reaper, lease expiry) run only on the host holding a PostgreSQL
// advisory lock on a dedicated connection (Leader). On SQLite the single
// daemon always leads (Always). Hosts serves the operator's view of them:
// list, show, drain, undrain, remove. Work that one host decides and
// another must carry out goes through the store's work queue, which each
// host's Worker drains.
package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"stagehand/internal/store"
)

// HeartbeatInterval is how often a daemon refreshes its host's LastSeen.
// OfflineAfter is how long a host may go unseen before the others call it
// offline: three heartbeats, so that one late or lost heartbeat (a slow
// transaction, a database failover of a few seconds) is not taken for a
// dead host, and a dead host is noticed within 15 s (docs/decisions.md).
const (
	HeartbeatInterval = 5 * time.Second
	OfflineAfter      = 3 * HeartbeatInterval
)

// Offline reports whether h has not been seen within OfflineAfter of now.
func Offline(h store.Host, now time.Time) bool {
	return now.Sub(h.LastSeen) > OfflineAfter
}

// Leadership runs fn while this daemon leads the installation, until ctx
// ends; fn's context ends when leadership is lost.
type Leadership interface {
	Run(ctx context.Context, fn func(ctx context.Context))
}

// Always is the leadership of a daemon alone on its store (SQLite): it
// always leads.
type Always struct{}

// Run runs fn with ctx.
func (Always) Run(ctx context.Context, fn func(ctx context.Context)) { fn(ctx) }

// LocalCapacity is what this machine offers to guests: its memory (MiB,
// from /proc/meminfo) and its processors.
func LocalCapacity() (memoryMiB, cpus int, err error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, runtime.NumCPU(), fmt.Errorf("host capacity: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				return 0, runtime.NumCPU(), fmt.Errorf("host capacity: MemTotal %q: %w", rest, err)
			}
			return kib / 1024, runtime.NumCPU(), nil
		}
	}
	return 0, runtime.NumCPU(), fmt.Errorf("host capacity: no MemTotal in /proc/meminfo")
}
