package daemon

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"stagehand/internal/store"
	"stagehand/internal/store/postgres/pgtest"
)

// TestOpenStore: no --store is SQLite in the data dir; a postgres:// URL
// opens that database (both hold the default workspace); anything else is
// refused naming the flag.
func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	check := func(st *openedStore, kind, where string) {
		t.Helper()
		defer st.Close()
		if st.kind != kind || !strings.Contains(st.where, where) {
			t.Errorf("store %s at %q, want %s at %q", st.kind, st.where, kind, where)
		}
		if err := st.View(ctx, func(tx store.Tx) error {
			_, err := tx.Orgs().Get(store.DefaultOrg)
			return err
		}); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}

	st, err := openStore(ctx, Config{}, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	check(st, "sqlite", dir+"/"+StoreFile)

	if _, err := openStore(ctx, Config{Store: "mysql://x"}, dir, log); err == nil || !strings.Contains(err.Error(), "--store") {
		t.Errorf("--store mysql://x: %v, want a refusal naming --store", err)
	}

	srv, err := pgtest.Start(ctx)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(func() { srv.Stop() })
	st, err = openStore(ctx, Config{Store: srv.URL("postgres")}, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	check(st, "postgres", "postgres@")
}
