// selfprofile allocates at several sites, runs a GC, writes its own runtime/pprof heap
// profile to HEAPPROF_OUT, prints "ready" and sleeps without allocating, so that oomprof
// snapshot's live-at-last-GC view can be compared with the program's own profile, row
// for row (test/e2e/snapshot-identical.test.ts). The sites: two in one function (told
// apart by line), an inlined one, a map that grows, a goroutine-held buffer, and
// objects small and large enough to be sampled differently, and one generic function
// instantiated with two shapes (runtime/pprof names them apart since Go 1.21).
//
// With LEAK=1 it does not sleep: it turns the GC off and leaks until it is OOM-killed, so
// its kill's live-at-last-GC view must still equal the profile it wrote (no GC ran since).
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"
)

var (
	boxes []any
	small [][]byte
	large [][]byte
	table = map[int][]byte{}
	nodes []*node
)

type node struct {
	next  *node
	value [40]byte
}

//go:noinline
func twoSites(n int) {
	for i := 0; i < n; i++ {
		small = append(small, make([]byte, 96))
	}
	for i := 0; i < n/8; i++ {
		large = append(large, make([]byte, 64<<10))
	}
}

// inlinedSite is small enough to be inlined into its caller.
func inlinedSite() *node { return &node{} }

//go:noinline
func linked(n int) {
	for i := 0; i < n; i++ {
		nodes = append(nodes, inlinedSite())
	}
}

//go:noinline
func growMap(n int) {
	for i := 0; i < n; i++ {
		table[i] = make([]byte, 24)
	}
}

type box[T any] struct {
	value T
	pad   [200]byte
}

//go:noinline
func genericSite[T any](n int, v T) {
	for i := 0; i < n; i++ {
		boxes = append(boxes, &box[T]{value: v})
	}
}

func main() {
	out := os.Getenv("HEAPPROF_OUT")
	twoSites(20000)
	linked(30000)
	growMap(50000)
	genericSite(20000, 1)
	genericSite(20000, "s")
	held := make(chan []byte, 1)
	go func() { held <- make([]byte, 3<<20); select {} }()
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	f, err := os.Create(out + ".tmp")
	if err != nil {
		panic(err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		panic(err)
	}
	f.Close()
	if err := os.Rename(out+".tmp", out); err != nil {
		panic(err)
	}
	fmt.Println("ready")
	if os.Getenv("LEAK") == "1" {
		debug.SetGCPercent(-1)
		var leak [][]byte
		for {
			leak = append(leak, make([]byte, 1<<20))
		}
	}
	time.Sleep(time.Hour)
}
