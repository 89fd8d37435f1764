// Frame protocol between the model host (Go) and its Python workers.
//
// The host talks to each worker over two pipes passed as extra file
// descriptors: fd 3 carries frames host -> worker, fd 4 carries frames
// worker -> host. The script's own stdout/stderr (fd 1/2) never touch them,
// so print() can not corrupt the protocol. python/worker.py quotes this
// comment; change both together.
//
// Every frame is a 24-byte header followed by a payload of N bytes. All
// integers are unsigned big-endian.
//
//	offset  size  field
//	0       2     magic: 0x6D 0x66 ("mf")
//	2       1     version: 1
//	3       1     kind (below)
//	4       4     N: payload length in bytes (meta + body); N <= 1 GiB
//	8       4     M: meta length in bytes; M <= N
//	12      8     request id; 0 for frames not tied to a request
//	20      4     aux: a kind-specific number (below)
//	24      M     meta: zero or more (name, value) pairs, each string encoded
//	              as a 4-byte length followed by that many bytes (UTF-8)
//	24+M    N-M   body: opaque bytes
//
// Kinds:
//
//	1 ready       worker -> host, once, after init() returned.
//	              aux bit 0: run() takes request_headers; bit 1: run() is
//	              @rawhttp. Either bit means requests must carry meta.
//	              meta: informational pairs (e.g. "python", "3.11.2").
//	2 init-failed worker -> host, once, instead of ready; the worker exits 3.
//	              body: a one-paragraph human summary (UTF-8). The traceback
//	              went to the worker's stderr.
//	3 request     host -> worker. aux bit 0: meta holds the request
//	              (":method", ":path" with query, ":query" raw query string,
//	              then one pair per header line, in order); bit 1: the body
//	              is the raw query string of a GET, not a POST body.
//	              body: the HTTP request body as received, never re-encoded.
//	4 response    worker -> host, one per request, same request id.
//	              aux: run() execution time in microseconds (saturating).
//	              meta: empty means 200, Content-Type application/json,
//	              run function not failed. Otherwise pseudo pairs ":status"
//	              (decimal) and ":failed" ("True"/"False") and then response
//	              header pairs in order.
//	              body: the response body.
//
// A worker handles one request at a time, in the order the frames arrive,
// and answers each before it reads the next. The host writes at most two
// requests ahead (the one in run() and the next), and pairs each response
// with the oldest request it has not had an answer for; a frame with any
// other id is discarded.

package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Frame kinds; see the header comment of this file.
const (
	kindReady      byte = 1
	kindInitFailed byte = 2
	kindRequest    byte = 3
	kindResponse   byte = 4
)

// Request aux flags.
const (
	reqMeta  uint32 = 1 << 0
	reqQuery uint32 = 1 << 1
)

// Ready aux flags.
const (
	readyHeaders uint32 = 1 << 0
	readyRawHTTP uint32 = 1 << 1
)

const (
	frameHeaderLen = 24
	frameMagic0    = 'm'
	frameMagic1    = 'f'
	frameVersion   = 1
	// MaxFrame is the largest payload (meta + body) a frame may carry. A
	// length above it means the stream is garbage or the request too large.
	MaxFrame = 1 << 30
)

var (
	errFrameMagic   = errors.New("host: frame: bad magic or version")
	errFrameTooBig  = errors.New("host: frame: payload exceeds 1 GiB")
	errFrameMetaLen = errors.New("host: frame: meta length exceeds payload")
	errFrameMeta    = errors.New("host: frame: malformed meta")
)

// frame is one decoded frame. Payload holds meta followed by body; Meta and
// Body alias it. Who owns Payload is up to the caller of readFrame.
type frame struct {
	Kind    byte
	ID      uint64
	Aux     uint32
	Payload []byte
	Meta    []byte
	Body    []byte
}

// putHeader writes the 24-byte header for a frame into b[:24].
func putHeader(b []byte, kind byte, id uint64, aux uint32, metaLen, bodyLen int) {
	_ = b[frameHeaderLen-1]
	b[0], b[1], b[2], b[3] = frameMagic0, frameMagic1, frameVersion, kind
	binary.BigEndian.PutUint32(b[4:], uint32(metaLen+bodyLen))
	binary.BigEndian.PutUint32(b[8:], uint32(metaLen))
	binary.BigEndian.PutUint64(b[12:], id)
	binary.BigEndian.PutUint32(b[20:], aux)
}

// appendFrame appends a whole frame to dst and returns the extended slice.
func appendFrame(dst []byte, kind byte, id uint64, aux uint32, meta, body []byte) []byte {
	var h [frameHeaderLen]byte
	putHeader(h[:], kind, id, aux, len(meta), len(body))
	dst = append(dst, h[:]...)
	dst = append(dst, meta...)
	return append(dst, body...)
}

// appendPair appends one meta (name, value) pair.
func appendPair(dst []byte, name, value string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(name)))
	dst = append(dst, name...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	return append(dst, value...)
}

// pairLen is the encoded size of one meta pair.
func pairLen(name, value string) int { return 8 + len(name) + len(value) }

// nextPair splits the first (name, value) pair off meta. It returns
// errFrameMeta if meta is truncated. The returned slices alias meta.
func nextPair(meta []byte) (name, value, rest []byte, err error) {
	name, rest, err = nextString(meta)
	if err != nil {
		return nil, nil, nil, err
	}
	value, rest, err = nextString(rest)
	if err != nil {
		return nil, nil, nil, err
	}
	return name, value, rest, nil
}

func nextString(b []byte) (s, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, errFrameMeta
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, errFrameMeta
	}
	return b[4 : 4+n], b[4+n:], nil
}

// readHeader reads and validates a frame header.
func readHeader(r io.Reader, h []byte) (kind byte, id uint64, aux uint32, n, m int, err error) {
	if _, err = io.ReadFull(r, h[:frameHeaderLen]); err != nil {
		return 0, 0, 0, 0, 0, err
	}
	if h[0] != frameMagic0 || h[1] != frameMagic1 || h[2] != frameVersion {
		return 0, 0, 0, 0, 0, errFrameMagic
	}
	nn := binary.BigEndian.Uint32(h[4:])
	mm := binary.BigEndian.Uint32(h[8:])
	if nn > MaxFrame {
		return 0, 0, 0, 0, 0, errFrameTooBig
	}
	if mm > nn {
		return 0, 0, 0, 0, 0, errFrameMetaLen
	}
	return h[3], binary.BigEndian.Uint64(h[12:]), binary.BigEndian.Uint32(h[20:]), int(nn), int(mm), nil
}

// readFrame reads one frame from r. The payload is read into buf if it fits
// (buf's capacity is reused), otherwise into a new slice; the returned frame
// aliases that memory. A short read after the header is io.ErrUnexpectedEOF.
func readFrame(r io.Reader, buf []byte) (frame, error) {
	// The header is read into buf's own memory when it fits: a local array
	// would escape through io.Reader and cost an allocation per frame.
	var h []byte
	if cap(buf) >= frameHeaderLen {
		h = buf[:frameHeaderLen]
	} else {
		h = make([]byte, frameHeaderLen)
	}
	kind, id, aux, n, m, err := readHeader(r, h)
	if err != nil {
		return frame{}, err
	}
	if cap(buf) >= n {
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return frame{}, unexpectedEOF(err)
		}
	} else if buf, err = readGrowing(r, buf[:0], n); err != nil {
		return frame{}, err
	}
	return frame{Kind: kind, ID: id, Aux: aux, Payload: buf, Meta: buf[:m], Body: buf[m:]}, nil
}

// growStep bounds what readFrame allocates ahead of the data actually
// received, so a corrupt length cannot make it allocate a gigabyte.
const growStep = 1 << 20

// readGrowing reads exactly n bytes into buf, growing it as data arrives.
func readGrowing(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(len(buf), growStep)))
		}
		k, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return buf, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// responseMeta is the decoded meta of a response frame.
type responseMeta struct {
	status int
	failed bool
	// headers holds (name, value) pairs in order, aliasing the frame.
	headers [][2][]byte
}

// parseResponseMeta decodes response meta. Empty meta is the fast path: 200,
// application/json, not failed.
func parseResponseMeta(meta []byte, dst *responseMeta) error {
	dst.status, dst.failed, dst.headers = 200, false, dst.headers[:0]
	for len(meta) > 0 {
		name, value, rest, err := nextPair(meta)
		if err != nil {
			return err
		}
		meta = rest
		switch string(name) {
		case ":status":
			s, err := strconv.Atoi(string(value))
			if err != nil || s < 100 || s > 999 {
				return fmt.Errorf("%w: status %q", errFrameMeta, value)
			}
			dst.status = s
		case ":failed":
			dst.failed = string(value) == "True"
		default:
			dst.headers = append(dst.headers, [2][]byte{name, value})
		}
	}
	return nil
}
