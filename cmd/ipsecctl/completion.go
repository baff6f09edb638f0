package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/goipsec/goipsec/ctlapi/client"
)

// Shell completion. "ipsecctl completion SHELL" prints a script that
// completes the commands and flags, and for up, down and rekey the names
// the daemon knows, which the script asks the hidden command __names for.
// The commands and their descriptions come from the usage text, so the
// scripts follow it.

// The completion commands are registered here: their help refers to
// commands, which a literal entry would make an initialization cycle.
func init() {
	commands["completion"] = command{1, 1, false, 0, cmdCompletion}
	commands[namesCommand] = command{0, 0, false, namesTimeout, cmdNames}
}

// namesTimeout bounds __names: a completion waits for nothing longer.
const namesTimeout = 2 * time.Second

// namesCommand is the hidden command the scripts call.
const namesCommand = "__names"

// shells are the shells "ipsecctl completion" writes scripts for.
var shells = []string{"bash", "zsh", "fish"}

// nameCommands take a CONN[/CHILD] name.
const nameCommands = "up down rekey"

// flagNames are the flags of parse, for the scripts.
const flagNames = "-s --socket --json --version -h --help"

func cmdCompletion(_ context.Context, _ *client.Client, o options, out io.Writer) error {
	cmds := commandHelp()
	switch o.args[1] {
	case "bash":
		return writeBash(out, cmds)
	case "zsh":
		return writeZsh(out, cmds)
	case "fish":
		return writeFish(out, cmds)
	}
	return usagef("completion: unknown shell %q (%s)", o.args[1], strings.Join(shells, ", "))
}

// cmdNames prints the names up, down and rekey take, one a line: each
// configured child ("conn/child", from the policies) and its connection,
// and each SA. It prints what it can and never fails, for a completion
// must not print errors.
func cmdNames(ctx context.Context, c *client.Client, _ options, out io.Writer) error {
	var names []string
	if p, err := c.Policies(ctx); err == nil {
		for _, r := range p.Policies {
			if r.Name != "" {
				conn, _, _ := strings.Cut(r.Name, "/")
				names = append(names, r.Name, conn)
			}
		}
	}
	if s, err := c.SAs(ctx); err == nil {
		for _, ike := range s.IKESAs {
			names = append(names, ike.Name)
		}
		for _, child := range s.ChildSAs {
			names = append(names, child.Name)
		}
	}
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		fmt.Fprintln(out, n)
	}
	return nil
}

// commandHelp returns the visible commands in usage order with their
// descriptions, read from the usage text.
func commandHelp() [][2]string {
	var out [][2]string
	_, list, _ := strings.Cut(usage, "\ncommands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if _, ok := commands[fields[0]]; !ok || !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "   ") {
			continue // a continuation line
		}
		// The description follows the first run of two spaces after
		// the command's synopsis.
		_, desc, _ := strings.Cut(strings.TrimSpace(line), "  ")
		out = append(out, [2]string{fields[0], strings.TrimSpace(desc)})
	}
	return out
}

func names(cmds [][2]string) string {
	var s []string
	for _, c := range cmds {
		s = append(s, c[0])
	}
	return strings.Join(s, " ")
}

func writeBash(out io.Writer, cmds [][2]string) error {
	_, err := fmt.Fprintf(out, `# bash completion for ipsecctl. Load it with
#   source <(ipsecctl completion bash)
# or save it as /usr/share/bash-completion/completions/ipsecctl.
_ipsecctl() {
	local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
	local i cmd="" nargs=0
	local -a sock=()
	case "$prev" in
	-s|--socket)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	esac
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "%[1]s" -- "$cur"))
		return
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-s|--socket)
			sock=(-s "${COMP_WORDS[i+1]}")
			((i++))
			;;
		--socket=*|-s=*) sock=("${COMP_WORDS[i]}") ;;
		-*) ;;
		*)
			if [[ -z "$cmd" ]]; then
				cmd="${COMP_WORDS[i]}"
			else
				((nargs++))
			fi
			;;
		esac
	done
	case "$cmd" in
	"") COMPREPLY=($(compgen -W "%[2]s" -- "$cur")) ;;
	%[3]s)
		if ((nargs == 0)); then
			COMPREPLY=($(compgen -W "$(ipsecctl "${sock[@]}" %[4]s 2>/dev/null)" -- "$cur"))
		fi
		;;
	completion)
		if ((nargs == 0)); then
			COMPREPLY=($(compgen -W "%[5]s" -- "$cur"))
		fi
		;;
	esac
}
complete -F _ipsecctl ipsecctl
`, flagNames, names(cmds), strings.ReplaceAll(nameCommands, " ", "|"), namesCommand, strings.Join(shells, " "))
	return err
}

func writeZsh(out io.Writer, cmds [][2]string) error {
	var list strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&list, "\t\t%s\n", shQuote(c[0]+":"+c[1]))
	}
	_, err := fmt.Fprintf(out, `#compdef ipsecctl
# zsh completion for ipsecctl. Load it with
#   source <(ipsecctl completion zsh)
# or save it as _ipsecctl in a directory of $fpath.
_ipsecctl() {
	local curcontext="$curcontext" state line
	local -A opt_args
	local -a commands
	commands=(
%[1]s	)
	_arguments -C \
		'(-s --socket)'{-s+,--socket=}'[the control socket of ipsecd]:socket:_files' \
		'--json[print the control API JSON]' \
		'--version[print the version and exit]' \
		'(-h --help)'{-h,--help}'[print the help and exit]' \
		'1:command:->command' \
		'*::argument:->argument'
	case $state in
	command)
		_describe -t commands 'ipsecctl command' commands
		;;
	argument)
		case $words[1] in
		%[2]s)
			local sock=${opt_args[-s]:-${opt_args[--socket]}}
			local -a names
			names=(${(f)"$(ipsecctl ${sock:+-s $sock} %[3]s 2>/dev/null)"})
			(( CURRENT == 2 )) && _describe -t names 'connection or CHILD SA' names
			;;
		completion)
			(( CURRENT == 2 )) && _values 'shell' %[4]s
			;;
		esac
		;;
	esac
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
	_ipsecctl "$@"
else
	compdef _ipsecctl ipsecctl
fi
`, list.String(), strings.ReplaceAll(nameCommands, " ", "|"), namesCommand, strings.Join(shells, " "))
	return err
}

func writeFish(out io.Writer, cmds [][2]string) error {
	var b strings.Builder
	fmt.Fprintf(&b, `# fish completion for ipsecctl. Load it with
#   ipsecctl completion fish | source
# or save it as ~/.config/fish/completions/ipsecctl.fish.
function __ipsecctl_names
	set -l args
	set -l tokens (commandline -opc)
	for i in (seq (count $tokens))
		if contains -- $tokens[$i] -s --socket; and test $i -lt (count $tokens)
			set args -s $tokens[(math $i + 1)]
		end
	end
	ipsecctl $args %[1]s 2>/dev/null
end
complete -c ipsecctl -f
complete -c ipsecctl -s s -l socket -r -F -d 'the control socket of ipsecd'
complete -c ipsecctl -l json -d 'print the control API JSON'
complete -c ipsecctl -l version -d 'print the version and exit'
complete -c ipsecctl -s h -l help -d 'print the help and exit'
`, namesCommand)
	for _, c := range cmds {
		fmt.Fprintf(&b, "complete -c ipsecctl -n __fish_use_subcommand -a %s -d %s\n", c[0], fishQuote(c[1]))
	}
	fmt.Fprintf(&b, "complete -c ipsecctl -n '__fish_seen_subcommand_from %s' -a '(__ipsecctl_names)'\n", nameCommands)
	fmt.Fprintf(&b, "complete -c ipsecctl -n '__fish_seen_subcommand_from completion' -a '%s'\n", strings.Join(shells, " "))
	_, err := io.WriteString(out, b.String())
	return err
}

// shQuote quotes s for a POSIX shell (and zsh).
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fishQuote quotes s for fish, where a single-quoted string escapes only
// \ and '.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
