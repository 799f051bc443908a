package fence

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"stagehand/internal/errdefs"
)

var (
	testSubnet = netip.MustParsePrefix("10.66.0.0/24")
	testGW     = netip.MustParseAddr("10.66.0.1")
)

func testDHCPConfig(iface string) DHCPConfig {
	return DHCPConfig{
		Interface: iface,
		ServerIP:  testGW,
		Subnet:    testSubnet,
		Router:    testGW,
		DNS:       []netip.Addr{netip.MustParseAddr("10.66.0.2")},
		LeaseTime: 10 * time.Minute,
	}
}

// packet builds a client message from mac with the given options.
func packet(t *testing.T, typ dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithHwAddr(hw)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func requested(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
}

func clientID(id string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte(id)))
}

func serverID(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip)))
}

// TestRespond covers the server's whole policy without a socket.
func TestRespond(t *testing.T) {
	t.Parallel()
	const (
		macA = "02:00:00:00:00:0a"
		macB = "02:00:00:00:00:0b"
		macX = "02:00:00:00:00:ff" // no reservation
	)
	tests := []struct {
		name    string
		dynamic AddrRange
		req     func(t *testing.T) *dhcpv4.DHCPv4
		want    dhcpv4.MessageType // MessageTypeNone: silence
		wantIP  string
	}{
		{"discover reserved", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, macA)
		}, dhcpv4.MessageTypeOffer, "10.66.0.10"},
		{"discover reserved asking for another address still gets its own", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, macA, requested("10.66.0.99"))
		}, dhcpv4.MessageTypeOffer, "10.66.0.10"},
		{"discover unknown ignored", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, macX)
		}, dhcpv4.MessageTypeNone, ""},
		{"discover unknown with a range gets a dynamic address", AddrRange{First: netip.MustParseAddr("10.66.0.10"), Last: netip.MustParseAddr("10.66.0.12")}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, macX)
		}, dhcpv4.MessageTypeOffer, "10.66.0.12"}, // .10 and .11 are reserved
		{"same client id, MAC B gets B's address", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeDiscover, macB, clientID("\x01same-machine-id"))
		}, dhcpv4.MessageTypeOffer, "10.66.0.11"},
		{"request reserved (selecting)", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macA, requested("10.66.0.10"), serverID("10.66.0.1"))
		}, dhcpv4.MessageTypeAck, "10.66.0.10"},
		{"request other address is refused", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macA, requested("10.66.0.11"))
		}, dhcpv4.MessageTypeNak, ""},
		{"renew (ciaddr) reserved", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macA, dhcpv4.WithClientIP(net.ParseIP("10.66.0.10")))
		}, dhcpv4.MessageTypeAck, "10.66.0.10"},
		{"request for another server is ignored", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macA, requested("10.66.0.10"), serverID("10.66.0.254"))
		}, dhcpv4.MessageTypeNone, ""},
		{"request unknown ignored", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macX, requested("10.66.0.10"))
		}, dhcpv4.MessageTypeNone, ""},
		{"init-reboot dynamic client keeps a free address", AddrRange{First: netip.MustParseAddr("10.66.0.20"), Last: netip.MustParseAddr("10.66.0.30")}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macX, requested("10.66.0.25"))
		}, dhcpv4.MessageTypeAck, "10.66.0.25"},
		{"dynamic client may not take a reserved address", AddrRange{First: netip.MustParseAddr("10.66.0.10"), Last: netip.MustParseAddr("10.66.0.30")}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeRequest, macX, requested("10.66.0.10"))
		}, dhcpv4.MessageTypeNak, ""},
		{"reply (not request) ignored", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			p := packet(t, dhcpv4.MessageTypeDiscover, macA)
			p.OpCode = dhcpv4.OpcodeBootReply
			return p
		}, dhcpv4.MessageTypeNone, ""},
		{"inform from known MAC", AddrRange{}, func(t *testing.T) *dhcpv4.DHCPv4 {
			return packet(t, dhcpv4.MessageTypeInform, macA, dhcpv4.WithClientIP(net.ParseIP("10.66.0.10")))
		}, dhcpv4.MessageTypeAck, "0.0.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testDHCPConfig("sh-br-test")
			cfg.Dynamic = tt.dynamic
			s, err := newDHCPServer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetReservations(map[string]netip.Addr{
				macA: netip.MustParseAddr("10.66.0.10"),
				macB: netip.MustParseAddr("10.66.0.11"),
			}); err != nil {
				t.Fatal(err)
			}
			req := tt.req(t)
			resp := s.respond(req, time.Now())
			if tt.want == dhcpv4.MessageTypeNone {
				if resp != nil {
					t.Fatalf("got %s, want silence", resp.MessageType())
				}
				return
			}
			if resp == nil {
				t.Fatalf("got silence, want %s", tt.want)
			}
			if resp.MessageType() != tt.want {
				t.Fatalf("got %s, want %s", resp.MessageType(), tt.want)
			}
			if resp.TransactionID != req.TransactionID || resp.ClientHWAddr.String() != req.ClientHWAddr.String() {
				t.Errorf("reply does not match request xid/chaddr")
			}
			if !resp.ServerIdentifier().Equal(net.ParseIP("10.66.0.1")) {
				t.Errorf("server identifier = %v", resp.ServerIdentifier())
			}
			if tt.want == dhcpv4.MessageTypeNak {
				return
			}
			if got := resp.YourIPAddr.String(); got != tt.wantIP {
				t.Errorf("yiaddr = %s, want %s", got, tt.wantIP)
			}
			if got := net.IP(resp.SubnetMask()).String(); got != "255.255.255.0" {
				t.Errorf("mask = %s", got)
			}
			if r := resp.Router(); len(r) != 1 || !r[0].Equal(net.ParseIP("10.66.0.1")) {
				t.Errorf("router = %v", r)
			}
			if d := resp.DNS(); len(d) != 1 || !d[0].Equal(net.ParseIP("10.66.0.2")) {
				t.Errorf("dns = %v", d)
			}
			if req.MessageType() != dhcpv4.MessageTypeInform {
				if lt := resp.IPAddressLeaseTime(0); lt != 10*time.Minute {
					t.Errorf("lease time = %v", lt)
				}
			}
		})
	}
}

func TestDynamicLeasesTrackedByMAC(t *testing.T) {
	t.Parallel()
	cfg := testDHCPConfig("sh-br-test")
	cfg.Dynamic = AddrRange{First: netip.MustParseAddr("10.66.0.100"), Last: netip.MustParseAddr("10.66.0.101")}
	s, err := newDHCPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	get := func(mac string) string {
		offer := s.respond(packet(t, dhcpv4.MessageTypeDiscover, mac, clientID("\x01same")), now)
		if offer == nil {
			return ""
		}
		ack := s.respond(packet(t, dhcpv4.MessageTypeRequest, mac, clientID("\x01same"),
			requested(offer.YourIPAddr.String()), serverID("10.66.0.1")), now)
		if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("no ack for %s", mac)
		}
		return ack.YourIPAddr.String()
	}
	a, b := get("02:00:00:00:01:01"), get("02:00:00:00:01:02")
	if a != "10.66.0.100" || b != "10.66.0.101" {
		t.Fatalf("dynamic addresses = %s, %s", a, b)
	}
	if again := get("02:00:00:00:01:01"); again != a {
		t.Errorf("same MAC got %s then %s", a, again)
	}
	if c := get("02:00:00:00:01:03"); c != "" {
		t.Errorf("exhausted range still offered %s", c)
	}
	// A reservation over a leased address evicts the dynamic lease.
	if err := s.AddReservation("02:00:00:00:09:09", netip.MustParseAddr("10.66.0.101")); err != nil {
		t.Fatal(err)
	}
	if got := s.DynamicLeases(); len(got) != 1 || got["02:00:00:00:01:01"] != netip.MustParseAddr("10.66.0.100") {
		t.Errorf("dynamic leases after reservation = %v", got)
	}
	// Release frees the address for someone else.
	s.respond(packet(t, dhcpv4.MessageTypeRelease, "02:00:00:00:01:01", dhcpv4.WithClientIP(net.ParseIP(a))), now)
	if c := get("02:00:00:00:01:03"); c != "10.66.0.100" {
		t.Errorf("after release, new client got %q", c)
	}
}

// A guest that sends DISCOVERs from made-up MACs gets offers for at most
// maxDynamicLeases of them at once; once those offers expire, new MACs are
// served again.
func TestDynamicLeasesAreBounded(t *testing.T) {
	t.Parallel()
	cfg := testDHCPConfig("sh-br-test")
	cfg.Subnet = netip.MustParsePrefix("10.64.0.0/16")
	cfg.ServerIP, cfg.Router = netip.MustParseAddr("10.64.0.1"), netip.MustParseAddr("10.64.0.1")
	cfg.DNS = nil
	cfg.Dynamic = AddrRange{First: netip.MustParseAddr("10.64.1.0"), Last: netip.MustParseAddr("10.64.255.254")}
	s, err := newDHCPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mac := func(i int) string { return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }
	offered := 0
	for i := 0; i < maxDynamicLeases+100; i++ {
		if s.respond(packet(t, dhcpv4.MessageTypeDiscover, mac(i)), now) != nil {
			offered++
		}
	}
	if offered != maxDynamicLeases {
		t.Errorf("offers to %d made-up MACs: %d, want %d", maxDynamicLeases+100, offered, maxDynamicLeases)
	}
	if s.respond(packet(t, dhcpv4.MessageTypeDiscover, mac(0)), now) == nil {
		t.Error("a MAC already holding an offer got none when the table was full")
	}
	later := now.Add(offerHold + time.Second)
	if s.respond(packet(t, dhcpv4.MessageTypeDiscover, mac(maxDynamicLeases+200)), later) == nil {
		t.Error("no offer for a new MAC after the held offers expired")
	}
}

func TestReservationValidation(t *testing.T) {
	t.Parallel()
	s, err := newDHCPServer(testDHCPConfig("sh-br-test"))
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		res  map[string]netip.Addr
		kind error
	}{
		{map[string]netip.Addr{"nonsense": netip.MustParseAddr("10.66.0.5")}, errdefs.ErrInvalid},
		{map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.67.0.5")}, errdefs.ErrInvalid},
		{map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.66.0.1")}, errdefs.ErrInvalid},
		{map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.66.0.255")}, errdefs.ErrInvalid},
		{map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.66.0.0")}, errdefs.ErrInvalid},
		{map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.66.0.5"), "02:00:00:00:00:02": netip.MustParseAddr("10.66.0.5")}, errdefs.ErrConflict},
	}
	for _, b := range bad {
		if err := s.SetReservations(b.res); !errors.Is(err, b.kind) {
			t.Errorf("SetReservations(%v) = %v, want %v", b.res, err, b.kind)
		}
	}
	if err := s.SetReservations(map[string]netip.Addr{"02:00:00:00:00:01": netip.MustParseAddr("10.66.0.5")}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddReservation("02:00:00:00:00:02", netip.MustParseAddr("10.66.0.5")); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("AddReservation of a taken address = %v, want conflict", err)
	}
	// MACs are canonicalised.
	if err := s.AddReservation("02-00-00-00-00-0A", netip.MustParseAddr("10.66.0.6")); err != nil {
		t.Fatal(err)
	}
	if got := s.Reservations()["02:00:00:00:00:0a"]; got != netip.MustParseAddr("10.66.0.6") {
		t.Errorf("canonical MAC lookup = %v", got)
	}
	for _, cfg := range []DHCPConfig{
		{Interface: "x", ServerIP: testGW},
		{Interface: "x", Subnet: testSubnet, ServerIP: netip.MustParseAddr("10.1.1.1")},
		{Interface: "x", Subnet: testSubnet, ServerIP: testGW, Dynamic: AddrRange{First: netip.MustParseAddr("10.66.0.9"), Last: netip.MustParseAddr("10.66.1.9")}},
		{Interface: "", Subnet: testSubnet, ServerIP: testGW},
	} {
		if _, err := newDHCPServer(cfg); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("newDHCPServer(%+v) = %v, want invalid", cfg, err)
		}
	}
}

func TestReplyAddr(t *testing.T) {
	t.Parallel()
	mk := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		return packet(t, dhcpv4.MessageTypeRequest, "02:00:00:00:00:01", mods...)
	}
	ack := packet(t, dhcpv4.MessageTypeAck, "02:00:00:00:00:01")
	nak := packet(t, dhcpv4.MessageTypeNak, "02:00:00:00:00:01")
	tests := []struct {
		name      string
		req, resp *dhcpv4.DHCPv4
		want      string
	}{
		{"no address yet: broadcast", mk(), ack, "255.255.255.255:68"},
		{"no address, broadcast flag: broadcast", mk(dhcpv4.WithBroadcast(true)), ack, "255.255.255.255:68"},
		{"renewing: unicast to ciaddr", mk(dhcpv4.WithClientIP(net.ParseIP("10.66.0.10"))), ack, "10.66.0.10:68"},
		{"nak: broadcast even when renewing", mk(dhcpv4.WithClientIP(net.ParseIP("10.66.0.10"))), nak, "255.255.255.255:68"},
		{"relayed: to the relay", mk(dhcpv4.WithGatewayIP(net.ParseIP("10.66.0.3"))), ack, "10.66.0.3:67"},
	}
	for _, tt := range tests {
		if got := replyAddr(tt.req, tt.resp).String(); got != tt.want {
			t.Errorf("%s: replyAddr = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// dhcpSegment is a bridge with a DHCP server in a throwaway "daemon"
// namespace.
type dhcpSegment struct {
	bridge string
	server *DHCPServer
}

func startSegment(t *testing.T, dynamic AddrRange, res map[string]netip.Addr) (*dhcpSegment, func(mac string) string) {
	t.Helper()
	ctx := context.Background()
	ns, _ := newTestNS(t)
	br := BridgeName("dhcp-" + randHex(8))
	if err := EnsureBridge(ctx, ns, br, netip.PrefixFrom(testGW, testSubnet.Bits())); err != nil {
		t.Fatal(err)
	}
	cfg := testDHCPConfig(br)
	cfg.Dynamic = dynamic
	srv, err := StartDHCP(ctx, ns, cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	// newClient plugs a client namespace with the given MAC into the
	// bridge and returns "nsname/ifname".
	newClient := func(mac string) string {
		cns, cname := newTestNS(t)
		ifname := addVeth(t, ns, br, cns, mac)
		return cname + "/" + ifname
	}
	return &dhcpSegment{bridge: br, server: srv}, newClient
}

func splitClient(c string) (string, string) {
	for i := range c {
		if c[i] == '/' {
			return c[:i], c[i+1:]
		}
	}
	return c, ""
}

func TestDHCPReservedClientWithUDHCPC(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	mac := randomMAC()
	_, newClient := startSegment(t, AddrRange{}, map[string]netip.Addr{mac: netip.MustParseAddr("10.66.0.42")})
	nsName, ifname := splitClient(newClient(mac))
	lease, err := runUDHCPC(t, nsName, ifname)
	if err != nil {
		t.Fatal(err)
	}
	want := dhcpLease{"ip": "10.66.0.42", "subnet": "255.255.255.0", "router": "10.66.0.1", "dns": "10.66.0.2", "lease": "600", "serverid": "10.66.0.1"}
	for k, v := range want {
		if lease[k] != v {
			t.Errorf("lease %s = %q, want %q (lease %v)", k, lease[k], v, lease)
		}
	}
}

func TestDHCPUnreservedClientGetsNothing(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	_, newClient := startSegment(t, AddrRange{}, map[string]netip.Addr{randomMAC(): netip.MustParseAddr("10.66.0.42")})
	nsName, ifname := splitClient(newClient(randomMAC()))
	if lease, err := runUDHCPC(t, nsName, ifname); err == nil {
		t.Fatalf("unreserved MAC got a lease: %v", lease)
	}
}

func TestDHCPDynamicRangeWithUDHCPC(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	seg, newClient := startSegment(t, AddrRange{First: netip.MustParseAddr("10.66.0.200"), Last: netip.MustParseAddr("10.66.0.210")}, nil)
	mac := randomMAC()
	nsName, ifname := splitClient(newClient(mac))
	lease, err := runUDHCPC(t, nsName, ifname)
	if err != nil {
		t.Fatal(err)
	}
	if lease["ip"] != "10.66.0.200" || lease["router"] != "10.66.0.1" {
		t.Errorf("dynamic lease = %v, want 10.66.0.200 via 10.66.0.1", lease)
	}
	if got := seg.server.DynamicLeases()[mac]; got != netip.MustParseAddr("10.66.0.200") {
		t.Errorf("server's dynamic lease for %s = %v", mac, got)
	}
}

// Clones share their machine-id, so their DHCP clients send the same client
// identifier; each must still get the address reserved for its own MAC.
func TestDHCPSameClientIDDifferentMACs(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	macA, macB := randomMAC(), randomMAC()
	_, newClient := startSegment(t, AddrRange{}, map[string]netip.Addr{
		macA: netip.MustParseAddr("10.66.0.21"),
		macB: netip.MustParseAddr("10.66.0.22"),
	})
	sameID := []string{"-C", "-x", "0x3d:01aabbccddeeff"}
	for mac, want := range map[string]string{macA: "10.66.0.21", macB: "10.66.0.22"} {
		nsName, ifname := splitClient(newClient(mac))
		lease, err := runUDHCPC(t, nsName, ifname, sameID...)
		if err != nil {
			t.Fatal(err)
		}
		if lease["ip"] != want {
			t.Errorf("MAC %s with shared client id got %s, want %s", mac, lease["ip"], want)
		}
	}
}

func TestDHCPReservationsChangeWhileRunning(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	seg, newClient := startSegment(t, AddrRange{}, nil)
	mac := randomMAC()
	nsName, ifname := splitClient(newClient(mac))
	if lease, err := runUDHCPC(t, nsName, ifname); err == nil {
		t.Fatalf("got a lease before any reservation: %v", lease)
	}
	if err := seg.server.AddReservation(mac, netip.MustParseAddr("10.66.0.77")); err != nil {
		t.Fatal(err)
	}
	lease, err := runUDHCPC(t, nsName, ifname)
	if err != nil {
		t.Fatal(err)
	}
	if lease["ip"] != "10.66.0.77" {
		t.Errorf("after AddReservation got %s", lease["ip"])
	}
	if err := seg.server.SetReservations(map[string]netip.Addr{mac: netip.MustParseAddr("10.66.0.78")}); err != nil {
		t.Fatal(err)
	}
	if lease, err = runUDHCPC(t, nsName, ifname); err != nil || lease["ip"] != "10.66.0.78" {
		t.Errorf("after SetReservations got %v, %v", lease, err)
	}
	if err := seg.server.RemoveReservation(mac); err != nil {
		t.Fatal(err)
	}
	if lease, err := runUDHCPC(t, nsName, ifname); err == nil {
		t.Errorf("got a lease after RemoveReservation: %v", lease)
	}
}

func TestDHCPStop(t *testing.T) {
	t.Parallel()
	requireBusybox(t)
	mac := randomMAC()
	seg, newClient := startSegment(t, AddrRange{}, map[string]netip.Addr{mac: netip.MustParseAddr("10.66.0.42")})
	nsName, ifname := splitClient(newClient(mac))
	if err := seg.server.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seg.server.done:
	default:
		t.Fatal("serving goroutine still running after Stop")
	}
	if err := seg.server.Stop(); err != nil { // twice is fine
		t.Fatal(err)
	}
	if lease, err := runUDHCPC(t, nsName, ifname); err == nil {
		t.Errorf("stopped server still answered: %v", lease)
	}
}

// A client renewing its lease (RENEWING: ciaddr set, unicast to the
// server) gets a unicast ACK at its own address.
func TestDHCPRenewUnicast(t *testing.T) {
	t.Parallel()
	mac := randomMAC()
	leased := netip.MustParseAddr("10.66.0.42")
	_, newClient := startSegment(t, AddrRange{}, map[string]netip.Addr{mac: leased})
	nsName, ifname := splitClient(newClient(mac))
	cns, err := netns.GetFromName(nsName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cns.Close() })
	h := mustNetlink(t, cns)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(leased, 24))}); err != nil {
		t.Fatal(err)
	}
	var reply *dhcpv4.DHCPv4
	var from net.Addr
	err = inNamespace(cns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: leased.AsSlice(), Port: dhcpv4.ClientPort})
		if err != nil {
			return err
		}
		defer c.Close()
		req := packet(t, dhcpv4.MessageTypeRequest, mac, dhcpv4.WithClientIP(leased.AsSlice()))
		if _, err := c.WriteTo(req.ToBytes(), &net.UDPAddr{IP: testGW.AsSlice(), Port: dhcpv4.ServerPort}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		from = addr
		reply, err = dhcpv4.FromBytes(buf[:n])
		return err
	})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if reply.MessageType() != dhcpv4.MessageTypeAck || !reply.YourIPAddr.Equal(leased.AsSlice()) {
		t.Errorf("renew reply %s for %s, want ACK for %s", reply.MessageType(), reply.YourIPAddr, leased)
	}
	if got := from.(*net.UDPAddr).IP.String(); got != testGW.String() {
		t.Errorf("renew reply from %s, want the server %s", got, testGW)
	}
}
