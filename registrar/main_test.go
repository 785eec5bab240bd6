package registrar_test

import (
	"io"
	"log/slog"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// sipgo logs through slog.Default (connection ref counts, parse errors of the bad-input
	// tests); keep test output readable. Registrar logs go to each harness's own buffer.
	if os.Getenv("SIPSVC_TEST_SIPGO_LOG") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	} else {
		slog.SetLogLoggerLevel(slog.LevelDebug)
	}
	os.Exit(m.Run())
}
