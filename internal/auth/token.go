package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"stagehand/internal/errdefs"
)

// Token prefixes. An API token and a session cookie are the same kind of
// secret; the prefix says which, so a session cookie pasted as a bearer
// token (or the reverse) is refused, and a leaked token is recognisable in
// logs and by secret scanners.
const (
	APITokenPrefix     = "sht_"
	SessionTokenPrefix = "shs_"
)

// Token shape: PREFIX + ID + "_" + SECRET, where ID is TokenIDLen
// characters of idAlphabet (no "_", so the split is unambiguous) and SECRET
// is tokenSecretLen random bytes in unpadded base64url (43 characters).
const (
	TokenIDLen     = 12
	tokenSecretLen = 32
	idAlphabet     = "abcdefghijklmnopqrstuvwxyz234567" // 32 symbols: a random byte & 31 is unbiased
)

var secretEncoding = base64.RawURLEncoding.Strict()

// TokenLen is the length of a token's plaintext, prefix included.
var TokenLen = len(APITokenPrefix) + TokenIDLen + 1 + secretEncoding.EncodedLen(tokenSecretLen)

// NewToken makes an API token. plaintext (sht_<id>_<secret>) is shown to
// its owner once; the store keeps id, to find the row, and hash, the
// SHA-256 of the secret. A fast hash is right here, unlike for passwords:
// the secret has 256 random bits, so there is nothing to guess.
func NewToken() (plaintext, id string, hash []byte) {
	return newToken(APITokenPrefix)
}

// NewSessionToken makes a session cookie's value, of the same shape and
// strength as NewToken's, with the prefix shs_.
func NewSessionToken() (plaintext, id string, hash []byte) {
	return newToken(SessionTokenPrefix)
}

func newToken(prefix string) (plaintext, id string, hash []byte) {
	raw := make([]byte, TokenIDLen+tokenSecretLen)
	rand.Read(raw) // never fails: crypto/rand aborts the program rather than return short
	idb := make([]byte, TokenIDLen)
	for i, b := range raw[:TokenIDLen] {
		idb[i] = idAlphabet[b&31]
	}
	secret := raw[TokenIDLen:]
	sum := sha256.Sum256(secret)
	return prefix + string(idb) + "_" + secretEncoding.EncodeToString(secret), string(idb), sum[:]
}

// ParseToken splits an API token (sht_…) into its id and secret. Any
// other string, a session token included, is refused with an error of
// kind unauthenticated that does not echo the string.
func ParseToken(s string) (id string, secret []byte, err error) {
	return parseToken(APITokenPrefix, s)
}

// ParseSessionToken is ParseToken for a session cookie (shs_…).
func ParseSessionToken(s string) (id string, secret []byte, err error) {
	return parseToken(SessionTokenPrefix, s)
}

func parseToken(prefix, s string) (string, []byte, error) {
	what := "API token"
	if prefix == SessionTokenPrefix {
		what = "session"
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(s) != TokenLen || rest[TokenIDLen] != '_' {
		return "", nil, errdefs.Unauthenticated("malformed %s: want %s followed by %d characters", what, prefix, TokenLen-len(prefix))
	}
	id := rest[:TokenIDLen]
	for i := range len(id) {
		if strings.IndexByte(idAlphabet, id[i]) < 0 {
			return "", nil, errdefs.Unauthenticated("malformed %s: bad id", what)
		}
	}
	secret, err := secretEncoding.DecodeString(rest[TokenIDLen+1:])
	if err != nil || len(secret) != tokenSecretLen {
		return "", nil, errdefs.Unauthenticated("malformed %s: bad secret", what)
	}
	return id, secret, nil
}

// HashTokenSecret is the hash stored for a secret: its SHA-256.
func HashTokenSecret(secret []byte) []byte {
	sum := sha256.Sum256(secret)
	return sum[:]
}

// VerifyToken reports whether secret hashes to storedHash, comparing in
// constant time so the answer's timing says nothing of how much matched.
func VerifyToken(storedHash, secret []byte) bool {
	sum := sha256.Sum256(secret)
	return len(storedHash) == sha256.Size && subtle.ConstantTimeCompare(storedHash, sum[:]) == 1
}
