package fence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vishvananda/netns"

	"stagehand/internal/errdefs"
)

// DefaultLeaseTime is handed out when DHCPConfig.LeaseTime is zero.
const DefaultLeaseTime = time.Hour

// offerHold is how long an address offered to a dynamic client stays held
// for it before the client's REQUEST.
const offerHold = time.Minute

// maxDynamicLeases bounds the dynamic leases and offers one server holds.
// A guest can send DISCOVERs from as many made-up MACs as it likes; each
// packet's work and the server's memory grow with the leases held, so past
// this many live ones a new MAC gets no offer (expired ones are dropped
// first).
const maxDynamicLeases = 4096

// AddrRange is an inclusive range of IPv4 addresses. The zero value is an
// empty range.
type AddrRange struct{ First, Last netip.Addr }

// IsValid reports whether r is a non-empty IPv4 range.
func (r AddrRange) IsValid() bool {
	return r.First.Is4() && r.Last.Is4() && r.First.Compare(r.Last) <= 0
}

// Contains reports whether a lies in r.
func (r AddrRange) Contains(a netip.Addr) bool {
	return r.IsValid() && a.Is4() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// DHCPConfig describes the segment one DHCP server answers for.
type DHCPConfig struct {
	// Interface is the bridge to serve, in the namespace given to StartDHCP.
	Interface string
	// ServerIP is the server identifier; normally the gateway's address.
	ServerIP netip.Addr
	// Subnet is the segment's subnet: it gives the mask and bounds every
	// address the server hands out.
	Subnet netip.Prefix
	// Router is handed out as the default gateway when valid.
	Router netip.Addr
	// DNS servers handed out, if any.
	DNS []netip.Addr
	// LeaseTime defaults to DefaultLeaseTime.
	LeaseTime time.Duration
	// Dynamic, when valid, is the range served to MACs that have no
	// reservation (NICs in ip=dhcp mode). When not, such MACs are ignored.
	Dynamic AddrRange
	// MTU, when positive, is handed out as the interface MTU (option 26):
	// the segment of a fence spread over hosts is a VXLAN, whose frames
	// must fit the underlay with the encapsulation.
	MTU int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// DHCPServer answers DHCPv4 on one bridge. Clients are recognised by their
// hardware address (chaddr) alone, never by client identifier: clones share
// their source's machine-id, hence its client identifier and DUID, and
// would otherwise be given one address between them.
type DHCPServer struct {
	cfg  DHCPConfig
	log  *slog.Logger
	conn net.PacketConn
	done chan struct{}
	stop sync.Once

	mu       sync.Mutex
	reserved map[macKey]netip.Addr
	leases   map[macKey]dynamicLease
}

type macKey [6]byte

func (k macKey) String() string { return net.HardwareAddr(k[:]).String() }

type dynamicLease struct {
	addr    netip.Addr
	expires time.Time
}

// StartDHCP opens a DHCP server socket bound to cfg.Interface inside ns and
// serves from it until Stop. The socket is created on a thread switched
// into ns, so it belongs to that namespace whatever the caller's is. ctx
// bounds the start only.
func StartDHCP(ctx context.Context, ns netns.NsHandle, cfg DHCPConfig, reservations map[string]netip.Addr) (*DHCPServer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := newDHCPServer(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.SetReservations(reservations); err != nil {
		return nil, err
	}
	err = inNamespace(ns, func() error {
		conn, err := server4.NewIPv4UDPConn(cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
		if err != nil {
			return err
		}
		s.conn = conn
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dhcp on %q: listen: %w", cfg.Interface, err)
	}
	go s.serve()
	s.log.Debug("dhcp server started")
	return s, nil
}

// newDHCPServer checks cfg and builds a server with no socket.
func newDHCPServer(cfg DHCPConfig) (*DHCPServer, error) {
	if err := checkIfName("dhcp interface", cfg.Interface); err != nil {
		return nil, err
	}
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, errdefs.Invalid("dhcp on %q: subnet %v is not an IPv4 prefix", cfg.Interface, cfg.Subnet)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if !cfg.Subnet.Contains(cfg.ServerIP) {
		return nil, errdefs.Invalid("dhcp on %q: server address %v is not in %s", cfg.Interface, cfg.ServerIP, cfg.Subnet)
	}
	if cfg.Dynamic != (AddrRange{}) {
		if !cfg.Dynamic.IsValid() || !cfg.Subnet.Contains(cfg.Dynamic.First) || !cfg.Subnet.Contains(cfg.Dynamic.Last) {
			return nil, errdefs.Invalid("dhcp on %q: dynamic range %v-%v is not inside %s", cfg.Interface, cfg.Dynamic.First, cfg.Dynamic.Last, cfg.Subnet)
		}
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > 0xffff) {
		return nil, errdefs.Invalid("dhcp on %q: MTU %d is not between %d and 65535", cfg.Interface, cfg.MTU, minMTU)
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &DHCPServer{
		cfg:      cfg,
		log:      log.With("bridge", cfg.Interface),
		done:     make(chan struct{}),
		reserved: map[macKey]netip.Addr{},
		leases:   map[macKey]dynamicLease{},
	}, nil
}

// Stop closes the socket and waits for the serving goroutine to end.
func (s *DHCPServer) Stop() error {
	var err error
	s.stop.Do(func() {
		if s.conn == nil {
			close(s.done)
			return
		}
		err = s.conn.Close()
		<-s.done
		s.log.Debug("dhcp server stopped")
	})
	return err
}

// SetReservations replaces every reservation (MAC → address) at once. Each
// address must lie in the subnet, be a host address other than the
// server's and the router's, and be reserved for one MAC only. A dynamic
// lease that now clashes with a reservation is dropped.
func (s *DHCPServer) SetReservations(reservations map[string]netip.Addr) error {
	next := make(map[macKey]netip.Addr, len(reservations))
	owner := make(map[netip.Addr]string, len(reservations))
	for mac, addr := range reservations {
		k, err := parseMAC(mac)
		if err != nil {
			return fmt.Errorf("dhcp on %q: %w", s.cfg.Interface, err)
		}
		if err := s.checkReservable(addr); err != nil {
			return fmt.Errorf("dhcp on %q: reservation for %s: %w", s.cfg.Interface, mac, err)
		}
		if other, dup := owner[addr]; dup {
			return errdefs.Conflict("dhcp on %q: %s is reserved for both %s and %s", s.cfg.Interface, addr, other, k)
		}
		owner[addr] = k.String()
		next[k] = addr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved = next
	s.dropClashingLeases()
	return nil
}

// AddReservation reserves addr for mac, replacing mac's earlier reservation.
func (s *DHCPServer) AddReservation(mac string, addr netip.Addr) error {
	k, err := parseMAC(mac)
	if err != nil {
		return fmt.Errorf("dhcp on %q: %w", s.cfg.Interface, err)
	}
	if err := s.checkReservable(addr); err != nil {
		return fmt.Errorf("dhcp on %q: reservation for %s: %w", s.cfg.Interface, mac, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for other, a := range s.reserved {
		if a == addr && other != k {
			return errdefs.Conflict("dhcp on %q: %s is already reserved for %s", s.cfg.Interface, addr, other)
		}
	}
	s.reserved[k] = addr
	s.dropClashingLeases()
	return nil
}

// RemoveReservation forgets mac's reservation, if any.
func (s *DHCPServer) RemoveReservation(mac string) error {
	k, err := parseMAC(mac)
	if err != nil {
		return fmt.Errorf("dhcp on %q: %w", s.cfg.Interface, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reserved, k)
	return nil
}

// Reservations returns a copy of the reservations, keyed by MAC in
// canonical lower-case form.
func (s *DHCPServer) Reservations() map[string]netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]netip.Addr, len(s.reserved))
	for k, a := range s.reserved {
		out[k.String()] = a
	}
	return out
}

// DynamicLeases returns the unexpired dynamic leases, keyed by MAC.
func (s *DHCPServer) DynamicLeases() map[string]netip.Addr {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]netip.Addr{}
	for k, l := range s.leases {
		if now.Before(l.expires) {
			out[k.String()] = l.addr
		}
	}
	return out
}

func (s *DHCPServer) checkReservable(addr netip.Addr) error {
	switch {
	case !addr.Is4():
		return errdefs.Invalid("%v is not an IPv4 address", addr)
	case !s.cfg.Subnet.Contains(addr):
		return errdefs.Invalid("%s is not in %s", addr, s.cfg.Subnet)
	case addr == s.cfg.Subnet.Addr() || (s.cfg.Subnet.Bits() < 31 && addr == lastAddr(s.cfg.Subnet)):
		return errdefs.Invalid("%s is not a host address of %s", addr, s.cfg.Subnet)
	case addr == s.cfg.ServerIP || addr == s.cfg.Router:
		return errdefs.Invalid("%s is the server's or the gateway's address", addr)
	}
	return nil
}

// dropClashingLeases removes dynamic leases of reserved MACs and leases on
// reserved addresses. s.mu must be held.
func (s *DHCPServer) dropClashingLeases() {
	taken := make(map[netip.Addr]bool, len(s.reserved))
	for _, a := range s.reserved {
		taken[a] = true
	}
	maps.DeleteFunc(s.leases, func(k macKey, l dynamicLease) bool {
		_, reserved := s.reserved[k]
		return reserved || taken[l.addr]
	})
}

func (s *DHCPServer) serve() {
	defer close(s.done)
	buf := make([]byte, 4096)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("dhcp read failed; server stops", "err", err)
			}
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("dhcp: unparsable packet", "err", err)
			continue
		}
		resp := s.respond(req, time.Now())
		if resp == nil {
			continue
		}
		dst := replyAddr(req, resp)
		if _, err := s.conn.WriteTo(resp.ToBytes(), dst); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dhcp: send reply failed", "mac", req.ClientHWAddr, "to", dst, "err", err)
		}
	}
}

// respond decides the answer to one request, or nil for silence. It is
// the whole policy of the server and touches no socket.
func (s *DHCPServer) respond(req *dhcpv4.DHCPv4, now time.Time) *dhcpv4.DHCPv4 {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil
	}
	var mac macKey
	copy(mac[:], req.ClientHWAddr)
	log := s.log.With("mac", mac.String(), "xid", req.TransactionID.String())

	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		addr, ok := s.addressFor(mac, now, true, ipv4(req.RequestedIPAddress()))
		if !ok {
			log.Debug("dhcp: discover from unknown MAC ignored")
			return nil
		}
		log.Debug("dhcp: offer", "ip", addr)
		return s.reply(req, dhcpv4.MessageTypeOffer, addr)

	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.IsUnspecified() && !sid.Equal(s.cfg.ServerIP.AsSlice()) {
			// The client took another server's offer.
			s.releaseOffer(mac)
			return nil
		}
		want := ipv4(req.RequestedIPAddress())
		if !want.IsValid() {
			want = ipv4(req.ClientIPAddr)
		}
		addr, ok := s.addressFor(mac, now, true, want)
		if !ok {
			return nil
		}
		if want != addr {
			log.Info("dhcp: nak", "requested", want, "assigned", addr)
			return s.nak(req)
		}
		s.confirm(mac, addr, now)
		log.Info("dhcp: ack", "ip", addr)
		return s.reply(req, dhcpv4.MessageTypeAck, addr)

	case dhcpv4.MessageTypeRelease:
		s.releaseLease(mac, ipv4(req.ClientIPAddr))
		return nil

	case dhcpv4.MessageTypeDecline:
		log.Warn("dhcp: client declined its address (in use by someone else?)", "ip", ipv4(req.RequestedIPAddress()))
		s.releaseLease(mac, ipv4(req.RequestedIPAddress()))
		return nil

	case dhcpv4.MessageTypeInform:
		if _, ok := s.addressFor(mac, now, false, netip.Addr{}); !ok {
			return nil
		}
		resp := s.reply(req, dhcpv4.MessageTypeAck, netip.IPv4Unspecified())
		if resp != nil {
			resp.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		}
		return resp
	}
	return nil
}

// addressFor returns mac's address: its reservation, else its dynamic
// lease, else (when allocate is set and a range is configured) a newly
// held address from the range: prefer if it is free (a client asking for
// the address it had, say before a daemon restart), else the address the
// MAC last had, else the lowest free one.
func (s *DHCPServer) addressFor(mac macKey, now time.Time, allocate bool, prefer netip.Addr) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.reserved[mac]; ok {
		return a, true
	}
	if !s.cfg.Dynamic.IsValid() {
		return netip.Addr{}, false
	}
	if l, ok := s.leases[mac]; ok && now.Before(l.expires) {
		return l.addr, true
	}
	if !allocate {
		return netip.Addr{}, false
	}
	if _, known := s.leases[mac]; !known && len(s.leases) >= maxDynamicLeases {
		for k, l := range s.leases {
			if !now.Before(l.expires) {
				delete(s.leases, k)
			}
		}
		if len(s.leases) >= maxDynamicLeases {
			s.log.Warn("dhcp: too many dynamic clients; no offer for a new MAC", "mac", mac.String(), "held", len(s.leases))
			return netip.Addr{}, false
		}
	}
	busy := map[netip.Addr]bool{s.cfg.ServerIP: true, s.cfg.Router: true}
	for _, a := range s.reserved {
		busy[a] = true
	}
	for k, l := range s.leases {
		if k != mac && now.Before(l.expires) {
			busy[l.addr] = true
		}
	}
	if prefer.IsValid() && !busy[prefer] && s.cfg.Dynamic.Contains(prefer) {
		s.leases[mac] = dynamicLease{addr: prefer, expires: now.Add(offerHold)}
		return prefer, true
	}
	if l, ok := s.leases[mac]; ok && !busy[l.addr] && s.cfg.Dynamic.Contains(l.addr) {
		s.leases[mac] = dynamicLease{addr: l.addr, expires: now.Add(offerHold)}
		return l.addr, true
	}
	for a := s.cfg.Dynamic.First; a.IsValid() && a.Compare(s.cfg.Dynamic.Last) <= 0; a = a.Next() {
		if !busy[a] {
			s.leases[mac] = dynamicLease{addr: a, expires: now.Add(offerHold)}
			return a, true
		}
	}
	s.log.Warn("dhcp: dynamic range exhausted", "mac", mac.String())
	return netip.Addr{}, false
}

// confirm turns a held dynamic address into a lease for the lease time.
func (s *DHCPServer) confirm(mac macKey, addr netip.Addr, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[mac]; ok && l.addr == addr {
		s.leases[mac] = dynamicLease{addr: addr, expires: now.Add(s.cfg.LeaseTime)}
	}
}

func (s *DHCPServer) releaseOffer(mac macKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.leases, mac)
}

func (s *DHCPServer) releaseLease(mac macKey, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.leases[mac]; ok && (!addr.IsValid() || l.addr == addr) {
		delete(s.leases, mac)
	}
}

func (s *DHCPServer) reply(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, addr netip.Addr) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(addr.AsSlice()),
		dhcpv4.WithNetmask(net.CIDRMask(s.cfg.Subnet.Bits(), 32)),
		dhcpv4.WithLeaseTime(uint32(s.cfg.LeaseTime / time.Second)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
	}
	if s.cfg.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(s.cfg.Router.AsSlice())))
	}
	if len(s.cfg.DNS) > 0 {
		dns := make([]net.IP, 0, len(s.cfg.DNS))
		for _, d := range s.cfg.DNS {
			dns = append(dns, d.AsSlice())
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
	}
	if s.cfg.MTU > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU,
			binary.BigEndian.AppendUint16(nil, uint16(s.cfg.MTU)))))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		s.log.Error("dhcp: build reply", "err", err)
		return nil
	}
	return resp
}

func (s *DHCPServer) nak(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
	)
	if err != nil {
		s.log.Error("dhcp: build nak", "err", err)
		return nil
	}
	return resp
}

// replyAddr is where RFC 2131 section 4.1 sends a reply: to the relay if
// there is one; a NAK, or any reply to a client that has no address yet,
// to the broadcast address (the client cannot answer ARP for the address
// it is being offered, and a UDP socket cannot address a frame to its
// MAC); otherwise to the client's address.
func replyAddr(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := ipv4(req.GatewayIPAddr); gi.IsValid() {
		return &net.UDPAddr{IP: gi.AsSlice(), Port: dhcpv4.ServerPort}
	}
	if ci := ipv4(req.ClientIPAddr); ci.IsValid() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci.AsSlice(), Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// ipv4 converts ip, treating nil and 0.0.0.0 as no address.
func ipv4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func parseMAC(s string) (macKey, error) {
	var k macKey
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return k, errdefs.Invalid("MAC %q is not a 6-byte Ethernet address", s)
	}
	copy(k[:], hw)
	return k, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
