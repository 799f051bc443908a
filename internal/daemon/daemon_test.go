package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"stagehand/internal/client"
	"stagehand/internal/errdefs"
	"stagehand/internal/syncbuf"
)

func TestConfigCheck(t *testing.T) {
	valid := DefaultConfig()
	valid.DataDir = "/var/lib/stagehand"
	if err := valid.Check(); err != nil {
		t.Fatalf("the default config with a data dir: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no data dir", func(c *Config) { c.DataDir = "" }, "--data-dir DIR is required"},
		{"negative chain limit", func(c *Config) { c.ChainLimit = -1 }, "--chain-limit"},
		{"unknown accel", func(c *Config) { c.Accel = "xen" }, `--accel "xen"`},
		{"no probe timeout", func(c *Config) { c.ProbeTimeout = 0 }, "--probe-timeout"},
		{"initrd without kernel", func(c *Config) { c.ProbeInitrd = "/boot/initrd" }, "--probe-initrd needs --probe-kernel"},
		{"unknown test probe", func(c *Config) { c.TestProbe = "slow" }, "STAGEHAND_TEST_PROBE"},
		{"unknown cleanup policy", func(c *Config) { c.Leases.Cleanup = "archive" }, `--cleanup-policy "archive"`},
		{"no grace", func(c *Config) { c.Leases.Grace = 0 }, "--cleanup-grace"},
		{"no reap interval", func(c *Config) { c.Leases.ReapInterval = 0 }, "--reap-interval"},
		{"cert without key", func(c *Config) { c.Listen = "10.0.0.1:7480"; c.TLSCert = "/etc/cert.pem" }, "--tls-cert needs --tls-key"},
		{"key without cert", func(c *Config) { c.Listen = "10.0.0.1:7480"; c.TLSKey = "/etc/key.pem" }, "--tls-key needs --tls-cert"},
		{"cert without listen", func(c *Config) { c.TLSCert, c.TLSKey = "/etc/cert.pem", "/etc/key.pem" }, "give --listen too"},
		{"negative guest memory", func(c *Config) { c.GuestMemoryMiB = -1 }, "--guest-memory"},
		{"negative guest cpus", func(c *Config) { c.GuestCPUs = -2 }, "--guest-cpus"},
		{"listen without port", func(c *Config) { c.Listen = "10.0.0.1" }, `--listen "10.0.0.1" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.change(&c)
			err := c.Check()
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check() = %v, want an invalid error naming %q", err, tt.want)
			}
		})
	}
}

var servingRE = regexp.MustCompile(`msg="stagehand serving" addr=(\S+)`)

// startDaemon runs the daemon on a temporary data dir, logging at level
// into the returned buffer, and returns its address. It is stopped, and
// must have stopped cleanly, at the end of the test.
func startDaemon(t *testing.T, level slog.Level) (addr string, logs *syncbuf.Buffer) {
	t.Helper()
	d := runDaemon(t, level, nil)
	adminTokens[d.addr] = d.adminToken(t)
	return d.addr, d.logs
}

// adminTokens are the admin tokens of the daemons startDaemon ran, by
// address.
var adminTokens = map[string]string{}

// adminToken reads the token the first start wrote to DATA/admin.token.
func (d *testDaemon) adminToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.cfg.DataDir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// testDaemon is a daemon a test runs.
type testDaemon struct {
	cfg  Config
	addr string // its TCP address
	logs *syncbuf.Buffer
	stop func() // stops it, and fails the test unless it stopped cleanly
}

// runDaemon runs the daemon on a temporary data dir and 127.0.0.1:0, with
// change applied to its config, and waits until it serves.
func runDaemon(t *testing.T, level slog.Level, change func(*Config)) *testDaemon {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.NoVMs = true
	if change != nil {
		change(&cfg)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan error, 1)
	go func() { exited <- Run(ctx, cfg, log) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("daemon: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("daemon did not stop within 30s; log:\n%s", logs)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("daemon exited before serving: %v; log:\n%s", err, logs)
		default:
		}
		if m := servingRE.FindStringSubmatch(logs.String()); m != nil {
			return &testDaemon{cfg: cfg, addr: m[1], logs: logs, stop: stop}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("daemon did not log its address within 10s; log:\n%s", logs)
	return nil
}

// TestDebugLogShowsQemuImgCommands runs the daemon at debug level, imports
// a template through its API, and finds the qemu-img command lines in the
// daemon's own log, in its format; at info level they are not there.
func TestDebugLogShowsQemuImgCommands(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed")
	}
	src := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file is uploaded, as any remote caller must (naming a server path
	// is for root on the socket only).
	importTemplate := func(t *testing.T, addr, name string) {
		t.Helper()
		c := client.New("http://"+addr, client.WithToken(adminTokens[addr]))
		if _, err := c.Templates().Upload(context.Background(), client.TemplateUpload{Name: name, Disks: []string{src}, Format: "raw"}); err != nil {
			t.Fatalf("import template: %v", err)
		}
	}
	// A text-handler line of the runner: level, message, the binary and
	// its arguments: the conversion of the source into a layer.
	commandLine := regexp.MustCompile(`level=DEBUG msg="run command" cmd=` + regexp.QuoteMeta(qemuImg) +
		` args="\[convert -p -f raw -O qcow2 [^\]]*/layers/[^\]]*\]"`)

	addr, logs := startDaemon(t, slog.LevelDebug)
	importTemplate(t, addr, "debug")
	if !commandLine.MatchString(logs.String()) {
		t.Errorf("no qemu-img convert command line in the debug log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `msg="run command" cmd=`+qemuImg+` args=[--version]`) {
		t.Errorf("the start-up's qemu-img --version is not in the debug log:\n%s", logs)
	}

	addr, logs = startDaemon(t, slog.LevelInfo)
	importTemplate(t, addr, "info")
	if strings.Contains(logs.String(), `msg="run command"`) {
		t.Errorf("commands logged at info level:\n%s", logs)
	}
}
