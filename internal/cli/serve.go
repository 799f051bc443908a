package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// DefaultListen is the daemon's address when --listen is not given.
const DefaultListen = "127.0.0.1:7480"

// storeFile is the store's file name inside the data directory, and
// storeKind the store main opens there.
const (
	storeFile = "stagehand.db"
	storeKind = "sqlite"
)

// shutdownGrace bounds how long in-flight requests may take once the
// daemon is asked to stop.
const shutdownGrace = 15 * time.Second

type serveOptions struct {
	dataDir    string
	listen     string
	chainLimit int
	runtime    runtimeOptions
	logLevel   string
	leases     leaseFlags
}

func (a *app) serveCommand() *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve --data-dir DIR [--listen ADDR] [--chain-limit N]",
		Short: "Run the daemon (REST API under /api/v1)",
		Long: `Run the daemon. DIR holds the store (stagehand.db) and every layer file.
The API answers as soon as the daemon listens. In the background it
probes the accelerator (deploys wait for the probe; the result is cached
in DIR) and finishes or rolls back the operations a previous run left half
done (reads are served meanwhile; writes wait for it: GET /readyz says
when). SIGINT or SIGTERM stops it cleanly (running jobs are cancelled and
rolled back).`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if opts.dataDir == "" {
				return usagef("--data-dir DIR is required")
			}
			if opts.chainLimit < 0 {
				return usagef("--chain-limit must be positive")
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
				return usagef("--log-level %q is not debug, info, warn or error", opts.logLevel)
			}
			log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			return serve(cmd.Context(), opts, a.deps, log)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&opts.dataDir, "data-dir", "", "directory of the store and the layer files")
	f.StringVar(&opts.listen, "listen", DefaultListen, "address to listen on (host:port; port 0 picks one)")
	f.IntVar(&opts.chainLimit, "chain-limit", lab.DefaultChainLimit, "deepest disk chain a linked clone may produce")
	f.StringVar(&opts.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	opts.runtime.flags(cmd)
	opts.leases.flags(cmd)
	return cmd
}

// serve runs the daemon until ctx ends. It answers at once: it listens
// first, then opens the store and serves, while the accelerator probe and
// the recovery of interrupted operations run in the background (reads are
// served meanwhile; writes wait for the recovery, deploys for the probe).
// On ctx's end it stops accepting, lets requests finish, cancels the jobs
// and closes the store.
func serve(ctx context.Context, opts serveOptions, deps Deps, log *slog.Logger) (err error) {
	started := time.Now()
	if deps.OpenStore == nil || deps.NewDiskTool == nil {
		return errors.New("serve: this build has no store or disk tool")
	}
	opts.runtime.testProbe = deps.Getenv("STAGEHAND_TEST_PROBE")
	if err := opts.runtime.check(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(opts.dataDir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", opts.dataDir, err)
	}
	if err := makePrivateDir(dataDir, log); err != nil {
		return err
	}

	// Listen before anything slow: a busy address fails at once, and
	// clients that connect from now on wait in the backlog, not refused.
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.listen, err)
	}
	defer ln.Close()

	disks := deps.NewDiskTool()
	if v, ok := disks.(interface {
		Version(context.Context) (string, error)
	}); ok {
		version, err := v.Version(ctx)
		if err != nil {
			return fmt.Errorf("disk tool: %w", err)
		}
		log.Info("disk tool", "version", version)
	}

	storePath := filepath.Join(dataDir, storeFile)
	st, err := deps.OpenStore(ctx, storePath)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			log.Error("close store", "err", cerr)
			err = errors.Join(err, cerr)
		}
	}()
	jm := jobs.NewManager()
	defer jm.Close() // before the store closes: jobs roll back through it

	failAt, err := lab.FaultHook(deps.Getenv("STAGEHAND_TEST_FAULT"))
	if err != nil {
		return err
	}
	if failAt != nil {
		log.Warn("test faults armed (STAGEHAND_TEST_FAULT)", "spec", deps.Getenv("STAGEHAND_TEST_FAULT"))
	}
	labOpts := lab.Options{
		DataDir:    dataDir,
		Store:      st,
		Disks:      disks,
		Jobs:       jm,
		ChainLimit: opts.chainLimit,
		Logger:     log,
		FailAt:     failAt,
	}
	if err := opts.leases.apply(&labOpts); err != nil {
		return err
	}
	closeRuntime, err := opts.runtime.apply(&labOpts, dataDir, log)
	if err != nil {
		return err
	}
	defer closeRuntime() // stops a probe still running
	svc, err := lab.New(labOpts)
	if err != nil {
		return err
	}

	h := api.NewHandler(svc, log)
	h.SetDaemon(api.Daemon{Version: Version(), Started: started, StoreKind: storeKind, StorePath: storePath})
	finishRecovery := h.StartRecovery()
	limits := api.DefaultLimits
	srv := api.NewServer(h, limits, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(api.LimitListener(ln, limits.MaxConns)) }()
	log.Info("stagehand serving", "addr", ln.Addr().String(), "data_dir", dataDir, "chain_limit", svc.ChainLimit(),
		"accel", labOpts.Accel.Status().State, "started_in", time.Since(started).Round(time.Millisecond))

	// Recovery runs while reads are served; the reaper starts after it.
	// A failed recovery is reported, not fatal: the daemon must come up so
	// that `stagehand doctor` can show and repair what is left.
	recovered := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		began := time.Now()
		rerr := svc.Recover(ctx)
		if rerr != nil && ctx.Err() == nil {
			log.Error("recover: some interrupted operations could not be undone; run stagehand doctor", "err", rerr)
		}
		finishRecovery(rerr)
		close(recovered)
		log.Info("recovery done; accepting writes", "took", time.Since(began).Round(time.Millisecond))
	}()
	stopReaper := startReaper(svc, recovered)
	defer stopReaper() // before the jobs and the store close
	defer wg.Wait()    // the recovery ends (ctx is done) before anything closes

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("requests still running at shutdown; closing their connections", "err", err)
		srv.Close()
	}
	jm.Close()
	log.Info("stopped")
	return nil
}

// makePrivateDir creates the data dir readable by root only (it holds the
// store and every guest's disks), and narrows an existing one that others
// can read.
func makePrivateDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("data dir was readable by other users; making it private", "dir", dir, "mode", fi.Mode().Perm())
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	return nil
}
