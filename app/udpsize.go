package app

import (
	"github.com/emiago/sipgo/sip"

	"github.com/sipsvc/sipsvc/signaling"
)

// init raises sipgo's UDP size limit (sip.UDPMTUSize, a package variable read on every UDP
// write) once, at process start, before any transport exists: a response over UDP goes back
// to the request's sender over UDP whatever its size (RFC 3261 §18.2.2; RFC 4475's longreq
// is answered with a response echoing its 40 Via headers), where sipgo would otherwise
// refuse to send more than 1300 bytes and the request would get no answer at all. The
// RFC 3261 §18.1.1 limit for the requests sipsvc sends stays in signaling
// (signaling.MaxUDPRequest). Written here rather than in New so that no instance, and no
// test peer, can be reading it while it changes.
func init() {
	sip.UDPMTUSize = signaling.UDPMTUSize
}
