//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// db is the "database" behind every cache: one version per (cache, key), in a file that the
// parent and every node map into memory. The parent bumps a key's version before it writes the
// key through a cache; a node's loader reads the version and returns the value derived from it.
type db struct {
	mem  []byte
	vers []uint64 // mem as versions, read and written atomically
	keys int
}

// openDB maps the file at path, creating it with room for caches*keys versions when create is set.
func openDB(path string, caches, keys int, create bool) (*db, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := caches * keys * 8
	if create {
		if err := f.Truncate(int64(size)); err != nil {
			return nil, err
		}
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	vers := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), caches*keys)
	return &db{mem: mem, vers: vers, keys: keys}, nil
}

func (d *db) slot(cache, key int) *uint64 { return &d.vers[cache*d.keys+key] }

// version returns the current version of a key.
func (d *db) version(cache, key int) uint64 { return atomic.LoadUint64(d.slot(cache, key)) }

// bump makes a key's version one higher and returns it. Only the parent writes, one writer per key
// at a time.
func (d *db) bump(cache, key int) uint64 { return atomic.AddUint64(d.slot(cache, key), 1) }

// snapshot returns the versions of every key of a cache.
func (d *db) snapshot(cache int) []uint64 {
	out := make([]uint64, d.keys)
	for k := range out {
		out[k] = d.version(cache, k)
	}
	return out
}

func (d *db) close() { _ = syscall.Munmap(d.mem) }

// Names of caches and keys, and the values derived from versions.

var cacheNames = []string{"hot", "nohot", "small"}

func keyName(k int) string { return "k" + strconv.Itoa(k) }

func keyIndex(name string) (int, bool) {
	k, err := strconv.Atoi(strings.TrimPrefix(name, "k"))
	return k, err == nil && strings.HasPrefix(name, "k")
}

// value is what the loader returns, and what the parent Sets, for version v of a key: it names
// the cache and the key, so a value served under another key or cache is caught too, and carries
// some padding, so values are not all tiny.
func value(cache, key string, v uint64) string {
	return fmt.Sprintf("%s/%s@%d/%s", cache, key, v, strings.Repeat("x", 64+len(key)*8))
}

// parseValue returns the version of a value for cache and key, and false if the value is not one
// of that key's.
func parseValue(cache, key, val string) (uint64, bool) {
	prefix := cache + "/" + key + "@"
	rest, ok := strings.CutPrefix(val, prefix)
	if !ok {
		return 0, false
	}
	num, pad, ok := strings.Cut(rest, "/")
	if !ok || pad != strings.Repeat("x", 64+len(key)*8) {
		return 0, false
	}
	v, err := strconv.ParseUint(num, 10, 64)
	return v, err == nil
}
