package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxFunctionLines bounds a product function: one screen, one job. maxFileLines bounds
// a product file: one job per file, as go-containerregistry's remote has one per verb.
const (
	maxFunctionLines = 60
	maxFileLines     = 400
)

// tooling are the directories under the module root that do not ship in a function:
// everything under internal/tooling (the sandbox ships in the CLI as a feature, but is
// tooling) and the benchmarks' module.
var tooling = map[string]bool{"bench": true, "internal/tooling": true}

// TestProductFunctionsAreShort: no product function is longer than maxFunctionLines, no
// product file longer than maxFileLines.
func TestProductFunctionsAreShort(t *testing.T) {
	root := filepath.Join("..", "..", "..", "..")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if tooling[rel] || (rel != "." && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		if n := fset.Position(f.FileEnd).Line; n > maxFileLines {
			t.Errorf("%s is %d lines (at most %d)", rel, n, maxFileLines)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			// A function literal at package level (var h = func…) is a function too.
			if lit, ok := n.(*ast.FuncLit); ok {
				if n := fset.Position(lit.End()).Line - fset.Position(lit.Pos()).Line + 1; n > maxFunctionLines {
					t.Errorf("%s:%d: a function literal is %d lines (at most %d)", rel, fset.Position(lit.Pos()).Line, n, maxFunctionLines)
				}
			}
			return true
		})
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > maxFunctionLines {
				t.Errorf("%s: %s is %d lines (at most %d)", rel, fn.Name.Name, n, maxFunctionLines)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
