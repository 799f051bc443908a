package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// Console attaches to a running VM's serial console. It opens a
// connection to the daemon (over its socket, TCP or TLS, as the client's
// server URL says), asks for an upgrade to wire.ConsoleProtocol and, on
// 101 Switching Protocols, returns the connection: what is written to it
// reaches the VM's serial port, what is read from it comes from there.
// Close it to detach; CloseWrite, where the connection has it, tells the
// daemon no more input comes. ctx bounds the handshake only. An answer
// other than 101 is the daemon's error, with its kind (not found,
// conflict, ...).
//
// The console does not go through the client's http.Client (an upgraded
// connection is not an HTTP exchange): it dials the daemon itself.
//
// Any number of sessions and web viewers share a console; the session
// takes the keyboard when it attaches (the others watch) and gives it up
// when it half-closes.
func (c VMs) Console(ctx context.Context, config, vm string, opts ...ConsoleOption) (net.Conn, error) {
	if c.t.err != nil {
		return nil, c.t.err
	}
	var o consoleOptions
	for _, opt := range opts {
		opt(&o)
	}
	p := path("configs", config, "vms", vm, "console")
	u, err := url.Parse(c.t.base + p)
	if err != nil {
		return nil, errdefs.Invalid("server URL %q: %v", c.t.server, err)
	}
	if o.replay {
		u.RawQuery = "replay=true"
	}
	conn, err := c.t.dialServer(ctx)
	if err != nil {
		return nil, c.t.unreachable(ctx, err)
	}
	// Cancelling ctx unblocks the handshake.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	br, err := c.t.upgradeToConsole(conn, u)
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		var apiErr *Error
		if errors.As(err, &apiErr) {
			return nil, err
		}
		return nil, fmt.Errorf("GET %s: %w", p, err)
	}
	return &upgradedConn{Conn: conn, buffered: br}, nil
}

// ConsoleOption changes how VMConsole attaches.
type ConsoleOption func(*consoleOptions)

type consoleOptions struct{ replay bool }

// ConsoleReplay starts the session with the console's last output (up to
// 64 KiB, from a line start), so that it shows the screen as it is.
func ConsoleReplay() ConsoleOption { return func(o *consoleOptions) { o.replay = true } }

// Screen returns a PNG of a running VM's screen and when it was taken
// (the daemon takes at most one screendump per VM every 2 s).
func (c VMs) Screen(ctx context.Context, config, vm string) ([]byte, time.Time, error) {
	resp, err := c.t.get(ctx, path("configs", config, "vms", vm, "screen.png"), nil, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("screen of %s/%s: %w", config, vm, err)
	}
	taken, _ := time.Parse(time.RFC3339Nano, resp.Header.Get(wire.ScreenTakenHeader))
	return b, taken, nil
}

// Create makes a link that opens the consoles of one VM, and
// nothing else, until it expires (expiresIn: "30m", "8h", "7d"; "" for 1
// hour) or is revoked. Its Token and URL are given this once.
func (c ConsoleLinks) Create(ctx context.Context, config, vm, expiresIn string) (*wire.ConsoleLink, error) {
	return call[wire.ConsoleLink](ctx, c.t, http.MethodPost, path("configs", config, "vms", vm, "console-links"), nil,
		wire.ConsoleLinkRequest{ExpiresIn: expiresIn})
}

// List returns the caller's console links (everyone's for a
// system administrator).
func (c ConsoleLinks) List(ctx context.Context) ([]wire.ConsoleLink, error) {
	return list[wire.ConsoleLink](ctx, c.t, path("console-links"), nil)
}

// Revoke revokes a console link at once: its open sessions
// end at their next request, new ones are refused.
func (c ConsoleLinks) Revoke(ctx context.Context, id string) error {
	return c.t.do(ctx, http.MethodDelete, path("console-links", id), nil, nil, nil)
}

// upgradeToConsole writes the upgrade request for u on conn and reads the
// answer. It returns the reader that holds what the daemon sent after its
// answer, or the daemon's error.
func (c *transport) upgradeToConsole(conn net.Conn, u *url.URL) (*bufio.Reader, error) {
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Host:       u.Host,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Connection": {"Upgrade"},
			"Upgrade":    {wire.ConsoleProtocol},
			"Accept":     {"application/json"}, // for error answers
		},
	}
	c.authorize(req.Header)
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("send upgrade: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("read upgrade answer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, decodeError(resp)
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, wire.ConsoleProtocol) {
		return nil, fmt.Errorf("server switched to protocol %q, want %q", got, wire.ConsoleProtocol)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return br, nil
}

// upgradedConn is the console connection: reads first drain what the
// handshake's reader buffered past the 101 answer, then read the socket.
type upgradedConn struct {
	net.Conn
	buffered *bufio.Reader
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if u.buffered != nil {
		if u.buffered.Buffered() > 0 {
			return u.buffered.Read(p)
		}
		u.buffered = nil
	}
	return u.Conn.Read(p)
}

// CloseWrite half-closes the connection: the console gets EOF while what
// it still sends can be read.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
