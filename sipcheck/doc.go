// Package sipcheck validates and normalises SIP requests at sipsvc's edge, so that the
// torture messages of RFC 4475 and RFC 5118 get the answer those RFCs ask for.
//
// It works in two places. NewParser returns a sipgo parser whose header parsers do not
// drop a whole message for one malformed To, From, CSeq, Max-Forwards, Content-Length,
// Content-Type or Contact: the header is kept in a marked form, so that the request can
// still be answered (400) instead of silently dropped. Request then checks a parsed
// request (version, Request-URI scheme, single-valued headers, Require, Content-Type,
// Accept) and says which response refuses it. Neither parses a message twice.
package sipcheck
