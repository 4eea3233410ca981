// manystacks fills the Go memory profile with STACKS buckets, each with its own
// call stack, then leaks until it is OOM-killed. It exists to measure how many
// buckets oomprof's walk can read at the moment of death.
//
// Bucket i is allocated at the bottom of a chain of `depth` calls whose path is
// spelled by the bits of i: at each level, bit 0 picks one of two call sites, so
// every i below 2^depth has a stack of its own. Every allocation is sampled
// (MemProfileRate = 1) and kept alive.
//
// Before leaking it prints, on stderr, the buckets runtime.MemProfile reports:
//
//	manystacks: stacks=N buckets=B (runtime.MemProfile after two GCs)
//
// Environment: STACKS (default 1000), LEAK_KIB per leak step (default 1024).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

const depth = 18 // 2^18 = 262,144 distinct stacks

var kept [][]byte

//go:noinline
func alloc() {
	kept = append(kept, make([]byte, 48))
}

//go:noinline
func left(i, d int) {
	if d == 0 {
		alloc()
		return
	}
	if i&1 == 0 {
		left(i>>1, d-1)
	} else {
		right(i>>1, d-1)
	}
}

//go:noinline
func right(i, d int) {
	if d == 0 {
		alloc()
		return
	}
	if i&1 == 0 {
		left(i>>1, d-1)
	} else {
		right(i>>1, d-1)
	}
}

//go:noinline
func leak(n int, into *[][]byte) {
	b := make([]byte, n)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	*into = append(*into, b)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	runtime.MemProfileRate = 1
	stacks := envInt("STACKS", 1000)
	leakKiB := envInt("LEAK_KIB", 1024)
	if stacks > 1<<depth {
		fmt.Fprintf(os.Stderr, "manystacks: STACKS=%d is more than %d\n", stacks, 1<<depth)
		os.Exit(2)
	}
	kept = make([][]byte, 0, stacks)
	for i := 0; i < stacks; i++ {
		left(i, depth)
	}
	// MemProfile reports a bucket only once a GC cycle has published it.
	runtime.GC()
	runtime.GC()
	n, _ := runtime.MemProfile(nil, true)
	fmt.Fprintf(os.Stderr, "manystacks: stacks=%d buckets=%d (runtime.MemProfile after two GCs)\n", stacks, n)

	// A service accumulates its stacks over hours; LIVE_MS lets oomprof see them for a
	// while, as it would there, before the leak kills the process.
	time.Sleep(time.Duration(envInt("LIVE_MS", 0)) * time.Millisecond)
	var leaked [][]byte
	for {
		leak(leakKiB<<10, &leaked)
		time.Sleep(time.Millisecond)
	}
}
