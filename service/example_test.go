package service_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/sipsvc/sipsvc/service"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/store"
)

// Example wiring of the control plane, as cmd/sipsvc does it: the Hub and the routing
// client observe the B2BUA, the API serves it.
func Example() {
	ctx := context.Background()
	log := slog.Default()
	var st store.Store // the directory store, opened elsewhere

	hub := service.NewHub(0, log)
	observers := []signaling.Observer{hub}
	var router signaling.Router // nil: the built-in router
	rc, err := service.NewRoutingClient(ctx, service.RoutingClientConfig{
		Address: "127.0.0.1:9191",
		Timeout: time.Second,
		Logger:  log,
	})
	if err != nil {
		log.Error("routing client", "error", err)
		return
	}
	defer rc.Close()
	router, observers = rc, append(observers, rc)

	b2bua, err := signaling.New(signaling.Config{Directory: nil /* … */, Router: router, Observers: observers})
	if err != nil {
		log.Error("signaling", "error", err)
		return
	}
	api, err := service.NewAPI(service.APIConfig{
		GRPCAddr: "127.0.0.1:9090",
		HTTPAddr: "127.0.0.1:8080",
		Calls:    b2bua,
		Store:    st,
		Hub:      hub,
		Realm:    "sipsvc",
		Logger:   log,
	})
	if err != nil {
		log.Error("api", "error", err)
		return
	}
	_ = api.Run(ctx) // until ctx is cancelled
}
