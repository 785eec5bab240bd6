package signaling

import (
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// MaxUDPRequest is the largest request sipsvc sends over UDP: RFC 3261 §18.1.1 asks a client
// to use a congestion-controlled transport for a request larger than 1300 bytes when the path
// MTU is unknown. sipgo used to enforce this for every UDP message (its UDPMTUSize minus 200
// bytes); the process now raises that limit (see UDPMTUSize) so that large responses can go
// back to the sender, and this check keeps the rule for the requests sipsvc sends.
const MaxUDPRequest = 1300

// UDPMTUSize is the value for sipgo's sip.UDPMTUSize, a package variable that caps every UDP
// message sipgo writes at its value minus 200 bytes. RFC 3261's size rule (§18.1.1) is for
// requests; a response over UDP goes back to the request's sender on UDP (§18.2.2) whatever
// its size, relying on IP fragmentation: the client may listen on nothing else, and a 513
// would have to echo the same Via headers and be as large. So the cap is the largest UDP
// payload over IPv4 (65507 bytes); MaxUDPRequest bounds our own requests. sipgo keeps it per
// process: app sets it once at start-up.
const UDPMTUSize = 65507 + 200

// checkUDPRequestSize refuses a request to be sent over UDP that is larger than
// MaxUDPRequest (RFC 3261 §18.1.1), with the error sipgo gave before the limit was raised.
// A request that leaves from our UDP listener (req.Laddr set by prepare) is checked there
// instead, on the bytes sipgo formats for the write (sipcheck.WireConfig.MaxRequest): at no
// cost, where counting here formats every header a second time.
func checkUDPRequestSize(req *sip.Request) error {
	if req.Transport() != "UDP" || req.Laddr.IP != nil {
		return nil
	}
	if len(req.Body()) == 0 && req.GetHeader("Route") == nil {
		// Without a body or a route set (which peers make: their SDP, their Record-Route)
		// the request is the start line and the dialog's own headers, far below the limit
		// in practice; counting it costs allocations on every ACK and BYE of every call.
		return nil
	}
	if n := requestSize(req); n > MaxUDPRequest {
		return fmt.Errorf("%s of %d bytes over UDP (RFC 3261 §18.1.1 limit %d): %w", req.Method, n, MaxUDPRequest, sip.ErrUDPMTUCongestion)
	}
	return nil
}

// requestSize is the length of req as sipgo writes it (start line, each header line, the
// empty line, the body), counted without building the message: this runs for every request
// sent over UDP, and req.String() would format and allocate it a second time.
func requestSize(req *sip.Request) int {
	var n byteCount
	req.StartLineWrite(&n)
	n += 2
	for _, h := range req.Headers() {
		h.StringWrite(&n)
		n += 2
	}
	return int(n) + 2 + len(req.Body())
}

// byteCount is an io.StringWriter that only counts.
type byteCount int

func (c *byteCount) WriteString(s string) (int, error) {
	*c += byteCount(len(s))
	return len(s), nil
}
