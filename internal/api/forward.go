package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab/access"
	"stagehand/internal/store"
)

// Forwarding: with many hosts on one store, any host answers any call. A
// route whose object is a configuration (its VMs, consoles, screens,
// logs, deploy, clone, disks …) runs on the configuration's home host
// (store.Config.Host): the gate of the host the client reached
// authenticates and authorizes the request as usual, then, when the home
// is another host, reverse-proxies it there, presenting this host's
// credential and the caller as the acting user. The home host's gate
// authorizes again, as that user: a host decides on what it runs from the
// store it shares, never on another host's word alone. Jobs started on
// another host are named "HOST:ID" to the client, and the job routes
// forward by that prefix.

// Headers of a forwarded request. Only a request that carries a verified
// host credential may carry them; from anyone else they are refused.
const (
	// ActingUserHeader names the user a forwarded request acts for: a
	// user's id, or actingRoot for the system administrator on a unix
	// socket (who has no user id).
	ActingUserHeader = "X-Stagehand-Acting-User"
	// ActingRestrictionHeader carries a restricted token's restriction
	// ("WORKSPACE_ID:ROLE"), so that forwarding never widens it.
	ActingRestrictionHeader = "X-Stagehand-Acting-Restriction"
	// HostHeader names, on every answer, the host that served it.
	HostHeader = "Stagehand-Host"
)

// actingRoot is the acting user of a forwarded request of the unix peer
// root.
const actingRoot = "root"

// ViaHost is Identity.Via of a request a peer forwarded: it acts as its
// user, and never has what only a local unix peer has (naming files on
// the server).
const ViaHost = "host"

// HostLink is what the gate needs to forward requests to other hosts and
// to accept theirs.
type HostLink struct {
	Self       string            // this host's name (store.Host.Name)
	Credential string            // this host's shh_… credential, presented to peers
	Verifier   hostlink.Verifier // checks the credentials peers present
	Homes      Homes
}

// Homes says where a configuration lives and how to reach a host; the
// daemon's reads the shared store (StoreHomes).
type Homes interface {
	// ConfigHome returns the name of configuration name's home host; ""
	// when it has none (never placed) or no such configuration exists
	// (the handler then answers as it does on one host).
	ConfigHome(ctx context.Context, name string) (string, error)
	// VMHost returns the host that runs VM vm of configuration config
	// when that is not its home: a member of its spread deployment. ""
	// otherwise (the request then goes to the home).
	VMHost(ctx context.Context, config, vm string) (string, error)
	// Peer returns host name as a forwarder reaches it, and when it was
	// last seen.
	Peer(ctx context.Context, name string) (hostlink.Peer, time.Time, error)
}

// SetHostLink turns forwarding on. Call it before serving.
func (h *Handler) SetHostLink(l HostLink) error {
	if _, _, err := hostlink.ParseCredential(l.Credential); err != nil {
		return fmt.Errorf("host link: this host's credential: %w", err)
	}
	if l.Self == "" || l.Verifier == nil || l.Homes == nil {
		return errdefs.Invalid("host link: the host's name, a verifier and the homes are required")
	}
	h.fwd = &forwarder{link: l, log: h.log, drain: h.drain, writeError: h.writeError, proxies: map[hostlink.Peer]*httputil.ReverseProxy{}}
	h.auth.hosts = l.Verifier
	return nil
}

// forwarder sends requests to their object's home host. A nil forwarder
// (one host) serves everything here.
type forwarder struct {
	link       HostLink
	log        *slog.Logger
	drain      context.Context
	writeError func(http.ResponseWriter, *http.Request, error)

	mu      sync.Mutex
	proxies map[hostlink.Peer]*httputil.ReverseProxy
}

// forwardedKey marks a request a peer forwarded here (its value: the
// peer's name). Such a request is never forwarded again: a configuration
// that moved meanwhile is answered 503, not chased around the hosts.
type forwardedKey struct{}

func forwardedBy(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(forwardedKey{}).(string)
	return s, ok
}

// jobHost is, for a job route whose id names another host ("B:42"), that
// host; the request then goes there before any decision here, since the
// job exists only there (its host authorizes it). A prefix naming this
// host is dropped.
func (f *forwarder) jobHost(r *http.Request, ri RouteInfo) string {
	if f == nil || ri.Kind != access.KindJob || ri.Param == "" {
		return ""
	}
	host, local, ok := splitJobID(r.PathValue(ri.Param))
	if !ok {
		return ""
	}
	if host == f.link.Self {
		r.SetPathValue(ri.Param, local)
		return ""
	}
	return host
}

// splitJobID splits "HOST:ID"; a local job id is a number, so the last
// colon ends the host's name.
func splitJobID(id string) (host, local string, ok bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 || i == len(id)-1 {
		return "", "", false
	}
	return id[:i], id[i+1:], true
}

// home returns the host that must serve r, an authorized request to ri,
// or "" for this one.
func (f *forwarder) home(r *http.Request, ri RouteInfo) (string, error) {
	if f == nil || ri.Kind != access.KindConfig {
		return "", nil
	}
	name := r.PathValue(ri.Param)
	if ri.Param == "" {
		var err error
		if name, err = bodyField(r, ri.Body); err != nil || name == "" {
			return "", err
		}
	}
	home, err := f.link.Homes.ConfigHome(r.Context(), name)
	if err != nil || home == "" {
		return "", err
	}
	what := fmt.Sprintf("configuration %q lives", name)
	if vm := r.PathValue("vm"); vm != "" && vmRuntimeRoute(ri.Pattern) {
		host, err := f.link.Homes.VMHost(r.Context(), name, vm)
		if err != nil {
			return "", err
		}
		if host != "" {
			home, what = host, fmt.Sprintf("VM %q of %q runs", vm, name)
		}
	}
	if home == f.link.Self {
		return "", nil
	}
	if by, ok := forwardedBy(r.Context()); ok {
		return "", errdefs.Unavailable("%s on host %q, not here (host %q forwarded this request here; it moved meanwhile?): retry", what, home, by)
	}
	if storeReads[ri.Pattern] {
		// What the store alone answers stays answerable while the home
		// host is down: `config show` then says so (state "host
		// offline") rather than failing.
		if _, lastSeen, err := f.link.Homes.Peer(r.Context(), home); err == nil && offline(lastSeen) {
			return "", nil
		}
	}
	return home, nil
}

// vmRuntimeRoute reports whether pattern, a route naming one VM, is
// served by the host that runs the VM (its runtime: an action, its
// consoles, screen and serial log) rather than by the home alone.
func vmRuntimeRoute(pattern string) bool {
	_, rest, ok := strings.Cut(pattern, "/vms/{vm}/")
	if !ok || !strings.HasPrefix(pattern, "GET ") && !strings.HasPrefix(pattern, "POST ") {
		return false
	}
	switch rest {
	case wire.VMStop, wire.VMStart, wire.VMReset, "log", "console", "serial/ws", "vnc/ws", "screen.png":
		return true
	}
	return false
}

// storeReads are the configuration routes answered from the shared store
// alone: served here when the home host is offline.
var storeReads = map[string]bool{
	"GET " + wire.APIPrefix + "/configs/{name}":        true,
	"GET " + wire.APIPrefix + "/configs/{name}/shares": true,
}

// localKey carries a localServe on a forwarded store read.
type localKey struct{}

// localServe serves a forwarded request here instead: r is the request as
// it reached this host.
type localServe struct {
	r     *http.Request
	serve http.HandlerFunc
}

// orLocal returns r, a request to ri about to be forwarded, marked so
// that when ri is a store read (storeReads) and its home host cannot be
// reached, serve answers it here rather than a 503: a home that is cut
// off is not yet offline (cluster.Offline), but the store answers
// without it all the same.
func orLocal(r *http.Request, ri RouteInfo, serve http.HandlerFunc) *http.Request {
	if !storeReads[ri.Pattern] {
		return r
	}
	ls := &localServe{serve: serve}
	ls.r = r.WithContext(context.WithValue(r.Context(), localKey{}, ls))
	return ls.r
}

// forward proxies r to host (what is the object, for messages).
func (f *forwarder) forward(w http.ResponseWriter, r *http.Request, host, what string) {
	if by, ok := forwardedBy(r.Context()); ok {
		f.writeError(w, r, errdefs.Unavailable("%s is on host %q; host %q forwarded this request here, and a request is forwarded once only", what, host, by))
		return
	}
	w.Header().Del(HostHeader) // the answering host names itself
	peer, lastSeen, err := f.link.Homes.Peer(r.Context(), host)
	if errdefs.Kind(err) == errdefs.ErrNotFound {
		err = errdefs.NotFound("%s: host %q is not a host of this installation", what, host)
	}
	if err != nil {
		f.writeError(w, r, err)
		return
	}
	if offline(lastSeen) {
		f.writeError(w, r, errdefs.Unavailable("%s: its host %q is offline (last seen %s, %s ago); it is served again when that host's daemon is back",
			what, host, lastSeen.UTC().Format(time.RFC3339), time.Since(lastSeen).Round(time.Second)))
		return
	}
	id, ok := auth.FromContext(r.Context())
	if !ok {
		f.writeError(w, r, errNoCredentials)
		return
	}
	rp, err := f.proxy(peer)
	if err != nil {
		f.writeError(w, r, fmt.Errorf("%s: host %q: %w", what, host, err))
		return
	}
	if isConsoleUpgrade(r) {
		// The connection outlives the request once upgraded: no deadline
		// of the server's may cut the console (the home host's idle
		// limit ends an abandoned one).
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(f.drain, cancel) // shutdown ends proxied streams and consoles too
	defer stop()
	out := r.Clone(context.WithValue(ctx, actingKey{}, id))
	f.log.Debug("forwarding request", "method", r.Method, "path", r.URL.Path, "to", host, "user", id.Name)
	rp.ServeHTTP(w, out)
}

// offline is cluster.Offline's rule on a last-seen time.
func offline(lastSeen time.Time) bool {
	return cluster.Offline(store.Host{LastSeen: lastSeen}, time.Now())
}

// actingKey carries the caller's identity to the proxy's Rewrite.
type actingKey struct{}

// proxy returns the reverse proxy to peer, one per peer so that
// connections are reused.
func (f *forwarder) proxy(peer hostlink.Peer) (*httputil.ReverseProxy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rp, ok := f.proxies[peer]; ok {
		return rp, nil
	}
	target, err := url.Parse(peer.URL)
	if err != nil {
		return nil, errdefs.Invalid("advertise URL %q: %v", peer.URL, err)
	}
	tr, err := hostlink.ForwardTransport(peer)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Transport: tr,
		// Event streams and log follows reach the client as they come.
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			f.rewrite(pr, peer.Name)
		},
		ModifyResponse: func(resp *http.Response) error { return nameJobs(resp, peer.Name) },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return // the client (or shutdown) ended it
			}
			var pin *hostlink.PinError
			if errors.As(err, &pin) {
				f.log.Warn("forward refused: peer certificate does not match its pin", "host", peer.Name, "err", err)
			}
			if hostlink.Unreachable(err) {
				if ls, ok := r.Context().Value(localKey{}).(*localServe); ok {
					// What the store alone answers is answered here, as
					// when the home is offline.
					f.log.Info("home host unreachable: serving a store read here", "host", peer.Name, "path", ls.r.URL.Path, "err", err)
					w.Header().Set(HostHeader, f.link.Self)
					ls.serve(w, ls.r)
					return
				}
				f.writeError(w, r, errdefs.Unavailable("host %q (%s) is unreachable: %v", peer.Name, peer.URL, err))
				return
			}
			f.writeError(w, r, errdefs.Unavailable("host %q (%s) did not answer a forwarded request: %v", peer.Name, peer.URL, err))
		},
		ErrorLog: slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
	}
	f.proxies[peer] = rp
	return rp, nil
}

// rewrite replaces the client's credentials by this host's and names the
// acting user. Cookies, the Origin and the browser's fetch metadata stay
// here: the peer is not the site the browser talked to, and the caller
// was already authenticated and authorized on this host.
func (f *forwarder) rewrite(pr *httputil.ProxyRequest, peer string) {
	out := pr.Out
	for _, k := range []string{"Authorization", "Cookie", "Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User",
		ActingUserHeader, ActingRestrictionHeader, "X-Request-Id", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		out.Header.Del(k)
	}
	if q := out.URL.Query(); q.Has(wire.ConsoleLinkParam) {
		// The link was checked here; the peer acts as its creator.
		q.Del(wire.ConsoleLinkParam)
		out.URL.RawQuery = q.Encode()
	}
	if host, local, ok := splitJobID(pr.In.PathValue("id")); ok && host == peer && strings.Contains(out.URL.Path, "/jobs/") {
		out.URL.Path = strings.Replace(out.URL.Path, "/jobs/"+pr.In.PathValue("id"), "/jobs/"+local, 1)
		out.URL.RawPath = ""
	}
	id, _ := pr.In.Context().Value(actingKey{}).(auth.Identity)
	out.Header.Set("Authorization", "Bearer "+f.link.Credential)
	acting := strconv.FormatInt(id.UserID, 10)
	if id.UserID == 0 {
		acting = actingRoot
	}
	out.Header.Set(ActingUserHeader, acting)
	if id.Restrict != nil {
		out.Header.Set(ActingRestrictionHeader, strconv.FormatInt(id.Restrict.WorkspaceID, 10)+":"+string(id.Restrict.MaxRole))
	}
}

// nameJobs names the jobs in a peer's answer as HOST:ID: its Location,
// and the body of an answer about a job (a 202 that started one, a job
// route's). A local id means nothing through another host.
func nameJobs(resp *http.Response, host string) error {
	jobPrefix := wire.APIPrefix + "/jobs/"
	loc := resp.Header.Get("Location")
	local, isJob := strings.CutPrefix(loc, jobPrefix)
	if isJob && local != "" {
		resp.Header.Set("Location", jobPrefix+url.PathEscape(host+":"+local))
	}
	isJobRoute := strings.HasPrefix(resp.Request.URL.Path, jobPrefix)
	if !(isJob && resp.StatusCode == http.StatusAccepted || isJobRoute && resp.StatusCode < 300) ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read host %q's answer: %w", host, err)
	}
	var j wire.Job
	if json.Unmarshal(b, &j) == nil && j.ID != "" {
		j.ID = host + ":" + j.ID
		if nb, err := json.Marshal(j); err == nil {
			b = append(nb, '\n')
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return nil
}

// hostIdentity authenticates a request that presents a host credential:
// the peer forwarded it for the acting user it names, who is then who the
// request is (authorized again here). A host credential without an acting
// user is the system, and only on /internal/ (hostlink.Server): here it
// is refused.
func (a *authenticator) hostIdentity(r *http.Request) (*http.Request, auth.Identity, error) {
	if a.hosts == nil {
		return nil, auth.Identity{}, errdefs.Unauthenticated("host credentials are not accepted here (this server is not one of many hosts)")
	}
	host, err := hostlink.Authenticate(r.Context(), a.hosts, r)
	if err != nil {
		return nil, auth.Identity{}, err
	}
	acting := r.Header.Get(ActingUserHeader)
	if acting == "" {
		return nil, auth.Identity{}, errdefs.Forbidden("host %q: a host credential alone reaches only /internal/; on the API it acts for a user (%s)", host, ActingUserHeader)
	}
	var id auth.Identity
	if acting == actingRoot {
		id = auth.Identity{Name: "root", SystemAdmin: true, Via: ViaHost}
	} else {
		uid, err := strconv.ParseInt(acting, 10, 64)
		if err != nil || uid <= 0 {
			return nil, auth.Identity{}, errdefs.Unauthenticated("host %q: %s %q is not a user id", host, ActingUserHeader, acting)
		}
		if a.store == nil {
			return nil, auth.Identity{}, errdefs.Unauthenticated("host %q: this server keeps no users", host)
		}
		err = a.store.View(r.Context(), func(tx store.Tx) error {
			u, err := tx.Users().GetByID(uid)
			if errors.Is(err, errdefs.ErrNotFound) {
				return errdefs.Unauthenticated("host %q acts for user %d, who does not exist", host, uid)
			}
			if err != nil {
				return err
			}
			if u.Disabled {
				return errdefs.Unauthenticated("host %q acts for user %q, who is disabled", host, u.Name)
			}
			id = auth.Identity{UserID: u.ID, Name: u.Name, SystemAdmin: u.SystemAdmin, Via: ViaHost}
			return nil
		})
		if err != nil {
			return nil, auth.Identity{}, err
		}
	}
	if s := r.Header.Get(ActingRestrictionHeader); s != "" {
		ws, role, _ := strings.Cut(s, ":")
		wsID, err := strconv.ParseInt(ws, 10, 64)
		if err != nil || role == "" {
			return nil, auth.Identity{}, errdefs.Unauthenticated("host %q: %s %q is not WORKSPACE_ID:ROLE", host, ActingRestrictionHeader, s)
		}
		id.Restrict = &auth.Restriction{WorkspaceID: wsID, MaxRole: auth.Role(role)}
	}
	return r.WithContext(context.WithValue(r.Context(), forwardedKey{}, host)), id, nil
}

// presentsHostCredential reports whether r's bearer token is a host's.
func presentsHostCredential(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && strings.HasPrefix(strings.TrimSpace(tok), hostlink.CredentialPrefix)
}

// errActingForged answers an acting-user header that no host credential
// vouches for.
var errActingForged = errdefs.Forbidden("%s and %s are sent by the installation's hosts only, with a host credential", ActingUserHeader, ActingRestrictionHeader)

// StoreHomes reads homes and peers from the store all hosts share.
type StoreHomes struct{ Store store.Store }

// ConfigHome returns the configuration's Host.
func (s StoreHomes) ConfigHome(ctx context.Context, name string) (string, error) {
	var home string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(name)
		if err != nil {
			return err
		}
		home = c.Host
		return nil
	})
	if errdefs.Kind(err) == errdefs.ErrNotFound {
		return "", nil
	}
	return home, err
}

// VMHost returns the VM's Host when its configuration is deployed and
// the VM runs on a member of its spread deployment.
func (s StoreHomes) VMHost(ctx context.Context, config, vm string) (string, error) {
	var host string
	err := s.Store.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get(config)
		if err != nil || c.State != store.StateDeployed {
			return err
		}
		for _, v := range c.VMs {
			if v.Name == vm && v.Host != "" && v.Host != c.Host {
				host = v.Host
			}
		}
		return nil
	})
	if errdefs.Kind(err) == errdefs.ErrNotFound {
		return "", nil
	}
	return host, err
}

// Peer returns the host's advertise URL and pinned certificate.
func (s StoreHomes) Peer(ctx context.Context, name string) (hostlink.Peer, time.Time, error) {
	var h *store.Host
	err := s.Store.View(ctx, func(tx store.Tx) error {
		var err error
		h, err = tx.Hosts().Get(name)
		return err
	})
	if err != nil {
		return hostlink.Peer{}, time.Time{}, err
	}
	return hostlink.Peer{Name: h.Name, URL: h.AdvertiseURL, Fingerprint: h.CertFingerprint}, h.LastSeen, nil
}

// objectOf names what an authorized request to ri is about, for
// messages: its configuration, or one VM of it.
func objectOf(r *http.Request, ri RouteInfo) string {
	if vm := r.PathValue("vm"); vm != "" && vmRuntimeRoute(ri.Pattern) {
		return "VM " + strconv.Quote(vm) + " of " + configNameOf(r, ri)
	}
	return "configuration " + configNameOf(r, ri)
}

// configNameOf names the configuration of an authorized request to ri,
// for messages.
func configNameOf(r *http.Request, ri RouteInfo) string {
	if ri.Param != "" {
		return strconv.Quote(r.PathValue(ri.Param))
	}
	name, _ := bodyField(r, ri.Body)
	return strconv.Quote(name)
}
