// Package registrar serves SIP REGISTER for self-registered DNs (contact "*") and
// authorizes new calls, on top of a store.Store (docs/sips.md, "Registrar"; issue 3).
//
// # Authentication
//
// REGISTER is challenged with 401 and INVITE with 407, offering one Digest challenge per
// algorithm of Config.Algorithms — by default MD5 alone, which every common client
// answers (baresip refuses a challenge set with any non-MD5 entry; SIPp 3.6, sipsak and
// many phones read only the first) — all qop=auth and sharing one nonce; only those
// algorithms are accepted. A DN's own DigestAlgorithms replace them for that DN (e.g.
// [SHA-256] to require it); unknown users always get the global set. The digest username
// is the DN number, the HA1 hashes come from the DN (dn.HashPassword with the same
// realm). Nonces are bound to the source IP they were issued to: from another address
// they are foreign. The digest uri must name the Request-URI (scheme, user, host and port; RFC 2617
// §3.2.2.5, RFC 7616): a right answer for another URI gets 403. Nonces are HMAC-signed
// timestamps, so they need no store; they expire after NonceTTL, and a correct response
// with an expired (or foreign, e.g. from before a restart) nonce gets a fresh challenge
// with stale=true. Nonce counts are tracked in memory per nonce in a bounded FIFO: nc must
// grow, and a replayed or out-of-window nc is treated like a stale nonce (401 stale=true,
// nothing changes).
//
// Deny by default: a self-registered DN without a password takes no REGISTER (no binding,
// no "Contact: *" removal) unless Config.OpenRegistration is set; it is answered like an
// unknown DN. Which DNs exist is not revealed: a REGISTER for an unknown, disabled,
// fixed-contact or password-less DN gets the same challenge as a real one; its credentials
// are then checked against a per-process dummy hash (same work) and answered 403. A wrong
// password also gets 403.
//
// Backoff: wrong answers (wrong response or username, an algorithm not offered, a digest
// uri that is not the Request-URI) to a nonce we issued and that is still valid are
// counted per (user, source IP); a wrong answer to a made-up or expired nonce only gets a
// fresh challenge, so nobody can lock a user out without first being challenged for it.
// The AuthFailLimit-th failure starts a backoff of LockoutBackoff, each further failure
// after it ended doubles it, up to Lockout; meanwhile that user from that source gets 503
// with Retry-After (the seconds left) and nothing is checked. Other users from the same
// source, and the same user from other sources, are not refused. A key quiet for Lockout
// is forgiven. The failure table is an LRU capped at LockoutTableSize: O(1) per request,
// no sweep. Successes do not reset the count.
//
// Caps: a REGISTER with more than MaxContactsPerRegister Contacts, or one that would leave
// the DN with more than MaxBindingsPerDN bindings, gets 403 with a Warning naming the cap
// and changes nothing. RFC 3261 has no code for this; 403 says "do not repeat this
// unchanged". Refreshing or removing bindings at the cap works.
//
// Every refusal above is counted in MetricRefusals by AttrRefusal, which is also set on
// the REGISTER span.
//
// # Bindings
//
// Expiry comes from the contact's expires parameter, else the Expires header, else
// DefaultExpires; below MinExpires gives 423 with Min-Expires, above MaxExpires is
// clamped, and values that are not a delta-seconds (negative, non-numeric, > 2^32-1) give
// 400. Expires 0 removes one binding; "Contact: *" with "Expires: 0" removes all (400
// otherwise); no Contact is a query. The 200 OK lists every current binding with
// ;expires=<remaining seconds>. A binding with the same Call-ID and a CSeq that is not
// higher than the stored one fails with 500 (RFC 3261 §10.3 step 7). Every check runs
// before anything is written: a rejected REGISTER changes nothing.
//
// # SIPS
//
//   - R26: To sips → every Contact must be sips, else 400.
//   - R27: the DN is the To user, whatever the scheme; sip: and sips: AORs are one user.
//   - R28: a sips Contact needs a sips Request-URI and only sips Path entries, else 400.
//   - R29: bindings are keyed by dn.BindingKey (user@host:port, no scheme): re-registering
//     a device with the other scheme replaces its binding.
//   - A REGISTER with a sips Request-URI or a sips Contact that did not arrive over TLS is
//     refused with 480 and "Warning: 380 … SIPS Not Allowed", as the B2BUA does for a sips
//     INVITE over a non-TLS transport (docs/sips.md T6, P11).
//   - R4: a sips Contact with transport=udp gets 400; the check runs before the
//     transport parameter is dropped.
//   - A sips binding is stored with Secure=true and without its transport parameter (the
//     modelled product's rule). Transport and Source (the connection's remote address)
//     are recorded, so the B2BUA can reach TCP/TLS bindings over the same flow (R33).
//
// # Path and Service-Route
//
// The URIs of the REGISTER's Path header field values are stored with each binding it
// writes, in the order received (dn.Binding.Path, RFC 3327 §5.3); a refresh replaces them
// and a REGISTER without Path clears them. A Path value that is not a sip:/sips: URI with
// a host (or is sips with transport=udp, R4) gets 400 and nothing is stored. When the UA
// sent "Supported: path", the 200 OK echoes the stored Path entries; a query or a removal
// echoes none. A call to a binding with a Path carries it as a preloaded Route set and is
// sent to its first entry (signaling, RFC 3327 §5.4); a sips binding only ever has sips
// Path entries (R28), so it stays on TLS.
//
// Config.ServiceRoute (registrar.service_route) is returned, in order, as Service-Route
// in the 200 OK to every successful REGISTER (RFC 3608 §6.1): with the sips scheme when
// every Contact of the REGISTER is sips (a sips-only binding), otherwise, including queries
// and removals, with the sip scheme, which RFC 5630 §5.2 asks for when both SIP and SIPS
// are allowed (R34, sips.ServiceRoute). Only the scheme changes (and transport=tls is
// dropped from sips); give entries an explicit port where the default port of the other
// scheme would be wrong. Refused REGISTERs carry no Service-Route.
//
// # Outbound (RFC 5626)
//
// A REGISTER with "Supported: outbound" whose one Contact with a reg-id also has a
// +sip.instance, sent straight to sipsvc (no Path) over TCP or TLS, makes an outbound
// binding (§5.2): dn.Binding.RegID and InstanceID are stored with the flow (Transport,
// Source), and the 200 OK carries "Require: outbound" and the reg-id on that Contact. A
// REGISTER for the same instance and reg-id replaces that flow's binding whatever its
// Contact; another reg-id is another flow of the same device. Without "Supported:
// outbound", without an instance, over UDP (sipsvc answers no STUN keep-alives) or behind a
// Path (the edge proxy holds the flow) the reg-id is ignored. Two Contacts with a reg-id,
// or a reg-id outside 1..2^31-1, are a 400. Signaling sends calls to an outbound binding
// only over its flow (signaling/flow.go).
//
// # Observability
//
// Each REGISTER gets a "sip.transaction REGISTER" SERVER span (docs/observability.md) with
// sip.method, sip.call_id, sip.dn, sip.transport, network.* and sip.status_code; 5xx
// answers mark it as an error. Registration changes are reported to Config.Observer as
// signaling.EventRegistrationAdded/Refresh/Removed with the Binding, after the DN's lock is
// released.
//
// # Calls
//
// ClassifyCall (signaling.Classifier; AuthorizeCall is its signaling.Authenticator form)
// trusts a request whose source IP matches a DN's TrustedSources, or whose
// TLS connection presented a verified client certificate whose CN, DNS, URI or e-mail SAN
// matches a DN's TrustedCertSubjects; that DN is the caller. The certificate is read from
// the sipgo server transaction's connection (a *sip.TCPConnection around a *tls.Conn), so
// the transaction must be the one sipgo handed to the handler, and it must have been
// verified (tls.VerifyClientCertIfGiven or RequireAndVerifyClientCert with ClientCAs): an
// unverified certificate (tls.RequestClientCert) is ignored. The trusted DNs come from
// store.Store.TrustedDNs; the class is then trusted and the rule that matched is named.
// Otherwise the From user, its %HH escapes decoded (RFC 3261 §19.1.4), decides: a DN with
// a password is challenged (407) and, answered, authenticated; a DN without a password, a
// disabled DN or an unknown user is anonymous (signaling decides what an anonymous caller
// may reach). ChallengeCall sends an anonymous caller the same 407, checked against dummy
// credentials, so that it cannot tell which numbers exist.
package registrar
