// Package daemon is `stagehand serve`: it builds the store, disk tool, jobs,
// accelerator, plumbing, lab, reaper and HTTP server in order, and stops them.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/cluster"
	"stagehand/internal/disk"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/hypervisor"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/metrics"
	"stagehand/internal/webui"
)

// StoreFile is the store's file name inside the data directory, and
// storeKind the kind of store the daemon opens there.
const (
	StoreFile = "stagehand.db"
	storeKind = "sqlite"
)

// AccelCacheFile is the accelerator probe's cache inside the data dir.
const AccelCacheFile = "accel-probe.json"

// AccelAuto asks for the accelerator probe (Config.Accel).
const AccelAuto = "auto"

// shutdownGrace bounds how long in-flight requests may take once the
// daemon is asked to stop.
const shutdownGrace = 15 * time.Second

// Config is everything `stagehand serve` takes. The comment of each field
// names its flag; Check refuses a Config the daemon cannot run with.
type Config struct {
	DataDir    string // --data-dir: the store, every layer file and the socket (SocketFile)
	Store      string // --store: a postgres:// URL; empty: SQLite in DataDir (store.go)
	ChainLimit int    // --chain-limit: deepest disk chain a linked clone may produce
	// ShortcutDepth is --shortcut-depth: the physical chain depth above
	// which this host's configurations get shortcut layers in the
	// background (0: off).
	ShortcutDepth int
	// HostName is --host-name: this daemon's host among those sharing the
	// store (default: the machine's host name). Advertise is --advertise:
	// the URL the other hosts and clients reach its API at (default: the
	// --listen URL, else the socket's unix:// path).
	HostName  string
	Advertise string
	// Underlay is --underlay: the address this host's VXLAN tunnels (a
	// spread fence) use (default: --advertise's address when it is an IP).
	Underlay string

	// Listen is --listen: a TCP host:port (port 0 picks one) besides the
	// socket, which is always there; empty for none. A non-loopback
	// address serves HTTPS only (see listenTCP).
	Listen  string
	TLSCert string // --tls-cert: the TCP listener's certificate (PEM)
	TLSKey  string // --tls-key: its private key (PEM)
	// AllowedHosts are --allowed-host: host names the API answers to
	// besides IP literals, localhost and the --listen host (a request
	// under any other Host is refused: DNS rebinding).
	AllowedHosts []string
	// OIDC is --oidc-*: sign-in through an OpenID Connect issuer (oidc.go).
	OIDC OIDCConfig

	Accel        string        // --accel: AccelAuto (probe), hypervisor.AccelKVM or AccelTCG
	ProbeKernel  string        // --probe-kernel: default the newest /boot/vmlinuz-*
	ProbeInitrd  string        // --probe-initrd: default the kernel's initrd
	ProbeTimeout time.Duration // --probe-timeout
	NoVMs        bool          // --no-vms: disks and addresses only, no deploy

	ArchiveDir string          // --archive-dir: default DATA/archive
	ImportDirs []string        // --import-dir: where the admin on the socket may name files to import (lab.Options.ImportDirs)
	MaxUpload  int64           // --max-upload: bytes of one uploaded file (0: lab.DefaultMaxUpload)
	Leases     lab.LeasePolicy // --default-*-lease, --cleanup-*, --reap-interval

	// Version is the build's version, reported by GET /status.
	Version string

	// Test hooks, read from the environment by main; never set in
	// production, and logged loudly when set.
	//
	// SharedLayers is --shared-layers: DATA/layers is one directory every
	// host mounts (lab.Options.SharedLayers).
	SharedLayers bool
	// GuestMemoryMiB and GuestCPUs are --guest-memory and --guest-cpus:
	// what this host offers to guests, for placement (0: all of its
	// memory, all of its processors). An operator keeps memory back for
	// the host itself this way.
	GuestMemoryMiB, GuestCPUs int
	// TestFault is STAGEHAND_TEST_FAULT (see lab.FaultHook).
	TestFault string
	// TestProbe is STAGEHAND_TEST_PROBE: "hang" replaces the accelerator
	// probe with one that never decides, so tests can show the daemon
	// serving while a probe hangs on any host.
	TestProbe string

	// socketGroup replaces SocketGroup, and wrapHandler wraps the API's
	// handler: for this package's tests only.
	socketGroup string
	wrapHandler func(http.Handler) http.Handler
}

// DefaultConfig is a Config with the defaults of serve's flags; DataDir is
// left for the caller.
func DefaultConfig() Config {
	return Config{
		ChainLimit:    lab.DefaultChainLimit,
		ShortcutDepth: lab.DefaultShortcutDepth,
		Accel:         AccelAuto,
		ProbeTimeout:  hypervisor.DefaultProbeTimeout,
		Leases: lab.LeasePolicy{
			Cleanup:      lab.CleanupNotify,
			Grace:        lab.DefaultGrace,
			ReapInterval: lab.DefaultReapInterval,
		},
	}
}

// Check refuses a Config that Run cannot run with. Its errors are
// errdefs.Invalid and name the serve flag (or variable) at fault.
func (c Config) Check() error {
	switch {
	case c.DataDir == "":
		return errdefs.Invalid("--data-dir DIR is required")
	case c.ChainLimit < 0:
		return errdefs.Invalid("--chain-limit must be positive")
	case c.GuestMemoryMiB < 0 || c.GuestCPUs < 0:
		return errdefs.Invalid("--guest-memory and --guest-cpus must be positive (or 0: all of the host's)")
	case c.ShortcutDepth < 0 || c.ShortcutDepth > 0 && c.ShortcutDepth < 3:
		return errdefs.Invalid("--shortcut-depth must be 0 (off) or at least 3: a shortcut replaces the layers between a top and its base")
	case c.TLSCert != "" && c.TLSKey == "":
		return errdefs.Invalid("--tls-cert needs --tls-key, the file of the certificate's private key")
	case c.TLSKey != "" && c.TLSCert == "":
		return errdefs.Invalid("--tls-key needs --tls-cert, the file of its certificate")
	case c.TLSCert != "" && c.Listen == "":
		return errdefs.Invalid("--tls-cert is for the TCP listener: give --listen too")
	}
	if c.Listen != "" {
		if _, err := parseListen(c.Listen); err != nil {
			return err
		}
	}
	if err := c.OIDC.check(c.Listen); err != nil {
		return err
	}
	switch c.Accel {
	case AccelAuto, hypervisor.AccelKVM, hypervisor.AccelTCG:
	default:
		return errdefs.Invalid("--accel %q is not auto, kvm or tcg", c.Accel)
	}
	switch {
	case c.ProbeTimeout <= 0:
		return errdefs.Invalid("--probe-timeout must be positive")
	case c.ProbeInitrd != "" && c.ProbeKernel == "":
		return errdefs.Invalid("--probe-initrd needs --probe-kernel")
	case c.TestProbe != "" && c.TestProbe != "hang":
		return errdefs.Invalid("STAGEHAND_TEST_PROBE=%q: the only test probe is \"hang\"", c.TestProbe)
	}
	switch c.Leases.Cleanup {
	case lab.CleanupNotify, lab.CleanupDelete:
	default:
		return errdefs.Invalid("--cleanup-policy %q is not notify or delete", c.Leases.Cleanup)
	}
	switch {
	case c.Leases.Grace <= 0:
		return errdefs.Invalid("--cleanup-grace must be a positive duration (7d, 12h)")
	case c.Leases.ReapInterval <= 0:
		return errdefs.Invalid("--reap-interval must be positive")
	}
	return nil
}

// Run runs the daemon until ctx ends, logging to log. It answers at once:
// it listens first, then opens the store and serves, while the accelerator
// probe and the recovery of interrupted operations run in the background
// (reads are served meanwhile; writes wait for the recovery, deploys for
// the probe). On ctx's end it stops accepting, lets requests finish,
// cancels the jobs and closes the store.
//
// It always listens on the unix socket DATA/SocketFile, and on TCP when
// cfg.Listen is set.
//
// Construction order: data dir, listeners, disk tool, store, jobs, lab
// runtime (accelerator, segments, fences), lab, HTTP server, recovery,
// reaper. Shutdown runs the other way: HTTP server, recovery, reaper,
// runtime, jobs (rolled back through the store), store.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (err error) {
	started := time.Now()
	if err := cfg.Check(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	access := lookupSocketAccess(cfg.socketGroup)
	if err := makeDataDir(dataDir, access, log); err != nil {
		return err
	}

	// Listen before anything slow: a busy address fails at once, and
	// clients that connect from now on wait in the backlog, not refused.
	socketPath := filepath.Join(dataDir, SocketFile)
	sock, err := listenSocket(ctx, socketPath, access, log)
	if err != nil {
		return err
	}
	defer sock.Close()
	var tcp net.Listener
	var tlsConf *tls.Config
	if cfg.Listen != "" {
		tcp, tlsConf, err = listenTCP(cfg, dataDir, log)
		if err != nil {
			return err
		}
		defer tcp.Close()
	}

	disks := disk.New()
	disks.Log = log
	version, err := disks.Version(ctx)
	if err != nil {
		return fmt.Errorf("disk tool: %w", err)
	}
	log.Info("disk tool", "version", version)

	st, err := openStore(ctx, cfg, dataDir, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			log.Error("close store", "err", cerr)
			err = errors.Join(err, cerr)
		}
	}()
	if err := ensureAdmin(ctx, st, dataDir, log); err != nil {
		return err
	}
	var fingerprint string // what peers pin; none without TLS (loopback tests)
	if tlsConf != nil {
		fingerprint = Fingerprint(tlsConf.Certificates[0].Certificate[0])
	}
	advertise := advertiseURL(cfg, socketPath, tcp, tlsConf != nil)
	member, credential, err := joinCluster(ctx, cfg, st, dataDir, advertise, fingerprint, log)
	if err != nil {
		return err
	}
	stopHeartbeat := runInBackground(member.Run)
	defer stopHeartbeat() // before the store closes
	jm := jobs.NewManager()
	defer jm.Close() // before the store closes: jobs roll back through it

	failAt, err := lab.FaultHook(cfg.TestFault, log)
	if err != nil {
		return err
	}
	if failAt != nil {
		log.Warn("test faults armed (STAGEHAND_TEST_FAULT)", "spec", cfg.TestFault)
	}
	labOpts := lab.Options{
		DataDir:    dataDir,
		Store:      st,
		Disks:      disks,
		Jobs:       jm,
		ChainLimit: cfg.ChainLimit,
		Logger:     log,
		FailAt:     failAt,
		ArchiveDir: cfg.ArchiveDir,
		ImportDirs: cfg.ImportDirs,
		MaxUpload:  cfg.MaxUpload,
		Leases:     cfg.Leases,
		HostName:   member.Host().Name,

		SharedLayers: cfg.SharedLayers,

		ShortcutDepth: cfg.ShortcutDepth,
	}
	if st.shared() {
		// Layers and moves between the hosts (placement, config move).
		puller, err := hostlink.NewPuller(dataDir, credential, log)
		if err != nil {
			return err
		}
		defer puller.Close()
		labOpts.HostLink = puller
	}
	closeRuntime, err := startRuntime(cfg, &labOpts, dataDir, log)
	if err != nil {
		return err
	}
	defer closeRuntime() // stops a probe still running
	svc, err := lab.New(labOpts)
	if err != nil {
		return err
	}

	h := api.NewHandler(svc, log)
	h.SetDaemon(api.Daemon{Version: cfg.Version, Started: started, StoreKind: st.kind, StorePath: st.where})
	// GET /metrics: each QEMU's CPU time from /proc, and the layer files'
	// allocated bytes (the lab keeps every layer in <data dir>/layers),
	// summed at most every 30 s.
	h.SetMetricsSources(api.MetricsSources{
		GuestCPU:   hypervisor.ProcessCPUTime,
		LayerBytes: metrics.NewDirBytes(filepath.Join(dataDir, "layers"), ".qcow2", 30*time.Second).Bytes,
	})
	hosts := append([]string{cfg.Listen}, cfg.AllowedHosts...)
	if u, err := url.Parse(advertise); err == nil && u.Host != "" {
		hosts = append(hosts, u.Host) // peers forward to this name
	}
	if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name) // this machine's own name is no rebinding
	}
	h.SetAllowedHosts(hosts...)
	h.ServeUI(webui.New(webui.LabOf(svc), webui.Options{OIDC: cfg.OIDC.set(), Log: log, ConsoleLinks: h}))
	stopOIDC, err := startOIDC(ctx, cfg, dataDir, tcp, tlsConf != nil, h, log)
	if err != nil {
		return err
	}
	defer stopOIDC()
	if st.shared() {
		// Many hosts on one store: a configuration's requests go to its
		// home host. On SQLite this host is every configuration's home.
		if err := h.SetHostLink(hostLink(member.Host().Name, credential, st)); err != nil {
			return err
		}
	}
	finishRecovery := h.StartRecovery()
	limits := api.DefaultLimits
	srv := api.NewServer(h, limits, log)
	srv.ConnContext = connContext
	// Peers pull layers from /internal/v1/ with their host credentials.
	links := hostlink.NewServer(dataDir, storeLayers{store: st, dataDir: dataDir}, storeVerifier(st), log)
	links.ServeMoves(svc.MoveEndpoints())
	srv.Handler = withHostLink(srv.Handler, links)
	if cfg.wrapHandler != nil {
		srv.Handler = cfg.wrapHandler(srv.Handler)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(api.LimitListener(sock, limits.MaxConns)) }()
	var where []any
	if tcp != nil {
		ln, scheme := api.LimitListener(tcp, limits.MaxConns), "http"
		if tlsConf != nil {
			ln, scheme = tls.NewListener(ln, tlsConf), "https"
		}
		go func() { served <- srv.Serve(ln) }()
		where = append(where, "addr", tcp.Addr().String(), "url", scheme+"://"+tcp.Addr().String())
	}
	where = append(where, "socket", socketPath)
	log.Info("stagehand serving", append(where, "data_dir", dataDir, "chain_limit", svc.ChainLimit(),
		"accel", labOpts.Accel.Status().State, "started_in", time.Since(started).Round(time.Millisecond))...)

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
	stopReaper := startReaper(svc, recovered, st.leadership)
	defer stopReaper() // before the jobs and the store close
	// Every host gives its own configurations' deep chains shortcut
	// layers (their files are on this host), after the recovery.
	stopShortcuts := runInBackground(func(ctx context.Context) {
		select {
		case <-recovered:
			svc.Shortcuts.RunLoop(ctx, lab.DefaultShortcutInterval)
		case <-ctx.Done():
		}
	})
	defer stopShortcuts()
	// Every host reports what its fences' allow-lists refused.
	stopEgress := runInBackground(func(ctx context.Context) {
		select {
		case <-recovered:
			svc.WatchEgress(ctx)
		case <-ctx.Done():
		}
	})
	defer stopEgress()
	stopCluster := startClusterLoops(st, member.Host().ID, svc, recovered, log)
	defer stopCluster() // before the store closes
	defer wg.Wait()     // the recovery ends (ctx is done) before anything closes

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

// startReaper runs the lab's reaper (lease expiry and cleanup), once after
// is closed (the recovery is done), while this daemon leads the
// installation (always on SQLite; on PostgreSQL while it holds the
// reaper's lock: one reaper for all hosts), until the returned stop is
// called; stop waits for a pass in progress to end.
func startReaper(svc *lab.Service, after <-chan struct{}, lead cluster.Leadership) (stop func()) {
	return runInBackground(func(ctx context.Context) {
		select {
		case <-after:
		case <-ctx.Done():
			return
		}
		lead.Run(ctx, svc.RunReaper)
	})
}

// runInBackground runs fn in a goroutine until the returned stop is
// called; stop cancels fn's context and waits for fn to return.
func runInBackground(fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fn(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}

// makeDataDir creates the data dir readable by root only (it holds the
// store and every guest's disks), and narrows an existing one that others
// can read. When the socket's group exists, the group may pass through it
// (0710) to reach the socket, and still not list or read what is inside.
func makeDataDir(dir string, access socketAccess, log *slog.Logger) error {
	mode := access.dataDirMode()
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
	if access.shared() {
		if err := os.Chown(dir, os.Getuid(), access.gid); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	if fi.Mode().Perm() != mode {
		if fi.Mode().Perm()&^mode != 0 {
			log.Warn("data dir was readable by other users; making it private", "dir", dir, "mode", fi.Mode().Perm(), "now", mode)
		}
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	return nil
}

// narrowStoreFiles makes the store's files readable by root only, whatever
// mode the store created them with: the data dir may let the socket's
// group pass through.
func narrowStoreFiles(storePath string, log *slog.Logger) {
	for _, p := range []string{storePath, storePath + "-wal", storePath + "-shm", storePath + "-journal"} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
			log.Warn("store file readable by other users", "file", p, "err", err)
		}
	}
}
