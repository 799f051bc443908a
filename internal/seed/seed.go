// Package seed builds cloud-init NoCloud seeds: a small read-only disk image,
// an ISO 9660 file system labelled "cidata", holding meta-data (instance-id,
// local-hostname), network-config (version 2, each NIC by MAC) and user-data.
// A clone gets a new seed with a new instance-id, so an image with cloud-init
// regenerates its machine identity on the clone's first boot.
//
// The image is written in Go rather than with mkfs.vfat+mcopy or genisoimage:
// the daemon's host then needs no extra package, no root and no loop device,
// and the same Spec always gives the same layout.
package seed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"stagehand/internal/errdefs"
)

// Label is the volume label cloud-init's NoCloud datasource looks for.
const Label = "cidata"

// MaxUserData bounds the template's user-data: a seed is made for every VM of
// every clone, and cloud-config that large is a mistake, not a configuration.
const MaxUserData = 64 << 10

// Mode says how a NIC gets its address inside the guest.
type Mode string

const (
	// ModeDHCP: the guest asks DHCP (Stagehand's reservations answer with
	// the pool address, so "pool" NICs use this mode too).
	ModeDHCP Mode = "dhcp"
	// ModeStatic: the guest sets Addr itself (Stagehand's "manual" NICs).
	ModeStatic Mode = "static"
)

// NIC is one network interface of the VM, matched by MAC inside the guest.
type NIC struct {
	MAC  string // e.g. "52:54:00:12:34:56"
	Mode Mode
	// Static mode only: the address with its prefix length, the default
	// gateway (optional, inside Addr's subnet) and name servers (optional).
	Addr    netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
}

// Spec is what one VM's seed says.
type Spec struct {
	// InstanceID changes on every clone: cloud-init treats a new one as a
	// new machine (new host keys, machine-id, first-boot modules).
	InstanceID string
	// Hostname is an RFC 1123 host name (labels of [A-Za-z0-9-], dots
	// between them).
	Hostname string
	NICs     []NIC
	// UserData is the template's user-data: empty (then a minimal
	// #cloud-config setting the hostname is written), or text starting
	// with "#cloud-config" or "#!", at most MaxUserData bytes.
	UserData []byte
}

// NewInstanceID returns a random instance-id, "i-" and 16 hex digits.
func NewInstanceID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand.Read does not fail on Linux (getrandom); if it ever
		// did, a reused id would silently defeat the point of the seed.
		panic(fmt.Sprintf("seed: read random: %v", err))
	}
	return "i-" + hex.EncodeToString(b[:])
}

// Validate reports the first problem of s as an errdefs.Invalid error.
func (s Spec) Validate() error {
	if err := checkInstanceID(s.InstanceID); err != nil {
		return err
	}
	if err := CheckHostname(s.Hostname); err != nil {
		return err
	}
	seen := map[string]int{}
	for i, n := range s.NICs {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil || len(mac) != 6 {
			return errdefs.Invalid("seed: nic %d: MAC %q is not a 48-bit MAC address", i, n.MAC)
		}
		if j, dup := seen[mac.String()]; dup {
			return errdefs.Invalid("seed: nic %d: MAC %s is also nic %d's", i, mac, j)
		}
		seen[mac.String()] = i
		if err := n.check(i); err != nil {
			return err
		}
	}
	return CheckUserData(s.UserData)
}

func (n NIC) check(i int) error {
	switch n.Mode {
	case ModeDHCP:
		if n.Addr.IsValid() || n.Gateway.IsValid() || len(n.DNS) > 0 {
			return errdefs.Invalid("seed: nic %d: mode %s takes no address, gateway or DNS (DHCP gives them)", i, ModeDHCP)
		}
	case ModeStatic:
		if !n.Addr.IsValid() || n.Addr.Addr().IsUnspecified() {
			return errdefs.Invalid("seed: nic %d: mode %s needs an address with a prefix length", i, ModeStatic)
		}
		if n.Gateway.IsValid() {
			if n.Gateway.Is4() != n.Addr.Addr().Is4() || !n.Addr.Masked().Contains(n.Gateway) {
				return errdefs.Invalid("seed: nic %d: gateway %s is not inside %s", i, n.Gateway, n.Addr.Masked())
			}
			if n.Gateway == n.Addr.Addr() {
				return errdefs.Invalid("seed: nic %d: gateway %s is the NIC's own address", i, n.Gateway)
			}
		}
		for _, d := range n.DNS {
			if !d.IsValid() || d.IsUnspecified() {
				return errdefs.Invalid("seed: nic %d: DNS server %q is not an address", i, d)
			}
		}
	default:
		return errdefs.Invalid("seed: nic %d: mode %q is neither %q nor %q", i, n.Mode, ModeDHCP, ModeStatic)
	}
	return nil
}

func checkInstanceID(id string) error {
	if id == "" {
		return errdefs.Invalid("seed: instance-id is required")
	}
	if len(id) > 128 {
		return errdefs.Invalid("seed: instance-id is %d characters, more than 128", len(id))
	}
	for _, c := range id {
		if !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return errdefs.Invalid("seed: instance-id %q: only letters, digits, '-', '.' and '_' are allowed", id)
		}
	}
	return nil
}

// CheckHostname reports whether name is an RFC 1123 host name: at most 253
// characters, dot-separated labels of 1-63 letters, digits and hyphens that
// neither start nor end with a hyphen. The error is errdefs.Invalid.
func CheckHostname(name string) error {
	if name == "" {
		return errdefs.Invalid("seed: hostname is required")
	}
	if len(name) > 253 {
		return errdefs.Invalid("seed: hostname is %d characters, more than 253", len(name))
	}
	for _, label := range strings.Split(name, ".") {
		switch {
		case label == "":
			return errdefs.Invalid("seed: hostname %q has an empty label", name)
		case len(label) > 63:
			return errdefs.Invalid("seed: hostname %q: label %q is longer than 63 characters", name, label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return errdefs.Invalid("seed: hostname %q: label %q starts or ends with '-'", name, label)
		}
		for _, c := range label {
			if !isAlnum(c) && c != '-' {
				return errdefs.Invalid("seed: hostname %q: %q is not a letter, digit or '-' (RFC 1123)", name, c)
			}
		}
	}
	return nil
}

// CheckUserData reports whether b may be a seed's user-data: empty, or at
// most MaxUserData bytes starting with "#cloud-config" or "#!". The error
// is errdefs.Invalid.
func CheckUserData(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) > MaxUserData {
		return errdefs.Invalid("seed: user-data is %d bytes, more than %d", len(b), MaxUserData)
	}
	if !bytes.HasPrefix(b, []byte("#cloud-config")) && !bytes.HasPrefix(b, []byte("#!")) {
		return errdefs.Invalid("seed: user-data must start with \"#cloud-config\" or \"#!\" (a script)")
	}
	return nil
}

func isAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Build writes the seed image for s to path: a temporary file in the same
// directory, mode 0600, renamed over path once complete, so a reader never
// sees half a seed. Attach it read-only (raw format) after the VM's own disks.
func Build(ctx context.Context, path string, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	img, err := buildISO(Label, s.files(), time.Now())
	if err != nil {
		return fmt.Errorf("seed %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("seed %s: %w", path, err)
	}
	if err := writeAtomic(path, img); err != nil {
		return fmt.Errorf("seed %s: %w", path, err)
	}
	return nil
}

func writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// files renders the three NoCloud files of a valid spec.
func (s Spec) files() []isoFile {
	return []isoFile{
		{"meta-data", s.metaData()},
		{"network-config", s.networkConfig()},
		{"user-data", s.userData()},
	}
}

// The values below were validated to be plain YAML scalars (no quotes,
// colons or newlines), but are quoted anyway where YAML could read them as
// something else (a MAC of digits, "on", ...).

func (s Spec) metaData() []byte {
	return fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n", s.InstanceID, s.Hostname)
}

func (s Spec) userData() []byte {
	if len(s.UserData) > 0 {
		return s.UserData
	}
	return fmt.Appendf(nil, "#cloud-config\npreserve_hostname: false\nhostname: %s\n", s.Hostname)
}

// networkConfig renders network config version 2 (the netplan schema that
// cloud-init reads for every renderer). Interfaces are named nicN and matched
// by MAC, so the guest's own names (eth0, ens3...) do not matter.
func (s Spec) networkConfig() []byte {
	var b bytes.Buffer
	b.WriteString("version: 2\n")
	if len(s.NICs) == 0 {
		b.WriteString("ethernets: {}\n")
		return b.Bytes()
	}
	b.WriteString("ethernets:\n")
	for i, n := range s.NICs {
		mac, _ := net.ParseMAC(n.MAC) // validated
		fmt.Fprintf(&b, "  nic%d:\n    match:\n      macaddress: %q\n", i, mac.String())
		if n.Mode == ModeDHCP {
			b.WriteString("    dhcp4: true\n")
			continue
		}
		b.WriteString("    dhcp4: false\n    dhcp6: false\n")
		fmt.Fprintf(&b, "    addresses:\n      - %q\n", n.Addr.String())
		if n.Gateway.IsValid() {
			// "to: default" is newer than some cloud-init releases; the
			// explicit default route is read by all of them.
			to := "0.0.0.0/0"
			if n.Gateway.Is6() {
				to = "::/0"
			}
			fmt.Fprintf(&b, "    routes:\n      - to: %q\n        via: %q\n", to, n.Gateway.String())
		}
		if len(n.DNS) > 0 {
			b.WriteString("    nameservers:\n      addresses:\n")
			for _, d := range n.DNS {
				fmt.Fprintf(&b, "        - %q\n", d.String())
			}
		}
	}
	return b.Bytes()
}
