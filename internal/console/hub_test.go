package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSerial is a console socket as QEMU serves it: one client, whose
// input the test reads (typed) and to which the test writes the guest's
// output (print).
type fakeSerial struct {
	path  string
	ln    net.Listener
	conns chan net.Conn
}

func newFakeSerial(t *testing.T) *fakeSerial {
	t.Helper()
	dir, err := os.MkdirTemp("", "sh-hub-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeSerial{path: filepath.Join(dir, "console.sock"), conns: make(chan net.Conn, 4)}
	if f.ln, err = net.Listen("unix", f.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ln.Close() })
	go func() {
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			f.conns <- c
		}
	}()
	return f
}

func (f *fakeSerial) client(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the hub never connected")
		return nil
	}
}

// watcher reads a viewer as a client does: its output and its latest
// status.
type watcher struct {
	*Viewer
	out    bytes.Buffer
	status *Status
	err    error
}

// poll takes what v has, waiting up to the deadline for a wake-up.
func (w *watcher) poll(t *testing.T, deadline <-chan time.Time) {
	t.Helper()
	select {
	case <-w.Wake():
	case <-deadline:
		t.Fatalf("viewer %s: waited in vain; output %q, status %+v, err %v", w.Name(), w.out.String(), w.status, w.err)
	}
	out, st, err := w.Next()
	w.out.Write(out)
	if st != nil {
		w.status = st
	}
	if err != nil {
		w.err = err
	}
}

// readUntil reads w until its output holds want.
func (w *watcher) readUntil(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !strings.Contains(w.out.String(), want) {
		if w.err != nil {
			t.Fatalf("viewer %s ended (%v) before %q; got %q", w.Name(), w.err, want, w.out.String())
		}
		w.poll(t, deadline)
	}
}

// statusIs reads w until its status is want.
func (w *watcher) statusIs(t *testing.T, want Status) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for w.status == nil || *w.status != want {
		if w.err != nil {
			t.Fatalf("viewer %s ended (%v); status %+v, want %+v", w.Name(), w.err, w.status, want)
		}
		w.poll(t, deadline)
	}
}

// endsWith reads w until it ends, and checks why.
func (w *watcher) endsWith(t *testing.T, want error) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for w.err == nil {
		w.poll(t, deadline)
	}
	if !errors.Is(w.err, want) {
		t.Errorf("viewer %s ended with %v, want %v", w.Name(), w.err, want)
	}
}

func attach(t *testing.T, h *Hub, name string) *watcher {
	t.Helper()
	v, err := h.Attach(name, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &watcher{Viewer: v}
}

func TestHubSharesOneConsole(t *testing.T) {
	f := newFakeSerial(t)
	logFile := filepath.Join(filepath.Dir(f.path), "serial.log")
	if err := os.WriteFile(logFile, []byte("earlier boot\r\nlogin: "), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := Open(t.Context(), f.path, logFile, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	qemu := f.client(t)

	alice := attach(t, h, "alice")
	// The first viewer sees what the log held and gets the keyboard.
	alice.readUntil(t, "earlier boot\r\nlogin: ")
	alice.statusIs(t, Status{Holder: "alice", Viewers: 1, YouHold: true})
	bob := attach(t, h, "bob")
	bob.readUntil(t, "login: ")
	bob.statusIs(t, Status{Holder: "alice", Viewers: 2})
	alice.statusIs(t, Status{Holder: "alice", Viewers: 2, YouHold: true})

	// The watcher's input is refused; the holder's reaches the guest.
	if _, err := bob.Write([]byte("bob types\n")); !errors.Is(err, ErrNotHolder) {
		t.Errorf("watcher's input: %v, want ErrNotHolder", err)
	}
	if _, err := alice.Write([]byte("echo hi\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("echo hi\n"))
	qemu.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(qemu, got); err != nil || string(got) != "echo hi\n" {
		t.Fatalf("the guest read %q, %v", got, err)
	}
	// Both see the guest's answer.
	qemu.Write([]byte("echo hi\r\nhi\r\n"))
	alice.readUntil(t, "hi\r\nhi\r\n")
	bob.readUntil(t, "hi\r\nhi\r\n")

	// Bob takes the keyboard: alice watches.
	if err := bob.Take(); err != nil {
		t.Fatal(err)
	}
	alice.statusIs(t, Status{Holder: "bob", Viewers: 2})
	bob.statusIs(t, Status{Holder: "bob", Viewers: 2, YouHold: true})
	if _, err := alice.Write([]byte("x")); !errors.Is(err, ErrNotHolder) {
		t.Errorf("alice's input after bob took: %v", err)
	}
	if _, err := bob.Write([]byte("y")); err != nil {
		t.Errorf("bob's input: %v", err)
	}

	// A viewer who comes later sees the ring: the log and what followed.
	carol := attach(t, h, "carol")
	carol.readUntil(t, "earlier boot\r\nlogin: echo hi\r\nhi\r\n")

	// The holder leaves: the keyboard is free, and the first to type
	// holds it.
	bob.Close()
	alice.statusIs(t, Status{Viewers: 2})
	if _, err := carol.Write([]byte("z")); err != nil {
		t.Errorf("carol typing on a free keyboard: %v", err)
	}
	alice.statusIs(t, Status{Holder: "carol", Viewers: 2})
	if _, err := alice.Write([]byte("x")); !errors.Is(err, ErrNotHolder) {
		t.Errorf("alice's input after carol took the free keyboard: %v", err)
	}

	// The VM stops: every viewer ends with the reason, the hub is done.
	qemu.Close()
	alice.endsWith(t, ErrConsoleClosed)
	carol.endsWith(t, ErrConsoleClosed)
	select {
	case <-h.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("hub not done")
	}
	if _, err := h.Attach("dave", AttachOptions{}); !errors.Is(err, ErrConsoleClosed) {
		t.Errorf("attach to an ended hub: %v", err)
	}
}

// A viewer that takes no output is dropped once its queue is full; the
// others get every byte, and the guest's output is never held up.
func TestHubDropsASlowViewer(t *testing.T) {
	f := newFakeSerial(t)
	h, err := Open(t.Context(), f.path, "", Options{QueueBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	qemu := f.client(t)
	fast, _ := h.Attach("fast", AttachOptions{})
	slow, _ := h.Attach("slow", AttachOptions{})

	// Faster than any serial port (6 MB/s), in bursts.
	const total = 2 << 20
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go func() {
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for sent := 0; sent < total; sent += len(line) {
			if _, err := qemu.Write(line); err != nil {
				return
			}
			if sent%(32<<10) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		qemu.Write([]byte("END\n"))
	}()
	received := 0
	for {
		select {
		case <-fast.Wake():
		case <-ctx.Done():
			t.Fatalf("the fast viewer stalled after %d bytes", received)
		}
		out, _, err := fast.Next()
		received += len(out)
		if err != nil {
			t.Fatalf("fast viewer ended: %v", err)
		}
		if bytes.HasSuffix(out, []byte("END\n")) {
			break
		}
	}
	if received < total {
		t.Errorf("fast viewer got %d bytes, want %d", received, total)
	}
	_, _, err = slow.Next()
	if !errors.Is(err, ErrTooSlow) {
		t.Errorf("slow viewer: %v, want ErrTooSlow", err)
	}
	if n := h.Viewers(); n != 1 {
		t.Errorf("%d viewers left, want 1", n)
	}
}

func TestHubRefusesAMissingSocket(t *testing.T) {
	_, err := Open(t.Context(), filepath.Join(t.TempDir(), "none.sock"), "", Options{})
	if err == nil {
		t.Fatal("opened a socket nobody listens on")
	}
}

func TestRingReplaysFromALineStart(t *testing.T) {
	var r ring
	r.write([]byte("short\n"))
	if got := string(r.replay()); got != "short\n" {
		t.Errorf("replay %q", got)
	}
	big := bytes.Repeat([]byte("0123456789abcde\n"), RingSize/16+100)
	r.write(big)
	got := r.replay()
	if len(got) > RingSize || !bytes.HasPrefix(got, []byte("0123456789abcde\n")) || !bytes.HasSuffix(got, []byte("abcde\n")) {
		t.Errorf("replay of %d bytes starts %q", len(got), got[:20])
	}
}

// A viewer whose input has ended gives the keyboard up and still reads.
func TestHubReleaseFreesTheKeyboard(t *testing.T) {
	f := newFakeSerial(t)
	h, err := Open(t.Context(), f.path, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	qemu := f.client(t)
	cli, _ := h.Attach("cli", AttachOptions{Take: true, NoReplay: true})
	web := attach(t, h, "web")
	web.statusIs(t, Status{Holder: "cli", Viewers: 2})
	cli.Release()
	web.statusIs(t, Status{Viewers: 2})
	if _, err := web.Write([]byte("w")); err != nil {
		t.Fatalf("typing on the released keyboard: %v", err)
	}
	web.statusIs(t, Status{Holder: "web", Viewers: 2, YouHold: true})
	qemu.Write([]byte("still read\n"))
	w := &watcher{Viewer: cli}
	w.readUntil(t, "still read\n")
}
