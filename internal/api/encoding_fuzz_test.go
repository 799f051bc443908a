package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"stagehand/internal/api/wire"
	"stagehand/internal/errdefs"
)

// requestTypes are the body shapes the API decodes, one fresh value each.
var requestTypes = []func() any{
	func() any { return new(wire.TemplateRequest) },
	func() any { return new(wire.NetworkRequest) },
	func() any { return new(wire.ConfigRequest) },
	func() any { return new(wire.CloneRequest) },
	func() any { return new(wire.SetIPRequest) },
	func() any { return new(wire.DeployRequest) },
	func() any { return new(wire.UndeployRequest) },
	func() any { return new(wire.LeaseRequest) },
	func() any { return new(wire.CaptureRequest) },
	func() any { return new(wire.CheckoutRequest) },
	func() any { return new(wire.ArchiveRequest) },
	func() any { return new(wire.RestoreRequest) },
	func() any { return new(wire.ExportRequest) },
	func() any { return new(wire.ImportRequest) },
	func() any { return new(wire.CleanupRequest) },
}

// FuzzDecodeBody feeds arbitrary bytes as a request body to decodeBody,
// for every request type, required and optional. It must not panic;
// every refusal must be of kind invalid (a 400, never a 500); a body it
// accepts must be one JSON value of the type's shape: encoding the
// decoded value, decoding and encoding again gives the same JSON. The path
// index and query flag parsers get the same bytes. The seed corpus holds
// a real body of each type and broken ones.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"t1","disks":["/img/a.qcow2"],"cpus":2,"memory_mib":512,"kernel":"/k","initrd":"/i","cmdline":"console=ttyS0"}`,
		`{"name":"lan","subnet":"10.0.0.0/24","gateway":"10.0.0.1","pools":["10.0.0.10-10.0.0.20"],"dns":["10.0.0.2"]}`,
		`{"name":"web","description":"d","owner":"o","vms":[{"name":"vm1","template":"t1","network":"lan","ip":"dhcp"}],"storage_lease":"30d"}`,
		`{"name":"b","mode":"full"}`, `{"ip":"10.0.0.5"}`, `{"fenced":true,"fence_policy":"out","deploy_lease":"2h"}`,
		`{"save_state":true}`, `{"storage":"7d","deploy":"1h","undeploy_action":"discard-state"}`,
		`{"file":"/tmp/x.tar","name":"a","map_network":{"lan":"office"}}`, `{"idle_days":3,"dry_run":true}`,
		``, `{}`, `null`, `[]`, `{"name":"\u0000"}`, `{"name":1e999}`, `{} {}`, `{"zzz":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, optional := range []bool{false, true} {
			for _, mk := range requestTypes {
				v := mk()
				r := httptest.NewRequest(http.MethodPost, "/api/v1/x", bytes.NewReader(body))
				err := decodeBody(httptest.NewRecorder(), r, v, optional)
				if err != nil {
					if errdefs.Kind(err) != errdefs.ErrInvalid {
						t.Fatalf("%T: refusal of kind %v, want invalid (a 400): %v", v, errdefs.Kind(err), err)
					}
					status, _ := statusOf(r, err)
					if status != http.StatusBadRequest {
						t.Fatalf("%T: refusal answered %d: %v", v, status, err)
					}
					continue
				}
				again, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("%T: decoded value does not encode: %v", v, err)
				}
				// Compared as JSON: omitempty turns an empty list into
				// an absent one, which the handlers treat alike.
				w := mk()
				if err := json.Unmarshal(again, w); err != nil {
					t.Fatalf("%T: re-encoded value %s does not decode: %v", v, again, err)
				}
				if third, err := json.Marshal(w); err != nil || !bytes.Equal(again, third) {
					t.Fatalf("%T: round trip changed the value: %s, then %s (%v)", v, again, third, err)
				}
			}
		}
		// The same bytes as path and query values.
		r := httptest.NewRequest(http.MethodGet, "/api/v1/x", nil)
		r.SetPathValue("nic", string(body))
		if n, err := pathIndex(r, "nic"); err == nil && n < 0 {
			t.Fatalf("pathIndex(%q) = %d", body, n)
		} else if err != nil && errdefs.Kind(err) != errdefs.ErrInvalid {
			t.Fatalf("pathIndex refusal of kind %v", errdefs.Kind(err))
		}
		q := r.URL.Query()
		q.Set("follow", string(body))
		r.URL.RawQuery = q.Encode()
		if _, err := queryBool(r, "follow"); err != nil && errdefs.Kind(err) != errdefs.ErrInvalid {
			t.Fatalf("queryBool refusal of kind %v", errdefs.Kind(err))
		}
	})
}

// From FuzzDecodeBody's corpus: an empty list decodes (and is then the
// same as an absent one once encoded, which the handlers treat alike).
func TestDecodeBodyEmptyList(t *testing.T) {
	var v wire.NetworkRequest
	r := httptest.NewRequest(http.MethodPost, "/api/v1/networks", bytes.NewReader([]byte(`{"pools":["000000000000000"],"dns":[]}`)))
	if err := decodeBody(httptest.NewRecorder(), r, &v, false); err != nil || len(v.DNS) != 0 || len(v.Pools) != 1 {
		t.Fatalf("decode: %+v, %v", v, err)
	}
}
