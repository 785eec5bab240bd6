package dn

import "testing"

// BenchmarkTrustsSource measures matching a source address against a trunk's trusted
// sources, as the registrar does for each trusted DN on every out-of-dialog INVITE: with
// the sources parsed on each call (a DN built by hand) and parsed once (WithSourcesParsed,
// as store.Cached keeps its trusted DNs).
func BenchmarkTrustsSource(b *testing.B) {
	d := DN{Number: "9000", Type: TypeTrunk, Contact: "sip:gw@192.0.2.1",
		TrustedSources: []string{"192.0.2.1", "192.0.2.2", "198.51.100.0/24", "2001:db8:1::/48"}}
	for _, f := range sourceForms(d) {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if f.d.TrustsSource("203.0.113.9") { // no match: every entry is tried
					b.Fatal("203.0.113.9 trusted")
				}
			}
		})
	}
}

// sourceForm is a DN with its trusted sources parsed on each call or once, up front.
type sourceForm struct {
	name string
	d    DN
}

// sourceForms returns d in both forms, which must give the same answers.
func sourceForms(d DN) []sourceForm {
	return []sourceForm{{"parsed_each_call", d}, {"parsed_once", d.WithSourcesParsed()}}
}
