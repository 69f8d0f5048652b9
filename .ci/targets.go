// targets checks the size and complexity targets of the repository and prints each figure with
// PASS or FAIL. .ci/targets runs it; see there for usage.
//
// What it counts, in the non-test .go files of every module (files named *_test.go, folders
// named testdata or vendor, and folders starting with "." are left out):
//   - the lines of peer/ and its subfolders, as wc -l counts them;
//   - function declarations longer than 60 lines, from "func" to the closing brace;
//   - functions of cyclomatic complexity over 15, as gocyclo reports them;
//   - the exported identifiers of the root package: top-level funcs, exported methods of
//     exported types, types, consts and vars;
//   - the exported vars named Err* in every package but main.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// The targets.
const (
	maxPeerLines     = 3000
	maxFuncLines     = 60
	maxCyclo         = 15
	maxRootExported  = 75
	maxSentinels     = 15
	peerDir          = "peer"
	rootPackageDir   = "."
	listedItemsLimit = 40 // items listed under one figure
)

// figures are what the walk of the repository finds.
type figures struct {
	peerLines    int
	longFuncs    []string // "lines file:line name"
	rootExported int
	sentinels    []string // "dir: name"
}

func main() {
	report := flag.Bool("report", false, "print the figures and exit 0 even if a target is missed")
	gocyclo := flag.String("gocyclo", "gocyclo", "path of the gocyclo command")
	flag.Parse()
	root := "."
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	f, err := walk(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "targets:", err)
		os.Exit(2)
	}
	complex, err := overCyclo(*gocyclo, root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "targets:", err)
		os.Exit(2)
	}
	ok := check(fmt.Sprintf("peer/ non-test lines: %d (target: at most %d)", f.peerLines, maxPeerLines), f.peerLines <= maxPeerLines, nil)
	ok = check(fmt.Sprintf("non-test functions over %d lines: %d (target: none)", maxFuncLines, len(f.longFuncs)), len(f.longFuncs) == 0, f.longFuncs) && ok
	ok = check(fmt.Sprintf("non-test functions of cyclomatic complexity over %d: %d (target: none)", maxCyclo, len(complex)), len(complex) == 0, complex) && ok
	ok = check(fmt.Sprintf("exported identifiers of the root package: %d (target: at most %d)", f.rootExported, maxRootExported), f.rootExported <= maxRootExported, nil) && ok
	ok = check(fmt.Sprintf("exported Err* vars in the repository: %d (target: at most %d)", len(f.sentinels), maxSentinels), len(f.sentinels) <= maxSentinels, f.sentinels) && ok
	if !ok && !*report {
		os.Exit(1)
	}
}

// check prints one figure, with the items behind it, and returns pass.
func check(figure string, pass bool, items []string) bool {
	verdict := "PASS"
	if !pass {
		verdict = "FAIL"
	}
	fmt.Printf("%s  %s\n", verdict, figure)
	for i, it := range items {
		if i == listedItemsLimit {
			fmt.Printf("        ... and %d more\n", len(items)-i)
			break
		}
		fmt.Printf("        %s\n", it)
	}
	return pass
}

// walk counts the figures of every non-test .go file under root.
func walk(root string) (*figures, error) {
	f := &figures{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		return f.file(p, filepath.ToSlash(rel))
	})
	sort.Slice(f.longFuncs, func(i, j int) bool { return f.longFuncs[i] > f.longFuncs[j] })
	sort.Strings(f.sentinels)
	return f, err
}

func skipDir(name string) bool {
	return name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// file adds the figures of one file; rel is its path from the root, with slashes.
func (f *figures) file(path, rel string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dir := filepath.ToSlash(filepath.Dir(rel))
	if dir == peerDir || strings.HasPrefix(dir, peerDir+"/") {
		f.peerLines += bytes.Count(src, []byte("\n"))
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, src, 0)
	if err != nil {
		return err
	}
	isMain := file.Name.Name == "main"
	for _, decl := range file.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			f.funcDecl(fset, rel, dir, isMain, d)
		case *ast.GenDecl:
			if !isMain {
				f.genDecl(dir, d)
			}
		}
	}
	return nil
}

func (f *figures) funcDecl(fset *token.FileSet, rel, dir string, isMain bool, d *ast.FuncDecl) {
	if d.Body != nil {
		start := fset.Position(d.Pos()).Line
		n := fset.Position(d.Body.Rbrace).Line - start + 1
		if n > maxFuncLines {
			f.longFuncs = append(f.longFuncs, fmt.Sprintf("%4d %s:%d %s", n, rel, start, funcName(d)))
		}
	}
	if dir == rootPackageDir && !isMain && d.Name.IsExported() && (d.Recv == nil || exportedType(d.Recv.List[0].Type)) {
		f.rootExported++
	}
}

func (f *figures) genDecl(dir string, d *ast.GenDecl) {
	for _, spec := range d.Specs {
		switch s := spec.(type) {
		case *ast.TypeSpec:
			if dir == rootPackageDir && s.Name.IsExported() {
				f.rootExported++
			}
		case *ast.ValueSpec:
			for _, id := range s.Names {
				if !id.IsExported() {
					continue
				}
				if dir == rootPackageDir {
					f.rootExported++
				}
				if d.Tok == token.VAR && strings.HasPrefix(id.Name, "Err") {
					f.sentinels = append(f.sentinels, dir+": "+id.Name)
				}
			}
		}
	}
}

// funcName is d's name as gocyclo prints it: "F", "T.M" or "(*T).M".
func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	t := d.Recv.List[0].Type
	star := ""
	if s, ok := t.(*ast.StarExpr); ok {
		t, star = s.X, "*"
	}
	name := typeName(t)
	if star != "" {
		return "(*" + name + ")." + d.Name.Name
	}
	return name + "." + d.Name.Name
}

// typeName is the name of a receiver's base type, without type parameters.
func typeName(t ast.Expr) string {
	switch x := t.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.IndexExpr:
		return typeName(x.X)
	case *ast.IndexListExpr:
		return typeName(x.X)
	case *ast.ParenExpr:
		return typeName(x.X)
	}
	return "?"
}

// exportedType reports whether a receiver's base type is exported.
func exportedType(t ast.Expr) bool {
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	return ast.IsExported(typeName(t))
}

// overCyclo runs gocyclo on root and returns its lines for the non-test functions of cyclomatic
// complexity over maxCyclo ("complexity package function file:line:column"). gocyclo leaves out
// testdata, vendor and folders starting with "." or "_" as the walk does.
func overCyclo(gocyclo, root string) ([]string, error) {
	cmd := exec.Command(gocyclo, "-over", fmt.Sprint(maxCyclo), "-ignore", `_test\.go$`, ".")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// gocyclo exits 1 when it found functions over the limit; its output says which.
	if ee, isExit := err.(*exec.ExitError); isExit && ee.ExitCode() == 1 && stderr.Len() == 0 {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", gocyclo, err, stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}
