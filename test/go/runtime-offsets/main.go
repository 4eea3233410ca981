// Command runtime-offsets prints, as JSON, the byte offsets of the Go runtime
// fields that runtime.gcount() reads, taken from a Go binary's DWARF:
//
//	gcount = allglen - sched.gFree.n - sched.ngsys - Σ_{pp in allp} pp.gFree.n
//
// A bpftrace probe can then compute the goroutine count from raw memory.
// Usage: runtime-offsets GO-ELF-BINARY   (the binary must keep its DWARF: no -ldflags=-w/-s)
package main

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Field is a (possibly nested) field: Offset is from the start of the outermost struct.
type Field struct {
	Path   string     `json:"path"`
	Offset int64      `json:"offset"`
	Size   int64      `json:"size"`
	Type   string     `json:"type"`
	typ    dwarf.Type // the resolved type, to look inside wrappers
}

// Var is a package-level variable; only its type matters (its address is in the symbol table).
type Var struct {
	Size int64  `json:"size"`
	Type string `json:"type"`
}

type Result struct {
	GoVersion   string `json:"goVersion"`
	GOARCH      string `json:"goarch"`
	SchedtSize  int64  `json:"schedtSize"`
	PSize       int64  `json:"pSize"`
	SchedGFree  Field  `json:"schedGFree"`
	SchedGFreeN Field  `json:"schedGFreeN"`
	// Go 1.25+: the second free list's count (gFree.noStack.size); absent before.
	SchedGFreeN2 *Field `json:"schedGFreeN2,omitempty"`
	// ngsys is a uint32 up to Go 1.20 and an atomic.Int32{_ noCopy; value int32} since
	// 1.21: this is the int32 inside the wrapper when there is one.
	SchedNgsys Field          `json:"schedNgsys"`
	PGFreeN    Field          `json:"pGFreeN"`
	Vars       map[string]Var `json:"vars"`
	// A slice header is {ptr, len, cap}, one word each: allp's len is at +8 on 64-bit.
	AllpLenOffset int64 `json:"allpLenOffset"`
	// What runtime.readmemstats_m reads for HeapInuse, StackSys and Sys-HeapReleased.
	MemStats MemStatsOffsets `json:"memStats"`
}

// MemStatsOffsets locates, inside runtime.gcControllerState and runtime.mstats, the
// fields oomprof's memory breakdown reads. Wrappers (atomic.Uint64) are unwrapped to
// their value.
type MemStatsOffsets struct {
	HeapInUse   Field `json:"heapInUse"`   // gcController.heapInUse (MemStats.HeapInuse)
	MappedReady Field `json:"mappedReady"` // gcController.mappedReady (MemStats.Sys - HeapReleased)
	StacksSys   Field `json:"stacksSys"`   // memstats.stacks_sys
	// memstats.heapStats.stats, an array of heapStatsDelta; their inStacks summed is StackInuse.
	HeapStats      Field `json:"heapStats"`
	HeapStatsCount int64 `json:"heapStatsCount"`
	DeltaSize      int64 `json:"deltaSize"`
	InStacks       Field `json:"inStacks"` // in heapStatsDelta
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: runtime-offsets GO-ELF-BINARY")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "runtime-offsets:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return err
	}
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return fmt.Errorf("no DWARF (built with -w or stripped?): %w", err)
	}
	types, vars, err := index(d)
	if err != nil {
		return err
	}

	r := Result{GoVersion: bi.GoVersion, GOARCH: goarch(bi, f), Vars: map[string]Var{}}
	schedt, err := structNamed(types, "runtime.schedt")
	if err != nil {
		return err
	}
	p, err := structNamed(types, "runtime.p")
	if err != nil {
		return err
	}
	r.SchedtSize, r.PSize = schedt.ByteSize, p.ByteSize
	if r.SchedGFree, err = field(schedt, "gFree"); err != nil {
		return err
	}
	// Up to Go 1.24 the free list keeps one count, gFree.n; from 1.25 each of its two
	// lists counts itself (gList.size), and gcount subtracts both.
	if r.SchedGFreeN, err = field(schedt, "gFree.n"); err != nil {
		if r.SchedGFreeN, err = field(schedt, "gFree.stack.size"); err != nil {
			return err
		}
		second, err := field(schedt, "gFree.noStack.size")
		if err != nil {
			return err
		}
		r.SchedGFreeN2 = &second
	}
	if r.SchedNgsys, err = field(schedt, "ngsys"); err != nil {
		return err
	}
	// Unwrap atomic.Int32 (and the like) down to its single value field.
	if s, ok := r.SchedNgsys.typ.(*dwarf.StructType); ok {
		if r.SchedNgsys, err = field(schedt, "ngsys."+valueField(s)); err != nil {
			return err
		}
	}
	if r.PGFreeN, err = field(p, "gFree.n"); err != nil {
		if r.PGFreeN, err = field(p, "gFree.size"); err != nil {
			return err
		}
	}
	for _, name := range []string{"runtime.allglen", "runtime.allp", "runtime.sched"} {
		t, ok := vars[name]
		if !ok {
			return fmt.Errorf("variable %s not in DWARF", name)
		}
		r.Vars[strings.TrimPrefix(name, "runtime.")] = Var{Size: t.Size(), Type: t.String()}
	}
	if s, ok := vars["runtime.allp"].(*dwarf.StructType); ok { // Go describes slices as structs
		for _, fl := range s.Field {
			if fl.Name == "len" {
				r.AllpLenOffset = fl.ByteOffset
			}
		}
	}
	if r.MemStats, err = memStatsOffsets(types); err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(r)
}

// index collects the named types and the package-level variables' types. Only the
// first definition of a name is kept (Go emits each runtime type once).
func index(d *dwarf.Data) (map[string]dwarf.Type, map[string]dwarf.Type, error) {
	types, vars := map[string]dwarf.Type{}, map[string]dwarf.Type{}
	rd := d.Reader()
	for {
		e, err := rd.Next()
		if err != nil {
			return nil, nil, err
		}
		if e == nil {
			return types, vars, nil
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		tag := e.Tag
		if tag != dwarf.TagStructType && tag != dwarf.TagVariable {
			continue
		}
		if tag == dwarf.TagStructType {
			rd.SkipChildren() // members are read through d.Type
		}
		if !strings.HasPrefix(name, "runtime.") {
			continue
		}
		var t dwarf.Type
		if tag == dwarf.TagStructType {
			if _, dup := types[name]; !dup {
				t, err = d.Type(e.Offset)
				types[name] = t
			}
		} else if off, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			if _, dup := vars[name]; !dup {
				t, err = d.Type(off)
				vars[name] = t
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
}

func structNamed(types map[string]dwarf.Type, name string) (*dwarf.StructType, error) {
	s, ok := types[name].(*dwarf.StructType)
	if !ok {
		return nil, fmt.Errorf("struct %s not in DWARF", name)
	}
	return s, nil
}

// field follows a dotted path of field names from s, summing the offsets.
func field(s *dwarf.StructType, path string) (Field, error) {
	var off int64
	var t dwarf.Type = s
	for _, name := range strings.Split(path, ".") {
		st, ok := skipTypedefs(t).(*dwarf.StructType)
		if !ok {
			return Field{}, fmt.Errorf("%s.%s: %s is not a struct", s.StructName, path, t)
		}
		var found *dwarf.StructField
		for _, fl := range st.Field {
			if fl.Name == name {
				found = fl
			}
		}
		if found == nil {
			return Field{}, fmt.Errorf("%s has no field %s (in %s)", s.StructName, path, st.StructName)
		}
		off += found.ByteOffset
		t = found.Type
	}
	return Field{Path: path, Offset: off, Size: t.Size(), Type: t.String(), typ: skipTypedefs(t)}, nil
}

// valueField names the one non-zero-sized field of a wrapper such as atomic.Int32
// (whose other field is a zero-sized noCopy).
func valueField(s *dwarf.StructType) string {
	for _, fl := range s.Field {
		if fl.Type.Size() > 0 {
			return fl.Name
		}
	}
	return "?"
}

func skipTypedefs(t dwarf.Type) dwarf.Type {
	for {
		td, ok := t.(*dwarf.TypedefType)
		if !ok {
			return t
		}
		t = td.Type
	}
}

// goarch prefers the build setting (Go >= 1.18 records it) and falls back to the ELF machine.
func goarch(bi *buildinfo.BuildInfo, f *elf.File) string {
	for _, s := range bi.Settings {
		if s.Key == "GOARCH" {
			return s.Value
		}
	}
	return map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
}

func memStatsOffsets(types map[string]dwarf.Type) (MemStatsOffsets, error) {
	var m MemStatsOffsets
	gc, err := structNamed(types, "runtime.gcControllerState")
	if err != nil {
		return m, err
	}
	ms, err := structNamed(types, "runtime.mstats")
	if err != nil {
		return m, err
	}
	delta, err := structNamed(types, "runtime.heapStatsDelta")
	if err != nil {
		return m, err
	}
	if m.HeapInUse, err = valueOf(gc, "heapInUse"); err != nil {
		return m, err
	}
	if m.MappedReady, err = valueOf(gc, "mappedReady"); err != nil {
		return m, err
	}
	if m.StacksSys, err = valueOf(ms, "stacks_sys"); err != nil {
		return m, err
	}
	if m.HeapStats, err = field(ms, "heapStats.stats"); err != nil {
		return m, err
	}
	arr, ok := m.HeapStats.typ.(*dwarf.ArrayType)
	if !ok {
		return m, fmt.Errorf("mstats.heapStats.stats is %s, not an array", m.HeapStats.Type)
	}
	m.HeapStatsCount, m.DeltaSize = arr.Count, skipTypedefs(arr.Type).Size()
	if skipTypedefs(arr.Type).String() != "struct runtime.heapStatsDelta" {
		return m, fmt.Errorf("mstats.heapStats.stats holds %s", arr.Type)
	}
	if m.InStacks, err = field(delta, "inStacks"); err != nil {
		return m, err
	}
	return m, nil
}

// valueOf is field, unwrapped down to the value when the field is a wrapper struct
// (atomic.Uint64 is {_ noCopy; _ align64; v uint64}).
func valueOf(s *dwarf.StructType, path string) (Field, error) {
	f, err := field(s, path)
	if err != nil {
		return f, err
	}
	if w, ok := f.typ.(*dwarf.StructType); ok {
		return field(s, path+"."+valueField(w))
	}
	return f, nil
}
