package telemetry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (exporters, gRPC clients).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
