package fence

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fuzzPackets splits a fuzz input into packets: each is a 2-byte
// big-endian length followed by that many bytes (the last one takes what
// is left).
func fuzzPackets(data []byte) [][]byte {
	var out [][]byte
	for len(data) >= 2 && len(out) < 64 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// joinPackets is the inverse of fuzzPackets, for seeds.
func joinPackets(ps ...*dhcpv4.DHCPv4) []byte {
	var out []byte
	for _, p := range ps {
		b := p.ToBytes()
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

func fuzzSeedPacket(typ dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	hw, _ := net.ParseMAC(mac)
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithHwAddr(hw)}, mods...)...)
	if err != nil {
		panic(err)
	}
	return p
}

// FuzzDHCPRespond feeds sequences of packets, as a guest on a lab network
// could send them, through the server's parser and its whole policy
// (respond), with one server and a clock that moves on. None may panic;
// every reply must encode and parse again; every address offered or
// acknowledged must be the MAC's reservation or inside the dynamic range
// and never the server's or router's; two MACs never hold one dynamic
// address at once. The seed corpus holds a full DORA exchange, a release,
// a decline, an inform and a relayed request.
func FuzzDHCPRespond(f *testing.F) {
	const reservedMAC, dynMAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
	f.Add(joinPackets(
		fuzzSeedPacket(dhcpv4.MessageTypeDiscover, reservedMAC),
		fuzzSeedPacket(dhcpv4.MessageTypeRequest, reservedMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.66.0.50"))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.66.0.1")))),
	))
	f.Add(joinPackets(
		fuzzSeedPacket(dhcpv4.MessageTypeDiscover, dynMAC, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte("same-id")))),
		fuzzSeedPacket(dhcpv4.MessageTypeRequest, dynMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.66.0.100")))),
		fuzzSeedPacket(dhcpv4.MessageTypeRelease, dynMAC, dhcpv4.WithClientIP(net.ParseIP("10.66.0.100"))),
		fuzzSeedPacket(dhcpv4.MessageTypeDecline, dynMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.66.0.101")))),
		fuzzSeedPacket(dhcpv4.MessageTypeInform, reservedMAC, dhcpv4.WithClientIP(net.ParseIP("10.66.0.50"))),
		fuzzSeedPacket(dhcpv4.MessageTypeRequest, dynMAC, dhcpv4.WithGatewayIP(net.ParseIP("10.66.0.254")), dhcpv4.WithClientIP(net.ParseIP("10.66.0.1"))),
	))
	f.Add([]byte{0, 1, 1})

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := testDHCPConfig("sh-br-fuzz")
		cfg.Dynamic = AddrRange{First: netip.MustParseAddr("10.66.0.100"), Last: netip.MustParseAddr("10.66.0.103")}
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		s, err := newDHCPServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		reservation := netip.MustParseAddr("10.66.0.50")
		if err := s.SetReservations(map[string]netip.Addr{reservedMAC: reservation}); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i, b := range fuzzPackets(data) {
			now = now.Add(time.Duration(i%7) * 20 * time.Second)
			req, err := dhcpv4.FromBytes(b)
			if err != nil {
				continue
			}
			resp := s.respond(req, now)
			if resp == nil {
				continue
			}
			wire := resp.ToBytes()
			back, err := dhcpv4.FromBytes(wire)
			if err != nil {
				t.Fatalf("reply does not parse again: %v", err)
			}
			_ = replyAddr(req, back)
			switch resp.MessageType() {
			case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck:
				yi := ipv4(resp.YourIPAddr)
				if !yi.IsValid() {
					break // an ACK to INFORM carries no address
				}
				var mac macKey
				copy(mac[:], req.ClientHWAddr)
				switch {
				case mac.String() == reservedMAC && yi != reservation:
					t.Fatalf("reserved MAC given %s, not its reservation", yi)
				case mac.String() != reservedMAC && !cfg.Dynamic.Contains(yi):
					t.Fatalf("MAC %s given %s, outside the dynamic range %v-%v", mac, yi, cfg.Dynamic.First, cfg.Dynamic.Last)
				case yi == cfg.ServerIP || yi == cfg.Router:
					t.Fatalf("handed out the server's own address %s", yi)
				}
			}
			holders := map[netip.Addr]macKey{}
			s.mu.Lock()
			for mac, l := range s.leases {
				if !now.Before(l.expires) {
					continue
				}
				if other, ok := holders[l.addr]; ok {
					s.mu.Unlock()
					t.Fatalf("%s held by %s and %s at once", l.addr, other, mac)
				}
				holders[l.addr] = mac
			}
			s.mu.Unlock()
		}
	})
}
