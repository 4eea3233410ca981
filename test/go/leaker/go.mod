module example.com/leaker

go 1.18
