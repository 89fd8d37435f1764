package gateway

import "math/rand/v2"

// newRequestID returns a random UUID (version 4) in its 36-character text
// form, the shape of x-request-id on Azure. It is not a secret, so the
// lock-free math/rand/v2 generator is enough.
func newRequestID() string {
	const hexDigits = "0123456789abcdef"
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // variant 10
	var b [36]byte
	pos := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[pos] = '-'
			pos++
		}
		var v byte
		if i < 8 {
			v = byte(hi >> (56 - 8*i))
		} else {
			v = byte(lo >> (56 - 8*(i-8)))
		}
		b[pos], b[pos+1] = hexDigits[v>>4], hexDigits[v&0xf]
		pos += 2
	}
	return string(b[:])
}
