package wire

// Configuration kinds (Config.Kind).
const (
	KindConfig  = "config"
	KindLibrary = "library"
)

// CaptureRequest is the body of POST /library: capture configuration
// Config as library entry Name (201, the entry as a Config).
type CaptureRequest struct {
	Config       string `json:"config"`
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
	// Workspace is where the entry goes; "" is the configuration's.
	Workspace string `json:"workspace,omitempty"`
	// WithState keeps the configuration's saved memory state in the
	// entry; every checkout shares it (and is deployed fenced only).
	WithState bool `json:"with_state,omitempty"`
}

// CheckoutRequest is the body of POST /library/{name}/checkout: a new
// configuration Name from the entry (201, the Config).
type CheckoutRequest struct {
	Name         string `json:"name"`
	StorageLease string `json:"storage_lease,omitempty"`
	// Workspace is where the configuration goes; "" is the entry's.
	Workspace string `json:"workspace,omitempty"`
}
