package browser

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// The web console's benchmarks (docs/benchmarks.md has the command and the
// numbers): the configurations page with 1,000 configurations (the
// daemon's time for GET /ui/configs, and Chromium's first contentful
// paint), an event's way to the page's row, and a keystroke's echo on the
// serial console through the daemon's websocket against the same on
// QEMU's console socket. One daemon serves them all; each part of the lab
// is made the first time a sub-benchmark needs it.

const (
	// firstRows is how many rows /ui/configs holds before its marker
	// (webui's firstRows).
	firstRows     = 50
	benchUser     = "bench"
	benchPassword = "bench password 42"
	benchConfigs  = 1000
)

// benchLab is the benchmarks' shared daemon and browser.
type benchLab struct {
	b      *testing.B
	ns     *namespace
	d      *daemon
	http   *http.Client // signed in as benchUser, from inside the namespace
	token  string       // benchUser's session, as a bearer token
	br     *browser
	tab    context.Context // signed in as benchUser
	many   sync.Once       // the 1,000 configurations
	guest  sync.Once       // the console's guest
	direct []time.Duration // echo round trips on QEMU's socket
}

func BenchmarkWebConsole(b *testing.B) {
	requireLab(b)
	ns := newNamespace(b)
	l := &benchLab{b: b, ns: ns, d: startDaemon(b, ns)}
	l.d.addUser(benchUser, benchPassword, "author")
	l.http = ns.httpClient()
	c := client.New(l.d.url, client.WithHTTPClient(l.http))
	tok, err := c.Auth().Login(context.Background(), benchUser, benchPassword)
	if err != nil {
		b.Fatalf("login: %v", err)
	}
	l.token = tok
	// The session cookie for the page requests, as the browser has it.
	if _, err := l.http.Post(l.d.url+"/api/v1/login", "application/json",
		strings.NewReader(fmt.Sprintf(`{"user":%q,"password":%q}`, benchUser, benchPassword))); err != nil {
		b.Fatalf("login for a cookie: %v", err)
	}
	l.br = startBrowser(b, ns, l.d.url)
	l.tab = l.br.session(b)
	l.br.signIn(b, l.tab, benchUser, benchPassword)

	// The serial console first: QEMU's socket serves one client, and once
	// the daemon's console hub holds it (on the first websocket) it keeps
	// it while the VM runs.
	b.Run("SerialEcho/qemu-socket", l.benchEchoDirect)
	b.Run("SerialEcho/websocket", l.benchEchoWebsocket)
	b.Run("ConfigsPage1000/server", l.benchConfigsServer)
	b.Run("ConfigsPage1000/rows-fragment", l.benchConfigsRows)
	b.Run("ConfigsPage1000/api-list", l.benchConfigsAPI)
	b.Run("ConfigsPage1000/first-paint", l.benchConfigsFirstPaint)
	b.Run("EventToDOM", l.benchEventToDOM)
}

// makeConfigs creates benchConfigs configurations of one VM each on a
// 1 MiB template, owned by benchUser, through the API (4 at a time).
func (l *benchLab) makeConfigs() {
	l.many.Do(func() {
		b := l.b
		dir, err := os.MkdirTemp("", "stagehand-bench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		img := filepath.Join(dir, "tiny.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "1M").CombinedOutput(); err != nil {
			b.Fatalf("qemu-img: %v\n%s", err, out)
		}
		l.d.ok("template", "import", "tiny", "--disk", img, "--memory", "64")
		began := time.Now()
		c := l.d.client()
		names := make(chan string)
		errs := make(chan error, 4)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range names {
					if _, err := c.Configs().Create(context.Background(), wire.ConfigRequest{Name: name, Owner: benchUser,
						Description: "benchmark configuration " + name,
						VMs:         []wire.VMRequest{{Name: "vm", Template: "tiny"}}}); err != nil {
						errs <- fmt.Errorf("create %s: %w", name, err)
						return
					}
				}
			}()
		}
		for i := 0; i < benchConfigs; i++ {
			select {
			case names <- fmt.Sprintf("bench-%04d", i):
			case err := <-errs:
				b.Fatal(err)
			}
		}
		close(names)
		wg.Wait()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		b.Logf("created %d configurations in %s", benchConfigs, time.Since(began).Round(time.Millisecond))
	})
}

// benchConfigsServer times GET /ui/configs from the Go side: the daemon's
// time to read 1,000 configurations as the user, render the page and send
// it over loopback.
func (l *benchLab) benchConfigsServer(b *testing.B) {
	l.makeConfigs()
	var size int
	get := func() time.Duration {
		t0 := time.Now()
		resp, err := l.http.Get(l.d.url + "/ui/configs")
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /ui/configs: %d %v", resp.StatusCode, err)
		}
		// The page holds the first screenful of rows and a marker for
		// the rest, which the browser loads as the user scrolls.
		if n := bytes.Count(body, []byte(`<tr data-name="bench-`)); n != firstRows || !bytes.Contains(body, []byte(`data-more=`)) {
			b.Fatalf("GET /ui/configs has %d rows (marker: %v), want %d and a marker", n, bytes.Contains(body, []byte(`data-more=`)), firstRows)
		}
		size = len(body)
		return d
	}
	get() // warm: templates parsed, store pages cached
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, get())
	}
	b.StopTimer()
	b.ReportMetric(ms(median(times)), "p50-ms")
	b.ReportMetric(float64(size)/1024, "KiB")
}

// benchConfigsRows times the marker's fragment after the page's rows (the
// next 200 rows), which the browser loads when the marker nears the
// screen.
func (l *benchLab) benchConfigsRows(b *testing.B) {
	l.makeConfigs()
	const path = "/ui/config-rows?after=bench-0049"
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resp, err := l.http.Get(l.d.url + path)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		if n := bytes.Count(body, []byte(`<tr data-name="bench-`)); n != 200 {
			b.Fatalf("GET %s has %d rows, want 200", path, n)
		}
		times = append(times, time.Since(t0))
	}
	b.ReportMetric(ms(median(times)), "p50-ms")
}

// benchConfigsAPI times GET /api/v1/configs as the same user: the lab's
// part of the page's time (reading and filtering 1,000 configurations).
func (l *benchLab) benchConfigsAPI(b *testing.B) {
	l.makeConfigs()
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodGet, l.d.url+"/api/v1/configs", nil)
		req.Header.Set("Authorization", "Bearer "+l.token)
		resp, err := l.http.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /api/v1/configs: %d %v", resp.StatusCode, err)
		}
		times = append(times, time.Since(t0))
	}
	b.ReportMetric(ms(median(times)), "p50-ms")
}

// benchConfigsFirstPaint loads /ui/configs in Chromium and reads its first
// contentful paint from the Performance API (from navigation start).
func (l *benchLab) benchConfigsFirstPaint(b *testing.B) {
	l.makeConfigs()
	var fcps, loads, resps, dcls []float64
	for i := 0; i < b.N; i++ {
		run(b, l.tab, "load the configurations", time.Minute,
			chromedp.Navigate(l.br.url+"/ui/configs"),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-name="bench-0000"]`)),
			chromedp.WaitReady(chromedp.CSS(`tr[data-more]`)))
		p := value(b, l.tab, "read the paint timing", 30*time.Second, chromedp.Poll[struct{ FCP, Load, Response, DCL float64 }](`(() => {
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const nav = performance.getEntriesByType("navigation")[0];
  return fcp && nav && nav.loadEventEnd > 0 && {FCP: fcp.startTime, Load: nav.loadEventEnd, Response: nav.responseEnd, DCL: nav.domContentLoadedEventEnd};
})()`))
		fcps, loads = append(fcps, p.FCP), append(loads, p.Load)
		resps, dcls = append(resps, p.Response), append(dcls, p.DCL)
	}
	sort.Float64s(resps)
	sort.Float64s(dcls)
	b.ReportMetric(resps[len(resps)/2], "response-p50-ms")
	b.ReportMetric(dcls[len(dcls)/2], "dcl-p50-ms")
	sort.Float64s(fcps)
	sort.Float64s(loads)
	b.ReportMetric(fcps[len(fcps)/2], "fcp-p50-ms")
	b.ReportMetric(fcps[len(fcps)-1], "fcp-max-ms")
	b.ReportMetric(loads[len(loads)/2], "load-p50-ms")
}

// loadAllRowsJS scrolls to the list's marker until none is left: true
// once every row is loaded.
const loadAllRowsJS = `(() => {
  const m = document.querySelector("tr[data-more]");
  if (m) { m.scrollIntoView(); return false; }
  return document.querySelectorAll("#configs tbody tr[data-name]").length > 0;
})()`

// eventToDOMJS changes a configuration's storage lease through the API from
// the page and waits for its row to be replaced from the event stream:
// the times (performance.now()) of the request, its answer and the row's
// replacement.
const eventToDOMJS = `(async (name, lease) => {
  const tbody = document.querySelector("#configs tbody");
  const replaced = new Promise((resolve) => {
    const obs = new MutationObserver((muts) => {
      for (const m of muts) for (const n of m.addedNodes) {
        if (n.nodeType === 1 && n.dataset.name === name) { obs.disconnect(); resolve(performance.now()); return; }
      }
    });
    obs.observe(tbody, {childList: true});
  });
  const t0 = performance.now();
  const res = await fetch("/api/v1/configs/" + name + "/lease", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({storage: lease})});
  const t1 = performance.now();
  if (!res.ok) throw new Error("lease: " + res.status + " " + await res.text());
  const t2 = await Promise.race([replaced, new Promise((r) => setTimeout(() => r(-1), 10000))]);
  return {Request: t0, Answer: t1, Row: t2};
})`

// benchEventToDOM measures an event's way from a change through the API
// to the row of the configurations page (1,000 rows) that shows it.
func (l *benchLab) benchEventToDOM(b *testing.B) {
	l.makeConfigs()
	run(b, l.tab, "load the configurations", time.Minute,
		chromedp.Navigate(l.br.url+"/ui/configs"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="bench-0000"]`)))
	// All 1,000 rows, as a user who scrolled to the end has them: the
	// changes below reach rows across the list.
	value(b, l.tab, "scroll to the end of the list", time.Minute, chromedp.Poll[bool](loadAllRowsJS))
	var fromAnswer, fromRequest []float64
	type times struct{ Request, Answer, Row float64 }
	// The first change waits for the page's event stream to be open.
	warm := chromedp.Evaluate[times](fmt.Sprintf(`%s(%q, %q)`, eventToDOMJS, "bench-0000", "29d"), chromedp.EvalAwaitPromise)
	if t := value(b, l.tab, "a first change", 30*time.Second, warm); t.Row < 0 {
		b.Fatalf("the page never showed a change")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench-%04d", (i*37)%benchConfigs)
		t := value(b, l.tab, "change "+name, 30*time.Second, chromedp.Evaluate[times](
			fmt.Sprintf(`%s(%q, %q)`, eventToDOMJS, name, fmt.Sprintf("%dd", 30+i%300)), chromedp.EvalAwaitPromise))
		if t.Row < 0 {
			b.Fatalf("%s's row never changed after its lease did", name)
		}
		fromAnswer = append(fromAnswer, t.Row-t.Answer)
		fromRequest = append(fromRequest, t.Row-t.Request)
	}
	sort.Float64s(fromAnswer)
	sort.Float64s(fromRequest)
	b.ReportMetric(fromAnswer[len(fromAnswer)/2], "answer-to-row-p50-ms")
	b.ReportMetric(fromRequest[len(fromRequest)/2], "request-to-row-p50-ms")
	b.ReportMetric(fromRequest[len(fromRequest)*9/10], "request-to-row-p90-ms")
}

// startEchoGuest deploys one guest with a shell on its serial console and
// waits for its boot line in the serial log.
func (l *benchLab) startEchoGuest() {
	l.guest.Do(func() {
		b := l.b
		labFixture(b, l.d)
		c := l.d.client()
		if _, err := c.Configs().Create(context.Background(), wire.ConfigRequest{Name: "echo", Owner: benchUser,
			VMs: []wire.VMRequest{{Name: "vm", Template: "guest"}}}); err != nil {
			b.Fatal(err)
		}
		l.d.ok("config", "deploy", "echo")
		deadline := time.Now().Add(3 * time.Minute)
		for {
			out, _, _ := l.d.run("", "vm", "log", "echo", "vm")
			if strings.Contains(out, "STAGEHAND-BOOT") {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("the echo guest never booted; its log:\n%s", out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// consoleSocket finds QEMU's console socket of the echo guest.
func (l *benchLab) consoleSocket() string {
	var found string
	filepath.WalkDir(l.d.dataDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Name() == "console.sock" {
			found = p
		}
		return nil
	})
	if found == "" {
		l.b.Fatalf("no console.sock under %s", l.d.dataDir)
	}
	return found
}

// echoer is one side of a serial line: write bytes, read what comes back.
type echoer struct {
	write func([]byte) error
	read  func() ([]byte, error) // the next chunk of output
	buf   []byte
}

// until reads until the output seen since the last call contains want.
func (e *echoer) until(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !bytes.Contains(e.buf, []byte(want)) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q within %s; got %q", want, timeout, e.buf)
		}
		p, err := e.read()
		if err != nil {
			return fmt.Errorf("waiting for %q: %w (got %q)", want, err, e.buf)
		}
		e.buf = append(e.buf, p...)
	}
	e.buf = e.buf[:0]
	return nil
}

// prompt gets the shell's attention: an empty command line until the
// prompt answers.
func (e *echoer) prompt(b *testing.B) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := e.write([]byte("\r")); err != nil {
			b.Fatal(err)
		}
		if err := e.until("# ", 3*time.Second); err == nil {
			e.drain(b)
			return
		} else if time.Now().After(deadline) {
			b.Fatalf("no shell prompt on the serial console: %v", err)
		}
	}
}

// drain reads until the line has been quiet for half a second (a replay
// of past output, the rest of a prompt) and forgets what it read.
func (e *echoer) drain(b *testing.B) {
	quiet := time.Now()
	for time.Since(quiet) < 500*time.Millisecond {
		p, err := e.read()
		if err != nil {
			b.Fatal(err)
		}
		if len(p) > 0 {
			quiet = time.Now()
		}
	}
	e.buf = e.buf[:0]
}

// roundTrips types b.N keys and times each one's echo; after each, the
// key is erased (DEL, echoed "\b \b") so the command line stays short.
func (e *echoer) roundTrips(b *testing.B) []time.Duration {
	e.prompt(b)
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := e.write([]byte("x")); err != nil {
			b.Fatal(err)
		}
		if err := e.until("x", 10*time.Second); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
		b.StopTimer()
		if err := e.write([]byte{0x7f}); err != nil {
			b.Fatal(err)
		}
		if err := e.until("\b", 10*time.Second); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	return times
}

// benchEchoDirect: keystroke echo on QEMU's console socket, a unix-socket
// client in Go (what socat would be), the baseline.
func (l *benchLab) benchEchoDirect(b *testing.B) {
	l.startEchoGuest()
	conn, err := net.Dial("unix", l.consoleSocket())
	if err != nil {
		b.Fatalf("QEMU's console socket: %v", err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	e := &echoer{
		write: func(p []byte) error { _, err := conn.Write(p); return err },
		read: func() ([]byte, error) {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				err = nil
			}
			return buf[:n], err
		},
	}
	times := e.roundTrips(b)
	l.direct = append(l.direct[:0], times...)
	b.ReportMetric(us(median(times)), "p50-µs")
}

// benchEchoWebsocket: keystroke echo through the daemon's serial websocket
// (the web console's path), as benchUser over TCP in the namespace.
func (l *benchLab) benchEchoWebsocket(b *testing.B) {
	l.startEchoGuest()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(l.d.url, "http://", "ws://", 1)+"/api/v1/configs/echo/vms/vm/serial/ws",
		&websocket.DialOptions{HTTPClient: l.http, Subprotocols: []string{wire.ConsoleSubprotocol},
			HTTPHeader: http.Header{"Authorization": {"Bearer " + l.token}}})
	if err != nil {
		b.Fatalf("serial websocket: %v", err)
	}
	defer ws.CloseNow()
	// A read cancelled by its context closes the websocket: one reader
	// hands the output over, and read waits for it a second at most.
	out := make(chan []byte, 64)
	readErr := make(chan error, 1)
	go func() {
		for {
			typ, p, err := ws.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			if typ == websocket.MessageBinary { // text frames are controls
				out <- p
			}
		}
	}()
	e := &echoer{
		write: func(p []byte) error { return ws.Write(ctx, websocket.MessageBinary, p) },
		read: func() ([]byte, error) {
			select {
			case p := <-out:
				return p, nil
			case err := <-readErr:
				return nil, err
			case <-time.After(time.Second):
				return nil, nil
			}
		},
	}
	times := e.roundTrips(b)
	b.ReportMetric(us(median(times)), "p50-µs")
	if len(l.direct) > 0 {
		b.ReportMetric(float64(median(times))/float64(median(l.direct)), "ratio-to-socket")
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
