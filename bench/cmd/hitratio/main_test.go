package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/typedcache/groupcache/bench/workload"
)

func writeFile(t *testing.T, name, content string, gz bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	data := []byte(content)
	if gz {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
		data = b.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadTrace(t *testing.T) {
	tests := []struct {
		name, file, format, column, content string
		gz                                  bool
		want                                []uint64
	}{
		{"lines", "t.txt", "auto", "", "a\nb\n\na\n c \n", false, []uint64{0, 1, 0, 2}},
		{"lines gzip", "t.log", "auto", "", "x\ny\nx\n", true, []uint64{0, 1, 0}},
		{"arc", "t.arc", "auto", "", "10 3 0 1\n11 1 0 2\n", false, []uint64{0, 1, 2, 1}},
		{"arc gzip, named .gz", "t.arc.gz", "auto", "", "5 2 0 0\n", true, []uint64{0, 1}},
		{"lirs", "t.lirs", "auto", "", "7\n8\n*\n7\n", false, []uint64{0, 1, 0}},
		{"csv", "t.csv", "auto", "url", "ts,url,size\n1,/a,3\n2,/b,4\n3,/a,3\n", false, []uint64{0, 1, 0}},
		{"format flag wins", "t.txt", "arc", "", "1 2 x y\n", false, []uint64{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file, tt.content, tt.gz)
			got, err := readTrace(path, formatOf(tt.format, path), tt.column)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("keys %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadTraceErrors(t *testing.T) {
	for name, c := range map[string]struct{ file, format, column, content string }{
		"csv without the column": {"t.csv", "csv", "key", "a,b\n1,2\n"},
		"arc with a bad line":    {"t.arc", "arc", "", "1 x 0 0\n"},
		"unknown format":         {"t", "bogus", "", "a\n"},
	} {
		path := writeFile(t, c.file, c.content, false)
		if _, err := readTrace(path, c.format, c.column); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseSizes(t *testing.T) {
	s, err := parseSizes("1%,5%, 1000")
	if err != nil {
		t.Fatal(err)
	}
	if got := []int{s[0].of(20_000), s[1].of(20_000), s[2].of(20_000)}; !slices.Equal(got, []int{200, 1000, 1000}) {
		t.Fatalf("sizes of 20000 distinct keys: %v", got)
	}
	for _, bad := range []string{"", "0", "-5", "x%", "150%"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q): no error", bad)
		}
	}
}

// TestReplay runs the whole command on a small trace file: a table with every cache and the
// optimum, and an SVG chart with a line per series.
func TestReplay(t *testing.T) {
	var b strings.Builder
	for i := range 20_000 {
		b.WriteString(string(rune('a' + i%7*i%13)))
		b.WriteString("\n")
	}
	path := writeFile(t, "small.txt", b.String(), true)
	svg := filepath.Join(t.TempDir(), "out.svg")
	cfg, err := parseFlags([]string{"-trace", path, "-sizes", "2,4", "-svg", svg})
	if err != nil {
		t.Fatal(err)
	}
	res := measure(mustLoad(t, cfg), cfg.sizes, cfg.impls)
	var out strings.Builder
	printTable(&out, cfg, res)
	if err := writeCharts(cfg, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| otter |", "| store |", "| optimum |", "| small.txt | 2 | 2 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	for _, r := range res {
		opt := r.ratios[len(r.ratios)-1]
		if opt <= 0 {
			t.Errorf("size %d: optimum %v", r.entries, opt)
		}
		for j, i := range cfg.impls {
			// Caches that hold exactly the size asked cannot beat the optimum.
			if (i.Name == "store" || i.Name == "golang-lru") && r.ratios[j] > opt {
				t.Errorf("size %d: %s's %v beats the optimum's %v", r.entries, i.Name, r.ratios[j], opt)
			}
		}
	}
	data, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "<polyline"); n != len(cfg.impls)+1 {
		t.Errorf("chart has %d lines, want %d", n, len(cfg.impls)+1)
	}
}

func mustLoad(t *testing.T, cfg config) []workload.Trace {
	t.Helper()
	tr, err := loadTraces(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
