// Package memlimit reads the memory limit of the process: the Go runtime's soft limit
// (GOMEMLIMIT or debug.SetMemoryLimit) when one is set, else the memory limit of the cgroup the
// process runs in (a container's limit), cgroup v2 or v1.
package memlimit

import (
	"bufio"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Source names where a limit came from.
type Source int

// Sources of a limit.
const (
	None     Source = iota // no limit found
	GoLimit                // the Go runtime's soft limit: GOMEMLIMIT or debug.SetMemoryLimit
	CgroupV2               // memory.max of the process's cgroup (v2)
	CgroupV1               // memory.limit_in_bytes of the process's memory cgroup (v1)
)

func (s Source) String() string {
	switch s {
	case GoLimit:
		return "GOMEMLIMIT"
	case CgroupV2:
		return "cgroup v2 memory.max"
	case CgroupV1:
		return "cgroup v1 memory.limit_in_bytes"
	}
	return "none"
}

// Limit returns the process's memory limit in bytes and where it came from, or (0, None) if the
// process has none.
func Limit() (int64, Source) {
	if n := debug.SetMemoryLimit(-1); n > 0 && n < math.MaxInt64 {
		return n, GoLimit
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, None
	}
	return FromCgroup(os.DirFS("/sys/fs/cgroup"), string(self))
}

// FromCgroup returns the memory limit of the cgroup described by self (the content of
// /proc/self/cgroup), reading the cgroup file system from root (a view of /sys/fs/cgroup). A
// limit of "max", or one so large it stands for none (v1 writes a page-rounded 2^63-1), counts as
// no limit. A v2 limit is the least memory.max from the process's cgroup up to the root, since
// every ancestor's limit applies too.
func FromCgroup(root fs.FS, self string) (int64, Source) {
	sc := bufio.NewScanner(strings.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		path := strings.Trim(f[2], "/")
		switch {
		case f[0] == "0" && f[1] == "":
			if n, ok := v2Limit(root, path); ok {
				return n, CgroupV2
			}
		case hasController(f[1], "memory"):
			if n, ok := v1Limit(root, path); ok {
				return n, CgroupV1
			}
		}
	}
	return 0, None
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// v2Limit returns the least memory.max on the way from path up to the root of the hierarchy.
func v2Limit(root fs.FS, path string) (int64, bool) {
	best, found := int64(math.MaxInt64), false
	for {
		if n, ok := readLimit(root, join(path, "memory.max")); ok && n < best {
			best, found = n, true
		}
		if path == "" {
			return best, found
		}
		i := strings.LastIndexByte(path, '/')
		path = path[:max(i, 0)]
	}
}

// v1Limit reads memory.limit_in_bytes of path in the memory hierarchy, trying where container
// runtimes mount it: the hierarchy's root as the process's own cgroup, or the full path.
func v1Limit(root fs.FS, path string) (int64, bool) {
	for _, p := range []string{"memory/memory.limit_in_bytes", join("memory/"+path, "memory.limit_in_bytes")} {
		if n, ok := readLimit(root, p); ok {
			return n, true
		}
	}
	return 0, false
}

func join(dir, file string) string {
	if dir == "" {
		return file
	}
	return dir + "/" + file
}

// noLimit is the smallest value taken to mean "no limit": cgroup v1 reports 2^63-1 rounded down
// to a page; no machine has 2^62 bytes.
const noLimit = 1 << 62

// readLimit reads a limit file: a number of bytes, or "max".
func readLimit(root fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= noLimit {
		return 0, false
	}
	return n, true
}
