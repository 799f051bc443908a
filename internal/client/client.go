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
	"strconv"
	"strings"
	"syscall"
	"time"

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

// Health checks that the daemon answers.
func (c *Client) Health(ctx context.Context) error {
	var h wire.Health
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, &h)
}

// ImportTemplate imports a template. Its paths are read by the daemon.
func (c *Client) ImportTemplate(ctx context.Context, req wire.TemplateRequest) (*wire.Template, error) {
	var t wire.Template
	if err := c.do(ctx, http.MethodPost, path("templates"), nil, req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListTemplates returns every template.
func (c *Client) ListTemplates(ctx context.Context) ([]wire.Template, error) {
	var ts []wire.Template
	return ts, c.do(ctx, http.MethodGet, path("templates"), nil, nil, &ts)
}

// GetTemplate returns one template.
func (c *Client) GetTemplate(ctx context.Context, name string) (*wire.Template, error) {
	var t wire.Template
	if err := c.do(ctx, http.MethodGet, path("templates", name), nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// DeleteTemplate deletes a template.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("templates", name), nil, nil, nil)
}

// CreateNetwork creates a network.
func (c *Client) CreateNetwork(ctx context.Context, req wire.NetworkRequest) (*wire.Network, error) {
	var n wire.Network
	if err := c.do(ctx, http.MethodPost, path("networks"), nil, req, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// ListNetworks returns every network with its usage.
func (c *Client) ListNetworks(ctx context.Context) ([]wire.Network, error) {
	var ns []wire.Network
	return ns, c.do(ctx, http.MethodGet, path("networks"), nil, nil, &ns)
}

// GetNetwork returns one network with its usage.
func (c *Client) GetNetwork(ctx context.Context, name string) (*wire.Network, error) {
	var n wire.Network
	if err := c.do(ctx, http.MethodGet, path("networks", name), nil, nil, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// DeleteNetwork deletes a network.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("networks", name), nil, nil, nil)
}

// CreateConfig creates a configuration.
func (c *Client) CreateConfig(ctx context.Context, req wire.ConfigRequest) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("configs"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// ListConfigs returns every configuration.
func (c *Client) ListConfigs(ctx context.Context) ([]wire.Config, error) {
	var cs []wire.Config
	return cs, c.do(ctx, http.MethodGet, path("configs"), nil, nil, &cs)
}

// GetConfig returns one configuration.
func (c *Client) GetConfig(ctx context.Context, name string) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodGet, path("configs", name), nil, nil, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// DeleteConfig deletes a configuration.
func (c *Client) DeleteConfig(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, path("configs", name), nil, nil, nil)
}

// LinkedClone makes dst from src by linked clone and returns it.
func (c *Client) LinkedClone(ctx context.Context, src, dst string) (*wire.Config, error) {
	var cfg wire.Config
	req := wire.CloneRequest{Name: dst, Mode: wire.CloneLinked}
	if err := c.do(ctx, http.MethodPost, path("configs", src, "clone"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// StartFullClone starts a full clone of src into dst and returns its job.
func (c *Client) StartFullClone(ctx context.Context, src, dst string) (*wire.Job, error) {
	var j wire.Job
	req := wire.CloneRequest{Name: dst, Mode: wire.CloneFull}
	if err := c.do(ctx, http.MethodPost, path("configs", src, "clone"), nil, req, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// ChangeIPs gives every pool NIC of a configuration a new address.
func (c *Client) ChangeIPs(ctx context.Context, name string) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("configs", name, "change-ips"), nil, nil, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// SetIP sets one NIC's address ("pool", "dhcp" or an address).
func (c *Client) SetIP(ctx context.Context, config, vm string, nic int, ip string) (*wire.Config, error) {
	var cfg wire.Config
	p := path("configs", config, "vms", vm, "nics", strconv.Itoa(nic), "ip")
	if err := c.do(ctx, http.MethodPut, p, nil, wire.SetIPRequest{IP: ip}, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// DiskChain returns a VM disk's layers, top first.
func (c *Client) DiskChain(ctx context.Context, config, vm string, disk int) ([]wire.Layer, error) {
	var ls []wire.Layer
	p := path("configs", config, "vms", vm, "disks", strconv.Itoa(disk), "chain")
	return ls, c.do(ctx, http.MethodGet, p, nil, nil, &ls)
}

// StartConsolidate starts rewriting a VM disk's chain into one base.
func (c *Client) StartConsolidate(ctx context.Context, config, vm string, disk int) (*wire.Job, error) {
	var j wire.Job
	p := path("configs", config, "vms", vm, "disks", strconv.Itoa(disk), "consolidate")
	if err := c.do(ctx, http.MethodPost, p, nil, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// ListJobs returns every job, oldest first.
func (c *Client) ListJobs(ctx context.Context) ([]wire.Job, error) {
	var js []wire.Job
	return js, c.do(ctx, http.MethodGet, path("jobs"), nil, nil, &js)
}

// GetJob returns a job's snapshot.
func (c *Client) GetJob(ctx context.Context, id string) (*wire.Job, error) {
	var j wire.Job
	if err := c.do(ctx, http.MethodGet, path("jobs", id), nil, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// WaitJob returns the job's snapshot once it ends or timeout passes,
// whichever is first; look at its State.
func (c *Client) WaitJob(ctx context.Context, id string, timeout time.Duration) (*wire.Job, error) {
	var j wire.Job
	q := url.Values{"timeout": {timeout.String()}}
	if err := c.do(ctx, http.MethodGet, path("jobs", id, "wait"), q, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// CancelJob asks a job to stop and returns its snapshot; the job ends once
// its work is rolled back.
func (c *Client) CancelJob(ctx context.Context, id string) (*wire.Job, error) {
	var j wire.Job
	if err := c.do(ctx, http.MethodPost, path("jobs", id, "cancel"), nil, nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Doctor checks the store against the files; with repair it fixes what is
// safe to fix.
func (c *Client) Doctor(ctx context.Context, repair bool) (*wire.DoctorReport, error) {
	var r wire.DoctorReport
	method, p := http.MethodGet, path("doctor")
	if repair {
		method, p = http.MethodPost, path("doctor", "repair")
	}
	if err := c.do(ctx, method, p, nil, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Deploy starts a configuration's VMs and returns it once they run;
// fenced runs them behind a fence with policy (a wire.Fence* value, "" for
// the default).
func (c *Client) Deploy(ctx context.Context, name string, fenced bool, policy string) (*wire.Config, error) {
	var cfg wire.Config
	req := wire.DeployRequest{Fenced: fenced, FencePolicy: policy}
	if err := c.do(ctx, http.MethodPost, path("configs", name, "deploy"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Undeploy stops a configuration's VMs: powered off, or with saveState
// suspended to state files that the next Deploy resumes.
func (c *Client) Undeploy(ctx context.Context, name string, saveState bool) (*wire.Config, error) {
	var cfg wire.Config
	req := wire.UndeployRequest{SaveState: saveState}
	if err := c.do(ctx, http.MethodPost, path("configs", name, "undeploy"), nil, req, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// VMAction runs action (wire.VMStop, VMStart or VMReset) on one VM of a
// deployed configuration.
func (c *Client) VMAction(ctx context.Context, config, vm, action string) (*wire.Config, error) {
	var cfg wire.Config
	if err := c.do(ctx, http.MethodPost, path("configs", config, "vms", vm, action), nil, nil, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// VMLog returns a VM's serial log as it is now. Close it when done.
func (c *Client) VMLog(ctx context.Context, config, vm string) (io.ReadCloser, error) {
	return c.stream(ctx, path("configs", config, "vms", vm, "log"), nil)
}

// FollowVMLog returns a VM's serial log and then what the VM writes, until
// ctx ends or the reader is closed.
func (c *Client) FollowVMLog(ctx context.Context, config, vm string) (io.ReadCloser, error) {
	return c.stream(ctx, path("configs", config, "vms", vm, "log"), url.Values{"follow": {"1"}})
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
