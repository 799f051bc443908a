package oidclogin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// flow is what a login carries from Begin to Finish in the browser's flow
// cookie. It is signed, not encrypted: state and nonce are visible to the
// browser anyway (in the URL and the ID token), and the PKCE verifier only
// matters together with a code that was sent to this same browser.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"` // Unix seconds; checked here, not trusted to the browser's MaxAge
}

// macLabel separates this MAC from any other use of the same key.
const macLabel = "stagehand oidc flow v1\x00"

func flowMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macLabel))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// seal encodes f as base64url(JSON) "." base64url(HMAC-SHA256).
func (f flow) seal(key []byte) string {
	b, _ := json.Marshal(f) // a struct of strings and an int always marshals
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(flowMAC(key, payload))
}

// openFlow checks the MAC of a sealed flow before reading anything in it,
// then its expiry.
func openFlow(sealed string, key []byte, now time.Time) (flow, error) {
	payload, sig, ok := strings.Cut(sealed, ".")
	if !ok {
		return flow{}, errors.New("malformed")
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, flowMAC(key, payload)) {
		return flow{}, errors.New("bad signature (forged, or signed before the key changed)")
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return flow{}, fmt.Errorf("payload: %w", err)
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil {
		return flow{}, fmt.Errorf("payload: %w", err)
	}
	if exp := time.Unix(f.Expires, 0); !now.Before(exp) {
		return flow{}, fmt.Errorf("expired at %s; start the login again", exp.UTC().Format(time.RFC3339))
	}
	if f.State == "" || f.Nonce == "" || f.Verifier == "" {
		return flow{}, errors.New("incomplete")
	}
	return f, nil
}
