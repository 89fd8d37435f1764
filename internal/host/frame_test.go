package host

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestFrame_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		kind byte
		id   uint64
		aux  uint32
		meta []byte
		body []byte
	}{
		{"empty", kindResponse, 1, 0, nil, nil},
		{"body only", kindRequest, 42, reqQuery, nil, []byte("a=1&b=[1,2]")},
		{"meta and body", kindRequest, 1 << 40, reqMeta, appendPair(appendPair(nil, ":method", "POST"), "X-A", "b"), []byte(`{"data": [1]}`)},
		{"max id and aux", kindResponse, ^uint64(0), ^uint32(0), nil, []byte("[11055.977245525679, 4503.079536107787]")},
		{"binary body", kindRequest, 7, 0, nil, []byte{0, 0xff, 'm', 'f', 1, 2}},
		{"init failed", kindInitFailed, 0, 0, nil, []byte("init() raised ValueError: boom")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := appendFrame(nil, tt.kind, tt.id, tt.aux, tt.meta, tt.body)
			if got, want := len(enc), frameHeaderLen+len(tt.meta)+len(tt.body); got != want {
				t.Fatalf("encoded length = %d; want %d", got, want)
			}
			f, err := readFrame(bytes.NewReader(enc), nil)
			if err != nil {
				t.Fatalf("readFrame: %v", err)
			}
			if f.Kind != tt.kind || f.ID != tt.id || f.Aux != tt.aux {
				t.Errorf("got kind %d id %d aux %d; want %d %d %d", f.Kind, f.ID, f.Aux, tt.kind, tt.id, tt.aux)
			}
			if !bytes.Equal(f.Meta, tt.meta) || !bytes.Equal(f.Body, tt.body) {
				t.Errorf("got meta %q body %q; want %q %q", f.Meta, f.Body, tt.meta, tt.body)
			}
		})
	}
}

func TestFrame_HeaderBytes(t *testing.T) {
	// The layout documented at the top of frame.go, byte by byte.
	got := appendFrame(nil, kindRequest, 0x0102030405060708, 0x0a0b0c0d, []byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte("xy"))
	want := []byte{
		'm', 'f', 1, kindRequest,
		0, 0, 0, 10, // N = 8 meta + 2 body
		0, 0, 0, 8, // M
		1, 2, 3, 4, 5, 6, 7, 8, // request id
		0x0a, 0x0b, 0x0c, 0x0d, // aux
		0, 0, 0, 0, 0, 0, 0, 0, // meta: one ("", "") pair
		'x', 'y',
	}
	if !bytes.Equal(got, want) {
		t.Errorf("frame bytes\n got %v\nwant %v", got, want)
	}
}

func TestFrame_ReadErrors(t *testing.T) {
	valid := appendFrame(nil, kindResponse, 1, 0, nil, []byte("hello"))
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty stream", nil, io.EOF},
		{"short header", valid[:10], io.ErrUnexpectedEOF},
		{"short payload", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"bad magic", mutate(func(b []byte) { b[0] = 'x' }), errFrameMagic},
		{"bad version", mutate(func(b []byte) { b[2] = 2 }), errFrameMagic},
		{"too big", mutate(func(b []byte) { b[4] = 0x40; b[7] = 1 }), errFrameTooBig},
		{"meta longer than payload", mutate(func(b []byte) { b[11] = 6 }), errFrameMetaLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bytes.NewReader(tt.in), nil)
			if !errors.Is(err, tt.want) {
				t.Errorf("readFrame error = %v; want %v", err, tt.want)
			}
		})
	}
}

func TestFrame_ReusesBuffer(t *testing.T) {
	enc := appendFrame(nil, kindResponse, 1, 0, nil, []byte("abc"))
	buf := make([]byte, 0, 64)
	f, err := readFrame(bytes.NewReader(enc), buf)
	if err != nil {
		t.Fatal(err)
	}
	if &f.Payload[0] != &buf[:1][0] {
		t.Error("readFrame allocated although the buffer was large enough")
	}
}

func TestParseResponseMeta(t *testing.T) {
	meta := func(pairs ...string) []byte {
		var b []byte
		for i := 0; i < len(pairs); i += 2 {
			b = appendPair(b, pairs[i], pairs[i+1])
		}
		return b
	}
	tests := []struct {
		name    string
		in      []byte
		status  int
		failed  bool
		headers []string
		wantErr bool
	}{
		{name: "fast path", in: nil, status: 200},
		{name: "error", in: meta(":status", "500", ":failed", "True", "Content-Type", "application/json"), status: 500, failed: true, headers: []string{"Content-Type", "application/json"}},
		{name: "repeated headers", in: meta(":status", "201", "X-A", "1", "X-A", "2"), status: 201, headers: []string{"X-A", "1", "X-A", "2"}},
		{name: "bad status", in: meta(":status", "abc"), wantErr: true},
		{name: "truncated", in: meta(":status", "200")[:5], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rm responseMeta
			err := parseResponseMeta(tt.in, &rm)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v; wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if rm.status != tt.status || rm.failed != tt.failed {
				t.Errorf("status %d failed %v; want %d %v", rm.status, rm.failed, tt.status, tt.failed)
			}
			var got []string
			for _, kv := range rm.headers {
				got = append(got, string(kv[0]), string(kv[1]))
			}
			if strings.Join(got, "|") != strings.Join(tt.headers, "|") {
				t.Errorf("headers %q; want %q", got, tt.headers)
			}
		})
	}
}

// TestFrame_PythonQuotesComment keeps the wire-format comment in frame.go
// and python/worker.py identical.
func TestFrame_PythonQuotesComment(t *testing.T) {
	src, err := os.ReadFile("frame.go")
	if err != nil {
		t.Fatal(err)
	}
	py, err := pythonFiles.ReadFile("python/worker.py")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	s = s[:strings.Index(s, "\npackage host")]
	var quoted []string
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		line = strings.TrimPrefix(line, "//")
		line = strings.TrimPrefix(line, " ")
		line = strings.ReplaceAll(line, "\t", "    ")
		quoted = append(quoted, strings.TrimRight("# "+line, " "))
	}
	if !strings.Contains(string(py), strings.Join(quoted, "\n")+"\n") {
		t.Error("python/worker.py does not quote the header comment of frame.go verbatim; update it")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, kindResponse, 1, 0, nil, []byte("[1, 2]")))
	f.Add(appendFrame(nil, kindRequest, 9, reqMeta, appendPair(nil, ":method", "GET"), nil))
	f.Add([]byte("mf\x01\x04\x40\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := readFrame(bytes.NewReader(in), nil)
		if err != nil {
			return
		}
		if len(fr.Meta)+len(fr.Body) > MaxFrame {
			t.Fatalf("payload %d exceeds MaxFrame", len(fr.Meta)+len(fr.Body))
		}
		// Whatever decodes must re-encode to the same bytes.
		re := appendFrame(nil, fr.Kind, fr.ID, fr.Aux, fr.Meta, fr.Body)
		if !bytes.Equal(re, in[:len(re)]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, in[:len(re)])
		}
		var rm responseMeta
		_ = parseResponseMeta(fr.Meta, &rm)
	})
}
