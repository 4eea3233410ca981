// overhead is the workload for scripts/bench-overhead: it measures how long a fixed
// amount of allocation- and preemption-heavy work takes, so the same work can be timed
// plain, under `oomprof run`, and while `oomprof watch` runs.
//
//	overhead work   runs the work once and prints one JSON line on stdout:
//	                {"mode":"work","elapsed_ns":...,"goroutines":...,"iters":...,...}
//	overhead sleep  does nothing until it is killed (an idle Go process for watch to find)
//
// Environment (work): GOROUTINES (default 64), ITERS per goroutine (default 10000),
// SPIN iterations of a call-free loop every 64 iterations (default 200000; such loops
// can only be stopped by asynchronous preemption, i.e. a SIGURG from sysmon or the GC).
//
// Memory profiling must be linked in: a blank `import _ "runtime/pprof"` is not enough
// (the linker drops runtime.MemProfile, and the runtime then sets MemProfileRate to 0),
// so the program calls pprof.Lookup("heap") and reports "memprof_rate" to prove it.
//
// The heap stays bounded (about 40 MiB): short-lived garbage, plus a fixed-size ring of
// long-lived objects per goroutine that is overwritten as the work goes on. It never
// grows towards an OOM kill.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

type node struct {
	key   int
	vals  []int
	next  *node
	label string
}

// Long-lived objects: each goroutine owns a ring, overwritten slot by slot.
const ringSize = 512

var rings [][]any

var sinkMu sync.Mutex
var sink uint64

//go:noinline
func shortBytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < len(b); i += 64 {
		b[i] = byte(i)
	}
	return b
}

//go:noinline
func shortMap(seed int) map[int]string {
	m := make(map[int]string, 8)
	for i := 0; i < 16; i++ {
		m[seed+i] = strconv.Itoa(seed + i)
	}
	return m
}

//go:noinline
func longNode(seed int) *node {
	n := &node{key: seed, vals: make([]int, 16+seed%48), label: fmt.Sprintf("node-%d", seed)}
	n.next = &node{key: seed + 1, vals: make([]int, 8)}
	return n
}

//go:noinline
func longSlice(seed int) []uint64 {
	s := make([]uint64, 0, 4)
	for i := 0; i < 64+seed%64; i++ {
		s = append(s, uint64(i*seed))
	}
	return s
}

// spin is a loop without calls: the scheduler can stop it only by sending SIGURG.
//
//go:noinline
func spin(n int, x uint64) uint64 {
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

func worker(id, iters, spinN int, wg *sync.WaitGroup) {
	defer wg.Done()
	ring := rings[id]
	var acc uint64 = uint64(id) + 1
	for i := 0; i < iters; i++ {
		seed := id*iters + i
		b := shortBytes(64 + (seed*37)%8192)
		acc += uint64(b[0]) + uint64(len(b))
		m := shortMap(seed)
		acc += uint64(len(m[seed]))
		if i%8 == 0 {
			ring[(i/8)%ringSize] = longNode(seed)
		}
		if i%16 == 4 {
			ring[(i/16+ringSize/2)%ringSize] = longSlice(seed)
		}
		if i%64 == 0 {
			acc = spin(spinN, acc|1)
		}
	}
	sinkMu.Lock()
	sink += acc
	sinkMu.Unlock()
}

func work() {
	g := envInt("GOROUTINES", 64)
	iters := envInt("ITERS", 10000)
	spinN := envInt("SPIN", 200000)
	rings = make([][]any, g)
	for i := range rings {
		rings[i] = make([]any, ringSize)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < g; i++ {
		wg.Add(1)
		go worker(i, iters, spinN, &wg)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	runtime.ReadMemStats(&after)
	out, _ := json.Marshal(map[string]any{
		"mode":         "work",
		"elapsed_ns":   elapsed.Nanoseconds(),
		"goroutines":   g,
		"iters":        iters,
		"spin":         spinN,
		"gomaxprocs":   runtime.GOMAXPROCS(0),
		"num_gc":       after.NumGC - before.NumGC,
		"alloc_bytes":  after.TotalAlloc - before.TotalAlloc,
		"heap_inuse":   after.HeapInuse,
		"memprof_rate": runtime.MemProfileRate,
		"heap_buckets": pprof.Lookup("heap").Count(),
		"checksum":     sink,
	})
	fmt.Println(string(out))
}

func main() {
	mode := "work"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "work":
		work()
	case "sleep":
		// Idle until killed; a little heap so the profile has buckets to mirror.
		rings = [][]any{{longNode(1), longSlice(2), shortMap(3)}}
		_ = pprof.Lookup("heap")
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		select {
		case <-c:
		case <-time.After(24 * time.Hour):
		}
	default:
		fmt.Fprintf(os.Stderr, "overhead: unknown mode %q (work or sleep)\n", mode)
		os.Exit(2)
	}
}
