package service

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind (servers, streams,
// notification senders).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process by the OpenTelemetry / gRPC libraries, not by us.
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}
