package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"stagehand/internal/api"
	"stagehand/internal/errdefs"
	"stagehand/internal/hostlink"
	"stagehand/internal/lab/deploy"
	"stagehand/internal/store"
)

// HostSecretFile holds, inside the data dir, this host's credential
// (hostlink: shh_<host>_<secret>), made at its first start, 0600. The
// hosts table keeps only the secret's SHA-256.
const HostSecretFile = "host.secret"

// hostCredential returns this host's credential from DATA/HostSecretFile,
// making it the first time (or anew when the host was renamed: a
// credential names its host).
func hostCredential(dataDir, host string, log *slog.Logger) (plaintext string, secretHash []byte, err error) {
	path := filepath.Join(dataDir, HostSecretFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		plaintext = strings.TrimSpace(string(b))
		name, secret, perr := hostlink.ParseCredential(plaintext)
		if perr != nil {
			return "", nil, fmt.Errorf("host credential %s: %w (remove the file to make a new one)", path, perr)
		}
		if name == host {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
				log.Warn("host credential was readable by other users; making it private", "file", path)
				if err := os.Chmod(path, 0o600); err != nil {
					return "", nil, fmt.Errorf("host credential %s: %w", path, err)
				}
			}
			return plaintext, hostlink.HashSecret(secret), nil
		}
		log.Warn("host credential names another host (renamed with --host-name?); making a new one", "file", path, "was", name, "host", host)
	case !errors.Is(err, fs.ErrNotExist):
		return "", nil, fmt.Errorf("host credential: %w", err)
	}
	plaintext, secretHash, err = hostlink.NewCredential(host)
	if err != nil {
		return "", nil, fmt.Errorf("host credential: %w", err)
	}
	if err := writeNew(path, []byte(plaintext+"\n")); err != nil {
		return "", nil, fmt.Errorf("host credential %s: %w", path, err)
	}
	log.Info("host credential made", "file", path, "host", host)
	return plaintext, secretHash, nil
}

// defaultUnderlay is --underlay's default: the address of --advertise
// when it is an IP literal, else "" (the VXLAN of a spread fence then
// needs --underlay).
func defaultUnderlay(advertise string) string {
	u, err := url.Parse(advertise)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && !ip.IsUnspecified() {
		return ip.String()
	}
	return ""
}

// storeVerifier checks peers' credentials against the hosts table.
func storeVerifier(st store.Store) hostlink.Verifier {
	return hostlink.VerifierFunc(func(ctx context.Context, host string) ([]byte, error) {
		var sum []byte
		err := st.View(ctx, func(tx store.Tx) error {
			var err error
			sum, err = tx.Hosts().SecretHash(host)
			return err
		})
		return sum, err
	})
}

// withHostLink serves the host endpoints (hostlink.Server: frozen layers
// by hash, movable tops) under /internal/ and everything else through h.
// The endpoints authenticate host credentials themselves.
func withHostLink(h http.Handler, links *hostlink.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/internal/") {
			links.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// shared reports whether other daemons may share the store (PostgreSQL):
// then configurations have homes elsewhere and requests are forwarded.
func (s *openedStore) shared() bool { return s.kind == "postgres" }

// hostLink is the api's forwarding over the shared store.
func hostLink(self, credential string, st store.Store) api.HostLink {
	return api.HostLink{Self: self, Credential: credential, Verifier: storeVerifier(st), Homes: api.StoreHomes{Store: st}}
}

// storeLayers is what this host's hostlink.Server serves, from the store:
// a frozen layer by its content hash when its file is here, and a
// writable top while its configuration is not deployed.
type storeLayers struct {
	store   store.Store
	dataDir string
}

// FrozenByHash returns the frozen layer whose content hash is sum, when
// its file is on this host.
func (l storeLayers) FrozenByHash(ctx context.Context, sum string) (string, int64, error) {
	var layer *store.Layer
	err := l.store.View(ctx, func(tx store.Tx) error {
		var err error
		layer, err = tx.Layers().BySHA256(sum)
		if errors.Is(err, errdefs.ErrNotFound) {
			// A template's kernel or initrd, content-addressed too.
			layer, err = bootFileByHash(tx, sum)
		}
		return err
	})
	if err != nil {
		return "", 0, err
	}
	if !layer.Frozen {
		return "", 0, errdefs.NotFound("layer %d is not frozen", layer.ID)
	}
	// Without shared storage a host holds only some frozen layers; a
	// puller asks the next peer on a 404.
	if _, err := os.Lstat(filepath.Join(l.dataDir, layer.Path)); errors.Is(err, fs.ErrNotExist) {
		return "", 0, errdefs.NotFound("layer %d (%s) is not held on this host", layer.ID, layer.Path)
	}
	return layer.Path, layer.Size, nil
}

// MovableTop returns the path of writable layer id when it is the top of
// a disk of a configuration that is undeployed (nothing writes to it).
func (l storeLayers) MovableTop(ctx context.Context, id int64) (string, error) {
	var rel string
	err := l.store.View(ctx, func(tx store.Tx) error {
		layer, err := tx.Layers().Get(id)
		if err != nil {
			return err
		}
		if layer.Frozen {
			return errdefs.NotFound("layer %d is frozen, not a top: pull it by its hash", id)
		}
		disks, err := tx.Layers().DisksWithTop(id)
		if err != nil {
			return err
		}
		if len(disks) != 1 {
			return errdefs.NotFound("layer %d is the top of no disk", id)
		}
		c, err := configOfVM(tx, disks[0].VMID)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("layer %d is a top of configuration %q, which is %s: only an undeployed configuration's tops may move", id, c.Name, c.State)
		}
		rel = layer.Path
		return nil
	})
	return rel, err
}

// MovableState returns the path of VM vmID's saved state when its
// configuration is undeployed and the VM's state is saved (a drain moves
// it with the tops, and the new home resumes it).
func (l storeLayers) MovableState(ctx context.Context, vmID int64) (string, error) {
	err := l.store.View(ctx, func(tx store.Tx) error {
		c, err := configOfVM(tx, vmID)
		if err != nil {
			return err
		}
		if c.State != store.StateUndeployed {
			return errdefs.Conflict("VM %d is of configuration %q, which is %s: only an undeployed configuration's saved state may move", vmID, c.Name, c.State)
		}
		for _, v := range c.VMs {
			if v.ID == vmID && v.State != deploy.VMStateSaved {
				return errdefs.NotFound("VM %d (%s) has no saved state: it is %s", vmID, v.Name, v.State)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return deploy.StateFile(vmID), nil
}

// configOfVM returns the configuration that holds VM vmID.
func configOfVM(tx store.Tx, vmID int64) (*store.Config, error) {
	cs, err := tx.Configs().List()
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		full, err := tx.Configs().GetByID(c.ID)
		if err != nil {
			return nil, err
		}
		for _, v := range full.VMs {
			if v.ID == vmID {
				return full, nil
			}
		}
	}
	return nil, errdefs.NotFound("VM %d belongs to no configuration", vmID)
}
