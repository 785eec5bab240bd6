// Package app builds and runs the whole sipsvc stack from a config.Config: logger,
// telemetry, the directory store, the registrar, the B2BUA (signaling), the optional routing
// client and the gRPC/REST API. cmd/sipsvc and the end-to-end tests both start sipsvc
// through Start, so what the tests exercise is what the binary runs.
//
// Start opens every listener before it returns (so addresses ending in ":0" are resolved
// and reported by the Instance), then serves in the background until Close, until the ctx
// given to Start is cancelled, or until a component fails (see Instance.Done).
package app
