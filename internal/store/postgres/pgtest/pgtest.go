// Package pgtest starts a private PostgreSQL server for tests: Debian's
// binaries (package postgresql, installed by scripts/install-deps.sh), a
// cluster made by initdb in a temporary directory, listening only on a unix
// socket inside it, with fsync off. One server serves a whole package test
// run (start it in TestMain); each test gets a database of its own.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startTimeout bounds initdb plus the server's start.
const startTimeout = 60 * time.Second

// Server is a running private PostgreSQL server.
type Server struct {
	dir  string // the temporary directory: data/, the socket, server.log
	addr string // the TCP address it listens on too, or ""
	bin  string
	cmd  *exec.Cmd
	exit chan error // the server's exit status, once

	mu  sync.Mutex
	dbs map[string]string // test name -> database name
	seq int
}

// ErrUnavailable says that no PostgreSQL server binaries were found.
var ErrUnavailable = errors.New("PostgreSQL server binaries not found (Debian package postgresql; scripts/install-deps.sh installs it)")

// findBin returns the directory of the newest initdb and postgres: $PG_BIN
// when set, else /usr/lib/postgresql/N/bin (Debian), else $PATH.
func findBin() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var have []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			have = append(have, d)
		}
	}
	if len(have) > 0 {
		version := func(d string) int {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			return n
		}
		slices.SortFunc(have, func(a, b string) int { return version(a) - version(b) })
		return have[len(have)-1], nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrUnavailable
}

// Start makes a cluster in a new temporary directory and starts its
// server. As root it runs initdb and the server as the postgres user
// (initdb refuses root); the server gets SIGQUIT (immediate shutdown) if
// the test process dies without calling Stop.
func Start(ctx context.Context) (*Server, error) { return StartListening(ctx, "") }

// StartListening is Start with the server also listening on TCP at addr
// (port 5432) and trusting every client of addr's subnet ("" is Start):
// for tests whose clients reach it over a network, e.g. e2e's underlay.
// The server runs in the network namespace of the calling thread.
func StartListening(ctx context.Context, addr string) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, addr: addr, bin: bin, dbs: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	cred, err := serverCredential(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", s.dataDir(), "-U", "postgres",
		"--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb in %s: %w\n%s", dir, err, tail(string(out), 20))
	}
	if addr != "" {
		hba, err := os.OpenFile(filepath.Join(s.dataDir(), "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = hba.WriteString("host all all samenet trust\n")
			hba.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("pgtest: pg_hba.conf: %w", err)
		}
	}

	logf, err := os.Create(s.logPath())
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", s.dataDir(),
		"-c", "listen_addresses="+addr, // "": the unix socket only
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB",
		"-c", "max_pred_locks_per_transaction=256")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.exit = make(chan error, 1)
	go func() { s.exit <- s.cmd.Wait() }()

	// Ready when a connection succeeds.
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			break
		}
		select {
		case werr := <-s.exit:
			s.exit <- werr
			return nil, fmt.Errorf("pgtest: postgres exited (%v) before it answered; its log:\n%s", werr, s.LogTail(20))
		case <-ctx.Done():
			return nil, fmt.Errorf("pgtest: postgres did not answer within %v (last: %v); its log:\n%s", startTimeout, err, s.LogTail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
	ok = true
	return s, nil
}

// serverCredential chowns dir to the postgres user and returns its
// credential when running as root; nil (the current user) otherwise.
func serverCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres user (made by the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "server.log") }

// DSN is the connection string of database db on the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", s.dir, db)
}

// URL is the same as a postgres:// URL (what `serve --store` takes).
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&sslmode=disable", db, s.dir)
}

// TCPURL is the postgres:// URL of database db over TCP at the address
// given to StartListening.
func (s *Server) TCPURL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:5432/%s?sslmode=disable", s.addr, db)
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(s.logPath())
	return tail(string(b), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// Database returns the DSN of t's database: a new, empty one at the first
// call for t's name, the same one at later calls (so a test can close and
// reopen its store). It is dropped when t ends. A nil server skips t.
func (s *Server) Database(t testing.TB) string {
	t.Helper()
	if s == nil {
		t.Skip(skipReason)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if db, ok := s.dbs[t.Name()]; ok {
		return s.DSN(db)
	}
	s.seq++
	name := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	db := fmt.Sprintf("t%d_%.40s", s.seq, name)
	ctx := context.Background()
	if err := s.admin(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", db, err)
	}
	s.dbs[t.Name()] = db
	t.Cleanup(func() {
		s.mu.Lock()
		delete(s.dbs, t.Name())
		s.mu.Unlock()
		if err := s.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", db, err)
		}
	})
	return s.DSN(db)
}

func (s *Server) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Stop shuts the server down (fast shutdown, then SIGKILL after 10 s) and
// removes its directory. It is safe on a partly started server.
func (s *Server) Stop() error {
	var errs []error
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-s.exit:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exit
			errs = append(errs, errors.New("pgtest: postgres did not stop within 10 s; killed"))
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: %w", err))
	}
	return errors.Join(errs...)
}

var skipReason string

// Main is a TestMain: it starts one server for the package's tests, runs
// them and stops it. When no server can be started, the tests that ask
// for a database skip with the reason (printed here too), except under CI
// (CI set), where a missing server fails the run: scripts/test.sh installs
// it. set receives the server (nil when unavailable).
func Main(m *testing.M, set func(*Server)) {
	srv, err := Start(context.Background())
	if err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			os.Exit(1)
		}
		skipReason = fmt.Sprintf("no PostgreSQL server: %v", err)
		fmt.Fprintf(os.Stderr, "pgtest: %s; the tests that need it skip\n", skipReason)
		set(nil)
		os.Exit(m.Run())
	}
	set(srv)
	code := m.Run()
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
