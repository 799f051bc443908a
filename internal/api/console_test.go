package api_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"stagehand/internal/api"
	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/client"
	"stagehand/internal/lab"
	"stagehand/internal/store"
)

// The consoles against a real guest: QEMU under TCG booting the test
// guest with a shell on its serial port, served over real HTTP and real
// websockets on 127.0.0.1. The VM has no NIC: nothing leaves the host.

// smallBuffers makes every accepted connection's send buffer small, as on
// a slow network path: a viewer that does not read blocks the daemon's
// writes to it after a few KiB instead of megabytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// guestLab deploys configuration "c" with VM "v" from the test guest and
// serves the API over it (strict: tokens needed). It returns the server,
// the lab, and the tokens of "admin" (a system administrator) and "bob"
// (console-only in the shared workspace c is in).
func guestLab(t *testing.T) (srv *httptest.Server, l *apitest.Lab, admin, bob string) {
	t.Helper()
	l = apitest.New(t, apitest.QEMU())
	l.GuestTemplate(t, "guest")
	ctx := context.Background()
	if _, err := l.Configs.Create(ctx, lab.ConfigSpec{Name: "c", VMs: []lab.VMSpec{{Name: "v", Template: "guest"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Configs.Create(ctx, lab.ConfigSpec{Name: "other", VMs: []lab.VMSpec{{Name: "v", Template: "guest"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Deployments.Deploy(ctx, "c", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := l.Deployments.Undeploy(ctx, "c", false); err != nil {
			t.Errorf("undeploy: %v", err)
		}
	})
	h := api.NewLabHandler(l.API(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv = httptest.NewUnstartedServer(h)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		h.Drain()
		srv.Close()
	})
	admin = l.AdminToken(t)
	bob = l.Token(t, "bob", apitest.TokenOptions{})
	// Bob may use the consoles of the shared workspace, nothing more.
	err := l.Store().Update(ctx, func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		ws, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		u, err := tx.Users().Get("bob")
		if err != nil {
			return err
		}
		return tx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: string(auth.RoleConsoleOnly)})
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, l, admin, bob
}

func sendJSON(t *testing.T, srv *httptest.Server, token, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// viewer is a websocket console client that records what it receives.
type viewer struct {
	name string
	c    *websocket.Conn

	mu       sync.Mutex
	out      bytes.Buffer
	statuses []wire.ConsoleStatusMessage
	errs     []wire.ConsoleErrorMessage
	closed   error // why the connection ended
	changed  chan struct{}
}

// dialViewer opens path as a websocket with token (a bearer token, or a
// console link when link is set) and reads it in the background.
func dialViewer(t *testing.T, srv *httptest.Server, name, path, token string, link bool) *viewer {
	t.Helper()
	v, resp, err := tryViewer(t, srv, name, path, token, link, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("%s: dial %s: %d %v", name, path, status, err)
	}
	return v
}

func tryViewer(t *testing.T, srv *httptest.Server, name, path, token string, link bool, hc *http.Client) (*viewer, *http.Response, error) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + path
	opts := &websocket.DialOptions{Subprotocols: []string{wire.ConsoleSubprotocol}, HTTPClient: hc}
	if link {
		u += "?" + wire.ConsoleLinkParam + "=" + token
	} else {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + token}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		return nil, resp, err
	}
	if c.Subprotocol() != wire.ConsoleSubprotocol {
		t.Errorf("%s: subprotocol %q", name, c.Subprotocol())
	}
	c.SetReadLimit(8 << 20)
	v := &viewer{name: name, c: c, changed: make(chan struct{}, 1)}
	// Viewers live until the whole test ends, beyond the subtest that
	// opened them.
	openViewers.Lock()
	openViewers.conns = append(openViewers.conns, c)
	openViewers.Unlock()
	if hc == nil {
		go v.read()
	}
	return v, resp, nil
}

// openViewers are closed by closeViewers at the end of the test.
var openViewers struct {
	sync.Mutex
	conns []*websocket.Conn
}

func closeViewers() {
	openViewers.Lock()
	defer openViewers.Unlock()
	for _, c := range openViewers.conns {
		c.CloseNow()
	}
	openViewers.conns = nil
}

func (v *viewer) read() {
	for {
		typ, data, err := v.c.Read(context.Background())
		v.mu.Lock()
		switch {
		case err != nil:
			v.closed = err
		case typ == websocket.MessageBinary:
			v.out.Write(data)
		default:
			var m struct{ Type string }
			json.Unmarshal(data, &m)
			if m.Type == wire.ConsoleStatus {
				var s wire.ConsoleStatusMessage
				json.Unmarshal(data, &s)
				v.statuses = append(v.statuses, s)
			} else {
				var e wire.ConsoleErrorMessage
				json.Unmarshal(data, &e)
				v.errs = append(v.errs, e)
			}
		}
		v.mu.Unlock()
		select {
		case v.changed <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// wait waits until cond (called under the viewer's lock) holds.
func (v *viewer) wait(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	v.waitUntil(t, what, timeout, false, cond)
}

// waitFlowing waits until cond holds for as long as the console's output
// keeps coming: it fails once quiet passes without a byte of output. A
// flood's duration depends on the machine's load (a serial port under TCG
// on a busy host), a stall does not.
func (v *viewer) waitFlowing(t *testing.T, what string, quiet time.Duration, cond func() bool) {
	t.Helper()
	v.waitUntil(t, what, quiet, true, cond)
}

func (v *viewer) waitUntil(t *testing.T, what string, timeout time.Duration, onProgress bool, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	began, lastLen := time.Now(), -1
	for {
		v.mu.Lock()
		ok, n := cond(), v.out.Len()
		v.mu.Unlock()
		if ok {
			return
		}
		if onProgress && n != lastLen {
			lastLen = n
			timer.Reset(timeout)
		}
		select {
		case <-v.changed:
		case <-timer.C:
			v.mu.Lock()
			defer v.mu.Unlock()
			tail := v.out.String()
			if len(tail) > 600 {
				tail = tail[len(tail)-600:]
			}
			why := fmt.Sprintf("after %s", time.Since(began).Round(time.Millisecond))
			if onProgress {
				why = fmt.Sprintf("after %s, the last %s without output", time.Since(began).Round(time.Millisecond), timeout)
			}
			t.Fatalf("%s: %s never came %s (closed: %v); last status %+v, every error since it attached %+v; output (%d bytes) ends %q",
				v.name, what, why, v.closed, v.lastStatus(), v.errs, v.out.Len(), tail)
		}
	}
}

func (v *viewer) waitOutput(t *testing.T, want string) {
	t.Helper()
	v.wait(t, fmt.Sprintf("output %q", want), 90*time.Second, func() bool { return strings.Contains(v.out.String(), want) })
}

func (v *viewer) waitStatus(t *testing.T, want wire.ConsoleStatusMessage) {
	t.Helper()
	want.Type = wire.ConsoleStatus
	v.wait(t, fmt.Sprintf("status %+v", want), 10*time.Second, func() bool { return v.lastStatus() == want })
}

func (v *viewer) lastStatus() wire.ConsoleStatusMessage {
	if len(v.statuses) == 0 {
		return wire.ConsoleStatusMessage{}
	}
	return v.statuses[len(v.statuses)-1]
}

func (v *viewer) output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.out.String()
}

func (v *viewer) typeBytes(t *testing.T, s string) {
	t.Helper()
	if err := v.c.Write(context.Background(), websocket.MessageBinary, []byte(s)); err != nil {
		t.Fatalf("%s types: %v", v.name, err)
	}
}

func (v *viewer) control(t *testing.T, msg wire.ConsoleControl) {
	t.Helper()
	b, _ := json.Marshal(msg)
	if err := v.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatalf("%s sends %s: %v", v.name, b, err)
	}
}

// rfbHandshake runs the RFB 3.8 handshake (security None) over a VNC
// websocket and returns the framebuffer size of ServerInit.
func rfbHandshake(t *testing.T, c *websocket.Conn) (w, h int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatalf("RFB: read %d bytes: %v", n, err)
		}
		return b
	}
	if banner := read(12); string(banner) != "RFB 003.008\n" {
		t.Fatalf("RFB banner %q", banner)
	}
	conn.Write([]byte("RFB 003.008\n"))
	types := read(int(read(1)[0]))
	if !bytes.Contains(types, []byte{1}) {
		t.Fatalf("RFB security types %v lack None", types)
	}
	conn.Write([]byte{1})
	if res := read(4); !bytes.Equal(res, []byte{0, 0, 0, 0}) {
		t.Fatalf("RFB security result %v", res)
	}
	conn.Write([]byte{1}) // shared
	init := read(4)
	return int(binary.BigEndian.Uint16(init)), int(binary.BigEndian.Uint16(init[2:]))
}

func TestConsolesOfARealGuest(t *testing.T) {
	srv, l, admin, bob := guestLab(t)
	t.Cleanup(closeViewers)
	const serial = "/api/v1/configs/c/vms/v/serial/ws"

	// The first viewer holds the keyboard and sees the boot.
	a := dialViewer(t, srv, "admin", serial, admin, false)
	a.waitStatus(t, wire.ConsoleStatusMessage{Holder: "admin", Viewers: 1, YouHold: true})
	a.waitOutput(t, "STAGEHAND-BOOT")
	time.Sleep(time.Second) // the shell starts after the boot line
	b := dialViewer(t, srv, "bob", serial, bob, false)
	b.waitStatus(t, wire.ConsoleStatusMessage{Holder: "admin", Viewers: 2})
	a.waitStatus(t, wire.ConsoleStatusMessage{Holder: "admin", Viewers: 2, YouHold: true})
	b.waitOutput(t, "STAGEHAND-BOOT") // replayed

	t.Run("both viewers see what the holder typed", func(t *testing.T) {
		a.typeBytes(t, "echo hi-$((6*7))\n")
		a.waitOutput(t, "hi-42")
		b.waitOutput(t, "hi-42")
	})

	t.Run("a watcher's input is ignored until it takes the keyboard", func(t *testing.T) {
		b.typeBytes(t, "echo watcher-$((1+1))\n")
		b.wait(t, "a not_holder error", 10*time.Second, func() bool { return len(b.errs) > 0 && b.errs[0].Code == "not_holder" })
		b.control(t, wire.ConsoleControl{Type: wire.ConsoleTake})
		b.waitStatus(t, wire.ConsoleStatusMessage{Holder: "bob", Viewers: 2, YouHold: true})
		a.waitStatus(t, wire.ConsoleStatusMessage{Holder: "bob", Viewers: 2})
		b.control(t, wire.ConsoleControl{Type: wire.ConsoleType, Text: "echo taken-$((2+3))\n"})
		a.waitOutput(t, "taken-5")
		b.waitOutput(t, "taken-5")
		if strings.Contains(a.output(), "watcher-2") {
			t.Errorf("the watcher's input reached the guest")
		}
		// The one who lost the keyboard cannot type either.
		a.typeBytes(t, "echo lost-$((3+4))\n")
		a.wait(t, "a not_holder error", 10*time.Second, func() bool { return len(a.errs) > 0 })
	})

	t.Run("a viewer who comes back sees the screen again", func(t *testing.T) {
		a.c.Close(websocket.StatusNormalClosure, "")
		b.waitStatus(t, wire.ConsoleStatusMessage{Holder: "bob", Viewers: 1, YouHold: true})
		a = dialViewer(t, srv, "admin again", serial, admin, false)
		a.waitOutput(t, "hi-42")
		a.waitOutput(t, "taken-5")
		a.waitStatus(t, wire.ConsoleStatusMessage{Holder: "bob", Viewers: 2})
		if strings.Contains(a.output(), "lost-7") {
			t.Errorf("the refused input reached the guest")
		}
	})

	t.Run("the CLI's console works beside the websockets", func(t *testing.T) {
		c := client.New(srv.URL, client.WithToken(admin))
		conn, err := c.VMs().Console(context.Background(), "c", "v")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		b.waitStatus(t, wire.ConsoleStatusMessage{Holder: "admin", Viewers: 3})
		conn.SetDeadline(time.Now().Add(90 * time.Second))
		io.WriteString(conn, "echo raw-$((3*3))\n")
		var got bytes.Buffer
		buf := make([]byte, 4096)
		for !strings.Contains(got.String(), "raw-9") {
			n, err := conn.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("raw console: %v after %q", err, got.String())
			}
		}
		b.waitOutput(t, "raw-9")
		a.waitOutput(t, "raw-9")
	})

	t.Run("a slow viewer is dropped without stalling the others", func(t *testing.T) {
		hub, err := l.Deployments.VMConsole(context.Background(), "c", "v")
		if err != nil {
			t.Fatal(err)
		}
		// The CLI's session has left (after its linger): a and b remain.
		for deadline := time.Now().Add(10 * time.Second); hub.Viewers() != 2; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d viewers, want a and b", hub.Viewers())
			}
		}
		b.control(t, wire.ConsoleControl{Type: wire.ConsoleTake})
		b.waitStatus(t, wire.ConsoleStatusMessage{Holder: "bob", Viewers: 2, YouHold: true})
		// A viewer whose socket takes a few KiB and is never read.
		hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			Control: func(network, address string, c syscall.RawConn) error {
				var serr error
				c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
				return serr
			}}).DialContext}}
		if _, resp, err := tryViewer(t, srv, "slow", serial, admin, false, hc); err != nil {
			t.Fatalf("slow viewer: %v %v", resp, err)
		}
		b.waitStatus(t, wire.ConsoleStatusMessage{Holder: "bob", Viewers: 3, YouHold: true})
		before := 2
		b.mu.Lock()
		errsBefore := len(b.errs)
		b.mu.Unlock()
		// More output than the slow viewer's queue (console.DefaultQueueBytes,
		// 256 KiB) and every buffer on its way (the replay it was sent
		// first, its socket's): 5500 lines of 64 bytes with the tty's \r\n,
		// 344 KiB. yes and head make them in a blink; busybox seq, which
		// the test used before, formats each number with emulated floating
		// point and took 23 s for 350 KB at load 7 (92 s+ at load 10).
		const line, lines = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd", 5500
		const flood = lines * (len(line) + 2)
		began := time.Now()
		b.typeBytes(t, fmt.Sprintf("yes %s | head -n %d; echo done-$((5*5))\n", line, lines))
		// The others are not stalled: their output keeps coming until the
		// end, however long the serial port takes on a loaded machine.
		b.waitFlowing(t, `output "done-25"`, 30*time.Second, func() bool { return strings.Contains(b.out.String(), "done-25") })
		a.waitFlowing(t, `output "done-25"`, 30*time.Second, func() bool { return strings.Contains(a.out.String(), "done-25") })
		b.mu.Lock()
		if refused := b.errs[errsBefore:]; len(refused) > 0 {
			t.Errorf("bob's input after his take was acknowledged was refused: %+v", refused)
		}
		b.mu.Unlock()
		if got := strings.Count(b.output(), line+"\r\n"); got != lines {
			t.Errorf("bob got %d of the %d lines", got, lines)
		}
		t.Logf("%d KiB through the serial console to two viewers in %s", flood>>10, time.Since(began).Round(time.Millisecond))
		if n := hub.Viewers(); n != before {
			t.Errorf("%d viewers after the flood, want %d: the slow one was not dropped", n, before)
		}
	})

	t.Run("the screen and the VNC console", func(t *testing.T) {
		resp, err := srv.Client().Do(authGet(srv.URL+"/api/v1/configs/c/vms/v/screen.png", admin))
		if err != nil {
			t.Fatal(err)
		}
		shot, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("screen.png: %s %s", resp.Status, shot)
		}
		img, err := png.Decode(bytes.NewReader(shot))
		if err != nil {
			t.Fatalf("screen.png is no PNG: %v", err)
		}
		// Within 2 s the same picture is served again, not a new dump.
		resp2, err := srv.Client().Do(authGet(srv.URL+"/api/v1/configs/c/vms/v/screen.png", bob))
		if err != nil {
			t.Fatal(err)
		}
		shot2, _ := io.ReadAll(resp2.Body)
		resp2.Body.Close()
		if resp2.Header.Get(wire.ScreenTakenHeader) != resp.Header.Get(wire.ScreenTakenHeader) || !bytes.Equal(shot, shot2) {
			t.Errorf("a second screen.png within 2 s was taken again (%s, then %s)", resp.Header.Get(wire.ScreenTakenHeader), resp2.Header.Get(wire.ScreenTakenHeader))
		}

		v2, _, err := tryViewer(t, srv, "vnc", "/api/v1/configs/c/vms/v/vnc/ws", bob, false, &http.Client{})
		if err != nil {
			t.Fatal(err)
		}
		w, h := rfbHandshake(t, v2.c)
		if w != img.Bounds().Dx() || h != img.Bounds().Dy() {
			t.Errorf("VNC framebuffer %dx%d, screendump %dx%d", w, h, img.Bounds().Dx(), img.Bounds().Dy())
		}

		ctl := dialViewer(t, srv, "vnc controls", "/api/v1/configs/c/vms/v/vnc/ws", bob, false)
		ctl.control(t, wire.ConsoleControl{Type: wire.ConsoleType, Text: "naïve"})
		ctl.control(t, wire.ConsoleControl{Type: wire.ConsoleKeys, Keys: []string{"ctrl-nokey"}})
		ctl.control(t, wire.ConsoleControl{Type: wire.ConsoleKeys, Keys: []string{"shift"}})
		ctl.control(t, wire.ConsoleControl{Type: wire.ConsoleType, Text: "ok\n"})
		ctl.wait(t, "two refusals", 20*time.Second, func() bool { return len(ctl.errs) >= 2 })
		time.Sleep(time.Second) // a refusal of the good ones would come now
		ctl.mu.Lock()
		if len(ctl.errs) != 2 || ctl.errs[0].Code != "invalid" || !strings.Contains(ctl.errs[1].Error, "nokey") {
			t.Errorf("VNC control refusals: %+v", ctl.errs)
		}
		ctl.mu.Unlock()
	})

	t.Run("another origin is refused before the upgrade", func(t *testing.T) {
		req := authGet(srv.URL+serial, admin)
		for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://evil.example"} {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin websocket: %s", resp.Status)
		}
	})

	t.Run("console links", func(t *testing.T) {
		code, body := sendJSON(t, srv, bob, "POST", "/api/v1/configs/c/vms/v/console-links", `{"expires_in":"1h"}`)
		if code != http.StatusForbidden {
			t.Errorf("bob (console share, no share right) made a link: %d %s", code, body)
		}
		code, body = sendJSON(t, srv, admin, "POST", "/api/v1/configs/c/vms/v/console-links", `{"expires_in":"1h"}`)
		var link wire.ConsoleLink
		if err := json.Unmarshal([]byte(body), &link); code != http.StatusCreated || err != nil || link.Token == "" {
			t.Fatalf("create link: %d %s", code, body)
		}
		if !strings.HasPrefix(link.URL, "/console/c/v?console_link=") || link.VM != "v" || link.Config != "c" || link.State != wire.TokenActive {
			t.Errorf("link %+v", link)
		}
		viaLink := dialViewer(t, srv, "via link", serial, link.Token, true)
		viaLink.waitOutput(t, "done-25") // the replay
		viaLink.wait(t, "a status", 10*time.Second, func() bool { return viaLink.lastStatus().Viewers == hubViewers(t, l) })
		if resp, err := srv.Client().Get(srv.URL + "/api/v1/configs/c/vms/v/screen.png?console_link=" + link.Token); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("screen through the link: %v %v", resp, err)
		}
		for _, p := range []string{"/api/v1/configs/c", "/api/v1/configs/other/vms/v/screen.png", "/api/v1/configs/c/vms/v/log", "/api/v1/console-links"} {
			resp, err := srv.Client().Get(srv.URL + p + "?console_link=" + link.Token)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET %s through the link: %s, want 403", p, resp.Status)
			}
		}
		// A public route is served as to anyone: the link lends its
		// creator's identity to nothing but the consoles.
		if resp, err := srv.Client().Get(srv.URL + "/healthz?console_link=" + link.Token); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("a public route with the link: %v %v", resp, err)
		}
		if _, resp, err := tryViewer(t, srv, "other VM", "/api/v1/configs/other/vms/v/serial/ws", link.Token, true, nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("another VM's serial console through the link: %v", err)
		}
		var links []wire.ConsoleLink
		code, body = sendJSON(t, srv, admin, "GET", "/api/v1/console-links", "")
		if err := json.Unmarshal([]byte(body), &links); code != 200 || err != nil || len(links) != 1 || links[0].ID != link.ID || links[0].Token != "" {
			t.Errorf("list links: %d %s", code, body)
		}
		if code, _ := sendJSON(t, srv, bob, "DELETE", "/api/v1/console-links/"+link.ID, ""); code != http.StatusNotFound {
			t.Errorf("bob revoking admin's link: %d, want 404", code)
		}
		if code, body := sendJSON(t, srv, admin, "DELETE", "/api/v1/console-links/"+link.ID, ""); code != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", code, body)
		}
		if _, resp, err := tryViewer(t, srv, "revoked", serial, link.Token, true, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a revoked link: %v", err)
		}

		code, body = sendJSON(t, srv, admin, "POST", "/api/v1/configs/c/vms/v/console-links", `{"expires_in":"1s"}`)
		var short wire.ConsoleLink
		if err := json.Unmarshal([]byte(body), &short); code != http.StatusCreated || err != nil {
			t.Fatalf("create link: %d %s", code, body)
		}
		time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
		resp, err := srv.Client().Get(srv.URL + "/api/v1/configs/c/vms/v/screen.png?console_link=" + short.Token)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "expired") {
			t.Errorf("an expired link: %s %s", resp.Status, b)
		}
		if code, _ := sendJSON(t, srv, admin, "POST", "/api/v1/configs/c/vms/v/console-links", `{"expires_in":"31d"}`); code != http.StatusBadRequest {
			t.Errorf("a 31-day link: %d, want 400", code)
		}
		if code, _ := sendJSON(t, srv, admin, "POST", "/api/v1/configs/c/vms/nope/console-links", ""); code != http.StatusNotFound {
			t.Errorf("a link to no VM: %d, want 404", code)
		}
	})

	t.Run("the viewers are told when the VM stops", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := l.Deployments.Undeploy(ctx, "c", false); err != nil {
			t.Fatal(err)
		}
		b.wait(t, "the close", 30*time.Second, func() bool { return b.closed != nil })
		var ce websocket.CloseError
		if !errors.As(b.closed, &ce) || ce.Code != websocket.StatusNormalClosure || !strings.Contains(ce.Reason, "VM stopped") {
			t.Errorf("close after undeploy: %v", b.closed)
		}
		if _, resp, err := tryViewer(t, srv, "late", serial, admin, false, nil); err == nil || resp == nil || resp.StatusCode != http.StatusConflict {
			t.Errorf("a viewer of an undeployed VM: %v", err)
		}
		if _, err := l.Deployments.Deploy(ctx, "c", lab.DeployOptions{}); err != nil {
			t.Fatal(err) // the cleanup undeploys it
		}
	})
}

func hubViewers(t *testing.T, l *apitest.Lab) int {
	t.Helper()
	hub, err := l.Deployments.VMConsole(context.Background(), "c", "v")
	if err != nil {
		t.Fatal(err)
	}
	return hub.Viewers()
}

func authGet(url, token string) *http.Request {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}
