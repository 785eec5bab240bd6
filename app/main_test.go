package app

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when an Instance leaves goroutines behind after Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process by the OpenTelemetry / gRPC libraries, not by us.
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}
