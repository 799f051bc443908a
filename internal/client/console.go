package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// VMConsole attaches to a running VM's serial console. It opens a
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
func (c *Client) VMConsole(ctx context.Context, config, vm string) (net.Conn, error) {
	if c.err != nil {
		return nil, c.err
	}
	p := path("configs", config, "vms", vm, "console")
	u, err := url.Parse(c.base + p)
	if err != nil {
		return nil, errdefs.Invalid("server URL %q: %v", c.server, err)
	}
	conn, err := c.dialServer(ctx)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	// Cancelling ctx unblocks the handshake.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	br, err := c.upgradeToConsole(conn, u)
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

// upgradeToConsole writes the upgrade request for u on conn and reads the
// answer. It returns the reader that holds what the daemon sent after its
// answer, or the daemon's error.
func (c *Client) upgradeToConsole(conn net.Conn, u *url.URL) (*bufio.Reader, error) {
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
