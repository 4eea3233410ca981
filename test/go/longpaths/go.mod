module github.com/example-organization/a-rather-long-repository-name

go 1.18
