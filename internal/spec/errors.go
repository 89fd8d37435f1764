package spec

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of a spec.
type FieldError struct {
	// Path is the field path, e.g. "request_settings.request_timeout_ms".
	Path string `json:"field"`
	// Line is the 1-based YAML line, or 0 when unknown.
	Line int `json:"line,omitempty"`
	// Message says what is wrong and what to do.
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Path == "" {
		if e.Line > 0 {
			return fmt.Sprintf("line %d: %s", e.Line, e.Message)
		}
		return e.Message
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Message)
	}
	return e.Path + ": " + e.Message
}

// FieldErrors collects every problem found in a spec. It is returned as an
// error only when it is not empty.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	var b strings.Builder
	if len(es) == 1 {
		return es[0].Error()
	}
	fmt.Fprintf(&b, "%d problems:", len(es))
	for _, e := range es {
		b.WriteString("\n  - ")
		b.WriteString(e.Error())
	}
	return b.String()
}

func (es *FieldErrors) add(path string, line int, format string, args ...any) {
	*es = append(*es, FieldError{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (es FieldErrors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Notice reports a key that was accepted but is not applied by moe, or a
// value moe changed or ignored, so nothing is dropped silently.
type Notice struct {
	Path    string `json:"field"`
	Message string `json:"message"`
}

func (n Notice) String() string { return n.Path + ": " + n.Message }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
