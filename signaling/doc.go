// Package signaling is sipsvc's back-to-back user agent: it terminates every call on one leg
// (UAS) and originates it on another (UAC) over UDP, TCP and TLS, and applies the secure SIP
// rules of docs/sips.md to each leg on its own.
//
// The package never imports gRPC or generated code. It declares what it needs from the rest of
// the program as interfaces: a Router that decides where a call goes, a Directory that resolves
// DNs and registrations, a Registrar that serves REGISTER, an Authenticator that challenges
// callers, and Observers that receive every event (leg scheme decisions, header rewrites, call
// state changes).
//
// Every new call is admitted first (admit.go): the Authenticator classifies the caller as
// authenticated, trusted or anonymous; an anonymous caller reaches only DNs that allow it
// (Admission.Anonymous, dn.DN.AllowAnonymous) and gets the same 407 otherwise, whether the
// number exists or not; the call caps of Admission are taken; and the targets a router
// returns are filtered by the caller's class.
package signaling
