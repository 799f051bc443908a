package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"stagehand/internal/cli"
	"stagehand/internal/daemon"
	"stagehand/internal/lab"
)

// serveFlags are the serve flags that are not a daemon.Config field as
// they stand: the log level and the leases, parsed in RunE.
type serveFlags struct {
	logLevel       string
	defaultStorage string
	defaultDeploy  string
	grace          string
	ladder         string
	webhook        string
	webhookSecret  string // a file
}

// serveCommand is `stagehand serve`: its flags become a daemon.Config, and
// the test hooks come from getenv.
func serveCommand(getenv func(string) string) *cobra.Command {
	cfg := daemon.DefaultConfig()
	var fl serveFlags
	cmd := &cobra.Command{
		Use:   "serve [--data-dir DIR] [--listen ADDR [--tls-cert FILE --tls-key FILE]] [--chain-limit N]",
		Short: "Run the daemon (REST API under /api/v1)",
		Long: `Run the daemon. DIR holds the store (stagehand.db) and every layer file.
The API is served on the unix socket DIR/` + daemon.SocketFile + ` (0660 root:` + daemon.SocketGroup + ` when
that group exists, else 0600 root only), and, with --listen, on TCP: plain
HTTP on a loopback address, HTTPS only on any other (--tls-cert/--tls-key,
or a self-signed certificate made at the first start in DIR/` + daemon.TLSDir + `, whose
fingerprint the log shows and clients pin). --listen 0.0.0.0:PORT binds
IPv4 only, [::]:PORT IPv6 only, :PORT both.
The API answers as soon as the daemon listens. In the background it
probes the accelerator (deploys wait for the probe; the result is cached
in DIR) and finishes or rolls back the operations a previous run left half
done (reads are served meanwhile; writes wait for it: GET /readyz says
when). SIGINT or SIGTERM stops it cleanly (running jobs are cancelled and
rolled back).`,
		Args: cli.ExactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(fl.logLevel)); err != nil {
				return cli.UsageError(fmt.Errorf("--log-level %q is not debug, info, warn or error", fl.logLevel))
			}
			if err := fl.leases(&cfg.Leases); err != nil {
				return cli.UsageError(err)
			}
			cfg.Version = cli.Version()
			cfg.TestFault = getenv("STAGEHAND_TEST_FAULT")
			cfg.TestProbe = getenv("STAGEHAND_TEST_PROBE")
			if err := cfg.Check(); err != nil {
				return cli.UsageError(err)
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			return daemon.Run(cmd.Context(), cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", cli.DataDir(getenv), "directory of the store, the layer files and the socket (env STAGEHAND_DATA_DIR)")
	f.StringVar(&cfg.Store, "store", "", "a postgres:// URL: keep the state in that PostgreSQL database, shared by every daemon that names it (default: SQLite in the data dir)")
	f.StringVar(&cfg.HostName, "host-name", "", "this daemon's host among the daemons sharing a --store (default: the machine's host name)")
	f.StringVar(&cfg.Advertise, "advertise", "", "URL at which the other hosts and clients reach this daemon's API (default: the --listen URL)")
	f.StringVar(&cfg.Underlay, "underlay", "", "address of this host on the network joining the hosts, used by the VXLAN tunnels of spread fences (default: the --advertise address when it is an IP)")
	f.StringVar(&cfg.Listen, "listen", "", "TCP address to listen on besides the socket (host:port; port 0 picks one); HTTPS unless loopback")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate (PEM) of the TCP listener (default: self-signed, made in DATA/"+daemon.TLSDir+")")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringArrayVar(&cfg.AllowedHosts, "allowed-host", nil, "a host name clients reach the daemon by, besides IP addresses, localhost and the --listen host (repeatable); requests naming any other Host are refused")
	f.StringVar(&cfg.OIDC.Issuer, "oidc-issuer", "", "OpenID Connect issuer URL: browsers sign in at /auth/oidc/login, as the user registered with their verified e-mail")
	f.StringVar(&cfg.OIDC.ClientID, "oidc-client-id", "", "client id registered at --oidc-issuer")
	f.StringVar(&cfg.OIDC.ClientSecretFile, "oidc-client-secret-file", "", "file holding the client secret (none: a public client, PKCE only)")
	f.StringVar(&cfg.OIDC.RedirectURL, "oidc-redirect-url", "", "callback URL registered at the issuer (default: the --listen URL + /auth/oidc/callback)")
	f.StringArrayVar(&cfg.OIDC.GroupRoles, "oidc-group-role", nil, "GROUP=WORKSPACE:ROLE: members of the issuer's GROUP get ROLE in WORKSPACE (ws or org/ws) at each sign-in (repeatable)")
	f.StringArrayVar(&cfg.OIDC.Scopes, "oidc-scope", nil, "scope asked for besides openid (repeatable; default email and profile; Dex and Keycloak want groups too)")
	f.StringArrayVar(&cfg.ImportDirs, "import-dir", nil, "directory under which the system administrator, on the unix socket only, may name files on this host to import (template import --server-path, archive import --server-path); repeatable; everyone else uploads")
	f.Int64Var(&cfg.MaxUpload, "max-upload", lab.DefaultMaxUpload, "largest file a client may upload (template disks, boot files, bundles), in bytes; larger ones are refused with 413")
	f.IntVar(&cfg.ChainLimit, "chain-limit", cfg.ChainLimit, "deepest disk chain a linked clone may produce")
	f.IntVar(&cfg.ShortcutDepth, "shortcut-depth", cfg.ShortcutDepth, "a disk chain reading through more layers than this gets a shortcut layer in the background (its clone history, what --chain-limit counts, stays); 0 turns it off")
	f.IntVar(&cfg.GuestMemoryMiB, "guest-memory", 0, "memory (MiB) this host offers to guests, for placement (default: all of it)")
	f.IntVar(&cfg.GuestCPUs, "guest-cpus", 0, "processors this host offers to guests, for placement, each taking 4 guest vCPUs (default: all of them)")
	f.BoolVar(&cfg.SharedLayers, "shared-layers", false, "the data dir's layers directory is shared by every host of the --store (NFS): no layer is pulled, a move changes only the record")
	f.StringVar(&fl.logLevel, "log-level", "info", "log level: debug, info, warn or error")

	f.StringVar(&cfg.Accel, "accel", cfg.Accel, "accelerator: auto (KVM only if a probe guest really boots under it; probed in the background and cached in DATA/"+daemon.AccelCacheFile+"), kvm or tcg")
	f.StringVar(&cfg.ProbeKernel, "probe-kernel", "", "kernel for the KVM probe (default: the newest /boot/vmlinuz-*)")
	f.StringVar(&cfg.ProbeInitrd, "probe-initrd", "", "initrd for the KVM probe (default: the matching /boot/initrd.img-*)")
	f.DurationVar(&cfg.ProbeTimeout, "probe-timeout", cfg.ProbeTimeout, "how long the KVM probe guest may take to boot before TCG is chosen")
	f.BoolVar(&cfg.NoVMs, "no-vms", false, "manage disks and addresses only: no deploy (for hosts without QEMU or root)")

	f.StringVar(&cfg.ArchiveDir, "archive-dir", "", "directory of archives, may be another filesystem (default DATA/archive)")
	f.StringVar(&fl.defaultStorage, "default-storage-lease", "never", "storage lease of new configurations, library entries and archives: "+cli.LeaseHelp)
	f.StringVar(&fl.defaultDeploy, "default-deploy-lease", "never", "deployment lease of new configurations: "+cli.LeaseHelp)
	f.StringVar(&cfg.Leases.Cleanup, "cleanup-policy", cfg.Leases.Cleanup, "what happens when a storage lease runs out: notify (mark and report) or delete (after the grace period)")
	f.StringVar(&fl.grace, "cleanup-grace", "7d", "with --cleanup-policy delete: how long an expired object is kept")
	f.DurationVar(&cfg.Leases.ReapInterval, "reap-interval", cfg.Leases.ReapInterval, "how often leases are enforced")
	f.StringVar(&fl.ladder, "lease-ladder", "none", "graduated lease policy of workspaces without their own, steps after a deployment lease runs out: warn=X (before),suspend,undeploy=X,archive=X,delete=X (after), e.g. warn=1h,suspend,undeploy=1d,archive=7d,delete=30d; none: undeploy at expiry")
	f.StringVar(&fl.webhook, "lease-webhook", "", "http(s) URL each lease ladder step is posted to, for workspaces without their own webhook")
	f.StringVar(&fl.webhookSecret, "lease-webhook-secret-file", "", "file holding the secret that signs --lease-webhook's posts (HMAC-SHA256)")
	f.BoolVar(&cfg.Leases.WebhookAllowLoopback, "lease-webhook-allow-loopback", false, "let lease webhooks reach loopback addresses (this host's own services; refused by default)")
	return cmd
}

// leases parses the lease flags into p; the policy's other rules are
// daemon.Config.Check's.
func (fl serveFlags) leases(p *lab.LeasePolicy) error {
	var err error
	if p.DefaultStorage, err = lab.ParseLease(fl.defaultStorage); err != nil {
		return fmt.Errorf("--default-storage-lease: %v", err)
	}
	if p.DefaultDeploy, err = lab.ParseLease(fl.defaultDeploy); err != nil {
		return fmt.Errorf("--default-deploy-lease: %v", err)
	}
	if p.Grace, err = lab.ParseLease(fl.grace); err != nil {
		return fmt.Errorf("--cleanup-grace %q is not a positive duration (7d, 12h)", fl.grace)
	}
	if p.Ladder, err = lab.ParseLadder(fl.ladder); err != nil {
		return fmt.Errorf("--lease-ladder: %v", err)
	}
	p.Ladder.Webhook.URL = fl.webhook
	if fl.webhookSecret != "" {
		if fl.webhook == "" {
			return fmt.Errorf("--lease-webhook-secret-file needs --lease-webhook")
		}
		b, err := os.ReadFile(fl.webhookSecret)
		if err != nil {
			return fmt.Errorf("--lease-webhook-secret-file: %v", err)
		}
		p.Ladder.Webhook.Secret = strings.TrimRight(string(b), "\r\n")
	}
	if err := p.Ladder.Check(); err != nil {
		return fmt.Errorf("--lease-ladder, --lease-webhook: %v", err)
	}
	return nil
}
