package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goipsec/goipsec/internal/ctlserver/ctltest"
)

// shellOrSkip returns the path of shell; without it the test skips, except
// under CI for bash, which every supported system has.
func shellOrSkip(t *testing.T, shell string) string {
	t.Helper()
	p, err := exec.LookPath(shell)
	if err != nil {
		if os.Getenv("CI") == "true" {
			// make test installs bash, zsh and fish (scripts/deps.sh).
			t.Fatalf("%s not found: %v", shell, err)
		}
		t.Skipf("%s not installed", shell)
	}
	return p
}

// completionScript writes "ipsecctl completion shell" to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	code, out, errOut := ipsecctl(t, filepath.Join(t.TempDir(), "none.sock"), "completion", shell)
	if code != 0 || errOut != "" {
		t.Fatalf("completion %s: exit %d, %q", shell, code, errOut)
	}
	for _, c := range commandHelp() {
		if !strings.Contains(out, c[0]) {
			t.Errorf("the %s script lacks command %s", shell, c[0])
		}
	}
	if strings.Contains(out, namesCommand+" -d") || strings.Contains(out, "'"+namesCommand+":") {
		t.Errorf("the %s script offers the hidden command %s", shell, namesCommand)
	}
	f := filepath.Join(t.TempDir(), "ipsecctl."+shell)
	if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCompletionScripts: each script is produced, names every command and
// parses in its shell (bash always; zsh and fish when installed).
func TestCompletionScripts(t *testing.T) {
	if got := len(commandHelp()); got != len(commands)-1 {
		t.Errorf("the usage text describes %d commands, want %d (all but %s)", got, len(commands)-1, namesCommand)
	}
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			f := completionScript(t, shell)
			sh := shellOrSkip(t, shell)
			if out, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, out)
			}
		})
	}
}

// TestCompletionBashCompletes runs the bash script's function: commands,
// flags, and the names of a stand-in "ipsecctl __names" that must get the
// -s given on the line.
func TestCompletionBashCompletes(t *testing.T) {
	f := completionScript(t, "bash")
	bash := shellOrSkip(t, "bash")
	for _, tt := range []struct{ line, want string }{
		{"ipsecctl re", "rekey reload"},
		{"ipsecctl --js", "--json"},
		{"ipsecctl -s /run/x.sock up site", "site-b site-b/net"},
		{"ipsecctl down l", "lab"},
		{"ipsecctl up site-b/net ", ""},
		{"ipsecctl completion ", "bash zsh fish"},
		{"ipsecctl sas ", ""},
	} {
		script := `source "$1"
ipsecctl() {
	case "$*" in
	"-s /run/x.sock __names"|"__names") printf 'lab\nsite-b\nsite-b/net\n' ;;
	esac
}
COMP_WORDS=($2)
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_ipsecctl
echo "${COMPREPLY[*]}"
`
		out, err := exec.Command(bash, "-c", script, "bash", f, tt.line).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != tt.want {
			t.Errorf("%q: %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
}

// TestCompletionFishCompletes does the same in fish, when installed.
func TestCompletionFishCompletes(t *testing.T) {
	f := completionScript(t, "fish")
	fish := shellOrSkip(t, "fish")
	script := `source $argv[1]
function ipsecctl
	if test "$argv" = "-s /run/x.sock __names"
		printf 'lab\nsite-b\nsite-b/net\n'
	end
end
complete -C "ipsecctl -s /run/x.sock up site"`
	out, err := exec.Command(fish, "-c", script, f).CombinedOutput()
	if got := strings.Fields(string(out)); err != nil || strings.Join(got, " ") != "site-b site-b/net" {
		t.Errorf("fish: %q, %v", out, err)
	}
}

// TestCompletionNames: the hidden command lists the daemon's connections,
// children and SAs, and prints nothing, successfully, without a daemon.
func TestCompletionNames(t *testing.T) {
	sock := ctltest.Serve(t, ctltest.NewFake())
	code, out, errOut := ipsecctl(t, sock, namesCommand)
	if code != 0 || errOut != "" {
		t.Fatalf("%s: exit %d, %q", namesCommand, code, errOut)
	}
	for _, want := range []string{"site-b\n", "site-b/net\n", "lab\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s lacks %q:\n%s", namesCommand, want, out)
		}
	}
	code, out, errOut = ipsecctl(t, filepath.Join(t.TempDir(), "none.sock"), namesCommand)
	if code != 0 || out != "" || errOut != "" {
		t.Errorf("%s without a daemon: exit %d, %q, %q", namesCommand, code, out, errOut)
	}
}

// TestCompletionUsage: an unknown or missing shell is a usage error.
func TestCompletionUsage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{{"completion", "tcsh"}, {"completion"}, {"completion", "bash", "zsh"}} {
		code, _, errOut := ipsecctl(t, sock, args...)
		if code != 2 || !strings.HasPrefix(errOut, "ipsecctl: ") {
			t.Errorf("%q: exit %d, %q", args, code, errOut)
		}
	}
}
