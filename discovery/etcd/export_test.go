package etcd

// SetWatchRevHook makes the watches of s start from f(rev) instead of rev, the revision after the
// one the prefix was read at. Tests use it to make a watch start at a compacted revision.
func SetWatchRevHook(s *Source, f func(rev int64) int64) { s.watchRev = f }
