// Package sips holds the secure SIP rules of docs/sips.md as pure functions: which scheme and
// transport a leg uses and why (R3–R11, R18–R25, R40, P1–P4), how a target URI and our
// Contact are written for that leg, and when a policy refuses to bridge two legs (R19, R20).
//
// Every decision carries the rule id (docs/sips.md) that justifies it, so that callers can record it
// on the call, in events and in trace attributes.
//
// A decision also says what the peer asked for and whether the leg is secure, derived from
// the Request-URI and the transport (R25); CheckPolicy refuses to bridge two legs under the
// strict policy (R14, R19, R20), and CheckReferTo refuses a Refer-To that would derive a sip
// dialog from a sips one (R17).
package sips
