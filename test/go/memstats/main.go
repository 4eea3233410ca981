// Command memstats puts memory where oomprof's breakdown (heap, stacks, runtime,
// outside Go) must find it. MODE selects:
//
//	report  (default) a heap of about 48 MiB and 100 goroutines parked on ~100 KiB
//	        stacks; then it returns what it can to the OS, prints its own
//	        runtime.ReadMemStats figures as one JSON line, prints "ready" and waits
//	        without allocating, for `oomprof snapshot` to compare.
//	stacks  leaks goroutines, each parked on a stack of about 240 KiB, until killed.
//	mmap    maps anonymous memory outside the Go heap with syscall.Mmap, 1 MiB at a
//	        time, touching every page, until killed.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"
)

var (
	heap   [][]byte
	mapped [][]byte
	park   = make(chan struct{})
)

// deepen parks its goroutine with about depth*4 KiB of stack in use.
//
//go:noinline
func deepen(depth int, started chan<- struct{}) byte {
	var frame [4096]byte
	frame[depth%len(frame)] = byte(depth)
	if depth == 0 {
		started <- struct{}{}
		<-park
		return frame[0]
	}
	return deepen(depth-1, started) + frame[depth%len(frame)]
}

func spawn(depth int) {
	started := make(chan struct{})
	go deepen(depth, started)
	<-started
}

type figures struct {
	HeapInuse, StackInuse, StackSys, Sys, HeapReleased uint64
	MSpanSys, MCacheSys, BuckHashSys, GCSys, OtherSys     uint64
}

func report() {
	for i := 0; i < 48*1024; i++ {
		// Written, so its pages are resident as a real program's would be.
		b := make([]byte, 1024)
		b[0] = 1
		heap = append(heap, b)
	}
	for i := 0; i < 100; i++ {
		spawn(24)
	}
	var ms runtime.MemStats
	write := func() {
		b, _ := json.Marshal(figures{ms.HeapInuse, ms.StackInuse, ms.StackSys, ms.Sys, ms.HeapReleased, ms.MSpanSys, ms.MCacheSys, ms.BuckHashSys, ms.GCSys, ms.OtherSys})
		fmt.Fprintf(os.Stdout, "%s\nready\n", b)
	}
	// Once to a sink first, so the printing's own stack growth and allocations are behind us.
	stdout := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull)
	runtime.ReadMemStats(&ms)
	write()
	os.Stdout = stdout
	// A GC, then every free page back to the OS: the scavenger has nothing left to release.
	debug.FreeOSMemory()
	runtime.ReadMemStats(&ms)
	write()
	// Asleep, not blocked: with every goroutine blocked the runtime would call it a deadlock.
	for {
		time.Sleep(time.Hour)
	}
}

func main() {
	_ = pprof.Lookup("heap") // memory profiling stays on
	switch os.Getenv("MODE") {
	case "stacks":
		for {
			spawn(60)
			time.Sleep(2 * time.Millisecond)
		}
	case "mmap":
		page := os.Getpagesize()
		for {
			m, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
			if err != nil {
				panic(err)
			}
			for i := 0; i < len(m); i += page {
				m[i] = 1
			}
			mapped = append(mapped, m)
			time.Sleep(5 * time.Millisecond)
		}
	default:
		report()
	}
}
