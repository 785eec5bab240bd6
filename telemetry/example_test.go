package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/telemetry"
)

// Example shows the wiring main does: Setup from the config file and the environment,
// metrics for signaling, /metrics on the HTTP mux, a logger, and a flushing Shutdown.
func Example() {
	cfg := config.Default()
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		Telemetry: cfg.Telemetry,
		Getenv:    func(string) string { return "" }, // os.Getenv in main
		Version:   "dev",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx) // flushes the last spans
	}()

	metrics, err := telemetry.NewMetrics(tel.MeterProvider) // signaling.Metrics and signaling.Observer
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = metrics

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.MetricsHandler)

	log, err := telemetry.NewLogger(os.Stderr, cfg.Log)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = log

	fmt.Println("tracing:", tel.Tracing)
	// Output: tracing: false
}
