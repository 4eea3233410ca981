module example.com/selfprofile

go 1.18
