package cli

import (
	"net/netip"
	"strings"

	"stagehand/internal/api/wire"
)

// parseVMFlag parses one --vm value: VM=TEMPLATE[,net=NETWORK][,ip=pool|dhcp|IP][,hostname=NAME].
// It checks the syntax only; the daemon checks that names exist and that
// the address fits the network.
func parseVMFlag(s string) (wire.VMRequest, error) {
	var vm wire.VMRequest
	parts := strings.Split(s, ",")
	name, tmpl, ok := strings.Cut(parts[0], "=")
	if !ok || name == "" || tmpl == "" {
		return vm, usagef("--vm %q: want VM=TEMPLATE[,net=NETWORK][,ip=pool|dhcp|IP][,hostname=NAME]", s)
	}
	vm.Name, vm.Template = name, tmpl
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		key, val, ok := strings.Cut(p, "=")
		if !ok || val == "" {
			return vm, usagef("--vm %q: %q is not KEY=VALUE (keys: net, ip, hostname)", s, p)
		}
		if seen[key] {
			return vm, usagef("--vm %q: %s given twice", s, key)
		}
		seen[key] = true
		switch key {
		case "net":
			vm.Network = val
		case "ip":
			if val != "pool" && val != "dhcp" {
				addr, err := netip.ParseAddr(val)
				if err != nil || addr.Zone() != "" {
					return vm, usagef("--vm %q: ip %q is not pool, dhcp or an IP address", s, val)
				}
				val = addr.String()
			}
			vm.IP = val
		case "hostname":
			// The daemon checks it (RFC 1123): one rule, one message.
			vm.Hostname = val
		default:
			return vm, usagef("--vm %q: unknown key %q (keys: net, ip, hostname)", s, key)
		}
	}
	return vm, nil
}

// parseVMFlags parses every --vm. What the VMs must be together (at least
// one, distinct names, an address only on a network) is the daemon's to
// judge.
func parseVMFlags(values []string) ([]wire.VMRequest, error) {
	var vms []wire.VMRequest
	for _, v := range values {
		vm, err := parseVMFlag(v)
		if err != nil {
			return nil, err
		}
		vms = append(vms, vm)
	}
	return vms, nil
}

// checkIPArg checks an IP|pool|dhcp argument.
func checkIPArg(s string) (string, error) {
	if s == "pool" || s == "dhcp" {
		return s, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return "", usagef("%q is not an IP address, pool or dhcp", s)
	}
	return addr.String(), nil
}
