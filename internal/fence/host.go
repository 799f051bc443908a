package fence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vishvananda/netns"
)

// Segments are the plumbing of unfenced deployments in the daemon's own
// network namespace: one bridge and one DHCP server per network, and a tap
// per VM NIC. Bridges and taps outlive the daemon; DHCP servers live in it
// and are started again by EnsureSegment after a restart.
type Segments struct {
	ns  netns.NsHandle
	log *slog.Logger

	mu      sync.Mutex
	servers map[string]*DHCPServer // by network name
}

// NewSegments returns the plumbing of namespace ns (the daemon's:
// netns.Get()).
func NewSegments(ns netns.NsHandle, log *slog.Logger) *Segments {
	if log == nil {
		log = slog.Default()
	}
	return &Segments{ns: ns, log: log, servers: map[string]*DHCPServer{}}
}

// EnsureSegment makes sure the network's bridge exists and carries the
// gateway address, and that its DHCP server runs. dynamic, when valid, is
// the range served to NICs in dhcp mode. Idempotent.
func (h *Segments) EnsureSegment(ctx context.Context, network string, gateway netip.Prefix, dns []netip.Addr, dynamic AddrRange) error {
	bridge := BridgeName(network)
	if err := EnsureBridge(ctx, h.ns, bridge, gateway); err != nil {
		return fmt.Errorf("network %q: %w", network, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.servers[network]; ok {
		return nil
	}
	srv, err := StartDHCP(ctx, h.ns, DHCPConfig{
		Interface: bridge,
		ServerIP:  gateway.Addr(),
		Subnet:    gateway.Masked(),
		Router:    gateway.Addr(),
		DNS:       dns,
		Dynamic:   dynamic,
		Logger:    h.log.With("network", network),
	}, nil)
	if err != nil {
		return fmt.Errorf("network %q: DHCP server: %w", network, err)
	}
	h.servers[network] = srv
	return nil
}

// Reserve makes the network's DHCP server answer mac with ip.
func (h *Segments) Reserve(network, mac string, ip netip.Addr) error {
	srv, err := h.server(network)
	if err != nil {
		return err
	}
	return srv.AddReservation(mac, ip)
}

// Unreserve forgets mac's reservation on the network. A network without a
// running server has nothing to forget.
func (h *Segments) Unreserve(network, mac string) error {
	h.mu.Lock()
	srv := h.servers[network]
	h.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.RemoveReservation(mac)
}

func (h *Segments) server(network string) (*DHCPServer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	srv := h.servers[network]
	if srv == nil {
		return nil, fmt.Errorf("network %q has no DHCP server running", network)
	}
	return srv, nil
}

// CreateTap creates the persistent tap for a NIC on the network's bridge.
func (h *Segments) CreateTap(ctx context.Context, tap, network string) error {
	return CreateTap(ctx, h.ns, tap, BridgeName(network))
}

// DeleteTap removes a NIC's tap; a missing tap is fine.
func (h *Segments) DeleteTap(ctx context.Context, tap string) error {
	return DeleteTap(ctx, h.ns, tap)
}

// Close stops every DHCP server. Bridges and taps stay for the next daemon.
func (h *Segments) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for name, srv := range h.servers {
		if err := srv.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("network %q: DHCP server: %w", name, err))
		}
		delete(h.servers, name)
	}
	return errors.Join(errs...)
}

// Fences are the fences of fenced deployments that this daemon set up or
// adopted (see Setup), kept by ID for their taps and teardown.
type Fences struct {
	ns  netns.NsHandle
	log *slog.Logger

	mu     sync.Mutex
	fences map[string]*Fence // by fence ID
}

// NewFences returns the fences whose outside ends live in namespace ns
// (the daemon's: netns.Get()).
func NewFences(ns netns.NsHandle, log *slog.Logger) *Fences {
	if log == nil {
		log = slog.Default()
	}
	return &Fences{ns: ns, log: log, fences: map[string]*Fence{}}
}

// Setup builds a fence (see the package function Setup) and keeps it for
// the taps and the teardown. It returns the fence's namespace name, for
// `ip netns exec`.
func (h *Fences) Setup(ctx context.Context, spec FenceSpec) (string, error) {
	f, err := Setup(ctx, h.ns, spec, h.log)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	h.fences[spec.ID] = f
	h.mu.Unlock()
	return NamespaceName(spec.ID), nil
}

// Adopt takes over a fence an earlier daemon set up (see the package
// function Adopt).
func (h *Fences) Adopt(ctx context.Context, spec FenceSpec) (string, error) {
	f, err := Adopt(ctx, h.ns, spec, h.log)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	h.fences[spec.ID] = f
	h.mu.Unlock()
	return NamespaceName(spec.ID), nil
}

// Teardown removes a fence completely: its namespace with the VMs' taps,
// its veths, rules and DHCP servers. A fence this value does not hold (one
// that could not be adopted) is removed from its spec. Missing parts are
// fine.
func (h *Fences) Teardown(ctx context.Context, spec FenceSpec) error {
	h.mu.Lock()
	f := h.fences[spec.ID]
	delete(h.fences, spec.ID)
	h.mu.Unlock()
	if f != nil {
		return f.Teardown(ctx)
	}
	return Remove(ctx, h.ns, spec, h.log)
}

// CreateTap creates a NIC's tap on the network's inside bridge of a fence
// (with the fence's MTU when it is spread).
func (h *Fences) CreateTap(ctx context.Context, fenceID, tap, network string) error {
	f, err := h.fence(fenceID)
	if err != nil {
		return err
	}
	return f.CreateTap(ctx, tap, network)
}

// SetPeers changes the hosts a spread fence reaches (see Fence.SetPeers).
func (h *Fences) SetPeers(ctx context.Context, fenceID string, peers []netip.Addr) error {
	f, err := h.fence(fenceID)
	if err != nil {
		return err
	}
	return f.SetPeers(ctx, peers)
}

func (h *Fences) fence(id string) (*Fence, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.fences[id]; f != nil {
		return f, nil
	}
	return nil, fmt.Errorf("fence %q is not set up", id)
}

// Close stops the fences' DHCP servers. Their namespaces, links and rules
// stay for the next daemon to adopt.
func (h *Fences) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, f := range h.fences {
		f.stopDHCP()
		delete(h.fences, id)
	}
	return nil
}
