package seed

import "strings"

// DefaultHostname is a VM's host name when none is set: "VM-CONFIG" made an
// RFC 1123 label (lower case; every character other than a letter, digit
// or '-' becomes '-'; no '-' at either end; at most 63 characters). It
// follows the configuration's name, so a clone gets its own.
func DefaultHostname(vm, config string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(vm + "-" + config) {
		if isAlnum(c) || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	if name == "" {
		return "vm"
	}
	return name
}

// Hostname is the host name a VM's guest gets: set, else the default.
func Hostname(set, vm, config string) string {
	if set != "" {
		return set
	}
	return DefaultHostname(vm, config)
}
