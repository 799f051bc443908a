package hypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeQMP is a unix-socket QMP server scripted by the test: it greets,
// answers qmp_capabilities, then hands each connection to serve.
type fakeQMP struct {
	path string
	ln   net.Listener
}

// fakeConn is the server side of one client connection.
type fakeConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
}

type fakeCommand struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

func (c *fakeConn) read() (fakeCommand, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return fakeCommand{}, err
	}
	var cmd fakeCommand
	if err := json.Unmarshal(line, &cmd); err != nil {
		return fakeCommand{}, fmt.Errorf("bad command %q: %w", line, err)
	}
	return cmd, nil
}

func (c *fakeConn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Write(append(b, '\n'))
}

func (c *fakeConn) reply(cmd fakeCommand, ret any) {
	c.send(map[string]any{"return": ret, "id": cmd.ID})
}

func (c *fakeConn) event(name string, data any) {
	c.send(map[string]any{"event": name, "data": data,
		"timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 5}})
}

// startFakeQMP listens on a fresh socket. If greet is false the server
// accepts but never speaks (to test handshake timeouts).
func startFakeQMP(t *testing.T, greet bool, serve func(c *fakeConn)) *fakeQMP {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmpt")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				c := &fakeConn{t: t, conn: conn, r: bufio.NewReader(conn)}
				if !greet {
					c.r.ReadBytes('\n') // wait for the client to give up
					return
				}
				c.send(map[string]any{"QMP": map[string]any{
					"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}},
					"capabilities": []string{"oob"},
				}})
				cmd, err := c.read()
				if err != nil {
					return
				}
				if cmd.Execute != "qmp_capabilities" {
					c.send(map[string]any{"error": map[string]string{
						"class": "CommandNotFound", "desc": "expecting capabilities negotiation"}, "id": cmd.ID})
					return
				}
				c.reply(cmd, map[string]any{})
				serve(c)
			}()
		}
	}()
	return &fakeQMP{path: path, ln: ln}
}

func dialFake(t *testing.T, f *fakeQMP) *Monitor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := DialMonitor(ctx, f.path)
	if err != nil {
		t.Fatalf("DialMonitor: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMonitorExecute(t *testing.T) {
	tests := []struct {
		name  string
		serve func(c *fakeConn)
		cmd   string
		args  any
		want  string // JSON of the return value
		check func(t *testing.T, err error)
	}{
		{
			name: "plain reply",
			serve: func(c *fakeConn) {
				cmd, _ := c.read()
				c.reply(cmd, map[string]any{"status": "running", "running": true})
			},
			cmd:  "query-status",
			want: `{"running":true,"status":"running"}`,
		},
		{
			name: "arguments reach the server",
			serve: func(c *fakeConn) {
				cmd, _ := c.read()
				c.reply(cmd, json.RawMessage(cmd.Arguments))
			},
			cmd:  "migrate",
			args: map[string]string{"uri": "exec:cat > /x"},
			want: `{"uri":"exec:cat \u003e /x"}`,
		},
		{
			name: "events interleaved before the reply",
			serve: func(c *fakeConn) {
				cmd, _ := c.read()
				c.event("STOP", nil)
				c.send(map[string]any{"return": map[string]any{}, "id": "999"}) // not ours
				c.event("RESUME", map[string]int{"n": 1})
				c.reply(cmd, []int{1, 2})
			},
			cmd:  "cont",
			want: `[1,2]`,
		},
		{
			name: "QMP error",
			serve: func(c *fakeConn) {
				cmd, _ := c.read()
				c.send(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "boom"}, "id": cmd.ID})
			},
			cmd: "migrate",
			check: func(t *testing.T, err error) {
				var qe *QMPError
				if !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Desc != "boom" || qe.Command != "migrate" {
					t.Fatalf("err = %v, want QMPError GenericError boom", err)
				}
			},
		},
		{
			name: "disconnect mid-command",
			serve: func(c *fakeConn) {
				c.read()
				// return closes the connection with the command unanswered
			},
			cmd: "query-status",
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrMonitorDisconnect) {
					t.Fatalf("err = %v, want ErrMonitorDisconnect", err)
				}
			},
		},
		{
			name: "timeout",
			serve: func(c *fakeConn) {
				c.read()
				c.r.ReadBytes('\n') // hold the connection, never answer
			},
			cmd: "query-status",
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrMonitorTimeout) {
					t.Fatalf("err = %v, want ErrMonitorTimeout", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := dialFake(t, startFakeQMP(t, true, tt.serve))
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			ret, err := m.Execute(ctx, tt.cmd, tt.args)
			if tt.check != nil {
				tt.check(t, err)
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if string(ret) != tt.want {
				t.Fatalf("return = %s, want %s", ret, tt.want)
			}
		})
	}
}

func TestMonitorOutOfOrderReplies(t *testing.T) {
	const n = 8
	m := dialFake(t, startFakeQMP(t, true, func(c *fakeConn) {
		var cmds []fakeCommand
		for range n {
			cmd, err := c.read()
			if err != nil {
				return
			}
			cmds = append(cmds, cmd)
		}
		// Answer last first, each with the name of its own command.
		for i := len(cmds) - 1; i >= 0; i-- {
			c.reply(cmds[i], cmds[i].Execute)
		}
		c.r.ReadBytes('\n')
	}))

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("cmd-%d", i)
			ret, err := m.Execute(context.Background(), name, nil)
			if err != nil {
				errs <- err
				return
			}
			var got string
			json.Unmarshal(ret, &got)
			if got != name {
				errs <- fmt.Errorf("%s got reply %q", name, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestMonitorEventsAndDisconnect(t *testing.T) {
	release := make(chan struct{})
	m := dialFake(t, startFakeQMP(t, true, func(c *fakeConn) {
		c.event("STOP", nil)
		c.event("RESUME", map[string]string{"k": "v"})
		// Two commands in flight when the server goes away: both waiters
		// must be told.
		c.read()
		c.read()
		<-release
	}))

	got := <-m.Events()
	if got.Name != "STOP" || got.Time.Unix() != 1700000000 {
		t.Fatalf("first event = %+v", got)
	}
	got = <-m.Events()
	if got.Name != "RESUME" || string(got.Data) != `{"k":"v"}` {
		t.Fatalf("second event = %+v", got)
	}

	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := m.Execute(context.Background(), "query-status", nil)
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrMonitorDisconnect) {
				t.Fatalf("err = %v, want ErrMonitorDisconnect", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was never told of the disconnect")
		}
	}
	select {
	case <-m.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after EOF")
	}
	if _, ok := <-m.Events(); ok {
		t.Fatal("events channel still open after EOF")
	}
	if _, err := m.Execute(context.Background(), "query-status", nil); !errors.Is(err, ErrMonitorDisconnect) {
		t.Fatalf("after EOF err = %v, want ErrMonitorDisconnect", err)
	}
}

func TestMonitorEventOverflowDropsOldest(t *testing.T) {
	const total = eventBuffer + 40
	m := dialFake(t, startFakeQMP(t, true, func(c *fakeConn) {
		cmd, _ := c.read()
		for i := range total {
			c.event("TICK", map[string]int{"i": i})
		}
		c.reply(cmd, map[string]any{})
		c.r.ReadBytes('\n')
	}))
	// Nobody reads events; the reply must still get through.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.Execute(ctx, "query-status", nil); err != nil {
		t.Fatalf("Execute with a full event buffer: %v", err)
	}
	if got := m.DroppedEvents(); got != total-eventBuffer {
		t.Fatalf("dropped = %d, want %d", got, total-eventBuffer)
	}
	first := <-m.Events()
	if string(first.Data) != fmt.Sprintf(`{"i":%d}`, total-eventBuffer) {
		t.Fatalf("oldest kept event = %s, want i=%d", first.Data, total-eventBuffer)
	}
}

func TestMonitorLateReplyAfterTimeout(t *testing.T) {
	m := dialFake(t, startFakeQMP(t, true, func(c *fakeConn) {
		slow, _ := c.read()
		fast, _ := c.read()
		c.reply(slow, "slow") // arrives after its waiter gave up
		c.reply(fast, "fast")
		c.r.ReadBytes('\n')
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := m.Execute(ctx, "slow", nil); !errors.Is(err, ErrMonitorTimeout) {
		t.Fatalf("slow: err = %v, want ErrMonitorTimeout", err)
	}
	ret, err := m.Execute(context.Background(), "fast", nil)
	if err != nil || string(ret) != `"fast"` {
		t.Fatalf("fast: ret=%s err=%v", ret, err)
	}
}

func TestDialMonitorHandshakeTimeout(t *testing.T) {
	f := startFakeQMP(t, false, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := DialMonitor(ctx, f.path)
	if !errors.Is(err, ErrMonitorTimeout) {
		t.Fatalf("err = %v, want ErrMonitorTimeout", err)
	}
}

func TestMonitorCloseFailsInFlight(t *testing.T) {
	m := dialFake(t, startFakeQMP(t, true, func(c *fakeConn) {
		c.read()
		c.r.ReadBytes('\n')
	}))
	errc := make(chan error, 1)
	go func() {
		_, err := m.Execute(context.Background(), "query-status", nil)
		errc <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrMonitorDisconnect) {
		t.Fatalf("err = %v, want ErrMonitorDisconnect", err)
	}
}

// TestMonitorPassesFile: ExecuteWithFile sends the command with the file's
// descriptor attached (SCM_RIGHTS); the server receives a descriptor of
// the same file and the command's arguments. Over a connection that is
// not a unix socket it refuses.
func TestMonitorPassesFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "state")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &want); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	m := dialFake(t, startFakeQMP(t, true, func(c *fakeConn) {
		buf, oob := make([]byte, 4096), make([]byte, 128)
		n, oobn, _, _, err := c.conn.(*net.UnixConn).ReadMsgUnix(buf, oob)
		if err != nil {
			got <- err.Error()
			return
		}
		var cmd fakeCommand
		json.Unmarshal(buf[:n], &cmd)
		msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
		var fds []int
		for _, msg := range msgs {
			rights, _ := syscall.ParseUnixRights(&msg)
			fds = append(fds, rights...)
		}
		var st syscall.Stat_t
		same := len(fds) == 1 && syscall.Fstat(fds[0], &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev
		for _, fd := range fds {
			syscall.Close(fd)
		}
		got <- fmt.Sprintf("%s %s fds=%d same=%v", cmd.Execute, cmd.Arguments, len(fds), same)
		c.reply(cmd, map[string]any{})
		c.r.ReadBytes('\n')
	}))
	if _, err := m.ExecuteWithFile(context.Background(), "getfd", map[string]any{"fdname": "state-in"}, f); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != `getfd {"fdname":"state-in"} fds=1 same=true` {
		t.Errorf("server got %s; want getfd with the file's descriptor", g)
	}

	client, server := net.Pipe()
	defer server.Close()
	p := &Monitor{conn: client}
	if _, err := p.ExecuteWithFile(context.Background(), "getfd", nil, f); err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Errorf("ExecuteWithFile over a pipe: %v; want refused, naming the unix socket", err)
	}
}
