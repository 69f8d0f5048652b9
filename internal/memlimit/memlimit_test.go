package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestFromCgroup(t *testing.T) {
	files := func(kv ...string) fstest.MapFS {
		m := fstest.MapFS{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
		}
		return m
	}
	tests := []struct {
		name string
		root fstest.MapFS
		self string
		want int64
		src  Source
	}{
		{"v2 own limit", files("app/memory.max", "536870912\n", "memory.max", "max\n"), "0::/app\n", 512 << 20, CgroupV2},
		{"v2 parent is tighter", files("a/b/memory.max", "max\n", "a/memory.max", "1048576\n"), "0::/a/b\n", 1 << 20, CgroupV2},
		{"v2 least of all levels", files("a/b/memory.max", "2097152", "a/memory.max", "4194304"), "0::/a/b\n", 2 << 20, CgroupV2},
		{"v2 no limit", files("app/memory.max", "max\n"), "0::/app\n", 0, None},
		{"v2 root cgroup", files("memory.max", "3145728"), "0::/\n", 3 << 20, CgroupV2},
		{"v1 namespaced", files("memory/memory.limit_in_bytes", "268435456\n"), "4:memory:/docker/abc\n", 256 << 20, CgroupV1},
		{"v1 full path", files("memory/docker/abc/memory.limit_in_bytes", "268435456\n"), "5:cpu,memory:/docker/abc\n", 256 << 20, CgroupV1},
		{"v1 unlimited", files("memory/memory.limit_in_bytes", "9223372036854771712\n"), "4:memory:/\n", 0, None},
		{"hybrid: v1 memory wins over an empty v2", files("memory/memory.limit_in_bytes", "1048576"), "0::/\n4:memory:/\n", 1 << 20, CgroupV1},
		{"garbage", files("memory.max", "lots"), "0::/\nnonsense\n", 0, None},
		{"nothing", files(), "", 0, None},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, src := FromCgroup(tt.root, tt.self)
			if n != tt.want || src != tt.src {
				t.Fatalf("FromCgroup = %d, %v; want %d, %v", n, src, tt.want, tt.src)
			}
		})
	}
}

func TestLimitPrefersGoLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	debug.SetMemoryLimit(3 << 30)
	if n, src := Limit(); n != 3<<30 || src != GoLimit {
		t.Fatalf("Limit = %d, %v; want %d, GOMEMLIMIT", n, src, int64(3<<30))
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if _, src := Limit(); src == GoLimit {
		t.Fatal("no Go limit set, yet Limit reports one")
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{None: "none", GoLimit: "GOMEMLIMIT", CgroupV2: "cgroup v2 memory.max", CgroupV1: "cgroup v1 memory.limit_in_bytes"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}
