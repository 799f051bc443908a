//go:build tools

// Package tools pins modules that packages under development depend on, so
// that `go mod tidy` keeps them while their importers are being written.
package tools

import (
	_ "github.com/google/nftables"
	_ "github.com/insomniacslk/dhcp/dhcpv4/server4"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "modernc.org/sqlite"
)
