// leaker grows its heap until it is OOM-killed. One function leaks, another
// churns short-lived garbage, so the two views of a death profile differ.
// With HEAPPROF_OUT set it writes its own runtime/pprof heap profile there
// (atomically) every few steps, for comparison with oomprof's capture.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

var retained [][]byte
var sink []byte

//go:noinline
func leakStep(n int) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	retained = append(retained, b)
}

// scratch is small enough to be inlined into churnStep: profiles should show it as
// an inlined frame of its caller.
func scratch(n int) []byte {
	return make([]byte, n)
}

//go:noinline
func churnStep(n int) {
	b := scratch(n)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	sink = b
}

func writeOwnProfile(path string) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return
	}
	f.Close()
	os.Rename(tmp, path)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	leakKiB := envInt("LEAK_KIB", 48)
	churnKiB := envInt("CHURN_KIB", 192)
	sleepUs := envInt("STEP_SLEEP_US", 200)
	out := os.Getenv("HEAPPROF_OUT")
	exitAfter := envInt("EXIT_AFTER_STEPS", 0)
	// Parked goroutines, so a capture's goroutine count can be checked.
	block := make(chan struct{})
	for i := envInt("GOROUTINES", 0); i > 0; i-- {
		go func() { <-block }()
	}
	fmt.Println("leaker: started")
	for step := 0; ; step++ {
		leakStep(leakKiB << 10)
		churnStep(churnKiB << 10)
		if out != "" && step%40 == 0 {
			writeOwnProfile(out)
		}
		if exitAfter > 0 && step >= exitAfter {
			os.Exit(3)
		}
		if sleepUs > 0 {
			time.Sleep(time.Duration(sleepUs) * time.Microsecond)
		}
	}
}
