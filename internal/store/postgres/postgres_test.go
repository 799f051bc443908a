package postgres

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"stagehand/internal/errdefs"
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

// TestMigrateOnceConcurrently: daemons that start together on a new
// database migrate it once (the advisory lock), and all open.
func TestMigrateOnceConcurrently(t *testing.T) {
	dsn := server.Database(t)
	const daemons = 4
	errs := make(chan error, daemons)
	stores := make(chan *Store, daemons)
	var wg sync.WaitGroup
	for range daemons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), dsn, testLog(t))
			if err != nil {
				errs <- err
				return
			}
			stores <- s
		}()
	}
	wg.Wait()
	close(errs)
	close(stores)
	for err := range errs {
		t.Errorf("open: %v", err)
	}
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for s := range stores {
		var n, max int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) || max != len(ms) {
			t.Errorf("schema_migrations: %d rows up to %d, want %d", n, max, len(ms))
		}
		var orgs int
		if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM organizations").Scan(&orgs); err != nil || orgs != 1 {
			t.Errorf("organizations: %d (%v), want 1 (the default, made once)", orgs, err)
		}
		s.Close()
	}
}

func TestSchemaTooNew(t *testing.T) {
	s := openTest(t)
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), server.Database(t), testLog(t))
	if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew naming version 99", err)
	}
}

// TestUpdateRunsAgainAfterSerializationFailure: two daemons (two Stores
// on one database) each read the journal and add an entry numbered by
// what they read, both reading before either writes. Serialisable, one of
// them must see the other's entry: PostgreSQL aborts one, Update runs its
// fn again, and the entries are 0 and 1, never 0 twice.
func TestUpdateRunsAgainAfterSerializationFailure(t *testing.T) {
	a := openTest(t)
	defer a.Close()
	b, err := Open(context.Background(), server.Database(t), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	var (
		read  sync.WaitGroup
		runs  atomic.Int64
		first sync.Map
	)
	read.Add(2)
	update := func(s *Store, name string) error {
		return s.Update(context.Background(), func(tx store.Tx) error {
			runs.Add(1)
			ops, err := tx.Ops().List()
			if err != nil {
				return err
			}
			if _, again := first.LoadOrStore(name, true); !again {
				read.Done()
				read.Wait() // both have read before either writes
			}
			return tx.Ops().Create(&store.Op{Kind: "count", Subject: strconv.Itoa(len(ops))})
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- update(a, "a") }()
	go func() { errs <- update(b, "b") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	var subjects []string
	if err := a.View(context.Background(), func(tx store.Tx) error {
		ops, err := tx.Ops().List()
		for _, o := range ops {
			subjects = append(subjects, o.Subject)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(subjects)
	if !slices.Equal(subjects, []string{"0", "1"}) {
		t.Errorf("journal entries %q, want [0 1] (a write skew went through)", subjects)
	}
	if n := runs.Load(); n != 3 {
		t.Errorf("fn ran %d times, want 3 (one of the two again)", n)
	}
	if r := a.Retries() + b.Retries(); r != 1 {
		t.Errorf("%d retries, want 1", r)
	}
}

// TestRedact: a password never reaches an error or a log.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@db:5432/x?sslmode=disable": "postgres://u:xxxxx@db:5432/x?sslmode=disable",
		"host=db user=u password=secret dbname=x":       "host=db user=u password=xxxxx dbname=x",
	} {
		if got := redact(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
	_, err := Open(context.Background(), "postgres://u:secret@db:notaport/x", testLog(t))
	if err == nil || strings.Contains(err.Error(), "secret") || !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Open of a bad URL: %v, want ErrInvalid without the password", err)
	}
}
