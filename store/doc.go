// Package store persists DNs and registrations. The Store interface lets the embedded default
// (bbolt, in the data directory) be replaced by a shared store later without touching the
// registrar or the B2BUA.
//
// Two implementations are provided: Bolt, the durable embedded default (OpenBolt), and
// Memory, a map-backed store for tests (NewMemory). Both pass the same conformance suite.
//
// Both validate what they are given: a DN must pass dn.DN.Validate and a binding must name
// an existing DN and carry a parseable sip:/sips: contact. Bindings are stored with their
// absolute expiry; reads filter expired ones and PurgeExpiredBindings deletes them.
package store
