package auth

import (
	"slices"
	"testing"

	"stagehand/internal/errdefs"
)

// TestRoleTable checks the literal rows against what each role is meant to
// be, so a slip in one row (an action dropped or added) shows here.
func TestRoleTable(t *testing.T) {
	if len(roleTable) != len(Roles()) {
		t.Fatalf("%d rows for %d roles", len(roleTable), len(Roles()))
	}
	sub := func(a, b Role) bool { return roleSets[a]&^roleSets[b] == 0 }
	for _, tc := range []struct{ weaker, stronger Role }{
		{RoleViewer, RoleUser},
		{RoleConsoleOnly, RoleUser},
		{RoleUser, RoleAuthor},
		{RoleAuthor, RoleTemplateCreator},
		{RoleTemplateCreator, RoleAdmin},
	} {
		if !sub(tc.weaker, tc.stronger) || roleSets[tc.weaker] == roleSets[tc.stronger] {
			t.Errorf("%s should be strictly below %s; %s has %v that %s lacks", tc.weaker, tc.stronger,
				tc.weaker, (roleSets[tc.weaker] &^ roleSets[tc.stronger]).list(), tc.stronger)
		}
	}
	for _, tc := range []struct {
		role    Role
		may     []Action
		mayNot  []Action
		comment string
	}{
		{RoleAdmin, []Action{NetworkCreate, NetworkDelete, WorkspaceAdmin, TemplateDelete}, []Action{DoctorRepair, UserAdmin, OrgAdmin}, "runs the workspace, not the system"},
		{RoleTemplateCreator, []Action{TemplateCreate, TemplateDelete}, []Action{NetworkCreate, WorkspaceAdmin}, "templates, not networks"},
		{RoleAuthor, []Action{ConfigEdit, ConfigShare, LibraryCapture, ArchiveCreate, ArchiveImport}, []Action{TemplateCreate}, "edits and publishes"},
		{RoleUser, []Action{ConfigCreate, ConfigDeploy, ConfigDelete, LibraryCheckout, ConfigConsole}, []Action{ConfigEdit, ConfigShare, LibraryCapture, ArchiveCreate, ArchiveExport}, "runs, does not publish"},
		{RoleConsoleOnly, []Action{ConfigRead, ConfigConsole}, []Action{ConfigDeploy, ConfigPower, TemplateRead, LibraryRead}, "consoles only"},
		{RoleViewer, []Action{TemplateRead, ConfigRead, LibraryRead, ArchiveRead, EventRead}, []Action{ConfigConsole, ConfigDeploy, JobCancel}, "reads only"},
	} {
		for _, a := range tc.may {
			if !tc.role.Allows(a) {
				t.Errorf("%s (%s) should allow %s", tc.role, tc.comment, a)
			}
		}
		for _, a := range tc.mayNot {
			if tc.role.Allows(a) {
				t.Errorf("%s (%s) should not allow %s", tc.role, tc.comment, a)
			}
		}
	}
	// Only these are in no role row: the system's, and the organization's.
	want := []Action{DoctorRead, DoctorRepair, UserAdmin, OrgAdmin, MetricsRead, HostRead, HostAdmin}
	if got := sysOnlySet.list(); !slices.Equal(got, want) {
		t.Errorf("actions in no role row: %v, want %v", got, want)
	}
	if Role("root").Allows(ConfigRead) || len(RoleActions("root")) != 0 {
		t.Error("an unknown role allows something")
	}
}

func TestShareTable(t *testing.T) {
	for _, tc := range []struct{ weaker, stronger ShareLevel }{
		{ShareRead, ShareConsole}, {ShareConsole, ShareChange}, {ShareChange, ShareFull},
	} {
		if shareSets[tc.weaker]&^shareSets[tc.stronger] != 0 || shareSets[tc.weaker] == shareSets[tc.stronger] {
			t.Errorf("share %s should be strictly below %s", tc.weaker, tc.stronger)
		}
	}
	for _, tc := range []struct {
		level  ShareLevel
		may    []Action
		mayNot []Action
	}{
		{ShareRead, []Action{ConfigRead, LibraryRead}, []Action{ConfigConsole, ConfigClone, LibraryCheckout, ArchiveExport}},
		{ShareConsole, []Action{ConfigRead, ConfigConsole}, []Action{ConfigPower, ConfigDeploy}},
		{ShareChange, []Action{ConfigDeploy, ConfigEdit, ConfigClone, LibraryCheckout}, []Action{ConfigDelete, ConfigShare}},
		{ShareFull, []Action{ConfigDelete, ConfigShare, LibraryDelete}, []Action{TemplateCreate, ConfigCreate, WorkspaceAdmin, UserAdmin}},
	} {
		for _, a := range tc.may {
			if !tc.level.Allows(a) {
				t.Errorf("share %s should allow %s", tc.level, a)
			}
		}
		for _, a := range tc.mayNot {
			if tc.level.Allows(a) {
				t.Errorf("share %s should not allow %s", tc.level, a)
			}
		}
	}
}

func TestParseNames(t *testing.T) {
	for _, s := range []string{"admin", "template-creator", "author", "user", "console-only", "viewer"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"full", "change", "read", "console"} {
		if l, err := ParseShareLevel(s); err != nil || string(l) != s {
			t.Errorf("ParseShareLevel(%q) = %q, %v", s, l, err)
		}
	}
	for _, a := range Actions() {
		if got, err := ParseAction(string(a)); err != nil || got != a {
			t.Errorf("ParseAction(%q) = %q, %v", a, got, err)
		}
	}
	for _, tc := range []struct {
		name  string
		parse func(string) error
		s     string
	}{
		{"role", func(s string) error { _, err := ParseRole(s); return err }, "Admin"},
		{"role", func(s string) error { _, err := ParseRole(s); return err }, ""},
		{"share", func(s string) error { _, err := ParseShareLevel(s); return err }, "write"},
		{"action", func(s string) error { _, err := ParseAction(s); return err }, "config.*"},
		{"action", func(s string) error { _, err := ParseAction(s); return err }, "config.power"},
	} {
		if err := tc.parse(tc.s); errdefs.Kind(err) != errdefs.ErrInvalid {
			t.Errorf("parse %s %q: %v, want invalid", tc.name, tc.s, err)
		}
	}
	if len(Actions()) != 39 {
		t.Errorf("%d actions; the brief lists 36, issue 14 adds metrics.read, issue 13 host.read and host.admin", len(Actions()))
	}
}
