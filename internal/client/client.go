// Package client is the typed Go client of Stagehand's REST API. Each method
// is one endpoint and returns wire types; an error answer becomes an *Error
// that errors.Is the matching errdefs kind, so callers test for
// errdefs.ErrNotFound rather than status codes.
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

// Client talks to one Stagehand daemon. It is safe for concurrent use.
type Client struct {
	base string // scheme://host[:port], no trailing slash
	hc   *http.Client
	user string // sent as wire.UserHeader when set
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUser makes the client name user in every request (the event log
// records it).
func WithUser(user string) Option { return func(c *Client) { c.user = user } }

func (c *Client) setUser(req *http.Request) {
	if c.user != "" {
		req.Header.Set(wire.UserHeader, c.user)
	}
}

// New returns a client of the daemon at baseURL (e.g.
// "http://127.0.0.1:7480"; a bare "host:port" means http).
func New(baseURL string, opts ...Option) *Client {
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the daemon's address as the client uses it.
func (c *Client) BaseURL() string { return c.base }

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
	wire.KindNotFound:    errdefs.ErrNotFound,
	wire.KindConflict:    errdefs.ErrConflict,
	wire.KindInvalid:     errdefs.ErrInvalid,
	wire.KindUnavailable: errdefs.ErrUnavailable,
	wire.KindCanceled:    errdefs.ErrCanceled,
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
func (c *Client) do(ctx context.Context, method, p string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, p, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + p
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, p, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.setUser(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.unreachable(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, p, err)
	}
	return nil
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
func call[T any](ctx context.Context, c *Client, method, p string, query url.Values, in any) (*T, error) {
	var out T
	if err := c.do(ctx, method, p, query, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// list GETs p and returns the decoded list.
func list[T any](ctx context.Context, c *Client, p string, query url.Values) ([]T, error) {
	var out []T
	return out, c.do(ctx, http.MethodGet, p, query, nil, &out)
}

// stream GETs p and returns the body of a 2xx answer unread.
func (c *Client) stream(ctx context.Context, p string, query url.Values) (io.ReadCloser, error) {
	u := c.base + p
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", p, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}

// unreachable turns a failure to send a request into the caller's context
// error or an unavailable error.
func (c *Client) unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errdefs.Unavailable("cannot reach the stagehand server at %s: no daemon is listening there (is `stagehand serve` running? see --server or STAGEHAND_SERVER): %v", c.base, err)
	case errors.As(err, &ne) && ne.Timeout():
		return errdefs.Unavailable("cannot reach the stagehand server at %s: it did not answer in time (the daemon may be overloaded or stopped): %v", c.base, err)
	}
	return errdefs.Unavailable("cannot reach the stagehand server at %s: %v", c.base, err)
}
