package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"stagehand/internal/api/wire"
	"stagehand/internal/client"
)

// completionTimeout bounds what one TAB may wait for the daemon: a daemon
// that is down or slow must cost the shell a moment, never a hang.
const completionTimeout = 2 * time.Second

// completer builds `stagehand completion` and completes the arguments and flags of every command from the daemon. Its methods share the app's client, flags and output.
type completer struct{ *app }

func (a completer) command() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script for bash, zsh or fish",
		Long: `Print the shell completion script. Load it with, for example:

  bash:  source <(stagehand completion bash)
         or stagehand completion bash > /etc/bash_completion.d/stagehand
  zsh:   stagehand completion zsh > "${fpath[1]}/_stagehand"
  fish:  stagehand completion fish > ~/.config/fish/completions/stagehand.fish

The Debian package installs all three. Names of configurations, their VMs,
templates, networks, library entries, archives, workspaces, users, groups,
jobs and tokens are completed from the daemon (the same --server, token and
pinned certificates as any command); a daemon that does not answer within
` + completionTimeout.String() + ` completes nothing.`,
		Args:      exactArgs("SHELL"),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.stdout, true)
			case "zsh":
				return root.GenZshCompletion(a.stdout)
			case "fish":
				return root.GenFishCompletion(a.stdout, true)
			}
			return usagef("shell %q is not bash, zsh or fish", args[0])
		}),
	}
}

// argKind is what a positional argument names, and so where its
// completions come from.
type argKind int

const (
	newName    argKind = iota // a name the command creates: nothing to offer
	localFile                 // a file on this host: the shell's own completion
	configName                // a configuration
	vmName                    // a VM of the configuration named by the first argument
	templateName
	networkName
	libraryName // a library entry
	archiveName
	workspaceName // "ws" of the default organization, else "org/ws"
	userName
	groupName // like workspaceName
	orgName
	jobID
	tokenID
)

// argCompletions says, by command path (without "stagehand"), what each
// positional argument names. TestCompletionTableMatchesCommands keeps it in
// step with the commands.
var argCompletions = map[string][]argKind{
	"config show":       {configName},
	"config delete":     {configName},
	"config change-ips": {configName},
	"config set-ip":     {configName, vmName},
	"config clone":      {configName, newName},
	"config deploy":     {configName},
	"config move":       {configName},
	"config undeploy":   {configName},
	"config lease":      {configName},
	"config share":      {configName},
	"config unshare":    {configName},
	"config shares":     {configName},
	"config create":     {newName},

	"template show":   {templateName},
	"template delete": {templateName},
	"template import": {newName},

	"network show":   {networkName},
	"network delete": {networkName},
	"network create": {newName},

	"library capture":  {configName, newName},
	"library checkout": {libraryName, newName},
	"library show":     {libraryName},
	"library delete":   {libraryName},

	"archive create":  {configName, newName},
	"archive restore": {archiveName, newName},
	"archive export":  {archiveName, localFile},
	"archive import":  {localFile},
	"archive lease":   {archiveName},
	"archive show":    {archiveName},
	"archive delete":  {archiveName},

	"snapshot create": {configName, newName},
	"snapshot list":   {configName},
	"snapshot revert": {configName},
	"snapshot delete": {configName},

	"disk chain":       {configName, vmName},
	"disk consolidate": {configName, vmName},
	"disk shortcut":    {configName},

	"vm start":               {configName, vmName},
	"vm stop":                {configName, vmName},
	"vm reset":               {configName, vmName},
	"vm log":                 {configName, vmName},
	"vm set-hostname":        {configName, vmName},
	"vm console":             {configName, vmName},
	"vm screenshot":          {configName, vmName, localFile},
	"vm console-link create": {configName, vmName},

	"job show":   {jobID},
	"job wait":   {jobID},
	"job cancel": {jobID},

	"token revoke": {tokenID},
	"token create": {newName},

	"user show":         {userName},
	"user delete":       {userName},
	"user set":          {userName},
	"user set-password": {userName},
	"user create":       {newName},

	"org create":       {newName},
	"org add-admin":    {orgName, userName},
	"org remove-admin": {orgName, userName},

	"workspace show":              {workspaceName},
	"workspace delete":            {workspaceName},
	"workspace add-member":        {workspaceName, userName},
	"workspace remove-member":     {workspaceName, userName},
	"workspace set-quota":         {workspaceName},
	"workspace lease-policy show": {workspaceName},
	"workspace lease-policy set":  {workspaceName},
	"workspace create":            {newName},

	"group delete":        {groupName},
	"group add-member":    {groupName, userName},
	"group remove-member": {groupName, userName},
	"group create":        {newName},
}

// flagCompletion completes one flag's value: fixed choices, or names from
// the daemon.
type flagCompletion struct {
	choices []string // fixed values, each named in the flag's help
	names   argKind  // else names of this kind from the daemon
	// compose completes a value built of parts (--vm VM=TEMPLATE,net=…),
	// given what is typed so far.
	compose func(ctx context.Context, a completer, c *client.Client, typed string) []string
}

// flagCompletions are the completions of flags by name, on every command
// that has a flag of that name.
var flagCompletions = map[string]flagCompletion{
	"output":            {choices: []string{"table", "json"}},
	"fence-policy":      {choices: []string{wire.FenceBlock, wire.FenceOut, wire.FenceInOut}},
	"level":             {choices: []string{"read", "change", "full", "console"}},
	"mode":              {choices: []string{wire.CloneLinked, wire.CloneFull}},
	"kind":              {choices: []string{wire.WorkspaceShared, wire.WorkspacePrivate}},
	"role":              {choices: roles},
	"max-role":          {choices: roles},
	"on-expiry":         {choices: []string{"save-state", "discard-state"}},
	"workspace":         {names: workspaceName},
	"default-workspace": {names: workspaceName},
	"org":               {names: orgName},
	"user":              {names: userName},
	"with":              {compose: completeGrantee},
	"vm":                {compose: completeVMSpec},
	"map-network":       {compose: completeNetworkMap},
}

// roles are the workspace roles, most to least.
var roles = []string{"admin", "template-creator", "author", "user", "console-only", "viewer"}

// register gives every command of root's tree the completions
// of its arguments (argCompletions) and flags (flagCompletions).
func (a completer) register(root *cobra.Command) {
	walkCommands(root, func(cmd *cobra.Command) {
		if kinds, ok := argCompletions[commandPath(cmd)]; ok {
			cmd.ValidArgsFunction = a.completeArgs(kinds)
		}
		for name, fc := range flagCompletions {
			// Local flags only: a persistent flag is registered once,
			// where it is declared (the root's --output), and
			// inherited.
			if cmd.LocalFlags().Lookup(name) != nil {
				// The only error is a second registration of the
				// same flag, which the lookup rules out.
				_ = cmd.RegisterFlagCompletionFunc(name, a.completeFlag(fc))
			}
		}
	})
}

// walkCommands calls fn on cmd and every command below it.
func walkCommands(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		walkCommands(c, fn)
	}
}

// commandPath is cmd's path without the root's name: "config show".
func commandPath(cmd *cobra.Command) string {
	_, p, _ := strings.Cut(cmd.CommandPath(), " ")
	return p
}

// completeArgs completes the argument at the position after args.
func (a completer) completeArgs(kinds []argKind) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= len(kinds) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		switch kinds[len(args)] {
		case newName:
			return nil, cobra.ShellCompDirectiveNoFileComp
		case localFile:
			return nil, cobra.ShellCompDirectiveDefault
		}
		c, done := a.completionClient()
		defer done()
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		return withPrefix(a.names(ctx, c, kinds[len(args)], args), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func (a completer) completeFlag(fc flagCompletion) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if fc.choices != nil {
			return withPrefix(fc.choices, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
		c, done := a.completionClient()
		defer done()
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		if fc.compose != nil {
			// Parts follow: no space after a completed part.
			return withPrefix(fc.compose(ctx, a, c, toComplete), toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		}
		return withPrefix(a.names(ctx, c, fc.names, args), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// withPrefix keeps the completions (name, or name TAB description) that
// begin with typed.
func withPrefix(comps []string, typed string) []cobra.Completion {
	var out []cobra.Completion
	for _, c := range comps {
		if strings.HasPrefix(c, typed) {
			out = append(out, c)
		}
	}
	return out
}

// completionClient is a client like the commands' (--server as the
// command line being completed gives it, the same token) that pins no new
// certificate: a TAB must not trust a server silently. Known servers are
// read from a private copy of the file, removed by done.
func (a completer) completionClient() (c *client.Client, done func()) {
	done = func() {}
	opts, err := a.clientOptions()
	if err != nil {
		// A bad --token-file: complete without a token (what is public).
		opts = nil
	}
	copyPath, cleanup, err := a.knownServersCopy()
	if err == nil {
		opts = append(opts, client.WithKnownServers(copyPath, nil))
		done = cleanup
	}
	return client.New(a.server, opts...), done
}

// knownServersCopy copies the known servers file (or nothing, when there
// is none) to a temporary file the client may pin into.
func (a completer) knownServersCopy() (string, func(), error) {
	var known []byte
	if file, err := client.KnownServersFile(a.deps.Getenv); err == nil {
		if b, err := os.ReadFile(file); err == nil {
			known = b
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
	}
	f, err := os.CreateTemp("", "stagehand-complete-")
	if err != nil {
		return "", nil, err
	}
	_, werr := f.Write(known)
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(f.Name())
		return "", nil, err
	}
	return f.Name(), func() { os.Remove(f.Name()) }, nil
}

// names are the names of kind the daemon shows the caller, each followed by
// a TAB and a few words the shell may show beside it; nothing on any
// error (a completion has nowhere to say it).
func (a completer) names(ctx context.Context, c *client.Client, kind argKind, args []string) []string {
	var out []string
	add := func(name string, about ...string) {
		if d := strings.Join(nonEmpty(about), ", "); d != "" {
			name += "\t" + d
		}
		out = append(out, name)
	}
	switch kind {
	case configName:
		cs, _ := c.Configs().List(ctx)
		for _, x := range cs {
			add(x.Name, x.State, x.Description)
		}
	case vmName:
		if len(args) == 0 {
			return nil
		}
		cfg, err := c.Configs().Get(ctx, args[0])
		if err != nil {
			return nil
		}
		for _, vm := range cfg.VMs {
			add(vm.Name, vm.State, vm.Template)
		}
	case templateName:
		ts, _ := c.Templates().List(ctx)
		for _, x := range ts {
			add(x.Name, x.Description)
		}
	case networkName:
		ns, _ := c.Networks().List(ctx)
		for _, x := range ns {
			add(x.Name, x.Subnet)
		}
	case libraryName:
		ls, _ := c.Library().List(ctx)
		for _, x := range ls {
			add(x.Name, x.Description)
		}
	case archiveName:
		as, _ := c.Archives().List(ctx)
		for _, x := range as {
			add(x.Name, "of "+x.Source)
		}
	case workspaceName:
		ws, _ := c.Workspaces().List(ctx, "")
		for _, x := range ws {
			add(orgRef(x.Org, x.Name), x.Kind)
		}
	case groupName:
		gs, _ := c.Groups().List(ctx, "")
		for _, x := range gs {
			add(orgRef(x.Org, x.Name), fmt.Sprintf("%d members", len(x.Members)))
		}
	case userName:
		us, _ := c.Users().List(ctx)
		for _, x := range us {
			add(x.Name, x.DisplayName)
		}
	case orgName:
		orgs, _ := c.Orgs().List(ctx)
		for _, x := range orgs {
			add(x.Name)
		}
	case jobID:
		js, _ := c.Jobs().List(ctx)
		for _, x := range js {
			add(x.ID, x.Kind, x.Subject, x.State)
		}
	case tokenID:
		ts, _ := c.Tokens().List(ctx, "")
		for _, x := range ts {
			add(x.ID, x.Name, x.State)
		}
	}
	return out
}

// orgRef is how commands name a workspace or group: "ws" in the default
// organization, else "org/ws".
func orgRef(org, name string) string {
	if org == "" || org == "default" {
		return name
	}
	return org + "/" + name
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// completeVMSpec completes --vm VM=TEMPLATE[,net=NETWORK][,ip=pool|dhcp|IP]
// part by part: templates after "VM=", networks after ",net=", the IP
// modes after ",ip=".
func completeVMSpec(ctx context.Context, a completer, c *client.Client, typed string) []string {
	i := strings.LastIndexAny(typed, "=,")
	if i < 0 || typed[i] == ',' {
		// The VM's name, or the start of a part's key.
		if i < 0 {
			return nil
		}
		head := typed[:i+1]
		return []string{head + "net=", head + "ip="}
	}
	head := typed[:i+1]
	var names []string
	switch {
	case !strings.Contains(typed[:i], "="):
		names = a.names(ctx, c, templateName, nil)
	case strings.HasSuffix(head, ",net="):
		names = a.names(ctx, c, networkName, nil)
	case strings.HasSuffix(head, ",ip="):
		names = []string{"pool", "dhcp"}
	}
	return prefixed(head, names)
}

// completeNetworkMap completes --map-network OLD=NEW: NEW is a network
// here; OLD is the bundle's, which the daemon does not know yet.
func completeNetworkMap(ctx context.Context, a completer, c *client.Client, typed string) []string {
	old, _, ok := strings.Cut(typed, "=")
	if !ok {
		return nil
	}
	return prefixed(old+"=", a.names(ctx, c, networkName, nil))
}

// completeGrantee completes --with USER|group:GROUP.
func completeGrantee(ctx context.Context, a completer, c *client.Client, typed string) []string {
	if strings.HasPrefix(typed, "group:") {
		return prefixed("group:", a.names(ctx, c, groupName, nil))
	}
	return append(a.names(ctx, c, userName, nil), "group:")
}

// prefixed puts head before each completion.
func prefixed(head string, comps []string) []string {
	out := make([]string, len(comps))
	for i, c := range comps {
		out[i] = head + c
	}
	return out
}
