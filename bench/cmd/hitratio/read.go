package main

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// keyer turns the keys read from a trace into dense uint64 ids, so that every cache under
// comparison gets the same key type whatever the trace's keys look like.
type keyer struct {
	ids  map[string]uint64
	keys []uint64
}

func (k *keyer) add(s string) {
	id, ok := k.ids[s]
	if !ok {
		id = uint64(len(k.ids))
		k.ids[s] = id
	}
	k.keys = append(k.keys, id)
}

// formatOf returns the format named by flag, or guessed from the file's name for "auto".
func formatOf(flag, path string) string {
	if flag != "auto" {
		return flag
	}
	name := strings.TrimSuffix(strings.ToLower(filepath.Base(path)), ".gz")
	switch filepath.Ext(name) {
	case ".arc":
		return "arc"
	case ".lirs", ".trc":
		return "lirs"
	case ".csv":
		return "csv"
	}
	return "lines"
}

// readTrace reads a trace file in format (lines, arc, lirs or csv; see the command's doc),
// decompressing it first if it is gzip, and returns its keys as dense ids.
func readTrace(path, format, column string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := maybeGunzip(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k := &keyer{ids: make(map[string]uint64)}
	switch format {
	case "lines", "lirs":
		err = readLines(r, k, format == "lirs")
	case "arc":
		err = readARC(r, k)
	case "csv":
		err = readCSV(r, k, column)
	default:
		err = fmt.Errorf("unknown format %q (want auto, lines, arc, lirs or csv)", format)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k.keys, nil
}

// maybeGunzip returns a reader of r's content, gunzipped if it starts with gzip's magic bytes.
func maybeGunzip(r *bufio.Reader) (io.Reader, error) {
	magic, err := r.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return gzip.NewReader(r)
	}
	return r, nil
}

// readLines reads one key per line; blank lines are skipped. With numeric (LIRS traces), each
// line must be a block number, and lines that are not (LIRS files end with a "*" marker in some
// collections) are skipped.
func readLines(r io.Reader, k *keyer, numeric bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if numeric {
			if _, err := strconv.ParseInt(line, 10, 64); err != nil {
				continue
			}
		}
		k.add(line)
	}
	return sc.Err()
}

// readARC reads ARC traces (Megiddo and Modha): lines of "start count ignored id", each the
// requests of blocks start, start+1, ..., start+count-1.
func readARC(r io.Reader, k *keyer) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return fmt.Errorf("line %d: want \"start count ignored id\", got %q", n, sc.Text())
		}
		start, err1 := strconv.ParseUint(f[0], 10, 64)
		count, err2 := strconv.ParseUint(f[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		for b := start; b < start+count; b++ {
			k.add(strconv.FormatUint(b, 10))
		}
	}
	return sc.Err()
}

// readCSV reads a CSV file with a header line and takes the keys from the column named column.
func readCSV(r io.Reader, k *keyer, column string) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	col := -1
	for i, name := range header {
		if strings.TrimSpace(name) == column {
			col = i
		}
	}
	if col < 0 {
		return fmt.Errorf("no column %q in the header %q (set -column)", column, header)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if col < len(rec) {
			k.add(rec[col])
		}
	}
}
