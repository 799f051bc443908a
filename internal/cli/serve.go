package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
)

// DefaultListen is the daemon's address when --listen is not given.
const DefaultListen = "127.0.0.1:7480"

// storeFile is the store's file name inside the data directory.
const storeFile = "stagehand.db"

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
On start the daemon finishes or rolls back the operations a previous run
left half done; SIGINT or SIGTERM stops it cleanly (running jobs are
cancelled and rolled back).`,
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

// serve runs the daemon until ctx ends: open the store, recover the
// journal, listen, then on ctx's end stop accepting, let requests finish,
// cancel the jobs and close the store.
func serve(ctx context.Context, opts serveOptions, deps Deps, log *slog.Logger) (err error) {
	if deps.OpenStore == nil || deps.NewDiskTool == nil {
		return errors.New("serve: this build has no store or disk tool")
	}
	dataDir, err := filepath.Abs(opts.dataDir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", opts.dataDir, err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

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

	st, err := deps.OpenStore(ctx, filepath.Join(dataDir, storeFile))
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
	closeRuntime, err := opts.runtime.apply(ctx, &labOpts, log)
	if err != nil {
		return err
	}
	defer closeRuntime()
	svc, err := lab.New(labOpts)
	if err != nil {
		return err
	}
	// A failed recovery is reported, not fatal: the daemon must come up so
	// that `stagehand doctor` can show and repair what is left.
	if err := svc.Recover(ctx); err != nil {
		log.Error("recover: some interrupted operations could not be undone; run stagehand doctor", "err", err)
	}
	stopReaper := startReaper(svc)
	defer stopReaper() // before the jobs and the store close

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.listen, err)
	}
	h := api.NewHandler(svc, log)
	// No ReadTimeout or WriteTimeout: a deploy answers once its VMs have
	// started (seconds), and log follows and console sessions last as long
	// as their user wants; h.Drain ends those at shutdown.
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(h.Drain)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("stagehand serving", "addr", ln.Addr().String(), "data_dir", dataDir, "chain_limit", svc.ChainLimit())

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
