// Package version holds the build version, set with -ldflags by the Makefile.
package version

// Version is the released version or a git description; "dev" for plain go builds.
var Version = "dev"
