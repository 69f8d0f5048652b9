//go:build race

package groupcache

const raceEnabled = true
