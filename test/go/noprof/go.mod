module example.com/noprof

go 1.18
