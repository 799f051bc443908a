// Package fence owns the layer-2 plumbing of deployments: Linux bridges and
// persistent taps for VM NICs, a DHCP server per bridge that hands out
// addresses by MAC reservation, and fences: one network namespace per fenced
// deployment, with inside bridges, a veth to each outside bridge and a 1:1
// NAT router written as one nftables ruleset.
//
// Every function works in a network namespace given by the caller (the
// daemon's own, or a fence's), through netlink handles opened on that
// namespace; where a socket or a tap must be created from inside it, that is
// done on a dedicated OS thread that is never returned to the Go scheduler.
package fence
