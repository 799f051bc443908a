// Package apitest serves the real API over the real lab for the api, client
// and cli tests: lab.New on a temporary SQLite store and data dir, with real
// qemu-img disks (wrapped so a test can hold jobs) and the labtest fakes at
// the runtime seams (hypervisor, segments, fences). What the tests assert is
// therefore what Stagehand does, not what a look-alike does.
package apitest

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"stagehand/internal/api"
	"stagehand/internal/disk"
	"stagehand/internal/hypervisor"
	"stagehand/internal/jobs"
	"stagehand/internal/lab"
	"stagehand/internal/lab/labtest"
	"stagehand/internal/store"
	"stagehand/internal/store/sqlite"
)

// Lab is a real lab in a temporary directory. Its Service is what the API
// serves; Disks holds its disk jobs while a test wants to see them running.
type Lab struct {
	*lab.Service
	Dir   string // the temporary directory: the store, the data dir, images
	Disks *Disks
	Host  *labtest.Host // the fake machine deployments run on
}

// Option changes the lab's options before lab.New (an accelerator, a
// runtime, a clock).
type Option func(*lab.Options)

// New returns an empty lab, recovered and ready, on a fake host (Host) that
// runs deployments in memory. It needs qemu-img; everything it made goes
// when the test ends.
func New(tb testing.TB, opts ...Option) *Lab {
	tb.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		// Not a skip: the api, client and cli tests would then pass
		// with nothing tested.
		tb.Fatalf("qemu-img is needed by the api, client and cli tests (apt-get install qemu-utils): %v", err)
	}
	// A short directory: console sockets live below it, and unix socket
	// paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "sh-api-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "stagehand.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return open(tb, dir, db, opts...)
}

// OtherHost returns another lab over l's store, in a directory of its
// own, as the daemon of host name serves it: two hosts of one
// installation, in one process. opts change its options after the name.
func (l *Lab) OtherHost(tb testing.TB, name string, opts ...Option) *Lab {
	tb.Helper()
	dir, err := os.MkdirTemp("", "sh-api-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return open(tb, dir, l.Store(), append([]Option{func(o *lab.Options) { o.HostName = name }}, opts...)...)
}

// open builds the lab in dir over db and recovers it.
func open(tb testing.TB, dir string, db store.Store, opts ...Option) *Lab {
	tb.Helper()
	ctx := context.Background()
	jm := jobs.NewManager()
	d := &Disks{DiskTool: disk.New()}
	host := labtest.NewHost()
	o := lab.Options{
		DataDir: filepath.Join(dir, "data"), Store: db, Disks: d, Jobs: jm,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Root (Serve's identity for requests without credentials) may
		// name the test's files on the server: images, kernels, bundles
		// in temporary directories.
		ImportDirs: []string{os.TempDir()},
	}
	host.Use(&o)
	for _, opt := range opts {
		opt(&o)
	}
	svc, err := lab.New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Release()
		jm.Close()
	})
	if err := svc.Recover(ctx); err != nil {
		tb.Fatal(err)
	}
	return &Lab{Service: svc, Dir: dir, Disks: d, Host: host}
}

// Image writes a qcow2 image of virtual size bytes (sparse, so a 1 GiB one
// costs nothing) and returns its path, for template imports.
func (l *Lab) Image(tb testing.TB, name string, size int64) string {
	tb.Helper()
	p := filepath.Join(l.Dir, "images", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, itoa(size)).CombinedOutput(); err != nil {
		tb.Fatalf("qemu-img create %s: %v: %s", p, err, out)
	}
	return p
}

// RawImage writes a raw image of size bytes and returns its path.
func (l *Lab) RawImage(tb testing.TB, name string, size int64) string {
	tb.Helper()
	p := filepath.Join(l.Dir, "images", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Seed makes what most tests start from: template "tmpl" (one 1 GiB disk),
// network "lan" (10.0.0.0/24, gateway 10.0.0.1, pool 10.0.0.10-99) and
// configuration "web" (VM "vm1" from tmpl on lan, pool address 10.0.0.10).
func (l *Lab) Seed(tb testing.TB) *Lab {
	tb.Helper()
	ctx := context.Background()
	img := l.Image(tb, "tmpl.qcow2", 1<<30)
	if _, err := l.Templates.Import(ctx, lab.TemplateSpec{Name: "tmpl", Disks: []string{img}}); err != nil {
		tb.Fatal(err)
	}
	if _, err := l.Networks.Create(ctx, lab.NetworkSpec{Name: "lan", Subnet: "10.0.0.0/24", Gateway: "10.0.0.1", Pools: []string{"10.0.0.10-10.0.0.99"}}); err != nil {
		tb.Fatal(err)
	}
	if _, err := l.Configs.Create(ctx, lab.ConfigSpec{Name: "web", VMs: []lab.VMSpec{{Name: "vm1", Template: "tmpl", Network: "lan"}}}); err != nil {
		tb.Fatal(err)
	}
	return l
}

// Served is what Serve serves: a Lab, or a Failing that wraps one.
type Served interface {
	// API returns the resources the handler serves.
	API() api.Lab
}

// API returns the lab's resources, as the daemon serves them.
func (l *Lab) API() api.Lab { return api.LabOf(l.Service) }

// GetConfig returns a configuration, for tests that check what a request
// left behind.
func (l *Lab) GetConfig(ctx context.Context, name string) (*lab.ConfigView, error) {
	return l.Configs.Get(ctx, name)
}

// Deploy deploys a configuration, for tests that start from a deployed one.
func (l *Lab) Deploy(ctx context.Context, name string, opts lab.DeployOptions) (*lab.ConfigView, error) {
	return l.Deployments.Deploy(ctx, name, opts)
}

// Serve serves the API over l (the lab, or a Failing that wraps it to
// inject errors) until the test ends, and returns the server and its
// handler. Requests without credentials act as Root; see ServeStrict for
// the daemon's behaviour.
func Serve(tb testing.TB, l Served) (*httptest.Server, *api.Handler) {
	tb.Helper()
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.TrustRequestsWithoutCredentials(Root)
	srv := httptest.NewServer(h)
	tb.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	return srv, h
}

// DataDir is the lab's data directory.
func (l *Lab) DataDir() string { return filepath.Join(l.Dir, "data") }

// Orphan leaves a file in the layers directory that no layer record names:
// a problem the doctor reports and repairs (it removes the file).
func (l *Lab) Orphan(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(l.DataDir(), "layers", name)
	if err := os.WriteFile(p, []byte("left behind"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// LoseLayer removes the top layer file of a configuration's VM disk: a
// problem the doctor reports and cannot repair (the data is gone).
func (l *Lab) LoseLayer(tb testing.TB, config, vm string, disk int) string {
	tb.Helper()
	c, err := l.Configs.Get(context.Background(), config)
	if err != nil {
		tb.Fatal(err)
	}
	for _, v := range c.VMs {
		if v.Name == vm {
			p := v.Disks[disk].Path
			if err := os.Remove(p); err != nil {
				tb.Fatal(err)
			}
			return p
		}
	}
	tb.Fatalf("configuration %q has no VM %q", config, vm)
	return ""
}

// Accel makes the lab's accelerator a ready "tcg" chosen for reason.
func Accel(reason string) Option {
	return func(o *lab.Options) { o.Accel = hypervisor.FixedAccelerator(hypervisor.AccelTCG, reason) }
}

// NoVMs leaves the lab without a runtime, as `serve --no-vms` does:
// deploys and VM actions are unavailable (503).
func NoVMs() Option {
	return func(o *lab.Options) { o.Hypervisor, o.Segments, o.Fences = nil, nil, nil }
}
