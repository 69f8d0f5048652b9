package groupcache

// MustNew is New for tests (of this package and of groupcache_test): it panics on error. It is
// not part of the API; programs call New and check its error.
func MustNew[K comparable, V any](name string, loader Loader[K, V], opts ...Option) *Cache[K, V] {
	c, err := New(name, loader, opts...)
	if err != nil {
		panic(err)
	}
	return c
}
