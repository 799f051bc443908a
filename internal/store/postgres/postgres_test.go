package postgres

import (
	"context"
	"log/slog"
	"testing"

	"stagehand/internal/store"
	"stagehand/internal/store/postgres/pgtest"
	"stagehand/internal/store/storetest"
)

// server is the package's PostgreSQL server (nil when none could start:
// the tests that need it skip).
var server *pgtest.Server

func TestMain(m *testing.M) {
	pgtest.Main(m, func(s *pgtest.Server) { server = s })
}

// testLog shows the store's warnings in a failing test's output.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// openTest opens t's database: a new one at t's first call, the same one
// after (the suite closes and reopens).
func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), server.Database(t), testLog(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	if server == nil {
		t.Skip("no PostgreSQL server")
	}
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}
