// Package siptest holds the SIP test helpers shared by the module's tests: a test PKI, quiet
// loggers, a sipgo "phone" that listens on loopback over UDP, TCP or TLS, records the requests
// it receives and answers INVITEs, and a UAC that places calls from a phone (INVITE, ACK,
// in-dialog requests, BYE, CANCEL).
//
// It must not import signaling, service or any package that imports them: signaling's
// internal tests import it.
package siptest
