package api

import (
	"bufio"
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
)

// consoleLinger is how long a console session waits, once one side has
// closed, for the bytes still travelling the other way.
const consoleLinger = 2 * time.Second

// consoleBusyWait is how long a new session waits for the VM's previous one
// to end: a client that detached a moment ago leaves a session that is
// still closing.
const consoleBusyWait = consoleLinger + time.Second

// consoleHandler serves the console endpoint: one session per VM at a
// time.
type consoleHandler struct {
	*env
	lab      Deployments
	sessions *consoleSessions
}

func (h consoleHandler) register(r *router) {
	r.route("GET "+wire.APIPrefix+"/configs/{name}/vms/{vm}/console", auth.ConfigConsole, object("config", "name"), h.vmConsole)
}

// consoleSessions remembers which VMs have a console attached: a QEMU
// serial socket serves one client at a time and leaves any other one
// connected to nothing, so a second session is refused instead.
type consoleSessions struct {
	mu       sync.Mutex
	attached map[string]chan struct{} // closed when the session ends
}

// attach reserves the console of config/vm, waiting up to consoleBusyWait
// for a session that holds it; call release when done.
func (s *consoleSessions) attach(ctx context.Context, config, vm string) (release func(), err error) {
	key := config + "\x00" + vm
	wait := time.NewTimer(consoleBusyWait)
	defer wait.Stop()
	for {
		s.mu.Lock()
		ended, busy := s.attached[key]
		if !busy {
			if s.attached == nil {
				s.attached = map[string]chan struct{}{}
			}
			mine := make(chan struct{})
			s.attached[key] = mine
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				delete(s.attached, key)
				close(mine)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ended:
		case <-wait.C:
			return nil, errdefs.Conflict("VM %q of %q: a console session is already attached", vm, config)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// isConsoleUpgrade reports whether r asks to switch to the console
// protocol: "Connection: Upgrade" (among other tokens) and "Upgrade:
// stagehand-console".
func isConsoleUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", wire.ConsoleProtocol)
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// vmConsole upgrades the connection and joins it to the VM's serial
// console socket. Everything that can fail (bad request, unknown or stopped
// VM, console busy or unreachable) fails before the upgrade, as a JSON
// error answer.
func (h consoleHandler) vmConsole(w http.ResponseWriter, r *http.Request) error {
	if !isConsoleUpgrade(r) {
		return errMalformed("the console is reached by an HTTP upgrade: send \"Connection: Upgrade\" and \"Upgrade: %s\"", wire.ConsoleProtocol)
	}
	config, vm := r.PathValue("name"), r.PathValue("vm")
	socket, err := h.lab.VMConsole(r.Context(), config, vm)
	if err != nil {
		return err
	}
	release, err := h.sessions.attach(r.Context(), config, vm)
	if err != nil {
		return err
	}
	defer release()
	var d net.Dialer
	console, err := d.DialContext(r.Context(), "unix", socket)
	if err != nil {
		return errdefs.Unavailable("console of VM %q of %q: %w", vm, config, err)
	}
	defer console.Close()

	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return errdefs.Invalid("console of VM %q of %q needs an HTTP/1.1 connection: %w", vm, config, err)
	}
	defer client.Close()
	// From here on the connection is ours: errors can only be logged.
	_ = client.SetDeadline(time.Time{})
	_, err = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: " + wire.ConsoleProtocol + "\r\n\r\n")
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		h.log.Debug("console upgrade", "config", config, "vm", vm, "err", err)
		return nil
	}
	h.log.Info("console attached", "config", config, "vm", vm, "remote", r.RemoteAddr)
	h.join(client, rw.Reader, console)
	h.log.Info("console detached", "config", config, "vm", vm, "remote", r.RemoteAddr)
	return nil
}

// join copies bytes both ways until one side closes; it passes that
// half-close on to the other side and gives the other direction
// consoleLinger to drain before closing both. Shutdown closes both at once,
// and so does limits.ConsoleIdle without a byte either way, so that an
// abandoned session does not keep the VM's only console. fromClient reads
// the client's connection, starting with the bytes the HTTP server had
// already buffered.
func (h consoleHandler) join(client net.Conn, fromClient *bufio.Reader, console net.Conn) {
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	done := make(chan struct{}, 2)
	pipe := func(dst net.Conn, src io.Reader) {
		_, _ = io.Copy(dst, activityReader{src, &lastActive})
		closeWrite(dst)
		done <- struct{}{}
	}
	go pipe(console, fromClient)
	go pipe(client, console)

	idle := h.limits.ConsoleIdle
	if idle <= 0 {
		idle = time.Duration(math.MaxInt64)
	}
	idleTimer := time.NewTimer(idle)
	defer idleTimer.Stop()
	linger := time.NewTimer(consoleLinger)
	defer linger.Stop()
	ended := 0
wait:
	for {
		select {
		case <-done:
			ended++
			linger.Reset(consoleLinger)
			select {
			case <-done:
				ended++
			case <-linger.C:
			case <-h.drain.Done():
			}
			break wait
		case <-idleTimer.C:
			quiet := time.Since(time.Unix(0, lastActive.Load()))
			if quiet >= idle {
				h.log.Info("console session idle; closing it", "idle", quiet.Round(time.Second), "remote", client.RemoteAddr().String())
				break wait
			}
			idleTimer.Reset(idle - quiet)
		case <-h.drain.Done():
			break wait
		}
	}
	client.Close()
	console.Close()
	for ; ended < 2; ended++ {
		<-done
	}
}

// activityReader stamps the time of every read that carried bytes.
type activityReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// closeWrite half-closes c when it can (TCP and unix connections), so the
// peer reads EOF while its answer can still come back.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
