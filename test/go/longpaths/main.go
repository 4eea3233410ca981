// longpaths leaks through a method of a package with a long import path until it is
// OOM-killed (test/e2e/report-chromium.test.ts).
package main

import (
	"runtime/pprof"
	"time"

	"github.com/example-organization/a-rather-long-repository-name/internal/storage/engine"
)

func main() {
	// Linked so the runtime keeps memory profiling on.
	_ = pprof.Lookup("heap")
	s := &engine.Store{}
	for {
		s.Append(1 << 20)
		time.Sleep(time.Millisecond)
	}
}
