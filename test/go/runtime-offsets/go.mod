module example.com/runtime-offsets

go 1.18
