//go:build !race

package localcache

const raceEnabled = false
