// Package browser drives the web console in a real headless Chromium
// (Debian's chromium, through chromedp) against the built stagehand binary:
// a daemon, its guests and the browser all run inside a network namespace
// the test creates, so nothing reaches any address but that namespace's
// loopback. Tests sign in through the sign-in form and act through the
// pages' data-action elements, then ask the CLI whether the lab agrees.
//
// STAGEHAND_SCREENSHOTS=1 makes the tests write the pages' screenshots into
// docs/screenshots/ (kept out of CI runs so they do not dirty the tree).
package browser

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/vishvananda/netns"

	"stagehand/internal/client"
)

var binary string

// TestMain builds the binary the tests run, or takes the one
// STAGEHAND_BINARY names (a build of another tree, for a comparison).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stagehand-browser-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "stagehand")
	if b := os.Getenv("STAGEHAND_BINARY"); b != "" {
		binary = b
	} else if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/stagehand").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build stagehand: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// chromiumPath is Debian's chromium (scripts/install-deps.sh installs it).
const chromiumPath = "/usr/bin/chromium"

// requireLab skips where a guest cannot run (the fast tier, not root, no
// QEMU) as the e2e tests do, and where chromium is not installed: the
// only reason of this package's own.
func requireLab(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: no guests or browser in the fast tier")
	}
	if os.Geteuid() != 0 {
		tb.Skip("browser tests need root (namespaces, bridges, taps)")
	}
	for _, b := range []string{"qemu-img", "qemu-system-x86_64", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			tb.Skipf("%s not installed (scripts/install-deps.sh): %v", b, err)
		}
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		tb.Skipf("chromium not installed (scripts/install-deps.sh installs Debian's chromium): %v", err)
	}
}

// guestImages builds the test guest (idempotent) and returns its directory.
func guestImages(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("../../scripts/build-test-guest.sh").CombinedOutput()
	if err != nil {
		tb.Fatalf("build test guest: %v\n%s", err, out)
	}
	dir, _ := filepath.Abs("../../testdata/guest/out")
	return dir
}

// ---- network namespace ------------------------------------------------------

// namespace is a throwaway network namespace holding the daemon, its
// guests and the browser.
type namespace struct{ name string }

func newNamespace(tb testing.TB) *namespace {
	tb.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := &namespace{name: "sh-web-" + hex.EncodeToString(b)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add: %v\n%s", err, out)
	}
	tb.Cleanup(func() {
		// Kill what still runs in it (daemon, QEMU, chromium), then
		// delete it: its bridges and taps go with it.
		for i := 0; i < 50; i++ {
			out, _ := exec.Command("ip", "netns", "pids", n.name).Output()
			pids := strings.Fields(string(out))
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				if pid, err := strconv.Atoi(p); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		exec.Command("ip", "netns", "del", n.name).Run()
	})
	if out, err := exec.Command("ip", "-n", n.name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		tb.Fatalf("lo up: %v\n%s", err, out)
	}
	return n
}

// exec returns argv that runs inside the namespace.
func (n *namespace) exec(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// dial opens a TCP connection from inside the namespace: a socket belongs
// to the namespace of the thread that made it, so the dialing goroutine
// holds its thread, enters the namespace for the socket() and leaves.
func (n *namespace) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(n.name)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", n.name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, fmt.Errorf("enter netns %s: %w", n.name, err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, network, addr)
	if err := netns.Set(orig); err != nil {
		// The thread stays in the wrong namespace: let it die with the
		// goroutine rather than serve others.
		goruntime.LockOSThread()
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leave netns %s: %w", n.name, err)
	}
	return conn, dialErr
}

// httpClient is a client whose connections start inside the namespace,
// with a cookie jar for a session.
func (n *namespace) httpClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: time.Minute, Transport: &http.Transport{DialContext: n.dial}}
}

// ---- daemon -------------------------------------------------------------------

// daemon is one `stagehand serve` process inside a namespace.
type daemon struct {
	tb      testing.TB
	ns      *namespace
	dataDir string
	url     string // http://127.0.0.1:PORT, inside ns
	cmd     *exec.Cmd
	log     string
}

var (
	servingRE   = regexp.MustCompile(`msg="stagehand serving" addr=(\S+)`)
	recoveredRE = regexp.MustCompile(`msg="recovery done; accepting writes"`)
)

// startDaemon runs the daemon inside ns on a free loopback port, its
// guests under TCG (as on every machine these tests run on).
func startDaemon(tb testing.TB, ns *namespace) *daemon {
	tb.Helper()
	dataDir, err := os.MkdirTemp("", "stagehand-web-data-")
	if err != nil {
		tb.Fatal(err)
	}
	d := &daemon{tb: tb, ns: ns, dataDir: dataDir, log: filepath.Join(dataDir, "daemon.log")}
	tb.Cleanup(func() {
		d.kill()
		killLeftovers(dataDir)
		os.RemoveAll(dataDir)
	})
	logf, err := os.Create(d.log)
	if err != nil {
		tb.Fatal(err)
	}
	argv := ns.exec(binary, "serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--accel", "tcg")
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	logf.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(d.log)
		if m := servingRE.FindSubmatch(b); m != nil && recoveredRE.Match(b) {
			d.url = "http://" + string(m[1])
			return d
		}
		if err := syscall.Kill(d.cmd.Process.Pid, 0); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("daemon not ready; its log:\n%s", d.logTail(30))
	return nil
}

func (d *daemon) kill() {
	if d.cmd != nil && d.cmd.Process != nil && d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
		d.cmd.Wait()
	}
}

// logTail returns the last n lines of the daemon's log.
func (d *daemon) logTail(n int) string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// socket is the daemon's unix socket: the CLI run as root through it is
// the system administrator, from any namespace.
func (d *daemon) socket() string { return "unix://" + filepath.Join(d.dataDir, "stagehand.sock") }

// client is the Go client of the daemon as the system administrator.
func (d *daemon) client() *client.Client { return client.New(d.socket()) }

// run runs a CLI command as root through the socket, stdin given.
func (d *daemon) run(stdin string, args ...string) (stdout, stderr string, code int) {
	d.tb.Helper()
	cmd := exec.Command(binary, append([]string{"--server", d.socket()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.tb.Fatalf("stagehand %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed.
func (d *daemon) ok(args ...string) string {
	d.tb.Helper()
	out, errOut, code := d.run("", args...)
	if code != 0 {
		d.tb.Fatalf("stagehand %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// json runs a command with -o json and decodes its output into v.
func (d *daemon) json(v any, args ...string) {
	d.tb.Helper()
	out := d.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.tb.Fatalf("stagehand %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addUser makes a user with a password (through the socket, as root) and
// a member of default/main with role.
func (d *daemon) addUser(name, password, role string) {
	d.tb.Helper()
	if out, errOut, code := d.run(password+"\n", "user", "create", name, "--password-stdin"); code != 0 {
		d.tb.Fatalf("user create %s: exit %d\n%s%s", name, code, out, errOut)
	}
	d.ok("workspace", "add-member", "main", name, "--role", role)
}

// killLeftovers kills every QEMU of a data dir (fenced VMs run in their
// fence's namespace, not the test's) and removes its fence namespaces.
func killLeftovers(dataDir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "qemu-system") || !strings.Contains(string(b), dataDir+"/") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	abs, _ := filepath.Abs(dataDir)
	sum := sha256.Sum256([]byte(abs))
	fences, _ := filepath.Glob("/run/netns/stagehand-fence-" + hex.EncodeToString(sum[:4]) + "-*")
	for _, f := range fences {
		exec.Command("ip", "netns", "del", filepath.Base(f)).Run()
	}
}

// ---- browser ------------------------------------------------------------------

// browser is one headless chromium inside a namespace; each session is a
// browser context of its own (own cookies, own storage).
type browser struct {
	tb  testing.TB
	url string // the daemon's
	ctx context.Context
}

// Viewport sizes of the screenshots and tests.
const (
	desktopW, desktopH = 1280, 800
	phoneW, phoneH     = 390, 844
)

// startBrowser starts chromium in ns with a temporary profile (chromedp
// makes and removes it, and kills the browser's leftover children) talking
// to chromedp over a pipe, so no debugging port is open.
func startBrowser(tb testing.TB, ns *namespace, url string) *browser {
	tb.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root, in a namespace of its own
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(desktopW, desktopH),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// ip netns exec execs chromium in the same process, which
			// keeps the pipe's descriptors 3 and 4.
			ip, _ := exec.LookPath("ip")
			cmd.Args = ns.exec(cmd.Args...)
			cmd.Path = ip
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	tb.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start chromium: %v", err)
	}
	return &browser{tb: tb, url: url, ctx: ctx}
}

// session opens a new browser context (a fresh profile: no cookies) with
// one tab, closed when the test ends.
func (b *browser) session(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	tb.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(desktopW, desktopH)); err != nil {
		tb.Fatalf("new browser context: %v", err)
	}
	// The page's uncaught exceptions, console errors and the browser's
	// own complaints (CSP, failed loads) are shown when the test fails.
	var mu sync.Mutex
	var notes []string
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(notes) < 200 {
			notes = append(notes, fmt.Sprintf(format, args...))
		}
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			note("exception: %s %s (%s:%d)", d.Text, desc, d.URL, d.LineNumber)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				note("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *cdplog.EventEntryAdded:
			note("browser %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
		}
	}); err != nil {
		tb.Fatalf("listen to the page: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		tb.Fatalf("enable the browser's log: %v", err)
	}
	tb.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if tb.Failed() && len(notes) > 0 {
			tb.Logf("the browser said:\n%s", strings.Join(notes, "\n"))
		}
	})
	return ctx
}

// run runs steps with a deadline, failing the test with what was done
// and where the tab is.
func run(tb testing.TB, ctx context.Context, what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	value(tb, ctx, what, timeout, chromedp.Steps(steps...))
}

// value runs an action with a deadline and returns its value, failing the
// test as run does.
func value[T any](tb testing.TB, ctx context.Context, what string, timeout time.Duration, a chromedp.Action[T]) T {
	tb.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		body, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		tb.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
	return v
}

// signIn signs in through the sign-in form and waits for the page it
// leads to.
func (b *browser) signIn(tb testing.TB, ctx context.Context, user, password string) {
	tb.Helper()
	run(tb, ctx, "sign in as "+user, 30*time.Second,
		chromedp.Navigate(b.url+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-field="user"]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-field="user"]`), user),
		chromedp.SendKeys(chromedp.CSS(`[data-field="password"]`), password),
		chromedp.Click(chromedp.CSS(`[data-action="session.login"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table#configs`)),
	)
}

// screenshotsWanted: STAGEHAND_SCREENSHOTS=1 writes the pages' screenshots
// into docs/screenshots/.
var screenshotsWanted = os.Getenv("STAGEHAND_SCREENSHOTS") == "1"

// screenshot writes the tab's viewport as docs/screenshots/NAME.png when
// screenshots are wanted.
func screenshot(tb testing.TB, ctx context.Context, name string) {
	tb.Helper()
	if !screenshotsWanted {
		return
	}
	png := value(tb, ctx, "screenshot "+name, 30*time.Second, chromedp.CaptureScreenshot())
	dir := "../../docs/screenshots"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("wrote docs/screenshots/%s.png", name)
}

// navigate loads url and waits for ready. Chromium here shares the
// daemon's network namespace, so a fence deploy's new bridges, taps and
// veths fire its network-change notifier, and it aborts loads under way
// with net::ERR_NETWORK_CHANGED — the page itself, or one of its scripts,
// after which the page never becomes ready; a user's browser is not in
// that namespace. So the load and the wait are tried again as a whole, at
// most 3 times, each failure logged with its error; a page that is not
// ready after the third fails the test.
func navigate(tb testing.TB, ctx context.Context, what, url, ready string, timeout time.Duration) {
	tb.Helper()
	var err error
	for try := 1; try <= 3; try++ {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = chromedp.Run(tctx, chromedp.Steps(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(ready))))
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			break
		}
		tb.Logf("%s: load %d did not become ready (%s), again: %v", what, try, ready, err)
	}
	tb.Fatalf("%s: %s never became ready: %v", what, url, err)
}
