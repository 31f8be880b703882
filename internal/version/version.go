// Package version identifies the build: the commit the binaries were built
// from, stamped by the Makefile with -ldflags, since builds run with
// -buildvcs=false (CI checkouts and worktrees where the Go toolchain's VCS
// stamping fails or is slow).
package version

// Commit is the source commit, set at link time:
//
//	go build -ldflags "-X github.com/adaptrec/adaptrec/internal/version.Commit=$(git describe --always --dirty --abbrev=12)"
//
// Empty in builds that were not stamped (go test, go run).
var Commit string
