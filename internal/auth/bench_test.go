package auth

import (
	"testing"
)

// BenchmarkVerifyToken is the CPU cost of authenticating a request by
// token, store lookup excluded: parse the header's token, hash the secret,
// compare.
func BenchmarkVerifyToken(b *testing.B) {
	plain, _, hash := NewToken()
	b.ReportAllocs()
	for b.Loop() {
		_, secret, err := ParseToken(plain)
		if err != nil || !VerifyToken(hash, secret) {
			b.Fatal("token refused")
		}
	}
}

// BenchmarkDecide decides for an actor with 20 memberships on an object
// with 10 shares, the last of which (a group's) decides: the worst path.
func BenchmarkDecide(b *testing.B) {
	member := map[int64]Role{}
	for ws := range int64(20) {
		member[ws+100] = Roles()[ws%6]
	}
	member[11] = RoleUser
	var shares []Share
	for i := range int64(9) {
		shares = append(shares, Share{UserID: 1000 + i, Level: ShareFull})
	}
	shares = append(shares, Share{GroupID: 42, Level: ShareChange})
	in := Input{
		Actor:         Actor{UserID: 2, Name: "bob", OrgAdminOf: []int64{7, 8}},
		Action:        ConfigDeploy,
		Object:        Object{Kind: "config", Name: "web", ID: 5, WorkspaceID: 11, OrgID: 1, OwnerID: 1, Shares: shares},
		Memberships:   member,
		Groups:        []int64{40, 41, 42},
		WorkspaceKind: WorkspacePrivate,
	}
	if d := Decide(in); !d.Allowed {
		b.Fatalf("refused: %s", d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		Decide(in)
	}
}

// BenchmarkCheckPassword is one login's argon2id.
func BenchmarkCheckPassword(b *testing.B) {
	hash, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := CheckPassword(hash, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
