// Package engine has the long import path real services have, for the HTML report's
// frame labels: its leak's frame is named
// github.com/example-organization/a-rather-long-repository-name/internal/storage/engine.(*Store).Append.
package engine

// Store keeps every block it is given.
type Store struct {
	blocks [][]byte
}

// Append keeps n fresh bytes.
//
//go:noinline
func (s *Store) Append(n int) {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	s.blocks = append(s.blocks, b)
}
