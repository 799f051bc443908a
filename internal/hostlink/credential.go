package hostlink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"unicode"

	"stagehand/internal/errdefs"
)

// CredentialPrefix starts every host credential, so a leaked one is
// recognisable in logs and by secret scanners, and a user's API token
// (sht_) sent to a host endpoint, or the reverse, is refused.
const CredentialPrefix = "shh_"

// A credential is CredentialPrefix + HOST + "_" + SECRET, where SECRET is
// 32 random bytes in unpadded base64url (43 characters). SECRET has a fixed
// length and is the credential's tail, so a host name holding "_" (or a
// secret holding one) still splits unambiguously.
const (
	secretLen        = 32
	maxHostNameBytes = 253 // a DNS name's limit; host names are shown in lists
)

var secretEncoding = base64.RawURLEncoding.Strict()

var encodedSecretLen = secretEncoding.EncodedLen(secretLen)

// NewCredential makes host's credential. plaintext is given to that host's
// daemon once (its flag or file); the installation keeps only secretHash,
// the SHA-256 of the secret, beside the host's row. A fast hash is right
// here, unlike for passwords: the secret has 256 random bits.
func NewCredential(host string) (plaintext string, secretHash []byte, err error) {
	if err := checkHostName(host); err != nil {
		return "", nil, err
	}
	secret := make([]byte, secretLen)
	rand.Read(secret) // never fails: crypto/rand aborts the program rather than return short
	sum := sha256.Sum256(secret)
	return CredentialPrefix + host + "_" + secretEncoding.EncodeToString(secret), sum[:], nil
}

// ParseCredential splits a host credential into the host's name and the
// secret. Anything else is refused with an error of kind unauthenticated
// that does not echo the string.
func ParseCredential(s string) (host string, secret []byte, err error) {
	rest, ok := strings.CutPrefix(s, CredentialPrefix)
	if !ok || len(rest) < 1+1+encodedSecretLen || rest[len(rest)-encodedSecretLen-1] != '_' {
		return "", nil, errdefs.Unauthenticated("malformed host credential: want %s<host>_<%d characters>", CredentialPrefix, encodedSecretLen)
	}
	host = rest[:len(rest)-encodedSecretLen-1]
	if err := checkHostName(host); err != nil {
		return "", nil, errdefs.Unauthenticated("malformed host credential: bad host name")
	}
	secret, err = secretEncoding.DecodeString(rest[len(rest)-encodedSecretLen:])
	if err != nil || len(secret) != secretLen {
		return "", nil, errdefs.Unauthenticated("malformed host credential: bad secret")
	}
	return host, secret, nil
}

// HashSecret is what a Verifier keeps of a host's secret: its SHA-256.
func HashSecret(secret []byte) []byte {
	sum := sha256.Sum256(secret)
	return sum[:]
}

// checkHostName accepts the names a credential can carry: printable, no
// space, not empty, not longer than a DNS name.
func checkHostName(host string) error {
	if host == "" || len(host) > maxHostNameBytes {
		return errdefs.Invalid("host name %q: want 1 to %d bytes", host, maxHostNameBytes)
	}
	for _, r := range host {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return errdefs.Invalid("host name %q: no spaces or control characters", host)
		}
	}
	return nil
}

// Verifier holds, for each host of the installation, the SHA-256 of its
// credential's secret (the hosts table backs it with one column). It never
// sees a secret: Authenticate hashes the one presented and compares.
type Verifier interface {
	// HostSecretHash returns the stored hash of host's secret, or an
	// error of kind not found when no such host is registered (or it has
	// no credential, e.g. after it was removed).
	HostSecretHash(ctx context.Context, host string) ([]byte, error)
}

// VerifierFunc lets a function be a Verifier.
type VerifierFunc func(ctx context.Context, host string) ([]byte, error)

// HostSecretHash calls f.
func (f VerifierFunc) HostSecretHash(ctx context.Context, host string) ([]byte, error) {
	return f(ctx, host)
}

// Authenticate returns the name of the host whose credential r carries as
// its bearer token. Every refusal is of kind unauthenticated and names no
// secret; a verifier that fails for another reason (its store is down) is
// returned as is, so the caller answers 503 rather than 401.
func Authenticate(ctx context.Context, v Verifier, r *http.Request) (string, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", errdefs.Unauthenticated("no host credential: want Authorization: Bearer %s…", CredentialPrefix)
	}
	host, secret, err := ParseCredential(token)
	if err != nil {
		return "", err
	}
	stored, err := v.HostSecretHash(ctx, host)
	if errdefs.Kind(err) == errdefs.ErrNotFound {
		return "", errdefs.Unauthenticated("host %q has no credential here", host)
	}
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(secret)
	// Constant time, so the answer's timing says nothing of how much of
	// the hash matched.
	if len(stored) != sha256.Size || subtle.ConstantTimeCompare(stored, sum[:]) != 1 {
		return "", errdefs.Unauthenticated("host %q: wrong credential", host)
	}
	return host, nil
}
