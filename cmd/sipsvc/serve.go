package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sipsvc/sipsvc/config"
	"github.com/sipsvc/sipsvc/signaling"
)

// serve wires the components and runs them until ctx is cancelled.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	srvTLS, cliTLS, err := tlsConfigs(cfg, log)
	if err != nil {
		return err
	}
	dir := newSeedDirectory(cfg.SeedDNs())
	sig, err := signaling.New(signaling.Config{
		Hostname:       cfg.SIP.Hostname,
		ServerTLS:      srvTLS,
		ClientTLS:      cliTLS,
		Policy:         cfg.SIP.Policy,
		RingTimeout:    cfg.SIP.RingTimeout,
		SessionExpires: cfg.SIP.SessionExpires,
		MinSE:          cfg.SIP.MinSE,
		UserAgent:      cfg.SIP.UserAgent,
		Directory:      dir,
		RoutingTimeout: cfg.Routing.Timeout,
		FallbackDNs:    cfg.Routing.FallbackDNs,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	ls, err := listen(ctx, cfg.SIP)
	if err != nil {
		return err
	}
	for _, c := range ls.UDP {
		log.Info("SIP listening", "transport", "udp", "addr", c.LocalAddr().String())
	}
	for _, c := range ls.TCP {
		log.Info("SIP listening", "transport", "tcp", "addr", c.Addr().String())
	}
	for _, c := range ls.TLS {
		log.Info("SIP listening", "transport", "tls", "addr", c.Addr().String())
	}
	if err := sig.Serve(ctx, ls); err != nil {
		return fmt.Errorf("sip: %w", err)
	}
	log.Info("stopped")
	return nil
}
