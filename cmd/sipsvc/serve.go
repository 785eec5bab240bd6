package main

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/sipsvc/sipsvc/app"
	"github.com/sipsvc/sipsvc/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// drainTimeout bounds how long SIGTERM waits for calls in progress to end.
const drainTimeout = 30 * time.Second

// serve starts the stack (package app) and runs it until ctx is cancelled, a component
// fails, or draining is closed and the calls in progress have ended (at most drainTimeout).
func serve(ctx context.Context, cfg config.Config, getenv func(string) string, draining <-chan struct{}) error {
	inst, err := app.Start(ctx, app.Config{Settings: cfg, Getenv: getenv, Version: version})
	if err != nil {
		return err
	}
	otel.SetTextMapPropagator(inst.Telemetry.Propagator)
	select {
	case <-draining:
		inst.Logger.Info("SIGTERM: draining calls (new calls get 503); send SIGINT to stop now", "timeout", drainTimeout)
		dctx, dcancel := context.WithTimeout(ctx, drainTimeout)
		left := inst.Drain(dctx)
		dcancel()
		inst.Logger.Info("drained", "calls_left", left)
	case <-inst.Done():
	}
	return inst.Close()
}
