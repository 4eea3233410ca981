module example.com/memstats

go 1.18
