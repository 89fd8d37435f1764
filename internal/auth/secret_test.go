package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecret_Redacted(t *testing.T) {
	const value = "hunter2-very-secret"
	s := Secret(value)
	type holder struct {
		Name string
		Key  Secret
		Ptr  *Secret
	}
	h := holder{Name: "fraud", Key: s, Ptr: &s}

	var out []string
	for _, format := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10s"} {
		out = append(out, fmt.Sprintf(format, s), fmt.Sprintf(format, h), fmt.Sprintf(format, []Secret{s}), fmt.Sprintf(format, map[string]Secret{"k": s}))
	}
	out = append(out, fmt.Sprint(s, h), fmt.Sprintln(s, &h), s.String(), s.GoString())

	for _, v := range []any{s, h, &h, map[string]Secret{"k": s}, Token{AccessToken: s}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}

	var logs bytes.Buffer
	for _, handler := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		l := slog.New(handler)
		l.Info("msg", "key", s, "holder", h, "ptr", &h)
		l.Info("msg", slog.Any("key", s), slog.Group("g", "key", s))
		l.With("key", s).Info(s.String())
	}
	out = append(out, logs.String())

	for _, o := range out {
		if strings.Contains(o, value) {
			t.Errorf("secret leaked: %s", o)
		}
	}
	if !strings.Contains(logs.String(), redacted) {
		t.Errorf("logs do not say %s: %s", redacted, logs.String())
	}
	if s.Reveal() != value {
		t.Errorf("Reveal = %q", s.Reveal())
	}
}

func TestSecret_Equal(t *testing.T) {
	s := Secret("abc")
	for _, tc := range []struct {
		s     Secret
		other string
		want  bool
	}{
		{s, "abc", true}, {s, "abd", false}, {s, "ab", false}, {s, "abcd", false}, {"", "", false},
	} {
		if got := tc.s.Equal(tc.other); got != tc.want {
			t.Errorf("Secret(%q).Equal(%q) = %v; want %v", tc.s.Reveal(), tc.other, got, tc.want)
		}
	}
}
