package api

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"stagehand/internal/api/wire"
	"stagehand/internal/auth"
	"stagehand/internal/errdefs"
	"stagehand/internal/lab"
)

// Deployments is what the deploy, VM and console endpoints need
// (lab.Deployments).
type Deployments interface {
	Deploy(ctx context.Context, name string, opts lab.DeployOptions) (*lab.ConfigView, error)
	Undeploy(ctx context.Context, name string, saveState bool) (*lab.ConfigView, error)
	// Move moves an undeployed configuration to another host.
	Move(ctx context.Context, name, host string) (*lab.ConfigView, error)
	// VMAction runs lab.VMActionStop, VMActionStart or VMActionReset.
	VMAction(ctx context.Context, config, vm, action string) (*lab.ConfigView, error)
	// Consoles are the VM's serial console, screen and keys (console.go).
	Consoles
	// VMLog returns the path of a VM's serial log file.
	VMLog(ctx context.Context, config, vm string) (path string, err error)
}

// deployHandler serves the deploy, undeploy, VM power and serial log
// endpoints.
type deployHandler struct {
	*env
	lab Deployments
}

// register adds the routes of deploying a configuration and of its VMs.
// A VM's serial log is what its console printed, so reading it takes the
// console's action.
func (h deployHandler) register(r *router) {
	p := wire.APIPrefix
	r.route("POST "+p+"/configs/{name}/deploy", auth.ConfigDeploy, object("config", "name"), h.deploy)
	r.route("POST "+p+"/configs/{name}/undeploy", auth.ConfigUndeploy, object("config", "name"), h.undeploy)
	// A move changes where it will run, as a deploy does, and nothing else.
	r.route("POST "+p+"/configs/{name}/move", auth.ConfigDeploy, object("config", "name"), h.move)
	for _, action := range []string{wire.VMStop, wire.VMStart, wire.VMReset} {
		r.route("POST "+p+"/configs/{name}/vms/{vm}/"+action, auth.ConfigPower, object("config", "name"), h.vmAction(action))
	}
	r.route("GET "+p+"/configs/{name}/vms/{vm}/log", auth.ConfigConsole, object("config", "name"), h.vmLog)
}

// logPoll is how often a followed serial log is checked for new bytes.
const logPoll = 250 * time.Millisecond

// deploy answers 200 with the deployed configuration once every VM runs.
// It takes seconds; the daemon's server has no write timeout for that
// reason. The lab works under the request's context: a client that goes
// away cancels (and so rolls back) the deploy.
func (h deployHandler) deploy(w http.ResponseWriter, r *http.Request) error {
	var req wire.DeployRequest
	if err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	opts := lab.DeployOptions{Fenced: req.Fenced, FencePolicy: req.FencePolicy, Allow: req.Allow, Host: req.Host, Explain: req.Explain, Spread: req.Spread}
	if req.DeployLease != "" {
		d, err := lab.ParseLease(req.DeployLease)
		if err != nil {
			return err
		}
		opts.DeployLease = &d
	}
	c, err := h.lab.Deploy(r.Context(), r.PathValue("name"), opts)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

// move answers 200 with the configuration once its new home holds it.
func (h deployHandler) move(w http.ResponseWriter, r *http.Request) error {
	var req wire.MoveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	c, err := h.lab.Move(r.Context(), r.PathValue("name"), req.Host)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

func (h deployHandler) undeploy(w http.ResponseWriter, r *http.Request) error {
	var req wire.UndeployRequest
	if err := decodeOptional(w, r, &req); err != nil {
		return err
	}
	c, err := h.lab.Undeploy(r.Context(), r.PathValue("name"), req.SaveState)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, configToWire(c))
}

// vmActions maps the wire's VM actions to the lab's.
var vmActions = map[string]string{
	wire.VMStop:  lab.VMActionStop,
	wire.VMStart: lab.VMActionStart,
	wire.VMReset: lab.VMActionReset,
}

// vmAction returns the endpoint of one VM action (one route per action, so
// that an unknown action is a 404 or 405 like any unknown path).
func (h deployHandler) vmAction(action string) apiFunc {
	labAction := vmActions[action]
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := h.lab.VMAction(r.Context(), r.PathValue("name"), r.PathValue("vm"), labAction)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, configToWire(c))
	}
}

// vmLog answers with the VM's serial log as text/plain. With ?follow=1 it
// goes on sending what the VM writes until the client goes away or the
// daemon shuts down. A log that is truncated or replaced (a new deploy) is
// followed from its new start.
func (h deployHandler) vmLog(w http.ResponseWriter, r *http.Request) error {
	follow, err := queryBool(r, "follow")
	if err != nil {
		return err
	}
	config, vm := r.PathValue("name"), r.PathValue("vm")
	p, err := h.lab.VMLog(r.Context(), config, vm)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.NotFound("VM %q of %q has no serial log yet (it has not been deployed)", vm, config)
	}
	if err != nil {
		return err
	}
	defer func() { f.Close() }() // f changes when the log is replaced

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !follow {
		w.WriteHeader(http.StatusOK)
		if _, err := io.Copy(w, f); err != nil {
			h.log.Debug("send serial log", "config", config, "vm", vm, "err", err)
		}
		return nil
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.drain, cancel)()
	tick := time.NewTicker(logPoll)
	defer tick.Stop()
	for {
		if _, err := io.Copy(w, f); err != nil {
			h.log.Debug("follow serial log", "config", config, "vm", vm, "err", err)
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil // the client is gone
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		f = reopenIfReplaced(f, p)
	}
}

// reopenIfReplaced returns f positioned to read what is new: f itself, at
// its start again when the file shrank, or the file now at p when p was
// replaced.
func reopenIfReplaced(f *os.File, p string) *os.File {
	cur, err := f.Stat()
	if err != nil {
		return f
	}
	if now, err := os.Stat(p); err == nil && !os.SameFile(cur, now) {
		if nf, err := os.Open(p); err == nil {
			f.Close()
			return nf
		}
		return f
	}
	if off, err := f.Seek(0, io.SeekCurrent); err == nil && cur.Size() < off {
		_, _ = f.Seek(0, io.SeekStart)
	}
	return f
}
