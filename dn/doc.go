// Package dn defines directory numbers (DNs) and registrations: the plain data that the
// directory store persists, the registrar writes and the B2BUA reads when it routes a call.
//
// A DN is an extension, ACD position, trunk or VoIP service. Its Contact is either a fixed
// sip:/sips: URI or "*" for a device that registers itself (docs/sips.md, "Registrar").
package dn
