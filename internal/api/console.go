package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/console"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// consoleLinger is how long a raw console session waits, once its client
// has half-closed, for the output still coming.
const consoleLinger = 2 * time.Second

// wsPingEvery is how often a console websocket is pinged: browsers and
// proxies close connections that stay silent, and a peer that is gone is
// noticed within wsPingEvery+wsPongWait.
const (
	wsPingEvery = 20 * time.Second
	wsPongWait  = 15 * time.Second
)

// wsReadLimit bounds one websocket message from a console client: a
// paste, a control, an RFB message (noVNC's are small).
const wsReadLimit = 1 << 20

// Consoles is what the console endpoints need of the lab
// (lab.Deployments).
type Consoles interface {
	// VMConsole returns the serial console hub of a running VM.
	VMConsole(ctx context.Context, config, vm string) (*console.Hub, error)
	// VMVNC returns the unix socket of a running VM's VNC server.
	VMVNC(ctx context.Context, config, vm string) (socketPath string, err error)
	// VMScreen returns a PNG of a running VM's screen and when it was
	// taken.
	VMScreen(ctx context.Context, config, vm string) ([]byte, time.Time, error)
	// VMSendKeys presses key chords ("ctrl-alt-del") on a running VM.
	VMSendKeys(ctx context.Context, config, vm string, chords []string) error
	// VMTypeText types ASCII text on a running VM's keyboard.
	VMTypeText(ctx context.Context, config, vm, text string) error
}

// consoleHandler serves a running VM's consoles: the raw serial stream of
// the CLI, the serial and VNC websockets of browsers, screenshots, and the
// console links that open them for one VM.
type consoleHandler struct {
	*env
	lab       Consoles
	directory store.Store // console links; nil: not served
}

func (h consoleHandler) register(r *router) {
	vm := "GET " + wire.APIPrefix + "/configs/{name}/vms/{vm}/"
	r.route(vm+"console", auth.ConfigConsole, object("config", "name"), h.vmConsole)
	r.route(vm+"serial/ws", auth.ConfigConsole, object("config", "name"), h.serialWebsocket)
	r.route(vm+"vnc/ws", auth.ConfigConsole, object("config", "name"), h.vncWebsocket)
	r.route(vm+"screen.png", auth.ConfigConsole, object("config", "name"), h.screen)
	h.registerLinks(r)
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

// viewerName is how the other viewers see the caller: their user name,
// marked when they came through a console link.
func viewerName(r *http.Request) string {
	id, _ := auth.FromContext(r.Context())
	name := id.Name
	if name == "" {
		name = "anonymous"
	}
	if _, ok := consoleLinkScopeOf(r.Context()); ok {
		name += " (link)"
	}
	return name
}

// vmConsole upgrades the connection and joins it to the VM's serial
// console hub, holding the keyboard. Everything that can fail (bad
// request, unknown or stopped VM, console unreachable) fails before the
// upgrade, as a JSON error answer. With ?replay=true the session starts
// with the console's last output.
func (h consoleHandler) vmConsole(w http.ResponseWriter, r *http.Request) error {
	if !isConsoleUpgrade(r) {
		return errMalformed("the console is reached by an HTTP upgrade: send \"Connection: Upgrade\" and \"Upgrade: %s\"", wire.ConsoleProtocol)
	}
	config, vm := r.PathValue("name"), r.PathValue("vm")
	hub, err := h.lab.VMConsole(r.Context(), config, vm)
	if err != nil {
		return err
	}
	viewer, err := hub.Attach(viewerName(r), console.AttachOptions{Take: true, NoReplay: r.URL.Query().Get("replay") != "true"})
	if err != nil {
		return err
	}
	defer viewer.Close()

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
	log := h.log.With("config", config, "vm", vm, "remote", r.RemoteAddr, "viewer", viewer.Name())
	log.Info("console attached")
	h.joinRaw(client, rw.Reader, viewer, log)
	log.Info("console detached")
	return nil
}

// joinRaw carries the client's bytes to the console (while the viewer
// holds the keyboard; dropped otherwise) and the console's output to the
// client, until the client closes, the hub ends (the VM stopped), the
// server drains, or limits.ConsoleIdle passes without a byte either way.
// After the client's half-close, the output still gets consoleLinger.
// fromClient starts with what the HTTP server had already buffered.
func (h consoleHandler) joinRaw(client net.Conn, fromClient *bufio.Reader, viewer *console.Viewer, log *slog.Logger) {
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		buf := make([]byte, 32<<10)
		for {
			n, err := fromClient.Read(buf)
			if n > 0 {
				lastActive.Store(time.Now().UnixNano())
				// Input while another viewer holds the keyboard is
				// dropped: this session watches until it is theirs again.
				_, _ = viewer.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()

	idle := h.limits.ConsoleIdle
	if idle <= 0 {
		idle = time.Duration(math.MaxInt64)
	}
	idleTimer := time.NewTimer(idle)
	defer idleTimer.Stop()
	var linger <-chan time.Time
	input := (<-chan struct{})(inputDone)
	for {
		select {
		case <-viewer.Wake():
			out, _, err := viewer.Next()
			if len(out) > 0 {
				lastActive.Store(time.Now().UnixNano())
				_ = client.SetWriteDeadline(time.Now().Add(h.limits.StreamWriteTimeout))
				if _, werr := client.Write(out); werr != nil {
					return
				}
			}
			if err != nil {
				if !errors.Is(err, console.ErrViewerClosed) {
					log.Info("console session ends", "reason", err.Error())
				}
				closeWrite(client)
				return
			}
		case <-input:
			// No more input comes: the keyboard is free for the others
			// while this session takes the output still coming.
			viewer.Release()
			input = nil
			linger = time.After(consoleLinger)
		case <-linger:
			return
		case <-idleTimer.C:
			quiet := time.Since(time.Unix(0, lastActive.Load()))
			if quiet >= idle {
				log.Info("console session idle; closing it", "idle", quiet.Round(time.Second))
				return
			}
			idleTimer.Reset(idle - quiet)
		case <-h.drain.Done():
			return
		}
	}
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

// deadlineFreeWriter hands websocket.Accept a connection without the
// server's write deadline: a console lasts as long as its viewer stays,
// each write is bounded on its own.
type deadlineFreeWriter struct{ http.ResponseWriter }

func (d deadlineFreeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(d.ResponseWriter).Hijack()
	if err == nil {
		_ = c.SetDeadline(time.Time{})
	}
	return c, rw, err
}

// acceptWebsocket checks what must fail before the upgrade (another
// origin: 403, as the raw console's upgrade) and accepts the websocket
// with the "binary" subprotocol when offered. After an error from
// websocket.Accept the answer is written already.
func acceptWebsocket(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	c, err := websocket.Accept(deadlineFreeWriter{w}, r, &websocket.AcceptOptions{
		Subprotocols: []string{wire.ConsoleSubprotocol},
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(wsReadLimit)
	return c, nil
}

// websocketVM returns the configuration and VM whose console r asks
// for; it refuses, with a JSON error before anything is looked up, what
// cannot become a console websocket.
func websocketVM(r *http.Request) (config, vm string, err error) {
	if !headerHasToken(r.Header, "Upgrade", "websocket") || !headerHasToken(r.Header, "Connection", "upgrade") {
		return "", "", errMalformed("this console is a websocket: send a websocket upgrade (Connection: Upgrade, Upgrade: websocket)")
	}
	if crossOrigin(r) {
		return "", "", errdefs.Forbidden("console websocket from origin %q refused: only the server's own origin may open a console", r.Header.Get("Origin"))
	}
	return r.PathValue("name"), r.PathValue("vm"), nil
}

// wsSession is one console websocket: its connection, its context (ended
// by the daemon's drain or the end of the session) and its writes, each
// bounded by limits.StreamWriteTimeout.
type wsSession struct {
	c            *websocket.Conn
	ctx          context.Context
	cancel       context.CancelFunc
	writeTimeout time.Duration
}

// startSession accepts the websocket of r as a session of the viewer of
// console name ("serial console", "VNC") of VM vm of config, logs the
// viewer attached and keeps the session pinged. Nil when the handshake
// failed: websocket.Accept has answered the client already. The caller
// cancels the session.
func (h consoleHandler) startSession(w http.ResponseWriter, r *http.Request, name, config, vm, viewer string) (*wsSession, *slog.Logger) {
	c, err := acceptWebsocket(w, r)
	if err != nil {
		h.log.Debug(name+" websocket", "config", config, "vm", vm, "err", err)
		return nil, nil
	}
	ctx, cancel := context.WithCancel(h.drain)
	wt := h.limits.StreamWriteTimeout
	if wt <= 0 {
		wt = time.Minute
	}
	s := &wsSession{c: c, ctx: ctx, cancel: cancel, writeTimeout: wt}
	log := h.log.With("config", config, "vm", vm, "remote", r.RemoteAddr, "viewer", viewer)
	log.Info(name + " viewer attached")
	go s.pings()
	return s, log
}

func (s *wsSession) write(typ websocket.MessageType, p []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.writeTimeout)
	defer cancel()
	return s.c.Write(ctx, typ, p)
}

func (s *wsSession) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.write(websocket.MessageText, b)
}

// refuse tells the client a control or an input was refused; the session
// goes on.
func (s *wsSession) refuse(err error) {
	code := "invalid"
	switch {
	case errors.Is(err, console.ErrNotHolder):
		code = "not_holder"
	case errdefs.Kind(err) == errdefs.ErrUnavailable:
		code = "unavailable"
	}
	_ = s.writeJSON(wire.ConsoleErrorMessage{Type: wire.ConsoleErr, Code: code, Error: err.Error()})
}

// pings pings the client every wsPingEvery until the session ends, and
// ends it when a pong does not come within wsPongWait.
func (s *wsSession) pings() {
	t := time.NewTicker(wsPingEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, wsPongWait)
			err := s.c.Ping(ctx)
			cancel()
			if err != nil {
				s.cancel()
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// closeWith closes the session's websocket with the code and reason
// (cut to the 123 bytes a close frame holds).
func (s *wsSession) closeWith(code websocket.StatusCode, reason string) {
	if len(reason) > 123 {
		reason = reason[:120] + "..."
	}
	_ = s.c.Close(code, reason)
}

// serialWebsocket serves the serial console as a websocket for the web
// console (see wire.ConsoleSubprotocol for the protocol).
func (h consoleHandler) serialWebsocket(w http.ResponseWriter, r *http.Request) error {
	config, vm, err := websocketVM(r)
	if err != nil {
		return err
	}
	hub, err := h.lab.VMConsole(r.Context(), config, vm)
	if err != nil {
		return err
	}
	viewer, err := hub.Attach(viewerName(r), console.AttachOptions{})
	if err != nil {
		return err
	}
	defer viewer.Close()
	s, log := h.startSession(w, r, "serial console", config, vm, viewer.Name())
	if s == nil {
		return nil
	}
	defer s.cancel()
	go h.serialInput(s, viewer)

	for {
		select {
		case <-viewer.Wake():
		case <-s.ctx.Done():
			if h.drain.Err() != nil {
				s.closeWith(websocket.StatusGoingAway, "the server is shutting down")
			} else {
				s.closeWith(websocket.StatusNormalClosure, "")
			}
			log.Info("serial console viewer detached")
			return nil
		}
		out, st, err := viewer.Next()
		if len(out) > 0 {
			if werr := s.write(websocket.MessageBinary, out); werr != nil {
				log.Info("serial console viewer gone", "err", werr)
				s.closeWith(websocket.StatusPolicyViolation, "write timed out")
				return nil
			}
		}
		if st != nil {
			if werr := s.writeJSON(wire.ConsoleStatusMessage{Type: wire.ConsoleStatus, Holder: st.Holder, Viewers: st.Viewers, YouHold: st.YouHold}); werr != nil {
				s.closeWith(websocket.StatusPolicyViolation, "write timed out")
				return nil
			}
		}
		if err != nil {
			code := websocket.StatusNormalClosure
			if errors.Is(err, console.ErrTooSlow) {
				code = websocket.StatusPolicyViolation
			}
			log.Info("serial console viewer detached", "reason", err.Error())
			s.closeWith(code, err.Error())
			return nil
		}
	}
}

// serialInput reads the client's frames until the session ends: binary
// ones are typed, text ones are controls.
func (h consoleHandler) serialInput(s *wsSession, viewer *console.Viewer) {
	defer s.cancel()
	for {
		typ, data, err := s.c.Read(s.ctx)
		if err != nil {
			return
		}
		if typ == websocket.MessageBinary {
			if _, err := viewer.Write(data); err != nil {
				s.refuse(err)
			}
			continue
		}
		var msg wire.ConsoleControl
		if err := json.Unmarshal(data, &msg); err != nil {
			s.refuse(errdefs.Invalid("control message: %v", err))
			continue
		}
		switch msg.Type {
		case wire.ConsoleTake:
			if err := viewer.Take(); err != nil {
				return
			}
		case wire.ConsoleType:
			if _, err := viewer.Write([]byte(msg.Text)); err != nil {
				s.refuse(err)
			}
		case wire.ConsoleResize:
			// A serial line has no size to tell.
		default:
			s.refuse(errdefs.Invalid("control %q: the serial console takes take, type and resize", msg.Type))
		}
	}
}

// vncWebsocket proxies the VM's VNC server (raw RFB) over a websocket, as
// noVNC expects; text frames are keys and typing (wire.ConsoleControl).
func (h consoleHandler) vncWebsocket(w http.ResponseWriter, r *http.Request) error {
	config, vm, err := websocketVM(r)
	if err != nil {
		return err
	}
	sock, err := h.lab.VMVNC(r.Context(), config, vm)
	if err != nil {
		return err
	}
	var d net.Dialer
	vnc, err := d.DialContext(r.Context(), "unix", sock)
	if err != nil {
		return errdefs.Unavailable("screen of VM %q of %q: %w", vm, config, err)
	}
	defer vnc.Close()
	s, log := h.startSession(w, r, "VNC", config, vm, viewerName(r))
	if s == nil {
		return nil
	}
	defer s.cancel()
	// The session's end (client gone, daemon draining) closes the VNC
	// connection, which ends the copy below.
	stop := context.AfterFunc(s.ctx, func() { vnc.Close() })
	defer stop()
	go func() {
		defer s.cancel()
		for {
			typ, data, err := s.c.Read(s.ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageBinary {
				if _, err := vnc.Write(data); err != nil {
					return
				}
				continue
			}
			h.vncControl(s, config, vm, data)
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := vnc.Read(buf)
		if n > 0 {
			if werr := s.write(websocket.MessageBinary, buf[:n]); werr != nil {
				log.Info("VNC viewer gone", "err", werr)
				s.closeWith(websocket.StatusPolicyViolation, "write timed out")
				return nil
			}
		}
		if err != nil {
			switch {
			case h.drain.Err() != nil:
				s.closeWith(websocket.StatusGoingAway, "the server is shutting down")
			case s.ctx.Err() != nil:
				s.closeWith(websocket.StatusNormalClosure, "")
			default:
				s.closeWith(websocket.StatusNormalClosure, "the VM's screen closed (the VM stopped)")
			}
			log.Info("VNC viewer detached")
			return nil
		}
	}
}

// vncControl runs one control of the VNC websocket: keys or typing.
func (h consoleHandler) vncControl(s *wsSession, config, vm string, data []byte) {
	var msg wire.ConsoleControl
	if err := json.Unmarshal(data, &msg); err != nil {
		s.refuse(errdefs.Invalid("control message: %v", err))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	var err error
	switch msg.Type {
	case wire.ConsoleKeys:
		err = h.lab.VMSendKeys(ctx, config, vm, msg.Keys)
	case wire.ConsoleType:
		err = h.lab.VMTypeText(ctx, config, vm, msg.Text)
	case wire.ConsoleResize:
		// The guest sets its screen's size; noVNC scales.
	default:
		err = errdefs.Invalid("control %q: the VNC console takes keys, type and resize", msg.Type)
	}
	if err != nil {
		s.refuse(err)
	}
}

// screen answers a PNG of the VM's screen: a screendump at most every few
// seconds per VM, the last one meanwhile.
func (h consoleHandler) screen(w http.ResponseWriter, r *http.Request) error {
	png, taken, err := h.lab.VMScreen(r.Context(), r.PathValue("name"), r.PathValue("vm"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(wire.ScreenTakenHeader, taken.UTC().Format(time.RFC3339Nano))
	w.Header().Set("Content-Length", fmt.Sprint(len(png)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(png)
	return nil
}
