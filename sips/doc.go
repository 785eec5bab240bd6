// Package sips holds the secure SIP rules of SIPS.md as pure functions: which scheme and
// transport a leg uses and why (R3–R11, R18–R25, R40, P1–P4), what the peer asked for and
// whether the leg is secure (derived from the Request-URI and the transport, R25), how a
// target URI and our Contact are written for that leg, when a policy refuses to bridge two
// legs (R14, R19, R20), and when a Refer-To would derive a sip dialog from a sips one (R17).
//
// Every decision carries the SIPS.md rule id that justifies it, so that callers can record it
// on the call, in events and in trace attributes.
package sips
