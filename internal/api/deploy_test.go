package api_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"stagehand/internal/api/apitest"
	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

func TestDeployAndUndeploy(t *testing.T) {
	srv, _ := newServer(t)
	status, _, body := call(t, srv, "POST", "/api/v1/configs/web/deploy", `{"fenced": true, "fence_policy": "out"}`)
	if status != http.StatusOK {
		t.Fatalf("deploy: %d %s", status, body)
	}
	c := decodeAs[wire.Config](t, body)
	if c.State != "deployed" || !c.Fenced || c.FencePolicy != "out" {
		t.Errorf("deployed config = %+v", c)
	}
	vm := c.VMs[0]
	if vm.State != wire.VMRunning || vm.PID == 0 || vm.HasSavedState || vm.NICs[0].ExternalIP == "" {
		t.Errorf("deployed vm = %+v", vm)
	}
	// The new keys are in the JSON whatever their value.
	var raw struct {
		VMs []map[string]any `json:"vms"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pid", "has_saved_state"} {
		if _, ok := raw.VMs[0][k]; !ok {
			t.Errorf("vm JSON lacks %q: %s", k, body)
		}
	}
	if status, _, body := call(t, srv, "POST", "/api/v1/configs/web/deploy", ""); status != http.StatusConflict {
		t.Errorf("second deploy: %d %s", status, body)
	}
	if status, _, body := call(t, srv, "DELETE", "/api/v1/configs/web", ""); status != http.StatusConflict {
		t.Errorf("delete while deployed: %d %s", status, body)
	}

	status, _, body = call(t, srv, "POST", "/api/v1/configs/web/undeploy", `{"save_state": true}`)
	if status != http.StatusOK {
		t.Fatalf("undeploy: %d %s", status, body)
	}
	c = decodeAs[wire.Config](t, body)
	if vm := c.VMs[0]; c.State != "undeployed" || vm.State != wire.VMSaved || !vm.HasSavedState || vm.PID != 0 {
		t.Errorf("undeployed with state = %+v", c)
	}
	if status, _, body := call(t, srv, "POST", "/api/v1/configs/web/undeploy", `{"save_state": false}`); status != http.StatusConflict {
		t.Errorf("second undeploy: %d %s", status, body)
	}

	// Empty bodies mean the defaults: unfenced, discard state.
	status, _, body = call(t, srv, "POST", "/api/v1/configs/web/deploy", "")
	if c := decodeAs[wire.Config](t, body); status != http.StatusOK || c.Fenced {
		t.Fatalf("deploy without body: %d %s", status, body)
	}
	status, _, body = call(t, srv, "POST", "/api/v1/configs/web/undeploy", "")
	if c := decodeAs[wire.Config](t, body); status != http.StatusOK || c.VMs[0].HasSavedState || c.VMs[0].State != "undeployed" {
		t.Fatalf("undeploy without body: %d %s", status, body)
	}
}

func TestDeployBodiesAreChecked(t *testing.T) {
	tests := []struct{ name, path, body string }{
		{"fenced not a bool", "/api/v1/configs/web/deploy", `{"fenced": "yes"}`},
		{"unknown deploy field", "/api/v1/configs/web/deploy", `{"fence": true}`},
		{"unknown undeploy field", "/api/v1/configs/web/undeploy", `{"save": true}`},
		{"save_state not a bool", "/api/v1/configs/web/undeploy", `{"save_state": 1}`},
		{"trailing data", "/api/v1/configs/web/undeploy", `{} {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, l := newServer(t)
			method := "Deploy"
			if strings.HasSuffix(tt.path, "/undeploy") {
				method = "Undeploy"
			}
			stub := &apitest.Failing{Lab: l, Method: method, Err: errors.New("reached the lab")}
			srv, _ := apitest.Serve(t, stub)
			status, _, body := call(t, srv, "POST", tt.path, tt.body)
			if status != http.StatusBadRequest || decodeAs[wire.Error](t, body).Kind != wire.KindInvalid {
				t.Fatalf("%d %s, want 400 invalid", status, body)
			}
			if stub.Calls != 0 {
				t.Errorf("%s reached the lab", method)
			}
		})
	}
}

// TestFencePolicyIsTheLabsToJudge: the API passes the policy on as sent;
// the lab refuses an unknown one, or one without a fence, as invalid with
// one line that names it, and nothing is deployed.
func TestFencePolicyIsTheLabsToJudge(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"unknown policy", `{"fenced": true, "fence_policy": "wide"}`, `fence policy "wide"`},
		{"policy without fence", `{"fence_policy": "block"}`, "fence policy needs a fenced deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, l := newServer(t)
			status, _, body := call(t, srv, "POST", "/api/v1/configs/web/deploy", tt.body)
			e := decodeAs[wire.Error](t, body)
			if status != http.StatusBadRequest || e.Kind != wire.KindInvalid || !strings.Contains(e.Error, tt.want) || strings.Contains(e.Error, "\n") {
				t.Fatalf("%d %s, want 400 invalid naming %s", status, body, tt.want)
			}
			if c, err := l.Configs.Get(t.Context(), "web"); err != nil || c.State != "undeployed" {
				t.Errorf("after the refusal: %+v, %v", c, err)
			}
			if left := l.Host.Leftovers(); len(left) != 0 {
				t.Errorf("the refused deploy left %v", left)
			}
		})
	}
}

func TestDeployErrorsMapToStatus(t *testing.T) {
	tests := []struct {
		method string
		err    error
		status int
	}{
		{"Deploy", errdefs.Conflict("deploy %q: 10.0.0.10 on lan is in use by web2/vm1; use --fenced or config change-ips", "web"), 409},
		{"Deploy", errdefs.Unavailable("deploy %q: qemu-system-x86_64 not found", "web"), 503},
		{"Deploy", fmt.Errorf("deploy %q: start vm1: %w", "web", errors.New("qemu exited 1")), 500},
		{"Undeploy", errdefs.Conflict("configuration %q is deploying", "web"), 409},
		{"VMAction", errdefs.NotFound("VM %q not found in configuration %q", "vm9", "web"), 404},
	}
	for _, tt := range tests {
		t.Run(tt.method+"/"+tt.err.Error(), func(t *testing.T) {
			_, l := newServer(t)
			srv, _ := apitest.Serve(t, &apitest.Failing{Lab: l, Method: tt.method, Err: tt.err})
			path := map[string]string{
				"Deploy":   "/api/v1/configs/web/deploy",
				"Undeploy": "/api/v1/configs/web/undeploy",
				"VMAction": "/api/v1/configs/web/vms/vm9/reset",
			}[tt.method]
			status, _, body := call(t, srv, "POST", path, "")
			if status != tt.status || decodeAs[wire.Error](t, body).Error != tt.err.Error() {
				t.Fatalf("%d %s, want %d with the lab's message", status, body, tt.status)
			}
		})
	}
}

func TestVMActions(t *testing.T) {
	srv, _ := newServer(t)
	// Actions need a deployed configuration.
	if status, _, body := call(t, srv, "POST", "/api/v1/configs/web/vms/vm1/stop", ""); status != http.StatusConflict {
		t.Fatalf("stop while undeployed: %d %s", status, body)
	}
	call(t, srv, "POST", "/api/v1/configs/web/deploy", "")
	tests := []struct {
		method, path string
		status       int
		state        string
	}{
		{"POST", "/api/v1/configs/web/vms/vm1/stop", 200, wire.VMStopped},
		{"POST", "/api/v1/configs/web/vms/vm1/reset", 409, ""},
		{"POST", "/api/v1/configs/web/vms/vm1/start", 200, wire.VMRunning},
		{"POST", "/api/v1/configs/web/vms/vm1/reset", 200, wire.VMRunning},
		{"POST", "/api/v1/configs/web/vms/nope/stop", 404, ""},
		{"POST", "/api/v1/configs/nope/vms/vm1/stop", 404, ""},
		{"POST", "/api/v1/configs/web/vms/vm1/pause", 404, ""},
		{"GET", "/api/v1/configs/web/vms/vm1/stop", 405, ""},
		{"POST", "/api/v1/configs/web/vms/vm1/log", 405, ""},
	}
	for _, tt := range tests {
		status, _, body := call(t, srv, tt.method, tt.path, "")
		if status != tt.status {
			t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, status, body, tt.status)
			continue
		}
		if tt.state == "" {
			continue
		}
		if tt.state == wire.VMStopped {
			// Stop asks the guest to power off (ACPI): the VM is
			// stopped once its process has ended.
			body = waitVMState(t, srv, "web", wire.VMStopped)
		}
		vm := decodeAs[wire.Config](t, body).VMs[0]
		if vm.State != tt.state || (vm.State == wire.VMRunning) != (vm.PID != 0) {
			t.Errorf("%s %s: vm = %+v, want %s", tt.method, tt.path, vm, tt.state)
		}
	}
}

// waitVMState polls a configuration until its first VM is in state, and
// returns the configuration's JSON.
func waitVMState(t *testing.T, srv *httptest.Server, config, state string) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, body := call(t, srv, "GET", "/api/v1/configs/"+config, "")
		if decodeAs[wire.Config](t, body).VMs[0].State == state {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM of %s not %s within 5s: %s", config, state, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestVMLog(t *testing.T) {
	srv, l := newServer(t)
	if status, _, body := call(t, srv, "GET", "/api/v1/configs/web/vms/vm1/log", ""); status != http.StatusNotFound {
		t.Fatalf("no log: %d %s", status, body)
	}
	if status, _, body := call(t, srv, "POST", "/api/v1/configs/web/deploy", ""); status != http.StatusOK {
		t.Fatalf("deploy: %d %s", status, body)
	}
	logFile := l.SerialLog(t, "web", "vm1")
	if status, _, body := call(t, srv, "GET", "/api/v1/configs/web/vms/vm1/log", ""); status != http.StatusNotFound || !strings.Contains(string(body), "no console log yet") {
		t.Fatalf("log file not written yet: %d %s", status, body)
	}
	if err := os.WriteFile(logFile, []byte("SeaBIOS\r\nLinux version 6.1\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	status, hdr, body := call(t, srv, "GET", "/api/v1/configs/web/vms/vm1/log", "")
	if status != http.StatusOK || string(body) != "SeaBIOS\r\nLinux version 6.1\r\n" {
		t.Fatalf("log: %d %q", status, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, q := range []string{"?follow=maybe", "?follow=2"} {
		if status, _, body := call(t, srv, "GET", "/api/v1/configs/web/vms/vm1/log"+q, ""); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, status, body)
		}
	}
	if status, _, _ := call(t, srv, "GET", "/api/v1/configs/web/vms/nope/log", ""); status != http.StatusNotFound {
		t.Errorf("unknown VM: %d", status)
	}
}

// deployedServer is newServer with web deployed (on the fake host).
func deployedServer(t *testing.T) (*httptest.Server, *apitest.Lab) {
	t.Helper()
	srv, l := newServer(t)
	if _, err := l.Deployments.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	return srv, l
}

func TestVMLogFollow(t *testing.T) {
	srv, l := deployedServer(t)
	logFile := l.SerialLog(t, "web", "vm1")
	if err := os.WriteFile(logFile, []byte("boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(srv.URL + "/api/v1/configs/web/vms/vm1/log?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines := bufio.NewReader(resp.Body)
	expectLine := func(want string) {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			l, _ := lines.ReadString('\n')
			got <- l
		}()
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("line %q, want %q", l, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no line %q within 5s", want)
		}
	}
	expectLine("boot\n")
	appendLog := func(s string) {
		f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	appendLog("login: ")
	appendLog("root\n")
	expectLine("login: root\n")
	// A new deploy replaces the log: it is followed from its start.
	if err := os.WriteFile(logFile+".new", []byte("second boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logFile+".new", logFile); err != nil {
		t.Fatal(err)
	}
	expectLine("second boot\n")
}

// dialConsole sends a console upgrade for path to srv and reads the answer.
func dialConsole(t *testing.T, srv *httptest.Server, path string, headers map[string]string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n"
	for k, v := range headers {
		req += k + ": " + v + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

var upgrade = map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "stagehand-console"}

func TestConsoleUpgradeJoinsTheSocket(t *testing.T) {
	srv, l := deployedServer(t)
	l.EchoConsole(t, "web", "vm1")

	conn, br, resp := dialConsole(t, srv, "/api/v1/configs/web/vms/vm1/console", upgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != wire.ConsoleProtocol {
		t.Fatalf("answer %s %v", resp.Status, resp.Header)
	}
	for _, msg := range []string{"hello\r", strings.Repeat("x", 100_000)} {
		go io.WriteString(conn, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %v (%.20q)", len(msg), err, got)
		}
	}

	// A second session shares the console (the daemon's hub holds QEMU's
	// one connection) and takes the keyboard; the first watches.
	conn2, br2, resp2 := dialConsole(t, srv, "/api/v1/configs/web/vms/vm1/console", upgrade)
	if resp2.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("second session: %s", resp2.Status)
	}
	io.WriteString(conn2, "from two\r")
	for i, r := range []*bufio.Reader{br2, br} {
		got := make([]byte, len("from two\r"))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != "from two\r" {
			t.Fatalf("session %d: echo of the second's input: %q, %v", 2-i, got, err)
		}
	}
	conn2.Close()
	// The keyboard is free again once its holder has left: the first
	// session types on.
	hub, err := l.Deployments.VMConsole(t.Context(), "web", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); hub.Viewers() > 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second session never left")
		}
	}

	// The client's half-close ends the session; trailing bytes still come
	// back first.
	io.WriteString(conn, "bye")
	conn.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	// Once the session is over, the console can be attached again.
	waitConsoleFree(t, srv)
}

// waitConsoleFree waits until vm1's console can be attached again.
func waitConsoleFree(t *testing.T, srv *httptest.Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, resp := dialConsole(t, srv, "/api/v1/configs/web/vms/vm1/console", upgrade)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console still busy: %s", resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsoleErrorsComeBeforeTheUpgrade(t *testing.T) {
	srv, l := deployedServer(t)
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		setup   func()
		status  int
	}{
		{"no upgrade headers", "/api/v1/configs/web/vms/vm1/console", nil, nil, 400},
		{"other protocol", "/api/v1/configs/web/vms/vm1/console", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"}, nil, 400},
		{"unknown VM", "/api/v1/configs/web/vms/nope/console", upgrade, nil, 404},
		{"unknown config", "/api/v1/configs/nope/vms/vm1/console", upgrade, nil, 404},
		// Nothing listens on the VM's console socket (QEMU gone or not
		// there yet).
		{"socket gone", "/api/v1/configs/web/vms/vm1/console", upgrade, nil, 503},
		{"VM stopped", "/api/v1/configs/web/vms/vm1/console", upgrade, func() {
			l.EchoConsole(t, "web", "vm1")
			call(t, srv, "POST", "/api/v1/configs/web/vms/vm1/stop", "")
			// Stop asks the guest to power off: the VM is stopped
			// once its process has ended.
			waitVMState(t, srv, "web", wire.VMStopped)
		}, 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			_, _, resp := dialConsole(t, srv, tt.path, tt.headers)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %s, want %d", resp.Status, tt.status)
			}
			var e wire.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
				t.Fatalf("error body: %+v, %v", e, err)
			}
		})
	}
}

func TestDrainEndsLogFollows(t *testing.T) {
	l := apitest.New(t).Seed(t)
	if _, err := l.Deployments.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.SerialLog(t, "web", "vm1"), []byte("boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, h := apitest.Serve(t, l)
	resp, err := srv.Client().Get(srv.URL + "/api/v1/configs/web/vms/vm1/log?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h.Drain()
	body := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(resp.Body)
		body <- string(b)
	}()
	select {
	case b := <-body:
		if b != "boot\n" {
			t.Errorf("followed %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not end the follow")
	}
}

func TestDrainClosesConsoles(t *testing.T) {
	l := apitest.New(t).Seed(t)
	if _, err := l.Deployments.Deploy(t.Context(), "web", lab.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	l.EchoConsole(t, "web", "vm1")
	srv, h := apitest.Serve(t, l)
	conn, br, resp := dialConsole(t, srv, "/api/v1/configs/web/vms/vm1/console", upgrade)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("answer %s", resp.Status)
	}
	h.Drain()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read after Drain: %v, want EOF", err)
	}
}
