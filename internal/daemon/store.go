package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"stagehand/internal/cluster"
	"stagehand/internal/store"
	"stagehand/internal/store/postgres"
	"stagehand/internal/store/sqlite"
)

// openedStore is the store the daemon runs on, with what GET /status
// reports of it.
type openedStore struct {
	store.Store
	kind  string // "sqlite" or "postgres"
	where string // the SQLite file, or the PostgreSQL database (no password)
	// leadership decides where the installation's single loops (the
	// reaper) run: the one daemon of a SQLite store, or the holder of the
	// reaper's advisory lock among the daemons of a PostgreSQL database.
	leadership cluster.Leadership
}

// isPostgresURL reports whether --store names a PostgreSQL database.
func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// openStore opens what cfg.Store names: empty is the embedded SQLite file
// DATA/StoreFile (the default, one host); a postgres:// URL is a
// PostgreSQL database shared by every daemon that names it.
func openStore(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*openedStore, error) {
	if isPostgresURL(cfg.Store) {
		st, err := postgres.Open(ctx, cfg.Store, log)
		if err != nil {
			return nil, err
		}
		return &openedStore{Store: st, kind: "postgres", where: st.Where(),
			leadership: cluster.NewLeader(cfg.Store, cluster.ReaperLock, log)}, nil
	}
	if cfg.Store != "" {
		return nil, fmt.Errorf("--store %q: want a postgres:// URL, or nothing for SQLite in the data dir", cfg.Store)
	}
	path := filepath.Join(dataDir, StoreFile)
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	narrowStoreFiles(path, log)
	return &openedStore{Store: st, kind: storeKind, where: path, leadership: cluster.Always{}}, nil
}
