package deploy

import (
	"errors"
	"strings"
	"testing"

	"stagehand/internal/errdefs"
)

func TestCheckAllow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fenced  bool
		policy  string
		allow   []string
		want    string // the record's text
		wantErr string
	}{
		{fenced: true, policy: "out", allow: nil, want: ""},
		{fenced: true, policy: "out", allow: []string{"10.0.0.1:80/tcp", "192.0.2.0/24"}, want: "10.0.0.1/32:80/tcp,192.0.2.0/24"},
		{fenced: true, policy: "", allow: []string{"10.0.0.1"}, want: "10.0.0.1/32"}, // in-out
		{fenced: false, policy: "", allow: []string{"10.0.0.1"}, wantErr: "needs a fenced deployment"},
		{fenced: true, policy: "block", allow: []string{"10.0.0.1"}, wantErr: "block lets nothing out"},
		{fenced: true, policy: "out", allow: []string{"10.0.0.1:99999"}, wantErr: `allow "10.0.0.1:99999": port 99999`},
		{fenced: true, policy: "out", allow: []string{"10.0.0.1:80/icmp"}, wantErr: `protocol "icmp"`},
	} {
		got, err := CheckAllow("web", tc.fenced, tc.policy, tc.allow)
		if tc.wantErr != "" {
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `deploy "web"`) {
				t.Errorf("CheckAllow(%v, %q, %q) = %q, %v; want invalid with %q", tc.fenced, tc.policy, tc.allow, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CheckAllow(%v, %q, %q) = %q, %v; want %q", tc.fenced, tc.policy, tc.allow, got, err, tc.want)
		}
		if back := AllowList(got); strings.Join(back, ",") != got {
			t.Errorf("AllowList(%q) = %q", got, back)
		}
	}
}
