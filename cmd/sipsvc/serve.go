package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.opentelemetry.io/otel"

	"github.com/sipsvc/sipsvc/app"
	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// drainTimeout bounds how long SIGTERM waits for calls in progress to end.
const drainTimeout = 30 * time.Second

// processLogger builds the service's logger and makes it the process's only log output:
// sipgo's package logger (sip.DefaultLogger, used by its transports outside any server),
// slog.Default and the standard log package all write through it, in the same format and
// at the same level, instead of in Go's default "2006/01/02 15:04:05 WARN …" format. It
// runs before any SIP socket exists (sipgo: "must be called before any usage").
func processLogger(w io.Writer, c config.LogConfig) (*slog.Logger, error) {
	log, err := telemetry.NewLogger(w, c)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	slog.SetDefault(log) // also routes the log package through log's handler
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	return log, nil
}

// serve starts the stack (package app) and runs it until ctx is cancelled, a component
// fails, or draining is closed and the calls in progress have ended (at most drainTimeout).
func serve(ctx context.Context, cfg config.Config, getenv func(string) string, draining <-chan struct{}) error {
	log, err := processLogger(os.Stderr, cfg.Log)
	if err != nil {
		return err
	}
	inst, err := app.Start(ctx, app.Config{Settings: cfg, Getenv: getenv, Version: version, Logger: log})
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
