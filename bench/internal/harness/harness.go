// Package harness is what the benchmark commands (bench/latency, bench/memory) share:
// building the product's functions as they are deployed, byte-size flags, and appending
// a section to bench/RESULTS.md.
package harness

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// Binaries are the Runtime Interface Emulator and the replicate function's bootstrap.
type Binaries struct{ RIE, Bootstrap string }

// BuildReplicate compiles the emulator and the replicate function's bootstrap (as sam.mk
// builds it, for this machine) into dir/bin. root is the product's module root; empty:
// found from the working directory (from bench/, the module above).
func BuildReplicate(ctx context.Context, root, dir string) (Binaries, error) {
	if root == "" {
		r, err := lambdarun.ModuleRoot()
		if err != nil {
			return Binaries{}, err
		}
		for _, c := range []string{r, filepath.Dir(r)} {
			if _, err := os.Stat(filepath.Join(c, "functions", "replicate")); err == nil {
				root = c
				break
			}
		}
		if root == "" {
			return Binaries{}, fmt.Errorf("no functions/replicate in or above %s: pass -root", r)
		}
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return Binaries{}, err
	}
	b := Binaries{RIE: filepath.Join(bin, "aws-lambda-rie"), Bootstrap: filepath.Join(bin, "bootstrap")}
	if err := lambdarun.Build(ctx, root, lambdarun.RIEPackage, b.RIE, false); err != nil {
		return Binaries{}, err
	}
	return b, lambdarun.Build(ctx, root, "./functions/replicate", b.Bootstrap, true)
}

// Workspace makes a run's directory under data (named after prefix; cleanup removes
// it) and builds the replicate function into it (BuildReplicate).
func Workspace(ctx context.Context, root, data, prefix string) (dir string, b Binaries, cleanup func(), err error) {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", Binaries{}, nil, err
	}
	if dir, err = os.MkdirTemp(data, prefix+"-"); err != nil {
		return "", Binaries{}, nil, err
	}
	cleanup = func() {
		if err := os.RemoveAll(dir); err != nil {
			log.Printf("remove %s: %v", dir, err)
		}
	}
	log.Printf("data in %s", dir)
	if b, err = BuildReplicate(ctx, root, dir); err != nil {
		cleanup()
		return "", Binaries{}, nil, err
	}
	return dir, b, cleanup, nil
}

// Size is a byte-count flag: 4GiB, 100MiB, 256KiB or bytes.
type Size int64

func (s *Size) String() string { return Human(int64(*s)) }

func (s *Size) Set(v string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q: want a positive size such as 4GiB, 100MiB, 256KiB or bytes", v)
	}
	*s = Size(n * mult)
	return nil
}

// Human writes n bytes as people read sizes: whole units when exact.
func Human(n int64) string {
	switch {
	case n >= GiB && n%GiB == 0:
		return fmt.Sprintf("%d GiB", n/GiB)
	case n >= GiB:
		return fmt.Sprintf("%.1f GiB", float64(n)/GiB)
	case n >= MiB && n%MiB == 0:
		return fmt.Sprintf("%d MiB", n/MiB)
	case n >= MiB:
		return fmt.Sprintf("%.1f MiB", float64(n)/MiB)
	case n >= KiB && n%KiB == 0:
		return fmt.Sprintf("%d KiB", n/KiB)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Machine says where figures come from.
func Machine() string {
	return fmt.Sprintf("%d cores (%s), %s", runtime.NumCPU(), runtime.GOARCH, runtime.Version())
}

// OneLine folds s (a process's output) into one line of at most n bytes.
func OneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// Report prints text and appends it to the file out, if set.
func Report(out, text string) error {
	fmt.Print(text)
	if out == "" {
		return nil
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
