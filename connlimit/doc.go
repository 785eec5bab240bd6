// Package connlimit caps and times out the stream connections (TCP, TLS) a peer can make a
// SIP server hold: a cap on connections in total and per source address, a deadline for the
// TLS handshake, an idle timeout between messages, and a deadline for one message to arrive
// in full once its first byte has. A connection over a cap is closed at once; a connection
// that misses a deadline is closed by the reader (its Read returns a timeout error). Every
// refusal and timeout is reported through Config.OnClose so that it can be counted.
package connlimit
