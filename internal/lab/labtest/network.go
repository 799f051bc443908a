package labtest

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"stagehand/internal/errdefs"
	"stagehand/internal/fence"
	"stagehand/internal/lab"
)

// fenceNS shows a fence's namespace name as the fence, cN.
func fenceNS(ns string) string {
	return fenceName(strings.TrimPrefix(ns, fence.NamespaceName("")))
}

// Segments is a fake lab.Segments: bridges, DHCP reservations and taps of
// the daemon's namespace, in memory. Like the real one it keeps a
// network's segment for good, refuses a reservation on a network whose
// DHCP server does not run, and deletes a missing tap without complaint.
type Segments struct {
	calls *Calls

	mu       sync.Mutex
	bridges  map[string]bool                  // persist, like the real ones
	dhcp     map[string]bool                  // DHCP servers, in the daemon
	reserved map[string]map[string]netip.Addr // network → MAC → address
	taps     map[string]string                // tap → network
}

var _ lab.Segments = (*Segments)(nil)

// NewSegments returns Segments that record their calls in calls.
func NewSegments(calls *Calls) *Segments {
	return &Segments{calls: calls, bridges: map[string]bool{}, dhcp: map[string]bool{}, reserved: map[string]map[string]netip.Addr{}, taps: map[string]string{}}
}

// EnsureSegment records "seg ensure NETWORK GATEWAY dhcp=RANGE".
func (s *Segments) EnsureSegment(ctx context.Context, network string, gateway netip.Prefix, dns []netip.Addr, dynamic fence.AddrRange) error {
	dhcp := "-"
	if dynamic.First.IsValid() {
		dhcp = dynamic.First.String() + "-" + dynamic.Last.String()
	}
	if err := s.calls.call("seg ensure %s %s dhcp=%s", network, gateway, dhcp); err != nil {
		return fmt.Errorf("network %q: %w", network, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bridges[network], s.dhcp[network] = true, true
	return nil
}

// Reserve records "seg reserve NETWORK macN ADDRESS".
func (s *Segments) Reserve(network, mac string, ip netip.Addr) error {
	if err := s.calls.call("seg reserve %s %s %s", network, s.calls.alias("mac", mac), ip); err != nil {
		return fmt.Errorf("network %q: reserve %s: %w", network, mac, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dhcp[network] {
		return fmt.Errorf("network %q has no DHCP server running", network)
	}
	if s.reserved[network] == nil {
		s.reserved[network] = map[string]netip.Addr{}
	}
	for m, a := range s.reserved[network] {
		if a == ip && m != mac {
			return errdefs.Conflict("network %q: %s is reserved for %s", network, ip, m)
		}
	}
	s.reserved[network][mac] = ip
	return nil
}

// Unreserve records "seg unreserve NETWORK macN".
func (s *Segments) Unreserve(network, mac string) error {
	if err := s.calls.call("seg unreserve %s %s", network, s.calls.alias("mac", mac)); err != nil {
		return fmt.Errorf("network %q: unreserve %s: %w", network, mac, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reserved[network], mac)
	return nil
}

// CreateTap records "seg create-tap tapN NETWORK".
func (s *Segments) CreateTap(ctx context.Context, tap, network string) error {
	if err := s.calls.call("seg create-tap %s %s", s.calls.alias("tap", tap), network); err != nil {
		return fmt.Errorf("tap %q: %w", tap, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bridges[network] {
		return fmt.Errorf("tap %q: network %q has no bridge", tap, network)
	}
	s.taps[tap] = network
	return nil
}

// DeleteTap records "seg delete-tap tapN".
func (s *Segments) DeleteTap(ctx context.Context, tap string) error {
	if err := s.calls.call("seg delete-tap %s", s.calls.alias("tap", tap)); err != nil {
		return fmt.Errorf("tap %q: %w", tap, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.taps, tap)
	return nil
}

// Forget stops the DHCP servers and forgets their reservations, as a
// daemon restart does; bridges and taps stay on the host.
func (s *Segments) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dhcp, s.reserved = map[string]bool{}, map[string]map[string]netip.Addr{}
}

// Held lists what deployments hold in the segments, sorted: "tap tapN on
// NETWORK" and "reservation NETWORK macN ADDRESS". Bridges are not listed:
// they stay when their last user goes, as the real ones do.
func (s *Segments) Held() []string {
	s.mu.Lock()
	var taps, macs [][2]string
	var out []string
	for tap, nw := range s.taps {
		taps = append(taps, [2]string{tap, nw})
	}
	for nw, m := range s.reserved {
		for mac, ip := range m {
			macs = append(macs, [2]string{mac, nw + " " + ip.String()})
		}
	}
	s.mu.Unlock()
	for _, t := range taps {
		out = append(out, fmt.Sprintf("tap %s on %s", s.calls.alias("tap", t[0]), t[1]))
	}
	for _, m := range macs {
		nw, ip, _ := strings.Cut(m[1], " ")
		out = append(out, fmt.Sprintf("reservation %s %s %s", nw, s.calls.alias("mac", m[0]), ip))
	}
	sort.Strings(out)
	return out
}

// Fences is a fake lab.Fences: the fences of a host, in memory, with the
// taps inside them. Like the real one it refuses a second fence with one
// ID, cannot adopt a fence that is not there, and tears down a missing
// fence without complaint.
type Fences struct {
	calls *Calls

	mu     sync.Mutex
	fences map[string]*fakeFence // by ID: present on the host
	held   map[string]bool       // set up or adopted by the current holder
}

type fakeFence struct {
	spec fence.FenceSpec
	taps map[string]string // tap → network
}

var _ lab.Fences = (*Fences)(nil)

// NewFences returns Fences that record their calls in calls.
func NewFences(calls *Calls) *Fences {
	return &Fences{calls: calls, fences: map[string]*fakeFence{}, held: map[string]bool{}}
}

func describe(spec fence.FenceSpec) string {
	var nets []string
	for _, n := range spec.Networks {
		var maps []string
		for _, m := range n.Mappings {
			maps = append(maps, m.Internal.String()+"="+m.External.String())
		}
		nets = append(nets, n.Name+"["+strings.Join(maps, ",")+"]")
	}
	d := fmt.Sprintf("%s policy=%s %s", fenceName(spec.ID), spec.Policy, strings.Join(nets, " "))
	if sp := spec.Span; sp != nil {
		var vnis []string
		for _, n := range spec.Networks {
			vnis = append(vnis, fmt.Sprintf("%s=%d", n.Name, sp.VNIs[n.Name]))
		}
		d += fmt.Sprintf(" span local=%s underlay=%s peers=%v router=%t vni[%s]", sp.Local, sp.Underlay, sp.Peers, sp.Router, strings.Join(vnis, ","))
	}
	return d
}

// Setup records "fence setup cN policy=P NETWORK[INTERNAL=EXTERNAL,…] …".
func (f *Fences) Setup(ctx context.Context, spec fence.FenceSpec) (string, error) {
	if err := f.calls.call("fence setup %s", describe(spec)); err != nil {
		return "", fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fences[spec.ID] != nil {
		return "", errdefs.Conflict("fence %q already exists", spec.ID)
	}
	f.fences[spec.ID] = &fakeFence{spec: spec, taps: map[string]string{}}
	f.held[spec.ID] = true
	return fence.NamespaceName(spec.ID), nil
}

// Adopt records "fence adopt cN policy=P …".
func (f *Fences) Adopt(ctx context.Context, spec fence.FenceSpec) (string, error) {
	if err := f.calls.call("fence adopt %s", describe(spec)); err != nil {
		return "", fmt.Errorf("fence %q: %w", spec.ID, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ff := f.fences[spec.ID]
	if ff == nil {
		return "", errdefs.NotFound("fence %q: no namespace", spec.ID)
	}
	ff.spec = spec
	f.held[spec.ID] = true
	return fence.NamespaceName(spec.ID), nil
}

// Teardown records "fence teardown cN" and removes the fence and its taps.
func (f *Fences) Teardown(ctx context.Context, spec fence.FenceSpec) error {
	if err := f.calls.call("fence teardown %s", fenceName(spec.ID)); err != nil {
		return fmt.Errorf("fence %q: teardown: %w", spec.ID, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.fences, spec.ID)
	delete(f.held, spec.ID)
	return nil
}

// CreateTap records "fence create-tap cN tapN NETWORK".
func (f *Fences) CreateTap(ctx context.Context, fenceID, tap, network string) error {
	if err := f.calls.call("fence create-tap %s %s %s", fenceName(fenceID), f.calls.alias("tap", tap), network); err != nil {
		return fmt.Errorf("tap %q: %w", tap, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ff := f.fences[fenceID]
	if ff == nil || !f.held[fenceID] {
		return fmt.Errorf("fence %q is not set up", fenceID)
	}
	for _, n := range ff.spec.Networks {
		if n.Name == network {
			ff.taps[tap] = network
			return nil
		}
	}
	return fmt.Errorf("fence %q has no network %q", fenceID, network)
}

// Forget drops what the current holder knows of its fences, as a daemon
// restart does: the fences stay on the host, to be adopted.
func (f *Fences) Forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = map[string]bool{}
}

// Present lists the fences on the host as "fence cN" with their taps
// ("fence cN tap tapN on NETWORK"), sorted.
func (f *Fences) Present() []string {
	f.mu.Lock()
	type tap struct{ id, tap, nw string }
	var ids []string
	var taps []tap
	for id, ff := range f.fences {
		ids = append(ids, id)
		for t, nw := range ff.taps {
			taps = append(taps, tap{id, t, nw})
		}
	}
	f.mu.Unlock()
	var out []string
	for _, id := range ids {
		out = append(out, "fence "+fenceName(id))
	}
	for _, t := range taps {
		out = append(out, fmt.Sprintf("fence %s tap %s on %s", fenceName(t.id), f.calls.alias("tap", t.tap), t.nw))
	}
	sort.Strings(out)
	return out
}

// UnderlayLink answers "ul-ADDR" for any address: the fake host has every
// underlay.
func (f *Fences) UnderlayLink(addr netip.Addr) (string, error) { return "ul-" + addr.String(), nil }
