// Package client is the typed Go client of Stagehand's REST API. Its
// endpoints are grouped by resource (c.Configs().Get, c.Jobs().Wait, ...);
// each method is one endpoint and returns wire types; an error answer
// becomes an *Error that errors.Is the matching errdefs kind, so callers
// test for errdefs.ErrNotFound rather than status codes. Every group is a
// value over the client's one transport (client.go, transport.go), where
// requests are built, sent and their answers decoded.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// transport is how every sub-client reaches the daemon: the server's
// address, the http.Client and the credentials, and the one place a
// request is built, sent and its answer decoded.
type transport struct {
	server string // the server URL as given, for messages
	target target
	base   string // what request URLs start with: scheme://host[:port]
	err    error  // a server URL New could not use; every call returns it
	hc     *http.Client
	token  string        // sent as a bearer token when set
	pins   *knownServers // nil: a certificate must be CA-verified
}

// Option configures a Client.
type Option func(*transport)

// WithHTTPClient makes the client send its requests through hc, which
// then decides how to reach the server (the socket and pinning are
// not set up).
func WithHTTPClient(hc *http.Client) Option { return func(c *transport) { c.hc = hc } }

// WithToken makes the client send token in every request
// (Authorization: Bearer).
func WithToken(token string) Option { return func(c *transport) { c.token = token } }

// WithKnownServers lets an https server whose certificate no CA vouches
// for be trusted by its fingerprint, pinned in file (0600, one line per
// server): the first connection pins it and calls trusted (may be nil),
// later ones refuse any other certificate with a *PinError.
func WithKnownServers(file string, trusted func(server, fingerprint string)) Option {
	return func(c *transport) { c.pins = &knownServers{file: file, trusted: trusted} }
}

// New returns a client of the daemon at server: unix:///path/to/stagehand.sock,
// https://host:port, http://host:port, or a bare host:port (http). A
// server URL it cannot use is the error of every call.
func New(server string, opts ...Option) *Client {
	t, server, err := parseServer(server)
	c := &transport{server: server, target: t, err: err}
	switch t.scheme {
	case "unix":
		c.base = "http://" + unixHost
	case "https", "http":
		c.base = t.scheme + "://" + t.host
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = c.httpClient()
	}
	return &Client{t: c}
}

// newRequest is a request to the daemon with the client's credentials.
func (c *transport) newRequest(ctx context.Context, method, p string, query url.Values, body io.Reader) (*http.Request, error) {
	if c.err != nil {
		return nil, c.err
	}
	u := c.base + p
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, p, err)
	}
	c.authorize(req.Header)
	return req, nil
}

func (c *transport) authorize(h http.Header) {
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
}

// Error is an error answer of the daemon.
type Error struct {
	Status  int    // HTTP status
	Kind    string // wire.Kind*
	Message string // the daemon's one-line message
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is the errdefs kind of e.
func (e *Error) Is(target error) bool {
	k := kindErrors[e.Kind]
	return k != nil && k == target
}

// kindErrors turns a wire kind back into the errdefs kind the server mapped.
var kindErrors = map[string]error{
	wire.KindNotFound:        errdefs.ErrNotFound,
	wire.KindConflict:        errdefs.ErrConflict,
	wire.KindInvalid:         errdefs.ErrInvalid,
	wire.KindUnavailable:     errdefs.ErrUnavailable,
	wire.KindCanceled:        errdefs.ErrCanceled,
	wire.KindUnauthenticated: errdefs.ErrUnauthenticated,
	wire.KindForbidden:       errdefs.ErrForbidden,
}

// kindOfStatus guesses the kind of an answer without an error body (from a
// proxy, or an old daemon).
func kindOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		return wire.KindInvalid
	case http.StatusNotFound:
		return wire.KindNotFound
	case http.StatusConflict:
		return wire.KindConflict
	case http.StatusUnauthorized:
		return wire.KindUnauthenticated
	case http.StatusForbidden, http.StatusMisdirectedRequest:
		return wire.KindForbidden
	case http.StatusTooManyRequests:
		return wire.KindUnavailable
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return wire.KindUnavailable
	default:
		return wire.KindInternal
	}
}

// path joins escaped segments under the API prefix.
func path(segments ...string) string {
	var b strings.Builder
	b.WriteString(wire.APIPrefix)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// do sends in (when non-nil) as JSON and decodes a 2xx answer into out
// (when non-nil). Any other answer becomes an *Error.
func (c *transport) do(ctx context.Context, method, p string, query url.Values, in, out any) error {
	var (
		body io.Reader
		size int64
		h    http.Header
	)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, p, err)
		}
		body, size = bytes.NewReader(b), int64(len(b))
		h = http.Header{"Content-Type": {"application/json"}}
	}
	return c.send(ctx, method, p, query, h, body, size, out)
}

// send sends body (size bytes, -1 unknown) with header h and decodes a
// 2xx answer into out (when non-nil); any other answer becomes an *Error.
func (c *transport) send(ctx context.Context, method, p string, query url.Values, h http.Header, body io.Reader, size int64, out any) error {
	req, err := c.newRequest(ctx, method, p, query, body)
	if err != nil {
		return err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	req.ContentLength = size
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, p, err)
	}
	return nil
}

// get GETs p with the extra header h (may be nil) and returns the 2xx
// answer for the caller to read and close; any other answer becomes an
// *Error.
func (c *transport) get(ctx context.Context, p string, query url.Values, h http.Header) (*http.Response, error) {
	req, err := c.newRequest(ctx, http.MethodGet, p, query, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	return c.roundTrip(ctx, req)
}

// roundTrip sends req and returns its 2xx answer: a failure to send is
// unreachable's error, any other answer an *Error. It is where every
// request of the client goes out but the console's upgrade.
func (c *transport) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// decodeError reads an error answer: the wire.Error body when there is one,
// else the status and the start of the body.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body wire.Error
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		if body.Kind == "" {
			body.Kind = kindOfStatus(resp.StatusCode)
		}
		return &Error{Status: resp.StatusCode, Kind: body.Kind, Message: body.Error}
	}
	msg := strings.TrimSpace(string(b))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{
		Status:  resp.StatusCode,
		Kind:    kindOfStatus(resp.StatusCode),
		Message: fmt.Sprintf("server answered %s: %s", resp.Status, msg),
	}
}

// call sends in (nil for none) to p and returns the decoded 2xx answer.
// It is the body of every endpoint method that answers one object.
func call[T any](ctx context.Context, c *transport, method, p string, query url.Values, in any) (*T, error) {
	var out T
	if err := c.do(ctx, method, p, query, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// list GETs p and returns the decoded list.
func list[T any](ctx context.Context, c *transport, p string, query url.Values) ([]T, error) {
	var out []T
	return out, c.do(ctx, http.MethodGet, p, query, nil, &out)
}

// stream GETs p and returns the body of a 2xx answer unread.
func (c *transport) stream(ctx context.Context, p string, query url.Values) (io.ReadCloser, error) {
	resp, err := c.get(ctx, p, query, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// unreachable turns a failure to send a request into the caller's context
// error or an unavailable error.
func (c *transport) unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var pe *PinError
	if errors.As(err, &pe) {
		return pe
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errdefs.Unavailable("cannot reach the stagehand server at %s: no daemon is listening there (is `stagehand serve` running? see --server or STAGEHAND_SERVER): %v", c.server, err)
	case c.target.scheme == "unix" && errors.Is(err, syscall.ENOENT):
		return errdefs.Unavailable("cannot reach the stagehand server at %s: there is no socket there (is `stagehand serve` running on that data dir? see --server or STAGEHAND_SERVER)", c.server)
	case c.target.scheme == "unix" && errors.Is(err, syscall.EACCES):
		return errdefs.Unavailable("cannot reach the stagehand server at %s: permission denied (the socket is for root and the %q group)", c.server, "stagehand")
	case errors.As(err, &ne) && ne.Timeout():
		return errdefs.Unavailable("cannot reach the stagehand server at %s: it did not answer in time (the daemon may be overloaded or stopped): %v", c.server, err)
	}
	return errdefs.Unavailable("cannot reach the stagehand server at %s: %v", c.server, err)
}
