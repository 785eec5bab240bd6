// Package e2e holds end-to-end tests of sipsvc's control plane: the whole stack runs in the
// test process, started by app.Start as cmd/sipsvc starts it, on real loopback sockets.
//
// Each test starts its own stack (see harness_test.go) from config.Default with:
//
//   - SIP on UDP, TCP and TLS listeners on 127.0.0.1:0, with the test PKI;
//   - an in-memory store (store.NewMemory) seeded with DNs whose contacts are sipgo "phones"
//     owned by the test;
//   - optionally a test routing service (a real routing.v1 gRPC server on 127.0.0.1:0) as
//     routing.address;
//   - the gRPC and REST API on 127.0.0.1:0.
//
// The phones are sipgo user agents that ring, answer, answer on NOTIFY Event: talk, ring
// until CANCEL, and record every request they receive, so tests assert what went over the
// wire (offers and answers, a=sendonly / a=sendrecv, CANCEL, BYE, INVITE to a transfer
// target) alongside what the API and its event stream report.
//
// The tests cover gRPC call control (MakeCall, AnswerCall, HoldCall / RetrieveCall,
// TransferCall, ReleaseCall, GetCall, ListCalls and their error codes), routing through a
// routing service (targets, rejection, error and timeout with the fallback path, leg
// decision notifications), the REST gateway (call control, error statuses, the NDJSON event
// stream, /openapi.json) and bearer-token authentication on both ports.
//
// Run them with:
//
//	go test -race ./test/e2e/
//
// Set SIPSVC_TEST_LOG=1 to see the stack's logs.
package e2e
