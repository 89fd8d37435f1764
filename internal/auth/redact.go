package auth

import "fmt"

// Format implements fmt.Formatter so that every verb prints the redacted
// value. String alone is not enough: fmt does not call String for verbs that
// do not apply to strings, and "%d" printed the raw value as
// "%!d(auth.Secret=...)". %#v prints GoString's form.
//
// fmt cannot call methods on unexported struct fields, so a Secret in an
// unexported field still prints in clear with %v; keep secrets in exported
// fields of anything that may be printed.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), redacted)
}
