package hostlink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"stagehand/internal/errdefs"
)

// The host endpoints of a move (docs/decisions.md, "the move protocol"):
// the home host of an undeployed configuration asks the host placement
// chose to adopt it (pull its tops and the frozen layers it lacks, then
// record itself as the home), and then to deploy it there. They are
// called only by a host, with its credential, and only the host that
// hands a configuration over may ask for its adoption.
const configsPath = "/internal/v1/configs/"

// AdoptResult is what an adoption moved.
type AdoptResult struct {
	// Bytes is the sum of the sizes of the layers pulled: the missing
	// frozen layers and the tops.
	Bytes int64 `json:"bytes"`
	// Frozen and Tops count the layers pulled of each kind.
	Frozen int `json:"frozen"`
	Tops   int `json:"tops"`
}

// DeployRequest asks a host to deploy a configuration whose home it is.
type DeployRequest struct {
	Fenced      bool   `json:"fenced"`
	FencePolicy string `json:"fence_policy,omitempty"`
	// Allow is the egress allow-list (lab/deploy.CheckAllow).
	Allow []string `json:"allow,omitempty"`
	// DeployLease is the deployment's lease; nil keeps the setting.
	DeployLease *time.Duration `json:"deploy_lease,omitempty"`
}

// Adopter is this host's side of a move (the lab): Adopt makes this host
// the home of the undeployed configuration whose home is from; Deploy
// deploys a configuration whose home is this host here.
type Adopter interface {
	Adopt(ctx context.Context, config, from string) (AdoptResult, error)
	DeployHere(ctx context.Context, config string, req DeployRequest) error
	SpreadMember
}

// ServeMoves adds the move endpoints, answered by a: POST
// /internal/v1/configs/{name}/adopt and …/deploy.
func (s *Server) ServeMoves(a Adopter) {
	s.mux.HandleFunc("POST "+configsPath+"{name}/adopt", func(w http.ResponseWriter, r *http.Request) {
		// The caller is the home host handing the configuration over:
		// its verified name, never a name in the body.
		res, err := a.Adopt(r.Context(), r.PathValue("name"), caller(r))
		if err != nil {
			s.fail(w, r, "", fmt.Errorf("adopt configuration %q: %w", r.PathValue("name"), err))
			return
		}
		writeJSON(w, res)
	})
	s.mux.HandleFunc("POST "+configsPath+"{name}/deploy", func(w http.ResponseWriter, r *http.Request) {
		var req DeployRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			s.fail(w, r, "", errdefs.Invalid("deploy request: %v", err))
			return
		}
		if err := a.DeployHere(r.Context(), r.PathValue("name"), req); err != nil {
			s.fail(w, r, "", fmt.Errorf("deploy configuration %q: %w", r.PathValue("name"), err))
			return
		}
		writeJSON(w, struct{}{})
	})
	s.serveSpread(a)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Adopt asks peer to adopt configuration config from this host (see
// Adopter). It waits as long as the pulls take: ctx bounds it.
func (p *Puller) Adopt(ctx context.Context, peer Peer, config string) (AdoptResult, error) {
	var res AdoptResult
	err := p.call(ctx, peer, configsPath+url.PathEscape(config)+"/adopt", struct{}{}, &res)
	if err != nil {
		return AdoptResult{}, fmt.Errorf("host %q adopting configuration %q: %w", peer.Name, config, err)
	}
	return res, nil
}

// Deploy asks peer to deploy configuration config, whose home it is.
func (p *Puller) Deploy(ctx context.Context, peer Peer, config string, req DeployRequest) error {
	if err := p.call(ctx, peer, configsPath+url.PathEscape(config)+"/deploy", req, nil); err != nil {
		return fmt.Errorf("host %q deploying configuration %q: %w", peer.Name, config, err)
	}
	return nil
}

// call POSTs body as JSON to peer and decodes the answer into out. Its
// transport has no response-header timeout, unlike the pulls': the answer
// comes once the peer has pulled gigabytes or started VMs.
func (p *Puller) call(ctx context.Context, peer Peer, path string, body, out any) error {
	if _, err := checkPeerURL(peer); err != nil {
		return err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(peer.URL, "/")+path, bytes.NewReader(b))
	if err != nil {
		return errdefs.Invalid("%v", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.credential)
	req.Header.Set("Content-Type", "application/json")
	tr := newTransport(peer)
	tr.ResponseHeaderTimeout = 0
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return kindOfContext(ctx.Err())
		}
		return errdefs.Unavailable("%v", err)
	}
	defer resp.Body.Close()
	if err := statusError(resp, peer); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(out); err != nil {
		return errdefs.Unavailable("host %q: its answer: %v", peer.Name, err)
	}
	return nil
}
