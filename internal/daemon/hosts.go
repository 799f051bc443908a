package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"stagehand/internal/cluster"
	"stagehand/internal/errdefs"
	"stagehand/internal/store"
)

// hostName is --host-name, or the machine's host name.
func hostName(cfg Config) (string, error) {
	if cfg.HostName != "" {
		return cfg.HostName, nil
	}
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "", errdefs.Invalid("--host-name: the machine has no host name (%v); give one", err)
	}
	return name, nil
}

// advertiseURL is --advertise, or the URL this daemon listens at: its TCP
// listener's (the port it got, for port 0), else its socket's.
func advertiseURL(cfg Config, socketPath string, tcp net.Listener, isTLS bool) string {
	switch {
	case cfg.Advertise != "":
		return cfg.Advertise
	case tcp != nil && isTLS:
		return "https://" + tcp.Addr().String()
	case tcp != nil:
		return "http://" + tcp.Addr().String()
	}
	return "unix://" + socketPath
}

// joinCluster registers this daemon's host in the store with its
// capacity (cluster.Member), its credential's hash, the fingerprint of the
// certificate peers pin (empty without TLS) and its underlay address; the
// caller runs its heartbeat. It returns this host's credential.
func joinCluster(ctx context.Context, cfg Config, st store.Store, dataDir, advertise, fingerprint string, log *slog.Logger) (*cluster.Member, string, error) {
	name, err := hostName(cfg)
	if err != nil {
		return nil, "", err
	}
	credential, secretHash, err := hostCredential(dataDir, name, log)
	if err != nil {
		return nil, "", err
	}
	underlay := cfg.Underlay
	if underlay == "" {
		underlay = defaultUnderlay(advertise)
	}
	mem, cpus, err := cluster.LocalCapacity()
	if err != nil {
		log.Warn("host capacity unknown; registering memory 0", "err", err)
	}
	if cfg.GuestMemoryMiB > 0 {
		mem = cfg.GuestMemoryMiB
	}
	if cfg.GuestCPUs > 0 {
		cpus = cfg.GuestCPUs
	}
	m, err := cluster.Join(ctx, st, store.Host{Name: name, AdvertiseURL: advertise, MemoryMiB: mem, CPUs: cpus,
		SecretHash: secretHash, CertFingerprint: fingerprint, Underlay: underlay}, log)
	if err != nil {
		return nil, "", fmt.Errorf("join the installation as host %q: %w", name, err)
	}
	return m, credential, nil
}
