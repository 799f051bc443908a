package wire

// Egress is a fenced deployment's egress allow-list (DeployRequest.Allow)
// and what it refused.
type Egress struct {
	// Allow are the destinations the VMs may open connections to,
	// CIDR[:PORT[/tcp|udp]]; nothing else, DNS servers included.
	Allow []string `json:"allow"`
	// Refused counts the connection attempts the list refused since the
	// deploy (TCP: one per attempt; UDP and others: one per packet), read
	// from the fence when asked; Counted is false when it could not be
	// read.
	Refused uint64 `json:"refused"`
	Counted bool   `json:"counted"`
}
