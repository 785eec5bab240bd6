package otlp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind (receiver, exporters).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
