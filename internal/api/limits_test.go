package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/lab"
)

// limitedServer serves a real lab (apitest.Lab.Seed: network "lan",
// configuration "web" with VM "vm1") through api.NewServer with lim, on a
// listener capped by api.LimitListener, as the daemon does.
func limitedServer(t *testing.T, lim api.Limits, opts ...apitest.Option) (*httptest.Server, *api.Handler, *apitest.Lab) {
	t.Helper()
	l := apitest.New(t, opts...).Seed(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := api.NewHandler(l.Service, log)
	h.TrustRequestsWithoutCredentials(apitest.Root)
	srv := httptest.NewUnstartedServer(h)
	srv.Config = api.NewServer(h, lim, log)
	srv.Listener = api.LimitListener(srv.Listener, lim.MaxConns)
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, h, l
}

func testLimits() api.Limits {
	l := api.DefaultLimits
	l.HeaderTimeout = 5 * time.Second
	return l
}

// TestSlowBodyIsCutOff: a client that announces a large body and trickles
// it (the review's slow.py) is answered 408 and disconnected once the body
// timeout passes, instead of holding its connection for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	lim := testLimits()
	lim.BodyTimeout = 500 * time.Millisecond
	srv, _, _ := limitedServer(t, lim)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	if _, err := io.WriteString(conn, "POST /api/v1/networks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	// Keep trickling, as the attacker does, until the server gives up.
	stopTrickle := make(chan struct{})
	defer close(stopTrickle)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopTrickle:
				return
			case <-tick.C:
				if _, err := io.WriteString(conn, " "); err != nil {
					return
				}
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	took := time.Since(began)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "request body not received within 500ms") {
		t.Fatalf("answer %s %s", resp.Status, body)
	}
	if took < lim.BodyTimeout || took > 5*time.Second {
		t.Errorf("cut off after %s, want about %s", took, lim.BodyTimeout)
	}
	// The connection is closed, not kept for another request.
	var buf [1]byte
	if _, err := conn.Read(buf[:]); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Errorf("connection still open after the 408: %v", err)
	}
	t.Logf("slow body cut off after %s", took.Round(time.Millisecond))
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestBodyDeadlineDoesNotCutLongRequests: the body deadline is lifted once
// the body is read, so a request that takes longer to serve than the body
// timeout is answered normally.
func TestBodyDeadlineDoesNotCutLongRequests(t *testing.T) {
	lim := testLimits()
	lim.BodyTimeout = 200 * time.Millisecond
	srv, h, _ := limitedServer(t, lim)
	finish := h.StartRecovery() // holds the write past the body timeout
	time.AfterFunc(600*time.Millisecond, func() { finish(nil) })
	resp, err := srv.Client().Post(srv.URL+"/api/v1/networks", "application/json",
		strings.NewReader(`{"name":"lan2","subnet":"10.1.0.0/24","pools":["10.1.0.10-10.1.0.20"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("answer %s", resp.Status)
	}
}

// TestIdleConnectionIsClosed: a keep-alive connection without a request is
// closed after the idle timeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	lim := testLimits()
	lim.IdleTimeout = 300 * time.Millisecond
	srv, _, _ := limitedServer(t, lim)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	began := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("closed after %s", d)
	}
}

// TestConnectionsBeyondTheCapWait: with every allowed connection held, a
// new client waits (it is not served, not refused) until one closes.
func TestConnectionsBeyondTheCapWait(t *testing.T) {
	lim := testLimits()
	lim.MaxConns = 2
	srv, _, _ := limitedServer(t, lim)
	var held []net.Conn
	for range lim.MaxConns {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(srv.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a connection beyond the cap was served at once (%v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	held[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("after a slot freed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting client was not served after a slot freed")
	}
}

// TestConsoleIdleSessionIsClosed: a console session without a byte either
// way is closed after ConsoleIdle, freeing the VM's console; traffic keeps
// a session open.
func TestConsoleIdleSessionIsClosed(t *testing.T) {
	lim := testLimits()
	lim.ConsoleIdle = 700 * time.Millisecond
	srv, _, l := limitedServer(t, lim)
	if _, err := l.Deployments.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	l.EchoConsole(t, "web", "vm1")
	conn, br, resp := dialConsole(t, srv, "/api/v1/configs/web/vms/vm1/console", upgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("answer %s", resp.Status)
	}
	began := time.Now()
	// Active for longer than the idle timeout: still open.
	for time.Since(began) < 2*lim.ConsoleIdle {
		io.WriteString(conn, "x")
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if b, err := br.ReadByte(); err != nil || b != 'x' {
			t.Fatalf("active session: %q, %v", b, err)
		}
		time.Sleep(lim.ConsoleIdle / 4)
	}
	// Then idle: closed.
	idleFrom := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle session: %v, want EOF", err)
	}
	if d := time.Since(idleFrom); d < lim.ConsoleIdle/2 || d > 5*time.Second {
		t.Errorf("idle session closed after %s (idle timeout %s)", d, lim.ConsoleIdle)
	}
	// The console is free again.
	waitConsoleFree(t, srv)
}

// TestStreamsOutliveTheWriteTimeout: a followed serial log keeps streaming
// past the server's write timeout (each write has its own bound), while an
// ordinary answer is bounded by it.
func TestStreamsOutliveTheWriteTimeout(t *testing.T) {
	lim := testLimits()
	lim.WriteTimeout = 500 * time.Millisecond
	lim.StreamWriteTimeout = 5 * time.Second
	srv, _, l := limitedServer(t, lim)
	if _, err := l.Deployments.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	logFile := l.SerialLog(t, "web", "vm1")
	if err := os.WriteFile(logFile, []byte("boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/configs/web/vms/vm1/log?follow=1", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "boot\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	time.Sleep(3 * lim.WriteTimeout)
	f, _ := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("later\n")
	f.Close()
	if line, err := br.ReadString('\n'); err != nil || line != "later\n" {
		t.Fatalf("after the write timeout: %q, %v", line, err)
	}
}

// TestWritesWaitForRecovery: while the daemon recovers, reads, health and
// status are served at once, /readyz says 503, a write waits and goes
// through when the recovery ends; a write that waits longer than
// RecoveryWait is answered 503 "recovering" with Retry-After.
func TestWritesWaitForRecovery(t *testing.T) {
	lim := testLimits()
	lim.RecoveryWait = 400 * time.Millisecond
	srv, h, _ := limitedServer(t, lim)
	finish := h.StartRecovery()
	get := func(path string) (int, http.Header, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	post := func(body string) (int, http.Header, string) {
		resp, err := srv.Client().Post(srv.URL+"/api/v1/networks", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, p := range []string{"/healthz", "/api/v1/networks", "/api/v1/status"} {
		began := time.Now()
		if code, _, body := get(p); code != http.StatusOK || time.Since(began) > 200*time.Millisecond {
			t.Errorf("GET %s while recovering: %d after %s: %s", p, code, time.Since(began), body)
		}
	}
	if code, hdr, body := get("/readyz"); code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "recovering") {
		t.Errorf("/readyz while recovering: %d %v %s", code, hdr, body)
	}
	var st wire.Status
	if _, _, body := get("/api/v1/status"); json.Unmarshal([]byte(body), &st) != nil || st.Recovered {
		t.Errorf("status while recovering: %s", body)
	}

	// Past RecoveryWait: 503 with Retry-After, and nothing was created.
	code, hdr, body := post(`{"name":"late","subnet":"10.2.0.0/24","pools":["10.2.0.10-10.2.0.20"]}`)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "5" || !strings.Contains(body, "recovering interrupted operations") {
		t.Errorf("write past the recovery wait: %d %v %s", code, hdr, body)
	}
	if code, _, _ := get("/api/v1/networks/late"); code != http.StatusNotFound {
		t.Errorf("refused write created its network: %d", code)
	}

	// A write that arrives during recovery waits for its end.
	done := make(chan int, 1)
	go func() {
		code, _, _ := post(`{"name":"lan2","subnet":"10.1.0.0/24","pools":["10.1.0.10-10.1.0.20"]}`)
		done <- code
	}()
	select {
	case code := <-done:
		t.Fatalf("write answered %d during recovery", code)
	case <-time.After(150 * time.Millisecond):
	}
	finish(nil)
	select {
	case code := <-done:
		if code != http.StatusCreated {
			t.Fatalf("write after recovery: %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write still held after recovery")
	}
	if code, _, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, `"ready"`) {
		t.Errorf("/readyz after recovery: %d %s", code, body)
	}
	if _, _, body := get("/api/v1/status"); json.Unmarshal([]byte(body), &st) != nil || !st.Recovered {
		t.Errorf("status after recovery: %s", body)
	}
}

// TestStatus: GET /status reports the daemon, the accelerator and counts.
func TestStatus(t *testing.T) {
	srv, h, l := limitedServer(t, testLimits(), apitest.Accel("chosen with --accel tcg"))
	started := time.Now().Add(-90 * time.Second)
	h.SetDaemon(api.Daemon{Version: "1.2.3", Started: started, StoreKind: "sqlite", StorePath: "/data/stagehand.db"})
	if _, err := l.Deployments.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(srv.URL + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st wire.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	want := wire.Status{
		Version:   "1.2.3",
		StartedAt: st.StartedAt,
		Accel:     wire.Accel{State: wire.AccelReady, Accel: "tcg", Reason: "chosen with --accel tcg"},
		Store:     wire.Store{Kind: "sqlite", Path: "/data/stagehand.db"},
		DataDir:   l.DataDir(),
		Counts:    wire.Counts{Templates: 1, Networks: 1, Configs: 1, Deployed: 1, RunningVMs: 1},
		Recovered: true,
	}
	st.UptimeSeconds, want.UptimeSeconds = float64(int(st.UptimeSeconds)), 90
	if !st.StartedAt.Equal(started) || st != want {
		t.Errorf("status = %+v\nwant     %+v", st, want)
	}
}
