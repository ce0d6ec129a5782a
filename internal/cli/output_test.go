package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/creack/pty"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// outputWorld is a source repository team-a/app with tags t0…t2.
func outputWorld(t *testing.T) (*sandboxtest.World, []string) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/app")})
	var digests []string
	for i := range 3 {
		digests = append(digests, w.Source.Push(t, "team-a/app", fmt.Sprintf("t%d", i), fixedImage(t, fmt.Sprint("out-", i))).String())
	}
	return w, digests
}

// TestCLIOutputPipedAndRedirected: one line per result wherever the output goes — a pipe
// both streams share (`2>&1 | …`), or files — and no progress off a terminal.
func TestCLIOutputPipedAndRedirected(t *testing.T) {
	w, digests := outputWorld(t)
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	dst := dstECR + "/mirror/team-a/app"

	code, out := runCLICombined(t, w.Ctx, nil, append([]string{"copy", "--all-tags", srcECR + "/team-a/app", dst}, role...)...)
	var want []string
	for i, d := range digests {
		want = append(want, fmt.Sprintf("copied          %s:t%d@%s", dst, i, shortDigest(d)))
	}
	got := lines(out)
	if code != ExitOK || len(got) != 4 || !strings.HasPrefix(got[3], "3 tags: 3 copied; ") || !strings.HasSuffix(got[3], " copied") {
		t.Fatalf("copy, stdout and stderr on one pipe: exit %d\n%s", code, out)
	}
	results := sorted(got[:3])
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Errorf("copy results:\n got %q\nwant %q (each once, in any order)", results, want)
	}

	// sync, stdout and stderr redirected to files: every copy in the file, once.
	rules := rulesFile(t, destination(w, "backup/", w.ExternalID))
	stdout, stderr := filepath.Join(t.TempDir(), "out"), filepath.Join(t.TempDir(), "err")
	cmd := cliCommand(t, w.Ctx, nil, "sync", "--rules", rules)
	cmd.Stdout, cmd.Stderr = createFile(t, stdout), createFile(t, stderr)
	code = exitCode(t, cmd.Run())
	got = lines(readFile(t, stdout))
	want = nil
	for i, d := range digests {
		want = append(want, fmt.Sprintf("copied          222222222222/us-east-1/backup/team-a/app:t%d@%s", i, shortDigest(d)))
	}
	if code != ExitOK || len(got) != 4 || fmt.Sprint(sorted(got[:3])) != fmt.Sprint(want) ||
		!strings.HasPrefix(got[3], "1 repository, 3 images; 3 copies "+counted+": 0 already in sync, 3 copied, 0 failed; ") || readFile(t, stderr) != "" {
		t.Errorf("sync redirected: exit %d\n--- stdout file\n%s--- stderr file\n%s--- want the lines\n%s", code, readFile(t, stdout), readFile(t, stderr), strings.Join(want, "\n"))
	}
}

// TestCLIProgressOnlyOnATerminal: the progress bar is drawn on stderr when it is a
// terminal, and never with --no-progress, --quiet or TERM=dumb; result lines are coloured
// on a terminal unless NO_COLOR is set (https://no-color.org) or TERM=dumb; --quiet
// prints failures and the summary only.
func TestCLIProgressOnlyOnATerminal(t *testing.T) {
	w, _ := outputWorld(t)
	role := []string{"--dest-role-arn", w.DestinationRoleARN(), "--external-id", w.ExternalID}
	n := 0
	copyTo := func(flags ...string) []string {
		n++
		return append(append([]string{"copy", "--all-tags", srcECR + "/team-a/app", fmt.Sprintf("%s/m%d/app", dstECR, n)}, role...), flags...)
	}
	const bar, green = "\x1b[K", "\x1b[32m"
	for _, tc := range []struct {
		name        string
		env         []string
		args        []string
		stdoutIsTTY bool
		wantBar     bool
		wantColour  bool
		wantLines   int // stdout lines
	}{
		{"stderr a terminal", []string{"TERM=xterm"}, copyTo(), false, true, false, 4},
		{"--no-progress", []string{"TERM=xterm"}, copyTo("--no-progress"), false, false, false, 4},
		{"--quiet", []string{"TERM=xterm"}, copyTo("--quiet"), false, false, false, 1},
		{"TERM=dumb", []string{"TERM=dumb"}, copyTo(), false, false, false, 4},
		{"both terminals", []string{"TERM=xterm"}, copyTo(), true, true, true, 4},
		{"NO_COLOR", []string{"TERM=xterm", "NO_COLOR=1"}, copyTo(), true, true, false, 4},
		{"both terminals, TERM=dumb", []string{"TERM=dumb"}, copyTo(), true, false, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runOnTerminal(t, w, tc.stdoutIsTTY, tc.env, tc.args...)
			if code != ExitOK {
				t.Fatalf("exit %d\n--- stdout\n%q\n--- stderr\n%q", code, stdout, stderr)
			}
			progress := stderr
			if tc.stdoutIsTTY {
				progress = stdout // one terminal for both
			}
			if got := strings.Contains(progress, bar); got != tc.wantBar {
				t.Errorf("progress bar drawn: %v, want %v\n%q", got, tc.wantBar, progress)
			}
			if got := strings.Contains(stdout, green); got != tc.wantColour {
				t.Errorf("colour: %v, want %v\n%q", got, tc.wantColour, stdout)
			}
			results := len(resultLineRE.FindAllString(stdout, -1)) + strings.Count(stdout, "3 tags: 3 copied; ")
			if results != tc.wantLines {
				t.Errorf("%d result and summary lines on stdout, want %d\n%q", results, tc.wantLines, stdout)
			}
		})
	}
}

// resultLineRE is a result line, coloured or not.
var resultLineRE = regexp.MustCompile(`copied(\x1b\[0m)? +222222222222\.`)

// runOnTerminal runs the command with stderr (and, if stdoutIsTTY, stdout) on a
// pseudo-terminal, as in an interactive shell.
func runOnTerminal(t *testing.T, w *sandboxtest.World, stdoutIsTTY bool, env []string, args ...string) (int, string, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	cmd := cliCommand(t, w.Ctx, env, args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if stdoutIsTTY {
		cmd.Stdout = tty
	}
	var term bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&term, ptmx); close(done) }() // ends when the terminal is closed (EIO)
	err = cmd.Run()
	tty.Close()
	<-done
	if stdoutIsTTY {
		return exitCode(t, err), term.String(), ""
	}
	return exitCode(t, err), stdout.String(), term.String()
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func createFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
