package plan

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The values Write's variables have in the checks below.
var shellEnv = map[string]string{"SANDBOX": "5b1d00aa", "ROOT": "/var/lib/podbox"}

// expandVars is s with the plan's variables replaced by their values: what
// a shell must make of shellQuote(s).
func expandVars(s string) string {
	return strings.NewReplacer(sandboxVar, shellEnv["SANDBOX"], rootVar, shellEnv["ROOT"]).Replace(s)
}

// shellWords splits a line of a POSIX shell into its words as sh would,
// for the quoting shellQuote writes (see shellScript).
func shellWords(line string) ([]string, error) {
	words, rest, err := shellCommand(line, false)
	if err == nil && rest != "" {
		err = fmt.Errorf("more after the words: %q", rest)
	}
	return words, err
}

// shellScript reads Write's output as sh would: comment lines (counted), and
// commands, one per unquoted newline; a command SANDBOX=$(…) is returned
// as the words inside the parentheses.
func shellScript(script string) (cmds [][]string, comments int, err error) {
	for script != "" {
		if strings.HasPrefix(script, "#") {
			_, script, _ = strings.Cut(script, "\n")
			comments++
			continue
		}
		subst := false
		if rest, ok := strings.CutPrefix(script, "SANDBOX=$("); ok {
			script, subst = rest, true
		}
		words, rest, err := shellCommand(script, subst)
		if err != nil {
			return nil, 0, err
		}
		ok := true
		if subst {
			if rest, ok = strings.CutPrefix(rest, ")"); !ok {
				return nil, 0, fmt.Errorf("unterminated $(: %q", rest)
			}
		}
		if script, ok = strings.CutPrefix(rest, "\n"); !ok && rest != "" {
			return nil, 0, fmt.Errorf("command ends with %q", rest)
		}
		cmds = append(cmds, words)
	}
	return cmds, comments, nil
}

// shellCommand reads the words of one command, up to an unquoted newline
// (or, in a substitution, an unquoted ')'), and returns the rest: outside
// quotes characters must be plain or escaped by '\'; inside double quotes
// '\' escapes $ ` " and \, and $NAME or ${NAME} of shellEnv expands.
// Anything else a shell would treat specially (command substitution,
// another variable, a glob, a ';') is an error: this check does not run it.
func shellCommand(s string, subst bool) (words []string, rest string, err error) {
	i := 0
	for i < len(s) {
		if s[i] == ' ' {
			i++
			continue
		}
		if s[i] == '\n' || subst && s[i] == ')' {
			break
		}
		var w strings.Builder
		for i < len(s) && s[i] != ' ' && s[i] != '\n' && !(subst && s[i] == ')') {
			switch c := s[i]; {
			case c == '\'':
				end := strings.IndexByte(s[i+1:], '\'')
				if end < 0 {
					return nil, "", errors.New("unterminated '")
				}
				w.WriteString(s[i+1 : i+1+end])
				i += end + 2
			case c == '\\':
				if i+1 >= len(s) || s[i+1] == '\n' {
					return nil, "", errors.New("line continuation")
				}
				w.WriteByte(s[i+1])
				i += 2
			case c == '"':
				i++
				for {
					if i >= len(s) {
						return nil, "", errors.New(`unterminated "`)
					}
					c := s[i]
					if c == '"' {
						i++
						break
					}
					switch c {
					case '\\':
						if i+1 < len(s) && strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
							w.WriteByte(s[i+1])
							i += 2
							continue
						}
						if i+1 < len(s) && s[i+1] == '\n' {
							return nil, "", errors.New("line continuation")
						}
					case '`':
						return nil, "", errors.New("command substitution")
					case '$':
						name, n := varRef(s[i+1:])
						v, ok := shellEnv[name]
						if !ok {
							return nil, "", fmt.Errorf("expansion at %q", s[i:])
						}
						w.WriteString(v)
						i += 1 + n
						continue
					}
					w.WriteByte(c)
					i++
				}
			case plain(string(c)):
				w.WriteByte(c)
				i++
			default:
				return nil, "", fmt.Errorf("unquoted %q", c)
			}
		}
		words = append(words, w.String())
	}
	return words, s[i:], nil
}

// varRef reads NAME or {NAME} after a '$' and returns the name and the
// bytes it takes; "" for anything else.
func varRef(s string) (string, int) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0
		}
		return s[1:end], end + 1
	}
	n := 0
	for n < len(s) && isNameByte(s[n]) && !(n == 0 && s[n] >= '0' && s[n] <= '9') {
		n++
	}
	return s[:n], n
}

// quoteSeeds are strings a manifest may hold that a shell treats
// specially; "{S}" and "{R}" stand for the plan's variables.
var quoteSeeds = []string{
	"", "plain", "a b", "it's", `"double"`, "$HOME", "$(id)", "`id`", "a\nb", "!event", "*", "~root", "#comment", "a;b", "\\", "${x}",
	"{S}", "{R}/sandboxes/{S}/volumes/data", "type=bind,source={R}/sandboxes/{S}/volumes/d,target=/x",
	"A={R}/$(touch pwned)", "{S}`id`", "{S}x", "{R}_1", "{R}'s", "x{S}{R}y", "-e", "--", "é", "\x00", "\xff",
}

// FuzzShellQuote checks the quoting of play --dry-run's commands, which a
// user may run: the words are a manifest's, from anywhere. For any string,
// what shellQuote writes is one word that a POSIX shell reads back as the
// string itself, with the plan's variables, and only they, expanded. A
// manifest must never be able to make the printed commands run something
// else ($(…), `…`, another variable, a second command).
func FuzzShellQuote(f *testing.F) {
	for _, s := range quoteSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.NewReplacer("{S}", sandboxVar, "{R}", rootVar).Replace(s)
		q := shellQuote(s)
		words, err := shellWords(q)
		if err != nil || len(words) != 1 || words[0] != expandVars(s) {
			t.Fatalf("shellQuote(%q) = %s, which a shell reads as %q (%v); want %q", s, q, words, err, expandVars(s))
		}
	})
}

// TestShellWordsIsSh checks shellWords, which FuzzShellQuote trusts, against
// a real POSIX shell on the seeds.
func TestShellWordsIsSh(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range quoteSeeds {
		s = strings.NewReplacer("{S}", sandboxVar, "{R}", rootVar).Replace(s)
		if strings.ContainsRune(s, 0) {
			continue // no shell word holds a NUL
		}
		q := shellQuote(s)
		cmd := exec.Command(sh, "-c", "printf '%s\\000' "+q)
		cmd.Dir = t.TempDir() // where a quoting bug's $(touch …) would write
		cmd.Env = []string{"SANDBOX=" + shellEnv["SANDBOX"], "ROOT=" + shellEnv["ROOT"], "PATH=/usr/bin:/bin"}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sh -c printf %s: %v", q, err)
		}
		got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		if want, err := shellWords(q); err != nil || !slices.Equal(got, want) || got[0] != expandVars(s) {
			t.Errorf("%s: sh reads %q, shellWords %q (%v), want %q", q, got, want, err, expandVars(s))
		}
	}
}

// FuzzWrite writes a plan whose every printed field is a string from a
// manifest and reads the output back as a shell would: one comment line per
// pod and per volume, whatever newlines a name holds, and commands whose
// words are exactly CreateArgs and RunArgs, with the sandbox's ID and the
// volumes' directories from the shell's variables. (A word may hold a
// quoted newline: a command then spans lines, as sh reads it.)
func FuzzWrite(f *testing.F) {
	f.Add("default", "web", "app", "web", "/tmp", "index.html", "GREETING=hello", "/content", "sub", "echo $(X) > /c")
	f.Fuzz(func(t *testing.T, ns, name, labelKey, labelValue, hostPath, file, env, target, subPath, arg string) {
		unmark := strings.NewReplacer("{S}", sandboxVar, "{R}", rootVar)
		env, arg = unmark.Replace(env), unmark.Replace(arg)
		p := &Plan{Pods: []Pod{{
			Name: name, Namespace: ns, Labels: map[string]string{labelKey: labelValue},
			Volumes: []Volume{
				{Name: "data", Kind: EmptyDir},
				{Name: "host", Kind: HostPath, Path: hostPath},
				{Name: "conf", Kind: ConfigMap, Files: []File{{Path: file, Data: []byte("x"), Mode: 0o644}}},
			},
			InitContainers: []Container{{Name: name + "-init", Image: "busybox", Pull: "never", Command: []string{"sh", "-c", arg},
				Mounts: []Mount{{Volume: "data", Target: target, SubPath: subPath}}}},
			Containers: []Container{{Name: name + "-app", Image: "busybox", Pull: "never", Env: []string{env}, Args: []string{arg},
				Mounts: []Mount{{Volume: "host", Target: target, ReadOnly: true}}, Restart: "always"}},
		}}}
		var out bytes.Buffer
		if err := p.Write(&out); err != nil {
			t.Fatal(err)
		}
		cmds, comments, err := shellScript(out.String())
		if err != nil {
			t.Fatalf("Write printed what sh reads differently (%v):\n%s", err, out.String())
		}
		pod := p.Pods[0]
		dirs := map[string]string{"data": rootVar + "/sandboxes/" + sandboxVar + "/volumes/data", "host": hostPath,
			"conf": rootVar + "/sandboxes/" + sandboxVar + "/volumes/conf"}
		want := [][]string{pod.CreateArgs(), pod.InitContainers[0].RunArgs(sandboxVar, dirs, false), pod.Containers[0].RunArgs(sandboxVar, dirs, true)}
		if comments != 4 || len(cmds) != len(want) {
			t.Fatalf("Write printed %d comments and %d commands, want 4 and %d:\n%s", comments, len(cmds), len(want), out.String())
		}
		for i, args := range want {
			args = slices.Clone(args)
			for j := range args {
				args[j] = expandVars(args[j])
			}
			if !slices.Equal(cmds[i], append([]string{"podbox"}, args...)) {
				t.Fatalf("command %d reads as %q, want podbox %q:\n%s", i+1, cmds[i], args, out.String())
			}
		}
	})
}
