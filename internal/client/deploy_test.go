package client_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/client"
	"stagehand/internal/errdefs"
)

// newDeployable returns a client of a real lab holding configuration "web"
// with VM "vm1" on network "lan", deployed on the lab's fake host.
func newDeployable(t *testing.T) (*client.Client, *apitest.Lab) {
	t.Helper()
	c, l := newClient(t, apitest.Accel("fixed for the test"))
	ctx := context.Background()
	if _, err := c.Templates().Import(ctx, wire.TemplateRequest{Name: "tmpl", Disks: []string{l.Image(t, "a.qcow2", 1<<30)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Networks().Create(ctx, wire.NetworkRequest{Name: "lan", Subnet: "10.0.0.0/24", Pools: []string{"10.0.0.10-10.0.0.20"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configs().Create(ctx, wire.ConfigRequest{Name: "web", VMs: []wire.VMRequest{{Name: "vm1", Template: "tmpl", Network: "lan"}}}); err != nil {
		t.Fatal(err)
	}
	return c, l
}

// waitVM polls a configuration until its VM vm1 is in state.
func waitVM(t *testing.T, c *client.Client, config, state string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		cfg, err := c.Configs().Get(context.Background(), config)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.VMs[0].State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM of %s is %s, not %s, after 5s", config, cfg.VMs[0].State, state)
		}
	}
}

func TestDeployLifecycle(t *testing.T) {
	c, _ := newDeployable(t)
	ctx := context.Background()
	cfg, err := c.Configs().Deploy(ctx, "web", wire.DeployRequest{Fenced: true, FencePolicy: wire.FenceBlock})
	if err != nil || cfg.State != "deployed" || !cfg.Fenced || cfg.FencePolicy != wire.FenceBlock || cfg.VMs[0].PID == 0 {
		t.Fatalf("Deploy = %+v, %v", cfg, err)
	}
	if _, err := c.Configs().Deploy(ctx, "web", wire.DeployRequest{}); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("second Deploy: %v, want conflict", err)
	}
	if _, err = c.VMs().Action(ctx, "web", "vm1", wire.VMStop); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// Stop asks the guest to power off: it is stopped once it is off.
	waitVM(t, c, "web", wire.VMStopped)
	if cfg, err = c.Configs().Get(ctx, "web"); err != nil || cfg.VMs[0].PID != 0 {
		t.Fatalf("stopped = %+v, %v", cfg, err)
	}
	cfg, err = c.VMs().Action(ctx, "web", "vm1", wire.VMStart)
	if err != nil || cfg.VMs[0].State != wire.VMRunning {
		t.Fatalf("start = %+v, %v", cfg, err)
	}
	if _, err := c.VMs().Action(ctx, "web", "nope", wire.VMReset); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("reset of unknown VM: %v", err)
	}
	cfg, err = c.Configs().Undeploy(ctx, "web", wire.UndeployRequest{SaveState: true})
	if err != nil || cfg.State != "undeployed" || !cfg.VMs[0].HasSavedState {
		t.Fatalf("Undeploy = %+v, %v", cfg, err)
	}
	rep, err := c.Server().Doctor(ctx, false)
	if err != nil || rep.Accel != "tcg" || rep.AccelReason == "" {
		t.Fatalf("Doctor = %+v, %v", rep, err)
	}
}

func TestVMLog(t *testing.T) {
	c, l := newDeployable(t)
	ctx := context.Background()
	if _, err := c.VMs().Log(ctx, "web", "vm1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("VMLog before any log: %v, want not found", err)
	}
	if _, err := c.Configs().Deploy(ctx, "web", wire.DeployRequest{}); err != nil {
		t.Fatal(err)
	}
	logPath := l.SerialLog(t, "web", "vm1")
	if err := os.WriteFile(logPath, []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := c.VMs().Log(ctx, "web", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != "one\n" {
		t.Fatalf("VMLog = %q, %v", b, err)
	}

	fctx, cancel := context.WithCancel(ctx)
	r, err = c.VMs().FollowLog(fctx, "web", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("two\n")
	f.Close()
	br := bufio.NewReader(r)
	for _, want := range []string{"one\n", "two\n"} {
		if l, err := br.ReadString('\n'); l != want {
			t.Fatalf("followed line %q, %v, want %q", l, err, want)
		}
	}
	cancel()
	if _, err := io.ReadAll(br); err == nil {
		t.Errorf("follow went on after cancel")
	}
}

func TestVMConsoleEcho(t *testing.T) {
	c, l := newDeployable(t)
	ctx := context.Background()
	if _, err := c.VMs().Console(ctx, "web", "vm1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("console of an undeployed VM: %v, want conflict", err)
	}
	if _, err := c.Configs().Deploy(ctx, "web", wire.DeployRequest{}); err != nil {
		t.Fatal(err)
	}
	l.EchoConsole(t, "web", "vm1")
	conn, err := c.VMs().Console(ctx, "web", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "ls /\r"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ls /\r" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	io.WriteString(conn, "exit\r")
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(conn)
	if err != nil || string(rest) != "exit\r" {
		t.Fatalf("after CloseWrite: %q, %v", rest, err)
	}
	// Asked to, a session starts with what the console printed.
	conn3, err := c.VMs().Console(ctx, "web", "vm1", client.ConsoleReplay())
	if err != nil {
		t.Fatal(err)
	}
	defer conn3.Close()
	conn3.SetDeadline(time.Now().Add(10 * time.Second))
	replay := make([]byte, len("ls /\rexit\r"))
	if _, err := io.ReadFull(conn3, replay); err != nil || string(replay) != "ls /\rexit\r" {
		t.Fatalf("replay = %q, %v", replay, err)
	}
	if _, err := c.VMs().Console(ctx, "web", "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("console of unknown VM: %v, want not found", err)
	}
}

// rawServer answers every connection with fn after reading its request.
func rawServer(t *testing.T, fn func(conn net.Conn, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rawServerOn(t, ln, fn)
	return "http://" + ln.Addr().String()
}

// rawServerOn is rawServer on ln.
func rawServerOn(t *testing.T, ln net.Listener, fn func(conn net.Conn, req *http.Request)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				fn(conn, req)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

func TestVMConsoleDrainsBytesSentWithThe101(t *testing.T) {
	var gotReq *http.Request
	url := rawServer(t, func(conn net.Conn, req *http.Request) {
		gotReq = req
		// The answer and the first console bytes in one write: the client
		// reads them into its buffer along with the headers.
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: stagehand-console\r\n\r\nwelcome\r\n")
		io.Copy(conn, conn)
	})
	conn, err := client.New(url).VMs().Console(context.Background(), "a b", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("welcome\r\nping"))
	go io.WriteString(conn, "ping")
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "welcome\r\nping" {
		t.Fatalf("read %q, %v", got, err)
	}
	if gotReq.URL.EscapedPath() != "/api/v1/configs/a%20b/vms/vm1/console" ||
		gotReq.Header.Get("Upgrade") != wire.ConsoleProtocol || !strings.EqualFold(gotReq.Header.Get("Connection"), "upgrade") {
		t.Errorf("request = %s %v", gotReq.URL, gotReq.Header)
	}
}

func TestVMConsoleFailures(t *testing.T) {
	silent := rawServer(t, func(conn net.Conn, req *http.Request) { time.Sleep(5 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := client.New(silent).VMs().Console(ctx, "web", "vm1"); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("silent server: %v after %v, want the context's deadline", err, time.Since(start))
	}

	wrong := rawServer(t, func(conn net.Conn, req *http.Request) {
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	})
	if _, err := client.New(wrong).VMs().Console(context.Background(), "web", "vm1"); err == nil || !strings.Contains(err.Error(), "websocket") {
		t.Errorf("wrong protocol: %v", err)
	}

	plain := rawServer(t, func(conn net.Conn, req *http.Request) {
		io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 13\r\n\r\nupstream down")
	})
	if _, err := client.New(plain).VMs().Console(context.Background(), "web", "vm1"); !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "upstream down") {
		t.Errorf("502: %v", err)
	}

	if _, err := client.New("ftp://127.0.0.1:21").VMs().Console(context.Background(), "web", "vm1"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ftp: %v, want invalid", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := client.New(addr).VMs().Console(context.Background(), "web", "vm1"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("unreachable: %v, want unavailable", err)
	}
}
