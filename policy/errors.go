package policy

import "errors"

var (
	errPathNotAbsolute = errors.New("path must start with '/'")
	errPathNotClean    = errors.New(
		"path must be clean: no dot-segments, repeated or trailing slashes")
	errPathCharacter = errors.New(
		"path may hold only letters, digits and the characters -._~/")

	// ErrNoCertificates means a CA bundle held no certificate at all.
	ErrNoCertificates = errors.New("no certificate found")
)
