package signaling

import (
	"context"
	"net"
	"time"
)

// udpReadyWait bounds how long Serve waits for sipgo to take its UDP listeners.
const udpReadyWait = 2 * time.Second

// awaitUDPListeners waits, at most udpReadyWait, until sipgo holds every UDP listener of
// Serve in its connection pool (ServeUDP adds it from its own goroutine). Until then a
// request sent over UDP cannot leave from the listener: sipgo opens a socket of its own for
// it, whose source port is not the one in our Via, and whose reader goroutine its Close does
// not always stop (a goroutine and a socket leaked per early request). Serve reports itself
// ready (MakeCall, Ready) only after this.
func (s *Server) awaitUDPListeners(ctx context.Context, conns []net.PacketConn) {
	deadline := time.Now().Add(udpReadyWait)
	for _, c := range conns {
		addr := c.LocalAddr().String()
		for {
			if conn, _ := s.ua.TransportLayer().GetConnection("udp", addr); conn != nil {
				break
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				s.log.Warn("UDP listener not taken by the SIP stack in time; early UDP requests may leave from another port", "addr", addr)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
}
