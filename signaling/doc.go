// Package signaling is sipsvc's back-to-back user agent: it terminates every call on one leg
// (UAS) and originates it on another (UAC) over UDP, TCP and TLS, and applies the secure SIP
// rules of docs/sips.md to each leg on its own.
//
// The package never imports gRPC or generated code. It declares what it needs from the rest of
// the program as interfaces: a Router that decides where a call goes, a Directory that resolves
// DNs and registrations, a Registrar that serves REGISTER, an Authenticator that challenges
// callers, and Observers that receive every event (leg scheme decisions, header rewrites, call
// state changes).
package signaling
